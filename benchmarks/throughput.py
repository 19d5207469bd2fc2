"""Judging throughput benchmark: comparisons/s against a latency-bound endpoint, engine overhead, memory.

Everything runs in one invocation and prints one markdown table:

* **throughput** - `run_pairs` with a `Judge` (bare config, both orders sent concurrently) on an
  `OpenAIProtocolBackend` pointed at a local fake OpenAI-compatible server (asyncio, in a subprocess so it
  never competes for this process's GIL) that answers every ``POST /v1/chat/completions`` after a fixed
  latency. Every comparison costs at least one latency (its two orders are in flight together), so with
  ``C`` comparisons in flight the latency-bound limit is ``C / latency`` comparisons/s (32 / 0.2 s = 160/s);
  the ratio measured / limit is reported (target >= 0.95). The backend is built as the registry builds it
  (the openai client over httpx, with the registry's connection pool); a *transport floor* (a bare aiohttp
  client, the leanest Python HTTP client, sending the same request pattern, no engine) is reported beside
  it, so the ratio can be read against what this server and machine allow at all.
* **engine overhead** - `Judge.acompare` run sequentially with a client whose `httpx.MockTransport` answers
  instantly, so every millisecond is the engine plus the openai client's request building and reply
  parsing (no network, no model). Reported p50/p95 for the bare config and for the rules template
  (``explain=False``, a `hash_rulebook` over ``rulebook/``: includes retrieval = hash embedding + the
  search of each layer (exact, in memory, for layers of <= 5,000 rules) + SQLite reads), plus retrieval alone
  (target p50 <= 5 ms).
* **memory** - 10,000 comparisons through `run_pairs` against the same latency server, in a fresh child
  process so ``ru_maxrss`` is that run's peak; RSS is sampled as results stream to disk, and growth after
  the first 1,000 comparisons shows whether anything accumulates per comparison. The child is spawned
  before this process loads Chroma, because Linux starts a child's ru_maxrss at its parent's peak (VmHWM,
  which starts afresh at exec, is printed beside it). The child then times the resume scan of its results
  file (`completed_ids`, what a re-run does first) and its RSS change.

The machine's load average is printed with each phase: on a shared machine other jobs steal CPU.

Usage::

    python benchmarks/throughput.py                 # full run: 2000 comparisons, 500 overhead samples, 10k memory
    python benchmarks/throughput.py --quick         # smoke run with small sizes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from judge.backends.deferred import DeferredBackend
from judge.backends.openai_compat import OpenAIProtocolBackend
from judge.backends.registry import make_backend
from judge.judging.engine import Judge, bare_config
from judge.judging.prompts import TEMPLATE_VERSION
from judge.judging.runner import run_pairs
from judge.records import PairRecord, completed_ids
from judge.rules.model import Pair
from judge.verdicts import JudgeConfig, Verdict

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-judge"
#: First-token alternatives in every reply: "A" sampled, B the runner-up (logprobs of a confident judge).
TOP_LOGPROBS = (("A", -0.105), ("B", -2.303), ("T", -6.0))

SUBJECTS = ["my landlord", "the new intern", "our startup", "a small bakery", "the school board", "my sister",
            "a hiking club", "the city council", "an open-source project", "my grandmother", "the night shift"]
ASKS = ["How should I reply to", "Can you summarise the complaint from", "Write a short email to",
        "What is a fair way to deal with", "Give me three ideas to help", "Draft a polite refusal for",
        "Explain in simple terms a tax question from", "Suggest a weekend plan for"]
TOPICS = ["a late rent payment", "a broken heater", "a confusing invoice", "a noisy neighbour",
          "an overdue library book", "a cancelled flight", "a data privacy request", "a product recall",
          "a scheduling conflict", "a medication question", "a refund dispute", "a lost parcel"]
FILLERS = ["First, acknowledge the concern clearly.", "Keep the tone warm but firm.", "Offer a concrete next step.",
           "Avoid making promises you cannot keep.", "Mention the relevant deadline.", "Be concise.",
           "Check the facts before answering.", "Suggest asking a professional if unsure.",
           "Thank them for their patience.", "Provide a short checklist.", "Quote the policy section.",
           "Do not share personal data.", "Give an estimate of the cost.", "Propose a follow-up meeting."]


# ---------------------------------------------------------------------------------------------- fake server
def _completion_body() -> bytes:
    first, first_lp = TOP_LOGPROBS[0]
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": first}, "finish_reason": "length",
                     "logprobs": {"content": [{
                         "token": first, "logprob": first_lp, "bytes": None,
                         "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in TOP_LOGPROBS],
                     }]}}],
        "usage": {"prompt_tokens": 400, "completion_tokens": 1, "total_tokens": 401},
    }).encode()


def _serve(latency_ms: float) -> None:
    """Child-process entry: serve the fake endpoint on a free port, print the port, run until killed.

    A minimal HTTP/1.1 keep-alive responder on asyncio's protocol layer: it reads each request (head and
    Content-Length body) and writes the canned reply ``latency_ms`` after the request arrived. A full web
    framework spends ~0.1 ms per request here, and the 64 requests of 32 comparisons arrive together, so it
    would add several ms of its own to every request's latency; this adds tens of microseconds.
    """
    body = _completion_body()
    ok = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
          + b"\r\n\r\n" + body)
    not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    delay = latency_ms / 1000.0

    class Endpoint(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head = self.buffer[:end].lower()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip() == b"content-length":
                        length = int(value)
                if len(self.buffer) < end + 4 + length:
                    return  # the body is still arriving
                self.buffer = self.buffer[end + 4 + length:]
                reply = ok if head.startswith(b"post /v1/chat/completions ") else not_found
                asyncio.get_running_loop().call_later(delay, self.reply, reply)

        def reply(self, reply: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(reply)  # type: ignore[attr-defined]

    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        server = await asyncio.get_running_loop().create_server(Endpoint, sock=sock, backlog=1024)
        print(sock.getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@dataclass
class FakeServer:
    """The fake endpoint running in a child process."""

    proc: subprocess.Popen[str]
    base_url: str

    def cpu_s(self) -> float:
        """CPU seconds the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def fake_server(latency_ms: float) -> Iterator[FakeServer]:
    proc = subprocess.Popen([sys.executable, __file__, "--_serve", str(latency_ms)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield FakeServer(proc, f"http://127.0.0.1:{port}/v1")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- inputs
def synthetic_records(n: int, seed: int = 0, prefix: str = "p") -> Iterator[PairRecord]:
    """``n`` varied pairs, generated lazily (the runner streams them) and reproducibly from ``seed``."""
    rng = random.Random(seed)
    for i in range(n):
        prompt = f"{rng.choice(ASKS)} {rng.choice(SUBJECTS)} about {rng.choice(TOPICS)}?"
        a = " ".join(rng.choices(FILLERS, k=rng.randint(3, 12)))
        b = " ".join(rng.choices(FILLERS, k=rng.randint(3, 12)))
        pair = Pair(id=f"{prefix}{i:06d}", prompt=prompt, response_a=a, response_b=b)
        yield PairRecord(pair=pair, label=None, source="bench", line=i + 1)


def http_backend(base_url: str) -> OpenAIProtocolBackend:
    """The production setup, as the backend registry builds it for ``openai/<model>``."""
    backend = make_backend("openai/" + MODEL, data_dir=Path(tempfile.gettempdir()), base_url=base_url,
                           api_key="sk-bench")
    assert isinstance(backend, DeferredBackend)  # made on first use
    made = backend.made()
    assert isinstance(made, OpenAIProtocolBackend)
    return made


def instant_backend() -> OpenAIProtocolBackend:
    """An OpenAI client whose transport answers in process, instantly, with the same reply as the server."""
    body = _completion_body()

    def handle(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, content=body)

    client = openai.AsyncOpenAI(base_url="http://bench.invalid/v1", api_key="sk-bench",
                                http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)))
    return OpenAIProtocolBackend(name="openai/" + MODEL, model=MODEL, client=client)


# ---------------------------------------------------------------------------------------------- measures
def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


def hwm_mb() -> float:
    """Peak RSS of this address space (VmHWM). Unlike ru_maxrss it starts afresh at exec: Linux carries the
    parent's peak into a child's ru_maxrss across fork/vfork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def engine_overhead(judge: Judge, n: int, warmup: int = 20) -> list[float]:
    """Per-comparison wall time (ms) of sequential `acompare` calls on an instant backend."""
    times = []
    for i, record in enumerate(synthetic_records(n + warmup, seed=1, prefix="o")):
        start = time.perf_counter()
        verdict = await judge.acompare(record.pair)
        elapsed = time.perf_counter() - start
        if verdict.failure is not None:
            raise SystemExit(f"overhead run failed: {verdict.failure}")
        if i >= warmup:
            times.append(elapsed * 1000)
    return times


def retrieval_times(judge: Judge, n: int, warmup: int = 20, seed: int = 2) -> list[float]:
    times = []  # pairs no earlier phase saw: no query embedding is remembered from it
    for i, record in enumerate(synthetic_records(n + warmup, seed=seed, prefix=f"r{seed}")):
        start = time.perf_counter()
        judge.rules_for(record.pair)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return times


@dataclass
class Throughput:
    n: int
    seconds: float
    failed: int
    lines: int
    cpu_ms_per_cmp: float
    server_cpu_ms_per_cmp: float
    latency_p50_ms: float
    latency_p95_ms: float
    load_before: str
    load_after: str


async def throughput(server: FakeServer, n: int, concurrency: int, workdir: Path) -> Throughput:
    backend = http_backend(server.base_url)
    tag = "http"
    judge = Judge(backend, config=bare_config(backend), concurrent_orders=True)
    try:
        # Warm up: open the keep-alive connections and build pydantic/openai lazy state, not timed.
        await run_pairs(judge, synthetic_records(2 * concurrency, seed=9, prefix="w"),
                        out=workdir / f"warm-{tag}.jsonl", concurrency=concurrency)
        latencies: list[float] = []
        out = workdir / f"throughput-{tag}.jsonl"
        load_before = load()
        cpu0, srv0 = cpu_s(), server.cpu_s()
        start = time.perf_counter()
        report = await run_pairs(judge, synthetic_records(n), out=out, concurrency=concurrency,
                                 on_result=lambda v: latencies.append(v.latency_s * 1000))
        seconds = time.perf_counter() - start
        cpu1, srv1 = cpu_s(), server.cpu_s()
    finally:
        await backend.release()
    with out.open(encoding="utf-8") as fh:
        lines = sum(1 for _ in fh)
    return Throughput(n=report.judged, seconds=seconds, failed=report.failed, lines=lines,
                      cpu_ms_per_cmp=(cpu1 - cpu0) * 1000 / n, server_cpu_ms_per_cmp=(srv1 - srv0) * 1000 / n,
                      latency_p50_ms=pct(latencies, 0.5), latency_p95_ms=pct(latencies, 0.95),
                      load_before=load_before, load_after=load())


async def transport_floor(server: FakeServer, n: int, concurrency: int) -> float:
    """Comparisons/s of a bare aiohttp client (no engine, no parsing) with the same request pattern: every
    "comparison" sends 2 concurrent POSTs of a bare prompt's size, ``concurrency`` comparisons in flight.

    It is what this machine and this server reach at best: the server's own handling and the loopback
    network add a few ms to every request beyond the fixed latency.
    """
    import aiohttp

    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 1200}], "max_tokens": 1,
                       "logprobs": True, "top_logprobs": 5}).encode()
    url = server.base_url + "/chat/completions"
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4 * concurrency)) as session:
        async def post() -> None:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()

        async def comparison() -> None:
            async with sem:
                await asyncio.gather(post(), post())

        await asyncio.gather(*(comparison() for _ in range(2 * concurrency)))  # warm-up: open the connections
        start = time.perf_counter()
        await asyncio.gather(*(comparison() for _ in range(n)))
        return n / (time.perf_counter() - start)


async def memory_phase(base_url: str, n: int, concurrency: int, out: Path) -> dict[str, Any]:
    """Child-process entry: `n` comparisons through `run_pairs`, sampling RSS as results stream to disk."""
    backend = http_backend(base_url)
    judge = Judge(backend, config=bare_config(backend), concurrent_orders=True)
    samples: dict[int, float] = {}
    count = 0

    def on_result(_verdict: Verdict) -> None:
        nonlocal count
        count += 1
        if count % 500 == 0 or count == n:
            samples[count] = rss_mb()

    baseline = rss_mb()
    start = time.perf_counter()
    try:
        report = await run_pairs(judge, synthetic_records(n, seed=3, prefix="m"), out=out, concurrency=concurrency,
                                 on_result=on_result)
    finally:
        await backend.release()
    seconds = time.perf_counter() - start
    peak, hwm = peak_rss_mb(), hwm_mb()
    # Resuming: run_pairs first scans the results file for pair ids already decided.
    before = rss_mb()
    scan_start = time.perf_counter()
    resumed = len(completed_ids(out))
    scan = {"ids": resumed, "seconds": time.perf_counter() - scan_start, "rss_before_mb": before,
            "rss_after_mb": rss_mb()}
    return {"n": report.judged, "failed": report.failed, "seconds": seconds, "baseline_mb": baseline,
            "samples": samples, "peak_mb": peak, "hwm_mb": hwm, "file_mb": out.stat().st_size / 2**20,
            "resume": scan}


def run_memory_child(base_url: str, n: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--_memory", base_url, "--n", str(n), "--concurrency", str(concurrency),
           "--_out", str(workdir / "memory.jsonl")]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["samples"] = {int(k): v for k, v in result["samples"].items()}
    return result


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="comparisons in the throughput run")
    parser.add_argument("--concurrency", type=int, default=32, help="comparisons in flight")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="fake endpoint latency per request")
    parser.add_argument("--overhead-n", type=int, default=500, help="sequential comparisons per overhead variant")
    parser.add_argument("--memory-n", type=int, default=10_000, help="comparisons in the memory run")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--_serve", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--_memory", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.overhead_n, args.memory_n = min(args.n, 200), min(args.overhead_n, 50), min(args.memory_n, 1000)
    return args


def fmt_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args._serve is not None:
        _serve(args._serve)
        return
    if args._memory is not None:
        print(json.dumps(asyncio.run(memory_phase(args._memory, args.n, args.concurrency, Path(args._out)))))
        return

    command = shlex.join([sys.executable, "benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])])
    latency_s = args.latency_ms / 1000
    limit = args.concurrency / latency_s if latency_s > 0 else float("inf")
    print(f"# judge throughput benchmark  (cpus={os.cpu_count()}, load avg 1/5/15 min at start={load()})",
          flush=True)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="judge-throughput-") as tmp:
        workdir = Path(tmp)

        # Memory first, in a child process, while this process is still small: Linux starts a child's
        # ru_maxrss at the parent's peak, so it has to be spawned before Chroma and the rulebook load here.
        # Then throughput on the same latency server.
        with fake_server(args.latency_ms) as server:
            log(f"memory: {args.memory_n} comparisons in a child process (load {load()})")
            mem_load0 = load()
            mem = run_memory_child(server.base_url, args.memory_n, args.concurrency, workdir)
            mem_load1 = load()
            log(f"throughput: {args.n} comparisons, concurrency {args.concurrency}, {args.latency_ms:g} ms "
                f"(load {load()})")
            tp = asyncio.run(throughput(server, args.n, args.concurrency, workdir))
            log(f"transport floor: bare aiohttp client (load {load()})")
            floor = asyncio.run(transport_floor(server, args.n, args.concurrency))

        # Engine overhead: instant in-process transport, sequential.
        log(f"overhead: {args.overhead_n} sequential comparisons per variant (load {load()})")
        from judge.testing import hash_rulebook

        instant = instant_backend()
        bare_judge = Judge(instant, config=bare_config(instant), concurrent_orders=True)
        rulebook = hash_rulebook(f"sqlite:///{workdir / 'rulebook.db'}", ROOT / "rulebook")
        rules_judge = Judge(instant, rulebook, concurrent_orders=True,
                            config=JudgeConfig(backend=instant.name, model=instant.model,
                                               template_version=TEMPLATE_VERSION, explain=False))

        async def overheads() -> tuple[list[float], list[float]]:
            try:
                return (await engine_overhead(bare_judge, args.overhead_n),
                        await engine_overhead(rules_judge, args.overhead_n))
            finally:
                await instant.client.close()

        overhead_load0 = load()
        bare_ms, rules_ms = asyncio.run(overheads())

        # The same on the production transport: HTTP to a loopback server answering at once.
        with fake_server(0) as zero:
            loopback = http_backend(zero.base_url)
            loopback_bare = Judge(loopback, config=bare_config(loopback), concurrent_orders=True)
            loopback_rules = Judge(loopback, rulebook, concurrent_orders=True, config=rules_judge.config)

            async def loopback_overheads() -> tuple[list[float], list[float]]:
                try:
                    return (await engine_overhead(loopback_bare, args.overhead_n),
                            await engine_overhead(loopback_rules, args.overhead_n))
                finally:
                    await loopback.release()

            loopback_bare_ms, loopback_rules_ms = asyncio.run(loopback_overheads())
        retrieval_ms = retrieval_times(rules_judge, args.overhead_n)
        rules_judge.config = rules_judge.config.model_copy(update={"bind_precedent": False})
        no_precedent_ms = retrieval_times(rules_judge, args.overhead_n, seed=3)
        overhead_load1 = load()

    samples = mem["samples"]
    early_n = min(samples, key=lambda k: abs(k - 1000)) if max(samples) >= 2000 else min(samples)
    final_n = max(samples)
    growth = samples[final_n] - samples[early_n]
    mem_rate = mem["n"] / mem["seconds"]

    print()
    print(f"command: `{command}`")
    print(f"latency-bound limit = concurrency / latency = {args.concurrency} / {latency_s:g} s = {limit:.1f} "
          "comparisons/s (each comparison sends its 2 orders concurrently, so it takes >= 1 latency)")
    print()
    print(fmt_row(["measure", "value", "target", "notes"]))
    print(fmt_row(["---"] * 4))
    for label, t in ((f"throughput (bare, 2 orders concurrent, c={args.concurrency}, {args.latency_ms:g} ms server; "
                      "openai client over httpx, as the registry builds backends)", tp),):
        t_rate = t.n / t.seconds
        print(fmt_row([
            label, f"{t_rate:.1f} cmp/s = {t_rate / limit:.3f} x limit = {t_rate / floor:.3f} x floor",
            ">= 0.95 x limit" if t is tp else "-",
            f"{t.n} cmp in {t.seconds:.2f} s (ideal {t.n / limit:.2f} s); failed {t.failed}; "
            f"{t.lines} JSONL lines; per-cmp latency p50/p95 {t.latency_p50_ms:.0f}/{t.latency_p95_ms:.0f} ms; "
            f"client busy {t.cpu_ms_per_cmp * t.n / 1000 / t.seconds:.0%} of one core; "
            f"CPU/cmp client {t.cpu_ms_per_cmp:.2f} ms + server {t.server_cpu_ms_per_cmp:.2f} ms; "
            f"load {t.load_before} -> {t.load_after}"]))
    print(fmt_row(["  transport floor: bare aiohttp client, same request pattern, no engine",
                   f"{floor:.1f} cmp/s = {floor / limit:.3f} x limit", "-",
                   "what this server and machine allow: the server's handling and loopback add ms per request"]))
    for label, values, note in (
            ("engine overhead, bare (instant MockTransport, sequential)", bare_ms,
             "acompare incl. prompt building, 2 x openai request build + reply parse, combine, Verdict"),
            ("engine overhead, with rules (rules-v2, explain=False; incl. retrieval)", rules_ms,
             "as bare + retrieval (hash embed + exact in-memory search of the rulebook's small layers + SQLite "
             "reads) + longer prompts"),
            ("  bare, HTTP to a loopback server answering at once", loopback_bare_ms,
             "the transport the registry uses; includes a loopback round trip per order"),
            ("  with rules, HTTP to a loopback server answering at once", loopback_rules_ms,
             "the same with rules"),
            ("  of which retrieval alone (Judge.rules_for)", retrieval_ms,
             "hash_rulebook over rulebook/, fresh pairs; includes the binding-precedent check"),
            ("  retrieval without the precedent check (bind_precedent=False)", no_precedent_ms,
             "the same, other fresh pairs")):
        target = "-" if label.startswith("  ") else "p50 <= 5 ms"
        print(fmt_row([label, f"p50 {pct(values, 0.5):.2f} ms / p95 {pct(values, 0.95):.2f} ms", target,
                       f"{note}; n={len(values)}, mean {statistics.fmean(values):.2f} ms; "
                       f"load {overhead_load0} -> {overhead_load1}"]))
    print(fmt_row([
        f"peak RSS, {mem['n']:,} cmp via run_pairs (c={args.concurrency}, {args.latency_ms:g} ms server, "
        "child process)", f"{mem['peak_mb']:.1f} MB (ru_maxrss)", "flat",
        f"VmHWM {mem['hwm_mb']:.1f} MB; RSS before run {mem['baseline_mb']:.1f} MB, at {early_n:,} cmp "
        f"{samples[early_n]:.1f} MB, at {final_n:,} cmp {samples[final_n]:.1f} MB"]))
    print(fmt_row([f"RSS growth {early_n:,} -> {final_n:,} cmp", f"{growth:+.1f} MB "
                   f"({growth * 1024 / max(1, final_n - early_n):+.2f} KB/cmp)", "~0",
                   f"results streamed to disk ({mem['file_mb']:.1f} MB JSONL); failed {mem['failed']}; "
                   f"{mem_rate:.1f} cmp/s = {mem_rate / limit:.3f} x limit; load {mem_load0} -> {mem_load1}"]))
    scan = mem["resume"]
    print(fmt_row([f"resume scan of the {mem['n']:,}-result file (completed_ids)",
                   f"{scan['seconds']:.2f} s, RSS {scan['rss_after_mb'] - scan['rss_before_mb']:+.1f} MB", "~0 MB",
                   f"{scan['ids']:,} ids; RSS {scan['rss_before_mb']:.1f} -> {scan['rss_after_mb']:.1f} MB"]))
    print()
    print(f"load avg 1/5/15 min at end: {load()} on {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
