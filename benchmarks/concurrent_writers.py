"""Concurrent writers on one database: P processes, each adding N rulings with `judge rulebook add-ruling`.

All processes share one SQLite file and one local retrieval index (the hash embedder). Each runs its N
commands one after another; every ruling is on a pair of its own, so every command should succeed. Counted:
rulings stored, commands that exited non-zero, tracebacks printed, and whether the change history and the
index agree afterwards (`judge index status`: the index is current and holds every rule).

    python benchmarks/concurrent_writers.py --procs 4 --each 25
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULE = "---\nid: spec/be-clear\ntitle: Be clear\nauthority: guideline\nsource: user\n---\nBe clear.\n"


def _judge(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "COLUMNS": "400",
           "JUDGE_DATA_DIR": str(tmp / "data"), "JUDGE_INDEX_PATH": str(tmp / "index")}
    return subprocess.run([sys.executable, "-m", "judge.cli.main", "--db", f"sqlite:///{tmp / 'judge.db'}",
                           "--embedding-model", "hash", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=900, check=False)


def _worker(tmp: Path, proc: int, each: int) -> list[subprocess.CompletedProcess[str]]:
    done = []
    for i in range(each):
        done.append(_judge(tmp, "rulebook", "add-ruling", "--prompt", f"Question {proc}-{i}: how do I do task "
                           f"number {proc * 1000 + i}?", "--a", f"Do step {i} then step {proc}.",
                           "--b", f"I will not help with {i}.", "--holding", "A", "--rationale", "helpful"))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--each", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "rb" / "spec").mkdir(parents=True)
        (tmp / "rb" / "spec" / "be-clear.md").write_text(RULE, encoding="utf-8")
        loaded = _judge(tmp, "rulebook", "load", str(tmp / "rb"))
        if loaded.returncode != 0:
            raise SystemExit(loaded.stderr)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.procs) as pool:
            runs = [r for rs in pool.map(lambda p: _worker(tmp, p, args.each), range(args.procs)) for r in rs]
        wall = time.perf_counter() - start
        with sqlite3.connect(tmp / "judge.db") as conn:
            stored = conn.execute("select count(distinct rule_id) from rule_versions where rule_id like 'ruling/%'"
                                  ).fetchone()[0]
        failed = [r for r in runs if r.returncode != 0]
        tracebacks = sum("Traceback" in r.stderr for r in runs)
        status = _judge(tmp, "index", "status", "--json")
        index = json.loads(status.stdout) if status.returncode == 0 else {}
        in_index = f"{index.get('count', '?')} (current: {index.get('current', '?')})"
        print("| processes x rulings | stored | exit != 0 | tracebacks | rules in the index | wall s |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| {args.procs} x {args.each} | {stored} of {len(runs)} | {len(failed)} | {tracebacks} | "
              f"{in_index} | {wall:.0f} |")
        for r in failed[:3]:
            print("\n--- a failed command's stderr (last lines):\n" + "\n".join(r.stderr.strip().splitlines()[-6:]))
        if status.returncode != 0:
            print("\nreading the index afterwards failed:\n" + status.stderr[-2000:])


if __name__ == "__main__":
    main()
