"""Judge quality (c) and (d) from results already produced: accuracy on non-tie labels with a 95% Wilson
interval, position consistency and failures, for the verdicts as judged ((c): rules retrieved, both orders)
and after the label-free slot-preference correction estimated over the same batch ((d)).

Each SET is LABELLED.jsonl:RESULTS.jsonl (results from `judge run` on those pairs; pairs without a result are
left out, so a partial run reports its own n). No model is run.

    python benchmarks/quality_from_results.py pandalm.jsonl:pandalm-results.jsonl
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judge.calibration.workflow import load_labels  # noqa: E402
from judge.judging.slot import correct_batch  # noqa: E402
from judge.records import read_results  # noqa: E402
from judge.verdicts import Verdict  # noqa: E402


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", help="LABELLED.jsonl:RESULTS.jsonl")
    args = ap.parse_args()
    print("| set | config | n (non-tie labels) | accuracy | 95% Wilson CI | orders agree | failures |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.sets:
        labelled, results = (Path(p) for p in spec.split(":", 1))
        labels = load_labels(labelled)
        judged = [v for v in read_results(results) if v.pair_id in labels and labels[v.pair_id].label != "tie"]
        ok = [v for v in judged if v.failure is None]
        corrected, bias = correct_batch(ok)
        variants: tuple[tuple[str, list[Verdict]], ...] = (
            ("(c) rules, both orders", ok), (f"(d) (c) + slot correction (bias {bias:+.2f})", corrected))
        for name, group in variants:
            n = len(group)
            right = sum(v.winner == labels[v.pair_id or ""].label for v in group)
            agree = sum(v.position_inconsistent is False for v in group)
            low, high = wilson(right, n)
            print(f"| {labelled.stem} | {name} | {n} | {right / n:.3f} | {low:.2f}-{high:.2f} | {agree / n:.2f} | "
                  f"{len(judged) - n} of {len(judged)} |")


if __name__ == "__main__":
    main()
