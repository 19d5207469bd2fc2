"""Calibration under shift: leave-one-source-out figures, the multi-source calibrator, and the shift alarm's rates.

Each SET is LABELLED.jsonl:RESULTS.jsonl (a labelled pair file and `judge run` results on it); a pair's source is
its ``source`` field (or --group-by). Prints three markdown tables:

1. Leave one source out: the calibrator fitted (method and signals chosen by the worst left-out source among the
   others) on every set but one, scored on the one left out - accuracy, ECE-15, Brier score, log loss and the
   selective agreement at the threshold chosen on the others - beside the judge's raw figures; then the targets
   (left-out ECE-15 <= --ece-target on every source, recalibrated accuracy never below raw) met or missed.
2. The multi-source calibrator fitted on all sets together (written to --write-calibrator when given).
3. The shift alarm: for every calibration source S and batch source T, the share of --repeats batches that the
   alarm flags, the reference being a random half of S's verdicts and the batch --batch verdicts drawn without
   replacement from T (from the other half of S when T is S, so the batch is never part of the reference;
   fewer than --batch when that half is smaller, as printed).

    python benchmarks/calibration_shift.py pandalm.jsonl:pandalm-results.jsonl hh.jsonl:hh-results.jsonl \\
        spec.jsonl:spec-results.jsonl --write-calibrator calibrators/embedded-multisource.json
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judge.calibration.evaluate import join  # noqa: E402
from judge.calibration.shift import DEFAULT_ALPHA, reference_from_table, shift_test  # noqa: E402
from judge.calibration.sources import leave_one_source_out  # noqa: E402
from judge.calibration.workflow import _read_all, _scored, fit_from_results, load_labels  # noqa: E402


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", help="LABELLED.jsonl:RESULTS.jsonl, one per source")
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--ece-target", type=float, default=0.08)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-calibrator", type=Path, default=None)
    ap.add_argument("--group-by", default="source", help="source (the pairs' field), file, or another field")
    args = ap.parse_args()
    labelled = [Path(s.split(":", 1)[0]) for s in args.sets]
    results = [Path(s.split(":", 1)[1]) for s in args.sets]
    joined = join(_read_all(results), load_labels(labelled, group_by=args.group_by))
    scored, t, labels = _scored(joined.rows)
    sources = [r.truth.source for r in scored]

    val = leave_one_source_out(t, labels, sources, target=args.target, delta=args.delta, seed=args.seed)
    rows, checks = [], []
    for r in val.rows:
        sel = r.selective
        rows.append([r.source, str(r.n), str(r.n_fitted), r.method + (f" ({', '.join(r.features)})" if r.features
                                                                     else ""),
                     *(f"{fmt(r.raw[k])} -> {fmt(r.recalibrated[k])}" for k in
                       ("accuracy", "ece_uniform_15", "brier_binary", "log_loss_binary")),
                     "-" if not sel else (f"{fmt(sel['coverage'], 2)} at {fmt(sel['agreement'], 2)}"
                                          + ("" if sel["certified"] else " (no certified threshold)"))])
        ece_ok = r.recalibrated["ece_uniform_15"] <= args.ece_target
        acc_ok = r.recalibrated["accuracy"] >= r.raw["accuracy"]
        checks.append(f"{r.source}: left-out ECE-15 {fmt(r.recalibrated['ece_uniform_15'])} "
                      f"(<= {args.ece_target}: {'met' if ece_ok else 'MISSED'}); accuracy {fmt(r.raw['accuracy'])} "
                      f"-> {fmt(r.recalibrated['accuracy'])} (never below raw: {'met' if acc_ok else 'MISSED'})")
    print("### Leave one source out (fitted on the others, scored on this one; raw -> recalibrated)\n")
    table(["left-out source", "n", "fitted on", "method (signals)", "accuracy", "ECE-15", "Brier", "log loss",
           f"coverage at agreement (threshold for {args.target} chosen on the others)"], rows)
    for line in checks:
        print(f"- {line}")
    print()

    cal = fit_from_results(labelled, results, target=args.target, delta=args.delta, group_by=args.group_by,
                           seed=args.seed)
    if args.write_calibrator is not None:
        args.write_calibrator.parent.mkdir(parents=True, exist_ok=True)
        args.write_calibrator.write_text(cal.model_dump_json(indent=2) + "\n", encoding="utf-8")
    ab = cal.abstain or {}
    print("### The multi-source calibrator (fitted on every source together)\n")
    table(["calibrator", "n", "method", "chosen by", "signals", "worst left-out log loss per method",
           "abstention threshold"],
          [[cal.id, str(cal.n_fitted), cal.method, cal.selection,
            ", ".join(cal.params.get("features", [])) or "-",
            ", ".join(f"{k} {v:.3f}" for k, v in cal.cv_log_loss.items()),
            fmt(ab.get("threshold")) if ab.get("certified") else f"none certifies {ab.get('target')}"]])

    rng = np.random.default_rng(args.seed)
    names = sorted(set(sources))
    arr = np.asarray(sources, dtype=object)
    by = {n: np.flatnonzero(arr == n) for n in names}
    rows = []
    for ref_name in names:
        cells, sizes = [], set()
        for batch_name in names:
            fired = 0
            for _ in range(args.repeats):
                perm = rng.permutation(by[ref_name])
                ref, rest = perm[: len(perm) // 2], perm[len(perm) // 2:]
                pool = rest if batch_name == ref_name else by[batch_name]
                size = min(args.batch, len(pool))
                sizes.add(size)
                batch = rng.choice(pool, size=size, replace=False)
                fired += shift_test(reference_from_table(t.subset(ref)), t.subset(batch), alpha=args.alpha).shifted
            cells.append(f"{fired / args.repeats:.0%}" + (" (same source)" if batch_name == ref_name else "")
                         + (f" (n={size})" if size != args.batch else ""))
        rows.append([ref_name, *cells])
    print(f"### Shift alarm: share of {args.repeats} batches of {args.batch} flagged (alpha {args.alpha}, "
          "reference = a random half of the calibration source)\n")
    table(["calibration source \\ batch source", *names], rows)


if __name__ == "__main__":
    main()
