"""Bad input through the real CLI, one subprocess per input: is every one a clear error?

Each class of bad input (lone surrogates and 100,000-level nesting in pair files, labelled sets, rule and
ruling files, YAML front matter, test cases and gate files; rule ids with a newline, a control character or
a JSON object; `rulebook ingest` input that `rulebook load` refuses; results and cases files the gate cannot
use; bad command options; a missing database) is given to the command that reads it, in a fresh process on
a fresh SQLite file with the hash embedder. Counted per class:

* clear error - exit code 2, one message naming the file (and line; for an option, the option) and no
  traceback;
* traceback - a Python traceback on stderr (target 0);
* silent accept - exit code 0 (target 0);
* stored half-way - a results line written or a rule stored although the input was refused (target 0).

    python benchmarks/robustness.py [--jobs 4]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_hardening import BAD_INPUTS  # noqa: E402  (the table the regression tests pin down)


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        return sum(conn.execute(f"select count(*) from {t}").fetchone()[0]
                   for t in ("rule_versions", "judgments", "test_cases") if t in tables)


def _try(name: str, build: Callable[[Path], list[str]], where: str | None) -> tuple[str, list[int]]:
    """Run one bad input in a fresh process on a fresh database: (class, [1, clear, traceback, accepted, half])."""
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        db = tmp / "judge.db"
        args = build(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "COLUMNS": "400",
               "JUDGE_DATA_DIR": str(tmp / "data")}
        done = subprocess.run([sys.executable, "-m", "judge.cli.main", "--db", f"sqlite:///{db}",
                               "--embedding-model", "hash", *args], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=1800, check=False)
        out = tmp / "o.jsonl"
        half = (out.exists() and out.stat().st_size > 0) or _stored(db) > 0
        named = where if where and where.startswith("--") else str(tmp / where) if where else str(db)
        clear = done.returncode == 2 and named in "".join(done.stderr.split()) and "Traceback" not in done.stderr
        return _klass(name), [1, int(clear), int("Traceback" in done.stderr), int(done.returncode == 0), int(half)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1, help="Inputs tried at once (each in its own process).")
    jobs = parser.parse_args().jobs
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    cases: list[tuple[str, Callable[[Path], list[str]], str | None]] = [
        (name, build, where[0]) for name, (build, where, _) in BAD_INPUTS.items()]
    cases.append(("missing-database", lambda t: ["run", str(_pairs(t)), "-o", str(t / "o.jsonl")], None))
    cases += [(f"option {option}", build, option) for option, build in OPTIONS.items()]
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda case: _try(*case), cases))
    for klass, counts in results:  # in the order of `cases`, whatever order they finished in
        rows[klass] = [a + b for a, b in zip(rows[klass], counts, strict=True)]
    print("| input class | inputs tried | clear errors | tracebacks | silent accepts | stored half-way |")
    print("|---|---:|---:|---:|---:|---:|")
    total = [0, 0, 0, 0, 0]
    for klass, row in rows.items():
        print(f"| {klass} | " + " | ".join(map(str, row)) + " |")
        total = [a + b for a, b in zip(total, row, strict=True)]
    print("| **all** | " + " | ".join(f"**{x}**" for x in total) + " |")


def _klass(name: str) -> str:
    if "surrogate" in name:
        return "lone UTF-16 surrogate in a text field"
    if "deep" in name:
        return "100,000-level nesting (JSON / YAML / TOML)"
    if "-id-" in name or "front-matter" in name:
        return "rule id with a newline / control character / JSON object; no front matter"
    if name.startswith("ingest-"):
        return "rulebook ingest: duplicate id, unknown parent"
    if name.startswith(("eval-results", "gate-")):
        return "results / cases files: bad field, unknown status, two judges"
    if name.startswith("option"):
        return "bad option: --base-url, -o a directory, -c below 1"
    return "mistyped database (file does not exist)"


#: Bad options of `judge run` (the option the error must name -> the command).
OPTIONS: dict[str, Callable[[Path], list[str]]] = {
    "--base-url": lambda t: ["run", str(_pairs(t)), "-o", str(t / "o.jsonl"), "--backend", "openai/m",
                             "--base-url", "not a url", "--allow-empty"],
    "--out": lambda t: ["run", str(_pairs(t)), "-o", str(t), "--allow-empty"],
    "--concurrency": lambda t: ["run", str(_pairs(t)), "-o", str(t / "o.jsonl"), "-c", "-3", "--allow-empty"],
}


def _pairs(tmp: Path) -> Path:
    path = tmp / "p.jsonl"
    path.write_text('{"id": "p0", "prompt": "q?", "response_a": "a", "response_b": "b"}\n', encoding="utf-8")
    return path


if __name__ == "__main__":
    main()
