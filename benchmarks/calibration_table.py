"""The calibration table of docs/benchmarks.md: raw vs cross-fitted recalibrated metrics, one block per labelled set.

Each SET is LABELLED.jsonl:RESULTS.jsonl (results from `judge run`/`judge eval` on those pairs; only pairs with
a result are scored, so a partial run is reported with its own n). Prints a markdown table with 95% bootstrap
intervals (seeded); the recalibrated ECE over several random fold splits (on a few hundred pairs, which pairs
share a fold moves it by several hundredths); the ECE a perfectly calibrated judge with the same confidences
would show by chance at that n (mean / 95th percentile over simulated labels) and the Monte Carlo p-value of
"these confidences are calibrated" (the share of those simulated ECEs at least as large as the one measured); and
the selective-judging coverage at the target agreement on held-out folds. Below the table, one line per set: the
ECE targets (cut by >= 50%, <= 0.05) met or missed, and where the recalibrated ECE sits against that chance
floor.

    python benchmarks/calibration_table.py pandalm.jsonl:pandalm-results.jsonl hh.jsonl:hh-results.jsonl
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judge.calibration.evaluate import EvalReport  # noqa: E402
from judge.calibration.workflow import Evaluation, evaluate_results  # noqa: E402
from judge.records import read_pairs, read_results  # noqa: E402

METRICS = ("accuracy_without_ties", "ece_uniform_15", "ece_quantile_15", "brier_binary", "log_loss_binary",
           "log_loss_multiclass", "auroc", "position_consistency")


def fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def cell(rep: EvalReport, name: str) -> str:
    e = rep.headline.get(name)
    return "-" if e is None else f"{fmt(e.point)} ({fmt(e.low, 2)}-{fmt(e.high, 2)})"


def target_summary(name: str, ev: Evaluation, ece_target: float, ece_cut: float) -> str:
    """One line: the ECE-15 targets met or missed (on the mean over fold splits when there are several), and the
    recalibrated ECE against what a perfectly calibrated judge shows at this n."""
    key = "ece_uniform_15"
    assert ev.recalibrated is not None
    before = ev.raw.headline[key].point
    spread = ev.recalibration.splits.get(key)
    after = spread.mean if spread else ev.recalibrated.headline[key].point
    over = f" (mean over {spread.n_splits} fold splits)" if spread else ""
    cut = 1 - after / before if before > 0 else math.nan
    floor = ev.recalibrated.ece_if_calibrated.get("uniform_15", {})
    mean, p95 = floor.get("mean", math.nan), floor.get("p95", math.nan)
    verdict = "below" if after <= mean else "within" if after <= p95 else "above"
    p_raw = ev.raw.ece_if_calibrated.get("uniform_15", {}).get("p_value", math.nan)
    p_cal = floor.get("p_value", math.nan)
    return (f"{name} (n={ev.recalibrated.n_scored}): ECE-15 {fmt(before)} -> {fmt(after)}{over}, cut by {cut:.0%} "
            f"(target >= {ece_cut:.0%}: {'met' if cut >= ece_cut else 'missed'}; <= {ece_target}: "
            f"{'met' if after <= ece_target else 'missed'}); the recalibrated ECE-15 is {verdict} what a perfectly "
            f"calibrated judge with these confidences shows at this n (mean {fmt(mean)}, p95 {fmt(p95)}); "
            f"p-value of 'calibrated' {fmt(p_raw)} raw, {fmt(p_cal)} recalibrated (first split)")


def judged_only(labelled: Path, results: Path, tmp: Path) -> Path:
    """The labelled pairs that have a result (so missing pairs of a partial run are not reported as missing)."""
    done = {v.pair_id for v in read_results(results)}
    out = tmp / f"{labelled.stem}.judged.jsonl"
    lines = [line for line, rec in zip(labelled.read_text(encoding="utf-8").splitlines(), read_pairs(labelled),
                                       strict=True) if rec.pair.id in done]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", help="LABELLED.jsonl:RESULTS.jsonl")
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--split-repeats", type=int, default=10,
                    help="random fold splits the recalibrated ECE is also averaged over (1: only the first)")
    ap.add_argument("--ece-target", type=float, default=0.05, help="recalibrated ECE-15 at most this")
    ap.add_argument("--ece-cut", type=float, default=0.5, help="recalibration cuts ECE-15 by at least this share")
    args = ap.parse_args()
    rows, summaries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.sets:
            labelled, results = (Path(p) for p in spec.split(":", 1))
            ev = evaluate_results(judged_only(labelled, results, Path(tmp)), results, n_boot=args.bootstrap,
                                  target=args.target, delta=args.delta, split_repeats=args.split_repeats)
            name = labelled.stem
            for rep in (ev.raw, ev.recalibrated):
                if rep is None:
                    continue
                sel = rep.selective or {}
                wh = rep.wrong_at_high
                floor = rep.ece_if_calibrated.get("uniform_15", {})
                spread = ev.recalibration.splits.get("ece_uniform_15") if rep is ev.recalibrated else None
                rows.append([name if rep is ev.raw else "", rep.variant.split(" (")[0], str(rep.n_scored),
                             *(cell(rep, m) for m in METRICS),
                             f"{fmt(spread.mean)} ({fmt(spread.min, 2)}-{fmt(spread.max, 2)})" if spread else "-",
                             f"{fmt(floor.get('mean', math.nan))} / {fmt(floor.get('p95', math.nan))}; "
                             f"p={fmt(floor.get('p_value', math.nan))}",
                             f"{int(wh['n_wrong'])}/{int(wh['n_confident'])}",
                             rep.selective_text() if sel else "-"])
            methods = ", ".join(ev.recalibration.fold_methods)
            print(f"{name}: recalibration per fold: {methods}", file=sys.stderr)
            if ev.recalibrated is not None:
                summaries.append(target_summary(name, ev, args.ece_target, args.ece_cut))
    header = ["set", "probabilities", "n", *METRICS,
              f"ece_uniform_15 over {args.split_repeats} fold splits, mean (min-max)",
              "ece_uniform_15 if calibrated (mean / p95; p-value of this ECE)", "wrong@0.9",
              f"held-out coverage at agreement (target {args.target}), 95% exact CI"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for line in summaries:
        print(f"- {line}")


if __name__ == "__main__":
    main()
