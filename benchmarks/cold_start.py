"""Cold start of the command line: how long a fresh `judge` process takes, as a ratio to `python -c pass`.

Each repeat runs every command once as a new process, in turn (so a slow moment of the machine hits all of
them alike); the table gives the median wall time, min-max, and the median of the per-repeat ratios to the
bare interpreter start measured in the same repeat.

Commands measured (on a temporary data dir holding the default rulebook, indexed with the default embedder):

* ``judge --help``
* ``judge rulebook list`` (no embedding, no index)
* ``judge retrieve --prompt ... --a ... --b ...`` (embeds the pair: loads the embedding model)
* ``judge compare ...`` answered from the judgment store (a local OpenAI-compatible stub answered it once
  first; the cached run retrieves, then finds the verdict, and asks no model)

Run:  python benchmarks/cold_start.py [--repeats 7] [--data-dir DIR]
(``--data-dir`` reuses a prepared directory; otherwise the rulebook is loaded and indexed first, which
takes a minute and is not timed.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from judge.testing import stub_endpoint

REPO = Path(__file__).resolve().parent.parent
PAIR = ["--prompt", "How do I boil an egg?", "--a", "Put it in boiling water for 9 minutes.",
        "--b", "Eggs are overrated; order takeout."]
TARGETS = {"judge --help": 1.5, "judge rulebook list": 1.5, "judge retrieve": 3.0, "judge compare (cached)": 3.0}


def _judge_cmd() -> list[str]:
    script = Path(sys.executable).with_name("judge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "judge.cli.main"]


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return took


def _time_commands(args: argparse.Namespace, judge: list[str], compare: list[str], env: dict[str, str],
                   work: Path, data_dir: Path, only: set[str]) -> dict[str, list[float]]:
    """Prepare the data directory if asked, warm the file cache, then time each chosen command in turn."""
    if args.data_dir is None:
        print(f"preparing {data_dir}: loading and indexing the default rulebook (not timed)", file=sys.stderr)
        _run([*judge, "rulebook", "load", str(REPO / "rulebook"), "--constitution"], env, work)
    if "compare" in only:
        _run(compare, env, work)  # the stub answers once; every timed compare is answered from the store
    chosen = {
        "python -c pass": ("", [sys.executable, "-c", "pass"]),
        "judge --help": ("help", [*judge, "--help"]),
        "judge rulebook list": ("list", [*judge, "rulebook", "list"]),
        "judge retrieve": ("retrieve", [*judge, "retrieve", *PAIR]),
        "judge compare (cached)": ("compare", compare),
    }
    commands = {name: cmd for name, (key, cmd) in chosen.items() if not key or key in only}
    for cmd in commands.values():  # warm the file cache once
        _run(cmd, env, work)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            times[name].append(_run(cmd, env, work))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, help="a prepared data dir (default: a new one, prepared first)")
    parser.add_argument("--only", default="help,list,retrieve,compare",
                        help="comma-separated subset of help, list, retrieve, compare (default: all)")
    args = parser.parse_args()
    only = set(args.only.split(","))

    work = Path(tempfile.mkdtemp(prefix="judge-cold-start-"))
    data_dir = args.data_dir or work / "data"
    env = {**os.environ, "JUDGE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "ANONYMIZED_TELEMETRY": "False"}
    for var in ("JUDGE_DB", "JUDGE_INDEX_PATH", "JUDGE_CHROMA_URL", "JUDGE_EMBEDDING_MODEL", "JUDGE_BACKEND",
                "JUDGE_CONFIG", "JUDGE_BASE_URL"):
        env.pop(var, None)
    judge = _judge_cmd()
    with stub_endpoint() as base_url:
        compare = [*judge, "compare", *PAIR, "--backend", "openai/stub", "--base-url", base_url, "--method",
                   "pairwise", "--no-explain"]
        try:
            times = _time_commands(args, judge, compare, env, work, data_dir, only)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    base = times["python -c pass"]
    print(f"cold start, {args.repeats} repeats (wall seconds; ratio = median of per-repeat ratios to "
          "`python -c pass`)")
    print(f"{'command':<24} {'median s':>9} {'min-max s':>13} {'ratio':>7} {'target s':>9}  within")
    for name, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        target = TARGETS.get(name)
        median = statistics.median(values)
        within = "-" if target is None else ("yes" if median <= target else "no")
        print(f"{name:<24} {median:>9.2f} {min(values):>6.2f}-{max(values):<6.2f} {ratio:>7.1f} "
              f"{target if target else '-':>9}  {within}")


if __name__ == "__main__":
    main()
