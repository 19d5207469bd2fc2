"""Does better retrieval make better verdicts? Two results files of the same judge on the same labelled pairs,
one per retrieval configuration (``JUDGE_RETRIEVAL=fused`` / ``dense``), compared pair by pair.

For the pairs both files decided (non-tie labels), prints per file: accuracy with its Wilson 95% interval, how
often the pair's gold rule was among the rules shown (pairs whose ``meta.section`` names one), how often a
rule's checks decided, and failures; then the paired comparison: pairs only one of the two got right, and the
exact two-sided McNemar p-value (a binomial test on those discordant pairs). No model is run.

    RETRIEVAL=dense METHOD=checks bash evals/run.sh modelspec 60     # the dense side (the fused side exists)
    python benchmarks/retrieval_judging.py data/model_spec/pairs.jsonl \\
        evals/results/modelspec-checks.jsonl evals/results/modelspec-checks-dense.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judge.records import read_results  # noqa: E402
from judge.verdicts import Verdict  # noqa: E402


def gold_sections(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and gold rule slugs (``meta.section``, ``_`` -> ``-``) of a labelled pair file, by pair id."""
    labels: dict[str, str] = {}
    gold: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                sys.exit(f"{path}:{lineno}: not JSON ({exc.msg})")
            if row.get("label") in ("A", "B"):
                labels[row["id"]] = row["label"]
            section = (row.get("meta") or {}).get("section")
            if section:
                gold[row["id"]] = section.replace("_", "-")
    return labels, gold


def shown_gold(verdict: Verdict, slug: str | None) -> bool | None:
    """Whether the pair's gold rule (constitution or spec entry named ``slug``) was among the rules shown."""
    if slug is None:
        return None
    return any(r.get("id") in (f"constitution/{slug}", f"spec/{slug}") for r in verdict.retrieved)


def _rate(k: int, n: int) -> str:
    return f"{k / n:.3f} ({k}/{n})" if n else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labelled", type=Path, help="labelled pairs (JSONL with label and meta.section)")
    parser.add_argument("results", type=Path, nargs=2, help="two results files (e.g. fused, then dense)")
    args = parser.parse_args()
    labels, gold = gold_sections(args.labelled)
    sides = [{v.pair_id: v for v in read_results(path) if v.pair_id} for path in args.results]
    shared = sorted(pid for pid in set(sides[0]) & set(sides[1]) if pid in labels)
    if not shared:
        print("error: the two results files share no labelled non-tie pair", file=sys.stderr)
        return 2
    right: list[list[bool]] = []
    print(f"{len(shared)} labelled non-tie pairs in both files\n")
    print(f"{'results':<44} {'accuracy':>16} {'95% CI':>13}  {'gold rule shown':>16}  {'decided by rules':>16}"
          f"  {'failures':>8}")
    for path, side in zip(args.results, sides, strict=True):
        verdicts = [side[pid] for pid in shared]
        ok = [v.failure is None and v.winner == labels[pid] for pid, v in zip(shared, verdicts, strict=True)]
        right.append(ok)
        n, k = len(ok), sum(ok)
        ci = binomtest(k, n).proportion_ci(method="wilson")
        shown = [s for pid, v in zip(shared, verdicts, strict=True)
                 if (s := shown_gold(v, gold.get(pid))) is not None]
        by_rules = sum(1 for v in verdicts if v.decided_by == "rules")
        failures = sum(1 for v in verdicts if v.failure is not None)
        print(f"{path.name:<44} {_rate(k, n):>16} {ci.low:.3f}-{ci.high:.3f}  {_rate(sum(shown), len(shown)):>16}"
              f"  {_rate(by_rules, n):>16}  {failures:>8}")
    only_first = sum(1 for a, b in zip(*right, strict=True) if a and not b)
    only_second = sum(1 for a, b in zip(*right, strict=True) if b and not a)
    discordant = only_first + only_second
    p = binomtest(only_first, discordant).pvalue if discordant else 1.0
    print(f"\nright only with {args.results[0].name}: {only_first}; only with {args.results[1].name}: "
          f"{only_second}; exact McNemar p = {p:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
