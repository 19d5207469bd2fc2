"""How often a ruling just added is missing from retrieval in the same process, with and without the repair.

Each cycle is what tests/test_cli.py::test_rulebook_workflow does, through the CLI in one process: load the
default rulebook (twice), list, show, add a ruling, then retrieve for the ruling's own pair. Embedded
chromadb 1.5.9 now and then stores the new ruling (get() returns it) but its in-process vector search never
returns it; `RuleIndex._write` checks every write by searching for it and writes a missed record again. The
fault shows under CPU load, so `--load N` runs N busy-looping processes beside the cycles.

    python benchmarks/index_lost_writes.py --cycles 60 --load 2              # with the repair (default)
    python benchmarks/index_lost_writes.py --cycles 60 --load 2 --no-repair  # the check only logs
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import multiprocessing
import sys
import tempfile
from pathlib import Path

from judge.cli.main import main as judge_main
from judge.retrieval import index_writes

ROOT = Path(__file__).resolve().parent.parent
RULING = {"prompt": "Rate my essay", "response_a": "Perfect!", "response_b": "Needs work", "holding": "B",
          "rationale": "honest", "cites": ["spec/avoid-sycophancy"]}


def cli(tmp: Path, *args: str) -> str:
    sys.argv = ["judge", "--db", f"sqlite:///{tmp / 'rulebook.db'}", "--index-path", str(tmp / "index"),
                "--embedding-model", "hash", *args]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        judge_main()
    return out.getvalue()


def busy() -> None:
    while True:
        pass


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.repairs = 0
        self.unrepaired = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.repairs += "writing them again" in message
        self.unrepaired += "still not found by search" in message


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=60)
    ap.add_argument("--load", type=int, default=2, help="busy-looping processes run beside the cycles")
    ap.add_argument("--no-repair", action="store_true", help="only report missed writes (WRITE_REPAIRS = 0)")
    args = ap.parse_args()
    if args.no_repair:
        index_writes.WRITE_REPAIRS = 0
    counter = Counter()
    logging.getLogger("judge.retrieval.index").addHandler(counter)
    hogs = [multiprocessing.Process(target=busy, daemon=True) for _ in range(args.load)]
    for hog in hogs:
        hog.start()
    missed = 0
    try:
        for _ in range(args.cycles):
            with tempfile.TemporaryDirectory() as tmp_name:
                tmp = Path(tmp_name)
                for step in (("rulebook", "load", str(ROOT / "rulebook"), "--json"),
                             ("rulebook", "load", str(ROOT / "rulebook"), "--json"),
                             ("rulebook", "list", "--layer", "constitution", "--json"),
                             ("rulebook", "show", "spec/avoid-sycophancy", "--json")):
                    cli(tmp, *step)
                ruling = tmp / "ruling.json"
                ruling.write_text(json.dumps(RULING))
                rid = json.loads(cli(tmp, "rulebook", "add-ruling", "--file", str(ruling), "--json"))["id"]
                got = json.loads(cli(tmp, "retrieve", "--prompt", RULING["prompt"], "--a", RULING["response_a"],
                                     "--b", RULING["response_b"], "--json"))
                missed += rid not in [r["id"] for r in got["rules"]]
    finally:
        for hog in hogs:
            hog.terminate()
    print(f"{args.cycles} cycles, load {args.load}, repair {'off' if args.no_repair else 'on'}: new ruling "
          f"missing from retrieval in {missed}; writes repaired {counter.repairs}, left unfound {counter.unrepaired}")


if __name__ == "__main__":
    main()
