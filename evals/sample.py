"""A seeded sample of a labelled pair file: the lines shuffled with ``random.Random(seed)``, the first N kept.

The evaluation runs in this folder judge the dev sets in this order, so a run cut short (or resumed later)
always covers a prefix of the same shuffle: any prefix is itself a seeded random sample.

    python evals/sample.py data/dev/pandalm_test.jsonl evals/.work/pandalm.jsonl [--seed 0] [--n 300]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def seeded_sample(lines: list[str], seed: int = 0, n: int | None = None) -> list[str]:
    """The non-empty lines in a seeded random order, the first ``n`` of them (all when ``n`` is None)."""
    kept = [line for line in lines if line.strip()]
    random.Random(seed).shuffle(kept)
    return kept if n is None else kept[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="labelled pairs, one JSON object per line")
    ap.add_argument("out", type=Path, help="where to write the sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=None, help="how many pairs to keep (default: all, reordered)")
    args = ap.parse_args()
    sample = seeded_sample(args.source.read_text(encoding="utf-8").splitlines(), args.seed, args.n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(line + "\n" for line in sample), encoding="utf-8")
    print(f"{args.out}: {len(sample)} pairs from {args.source} (seed {args.seed})")


if __name__ == "__main__":
    main()
