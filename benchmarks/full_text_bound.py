"""What the common-word bound of full-text search trades: rows scored and time against ranking agreement.

Full-text search (`judge.store.lexical`) drops a query's words found in more than `COMMON_FRACTION` of the
binding rules (and more than `COMMON_FLOOR`) before scoring, because scoring costs per row matching any kept
word. This measures, on a stored rulebook, what other bounds would do: for each fraction, the rows a text's
kept words match (summed document frequencies), the time of `lexical.search_many` for the pair's three texts
(prompt, each response; both pools, 30 hits each, as a fused retrieve asks), and how many of each text's top
10 spec + constitution hits are those of the default bound. Agreement is not recall: it says how much a bound
changes the ranking, not whether the change is for the better (that needs labelled pairs on a rulebook this
large).

Queries are pairs written from held-out real sentences (`benchmarks/scale.py --text real`), so the rulebook
is one built by ``scale.py --text real --workdir DIR``.

Usage::

    python benchmarks/scale.py --text real --sizes 100000 --pool 20000 --workdir DIR
    python benchmarks/full_text_bound.py --db DIR/rulebook.db
    python benchmarks/full_text_bound.py --db DIR/rulebook.db --fractions 0.1,0.02,0.005 --queries 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from retrieval import _percentile
from scale import LEXICAL_GROUPS, RealPool
from sqlalchemy import text

from judge.store import lexical, open_engine

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a SQLite rulebook (scale.py --text real)")
    parser.add_argument("--fractions", default=f"{lexical.COMMON_FRACTION},0.05,0.02,0.01,0.005",
                        help="bounds to compare, the first being the reference (default: the shipped one first)")
    parser.add_argument("--queries", type=int, default=100, help="pairs (three texts each)")
    parser.add_argument("--pool", type=int, default=20_000, help="as given to scale.py (which sentences are held out)")
    parser.add_argument("--seed", type=int, default=11, help="as given to scale.py")
    args = parser.parse_args(argv)
    fractions = [float(f) for f in args.fractions.split(",")]
    pairs = RealPool(args.pool, args.seed, ROOT).queries(args.queries, args.seed + 3)
    engine = open_engine(f"sqlite:///{args.db}")
    with engine.connect() as conn:
        rules = int(conn.execute(text("SELECT count(*) FROM rule_fts")).scalar_one())
        texts = [[p.prompt, p.response_a.text, p.response_b.text] for p in pairs]
        words = {w for group in texts for t in group for w in lexical.query_terms(t)}
        # Each word's full document frequency (no threshold), for the rows-scored column.
        df = {w: int(conn.execute(text("SELECT count(*) FROM rule_fts WHERE rule_fts MATCH :m"),
                                  {"m": "body : " + '"' + w.replace('"', '""') + '"'}).scalar_one()) for w in words}
        print(f"full-text bound: {rules} binding rules in {args.db}; {len(pairs)} pairs of held-out real text, "
              f"{sum(len(lexical.query_terms(t)) for g in texts for t in g) / (3 * len(pairs)):.1f} words a text")
        print(f"{'bound':>16} {'rows scored a text p50 / p99':>30} {'search, 3 texts p50 / p99 ms':>30} "
              f"{'top-10 agreement':>17}")
        reference: list[list[list[str]]] = []
        for n, fraction in enumerate(fractions):
            kept = [lexical.informative_terms(conn, [lexical.query_terms(t) for t in group], fraction=fraction,
                                              floor=lexical.COMMON_FLOOR) for group in texts]
            rows = [sum(df[w] for w in terms) for group in kept for terms in group]
            times, tops = [], []
            for group in texts:
                start = time.perf_counter()
                found = lexical.search_many(conn, group, LEXICAL_GROUPS, 30, fraction=fraction)
                times.append((time.perf_counter() - start) * 1000)
                tops.append([[rule_id for rule_id, _ in per_text[0][:10]] for per_text in found])
            if n == 0:
                reference = tops
            agree = [len(set(top) & set(ref)) / len(ref) for pair_tops, pair_refs in zip(tops, reference, strict=True)
                     for top, ref in zip(pair_tops, pair_refs, strict=True) if ref]
            cap = int(max(lexical.COMMON_FLOOR, rules * fraction))
            print(f"{f'{fraction:g} (<= {cap})':>16} {_percentile(rows, 50):>14.0f} / {_percentile(rows, 99):<13.0f} "
                  f"{_percentile(times, 50):>14.1f} / {_percentile(times, 99):<13.1f} "
                  f"{sum(agree) / max(len(agree), 1):>17.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
