"""Two workers, one batch: how `judge run --shared` divides work, and what a killed worker costs.

Each worker is a separate process running `run_shared` on the same pairs and database, with an
`OpenAIProtocolBackend` whose in-process transport answers after a fixed latency (asynchronously, so a
worker keeps ``--concurrency`` comparisons in flight) and logs every request's pair id. Three phases, one
markdown table:

* **1 worker** - the reference wall time.
* **2 workers** - wall time (speed-up over one worker; the latency-bound ideal is 2x), each worker's share,
  and model requests per pair (exactly 2: both orders, once).
* **2 workers, one killed** - worker ``a`` gets SIGKILL after it recorded a quarter of the batch; worker
  ``b`` takes its expired claims over (``--lease`` seconds) and finishes. Reported: pairs taken over,
  pairs the model was asked about twice, requests per pair, and whether the batch holds one verdict per
  pair.

Wall time runs from the moment both workers (already started and imported) are released together to the
last worker's end. Every run uses fresh pair texts, so nothing is answered from an earlier run's cache.

Usage::

    python benchmarks/shared_batch.py                       # SQLite in a tmp dir, 400 pairs
    python benchmarks/shared_batch.py --db postgresql+psycopg2://user:pw@host/db --pairs 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOOD = "Water boils at 100 degrees Celsius at sea level."
BAD = "Water boils at 50 degrees Celsius, trust me."


# ------------------------------------------------------------------------------------------------- worker
def _completion(win: str) -> dict[str, Any]:
    lose = "B" if win == "A" else "A"
    top = [{"token": win, "logprob": math.log(0.9), "bytes": None},
           {"token": lose, "logprob": math.log(0.1), "bytes": None}]
    return {"id": "bench", "object": "chat.completion", "created": 0, "model": "bench",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": win},
                         "logprobs": {"content": [{**top[0], "top_logprobs": top}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51}}


def worker(args: argparse.Namespace) -> None:
    import httpx2
    import openai

    from judge.backends.openai_compat import OpenAIProtocolBackend, RetryPolicy
    from judge.judging.engine import Judge, bare_config
    from judge.judging.shared import run_shared
    from judge.records import read_pairs
    from judge.store import migrate, open_engine
    from judge.store.claims import WorkClaims
    from judge.store.judgments import JudgmentStore

    log = Path(args.asked).open("a", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    async def handle(request: httpx2.Request) -> httpx2.Response:
        user = json.loads(request.content)["messages"][1]["content"]
        log.write(user.split("<prompt>\n[", 1)[1].split("]", 1)[0] + "\n")
        log.flush()
        await asyncio.sleep(args.latency)
        slot_a = user.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
        return httpx2.Response(200, json=_completion("A" if "100 degrees" in slot_a else "B"))

    client = openai.AsyncOpenAI(base_url="http://bench.invalid/v1", api_key="bench",
                                http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)))
    backend = OpenAIProtocolBackend(name="fake", model="bench", client=client,
                                    retry=RetryPolicy(attempts=1, initial_wait_s=0, max_wait_s=0, jitter_s=0))
    engine = open_engine(args.db)
    migrate(engine)
    judge = Judge(backend, None, config=bare_config(backend), store=JudgmentStore(engine))
    claims = WorkClaims(engine, args.batch, worker_id=args.worker, lease_s=args.lease)
    records = list(read_pairs(args.pairs_file))
    Path(args.ready).touch()
    while not Path(args.go).exists():
        time.sleep(0.005)
    report = asyncio.run(run_shared(judge, records, claims, concurrency=args.concurrency,
                                    on_result=lambda v: print("done", v.pair_id, flush=True)))
    print("report", json.dumps({**vars(report), "t_end": time.time()}), flush=True)


# ------------------------------------------------------------------------------------------------- parent
def phase(db: str, workdir: Path, n: int, names: list[str], *, latency: float, concurrency: int, lease: float,
          kill_after: int | None = None) -> dict[str, Any]:
    nonce = secrets.token_hex(4)  # fresh texts: no cache hits from an earlier phase
    pairs = workdir / f"pairs-{nonce}.jsonl"
    with pairs.open("w", encoding="utf-8") as fh:
        for i in range(n):
            a, b = (GOOD, BAD) if i % 2 else (BAD, GOOD)
            fh.write(json.dumps({"id": f"p{i:05d}", "prompt": f"[p{i:05d}] {nonce} At what temperature does "
                                 "water boil?", "response_a": a, "response_b": b}) + "\n")
    go = workdir / f"go-{nonce}"
    procs = {}
    for name in names:
        procs[name] = subprocess.Popen(
            [sys.executable, __file__, "--worker", name, "--db", db, "--pairs-file", str(pairs),
             "--asked", str(workdir / f"asked-{nonce}-{name}"), "--ready", str(workdir / f"ready-{nonce}-{name}"),
             "--go", str(go), "--batch", f"bench-{nonce}", "--latency", str(latency), "--concurrency",
             str(concurrency), "--lease", str(lease)], stdout=subprocess.PIPE, text=True)
    while not all((workdir / f"ready-{nonce}-{name}").exists() for name in names):
        time.sleep(0.01)
    start = time.time()
    go.touch()
    reports: dict[str, dict[str, Any]] = {}
    if kill_after is not None:
        victim = procs[names[0]]
        assert victim.stdout is not None
        recorded = 0
        while recorded < kill_after and (line := victim.stdout.readline()):
            recorded += line.startswith("done ")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    for name, proc in procs.items():
        out, _ = proc.communicate()
        for line in out.splitlines():
            if line.startswith("report "):
                reports[name] = json.loads(line.removeprefix("report "))
    asked = {name: Counter((workdir / f"asked-{nonce}-{name}").read_text(encoding="utf-8").split())
             for name in names}
    total = sum(asked.values(), Counter())
    by_pair = {name: set(c) for name, c in asked.items()}
    twice = set.intersection(*by_pair.values()) if len(names) > 1 else set()

    from judge.store import open_engine
    from judge.store.claims import WorkClaims

    engine = open_engine(db)
    claims = WorkClaims(engine, f"bench-{nonce}")
    verdicts = Counter(v.pair_id for v in claims.results())
    progress = claims.progress()
    engine.dispose()
    return {"wall": max(r["t_end"] for r in reports.values()) - start, "reports": reports,
            "requests_per_pair": sum(total.values()) / n, "asked_twice": len(twice),
            "one_verdict_each": len(verdicts) == n and set(verdicts.values()) == {1},
            "reclaimed": progress.reclaimed, "complete": progress.complete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="SQLAlchemy URL (default: SQLite in a tmp dir)")
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per model request")
    parser.add_argument("--concurrency", type=int, default=8, help="comparisons in flight per worker")
    parser.add_argument("--lease", type=float, default=2.0, help="claim lease in seconds")
    for hidden in ("--worker", "--pairs-file", "--asked", "--ready", "--go", "--batch"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db = args.db or f"sqlite:///{workdir / 'bench.db'}"
        from judge.store import migrate, open_engine

        engine = open_engine(db)
        migrate(engine)
        engine.dispose()
        kw = {"latency": args.latency, "concurrency": args.concurrency, "lease": args.lease}
        one = phase(db, workdir, args.pairs, ["a"], **kw)
        two = phase(db, workdir, args.pairs, ["a", "b"], **kw)
        killed = phase(db, workdir, args.pairs, ["a", "b"], kill_after=args.pairs // 4, **kw)
    print(f"db: {db.split(':', 1)[0]}; {args.pairs} pairs, {args.latency * 1000:.0f} ms per request, "
          f"{args.concurrency} comparisons in flight per worker, lease {args.lease:g} s; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| phase | wall s | speed-up | judged per worker | requests/pair | asked twice | taken over "
          "| one verdict per pair |")
    print("|---|---|---|---|---|---|---|---|")
    for label, res in (("1 worker", one), ("2 workers", two), ("2 workers, a killed", killed)):
        shares = ", ".join(f"{name} {r['judged']}" for name, r in sorted(res["reports"].items()))
        if label.endswith("killed"):
            shares = f"a killed, b {res['reports']['b']['judged']}"
        print(f"| {label} | {res['wall']:.2f} | {one['wall'] / res['wall']:.2f}x | {shares} | "
              f"{res['requests_per_pair']:.3f} | {res['asked_twice']} | {res['reclaimed']} | "
              f"{'yes' if res['one_verdict_each'] and res['complete'] else 'NO'} |")


if __name__ == "__main__":
    main()
