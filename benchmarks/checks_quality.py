"""Judging methods side by side on the same labelled pairs, from committed evaluation results.

For each dev set it reads the results of the three judged methods in evals/results/ (SET-bare.jsonl: the bare
pairwise question in both orders; SET-rules.jsonl: the rules in the prompt, both orders; SET-checks.jsonl: the
rule checks with the general pointwise question) and derives the others from the stored check answers:

  bare2            the bare pairwise question, both orders
  rules2           rules shown in the prompt, both orders
  checks           rule checks only (the general question dropped), prior weights
  checks+point     rule checks and the general pointwise question, prior weights
  checks+pair      rule checks and the bare pairwise signal (from SET-bare), prior weights
  checks+point*    checks+point with weights fitted on the OTHER sets (leave one source out: the pull toward
                   the prior chosen and the weights fitted without this set)
  checks+pair*     checks+pair with weights fitted on the OTHER sets (likewise)

Every row is computed on the pairs all available files share (non-tie labels). Metrics: accuracy with its
Wilson 95% interval, AUROC of the confidence for being right, ECE-15 and Brier raw and recalibrated
(cross-fitted, 5 folds: a logistic map of the log-odds), position consistency, failures, median seconds and
prefilled prompt tokens per comparison.

    python benchmarks/checks_quality.py [--results evals/results] [--rulebook rulebook] \\
        [--set modelspec=data/model_spec/pairs.jsonl --set hh=... --set pandalm=...] [--fit-all [--write DIR]] \\
        [--max-checks K]

--fit-all also fits the weighting on every set together for each holistic signal (pointwise, pairwise), the
pull toward the prior chosen by leave-one-source-out, and prints the prior's and the fitted weighting's
accuracy / AUROC / log loss on each set left out (the fitting procedure run without that set). --write DIR
writes the fitted weightings as DIR/embedded-checks-<signal>.json; the package's default weighting is

    python benchmarks/checks_quality.py --fit-all --write judge/judging/check_weights
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from statistics import median

import numpy as np
from sklearn.linear_model import LogisticRegression

from judge.calibration.metrics import auroc, brier_binary, ece
from judge.judging.checks import HOLISTIC_ID
from judge.judging.weights import (
    Labelled,
    fit_weights,
    redecide,
    validate_by_source,
    weights_key,
)
from judge.records import read_results
from judge.rules.model import Rule
from judge.rules.textio import read_rulebook
from judge.verdicts import CheckResult, CheckWeights, JudgeConfig, Verdict

ROOT = Path(__file__).resolve().parents[1]


def _data(rel: str) -> str:
    return str(ROOT / "data" / rel)


DEFAULT_SETS = {"modelspec": _data("model_spec/pairs.jsonl"), "hh": _data("dev/hh_rlhf_harmless_test.jsonl"),
                "pandalm": _data("dev/pandalm_test.jsonl")}
CAP = 4.0


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def labels_of(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out[d["id"]] = d["label"]
    return out


def p_a_of(v: Verdict) -> float | None:
    if v.failure is not None or v.probabilities is None:
        return None
    d = v.probabilities
    return d.a / (d.a + d.b) if d.a + d.b > 0 else 0.5


def log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-CAP, min(CAP, math.log(p / (1 - p))))


def recalibrated(p_a: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-fitted logistic map of the log-odds (no intercept, mirrored: slots stay symmetric)."""
    x = np.array([log_odds(p) for p in p_a]).reshape(-1, 1)
    out = np.full(len(y), 0.5)
    idx = np.random.default_rng(seed).permutation(len(y))
    for k in range(folds):
        test = idx[k::folds]
        train = np.setdiff1d(idx, test)
        if len(set(y[train].tolist())) < 2:
            continue
        m = LogisticRegression(fit_intercept=False).fit(np.vstack([x[train], -x[train]]),
                                                        np.concatenate([y[train], 1 - y[train]]))
        out[test] = m.predict_proba(x[test])[:, 1]
    return out


def metrics(p_a: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred_a = p_a > 0.5
    correct = (pred_a == (y == 1)) & (p_a != 0.5)
    conf = np.maximum(p_a, 1 - p_a)
    k, n = int(correct.sum()), len(y)
    lo, hi = wilson(k, n)
    rec = recalibrated(p_a, y)
    rconf = np.maximum(rec, 1 - rec)
    rcorrect = ((rec > 0.5) == (y == 1)) & (rec != 0.5)
    return {"n": n, "acc": k / n if n else math.nan, "lo": lo, "hi": hi,
            "auroc": auroc(conf, correct) if 0 < k < n else math.nan,
            "ece": ece(conf, correct, n_bins=15).ece, "brier": brier_binary(conf, correct),
            "ece_r": ece(rconf, rcorrect, n_bins=15).ece, "brier_r": brier_binary(rconf, rcorrect)}


Rows = list[tuple[str, dict[str, float]]]


def run_set(name: str, labels: dict[str, str], results: Path, rules: dict[str, Rule],
            weights_for: Callable[[str, str], CheckWeights], prior: CheckWeights,
            judged_by: list[tuple[JudgeConfig, str | None]] | None = None,
            max_checks: int | None = None) -> tuple[Rows, dict[str, list[Labelled]]]:
    files = {m: results / f"{name}-{m}.jsonl" for m in ("bare", "rules", "checks")}
    verdicts = {m: {v.pair_id: v for v in read_results(f)} for m, f in files.items() if f.exists()}
    if not verdicts:
        return [], {}
    ids = set.intersection(*(set(v) for v in verdicts.values()))
    ids = sorted(i for i in ids if i in labels and labels[i] in ("A", "B"))
    y = np.array([1 if labels[i] == "A" else 0 for i in ids])
    rows: Rows = []
    extra: dict[str, dict[str, float]] = {}

    def add(label: str, values: list[float | None], source: dict[str, Verdict] | None) -> None:
        ok = [j for j, v in enumerate(values) if v is not None]
        m = metrics(np.array([values[j] for j in ok], dtype=float), y[ok]) if ok else {"n": 0}
        m["failures"] = len(values) - len(ok)
        if source is not None:
            vs = [source[i] for i in ids]
            flags = [v.position_inconsistent for v in vs if v.position_inconsistent is not None]
            m["consistent"] = 1 - sum(flags) / len(flags) if flags else (1.0 if label.startswith("checks") else
                                                                           math.nan)
            lat = [v.latency_s for v in vs if not v.cached and v.failure is None and v.latency_s > 0]
            pre = [v.prefilled_tokens for v in vs if v.prefilled_tokens is not None]
            m["sec"] = median(lat) if lat else math.nan
            m["prefilled"] = median(pre) if pre else math.nan
            m["prompt_tok"] = median([v.prompt_tokens for v in vs]) if vs else math.nan
        else:
            m.update(consistent=1.0, sec=math.nan, prefilled=math.nan, prompt_tok=math.nan)
        extra[label] = m
        rows.append((label, m))

    if "bare" in verdicts:
        add("bare2", [p_a_of(verdicts["bare"][i]) for i in ids], verdicts["bare"])
    if "rules" in verdicts:
        add("rules2", [p_a_of(verdicts["rules"][i]) for i in ids], verdicts["rules"])
    labelled: dict[str, list[Labelled]] = {"pointwise": [], "pairwise": []}
    if "checks" in verdicts:
        cv = verdicts["checks"]
        if judged_by is not None:
            judged_by.extend((cv[i].config, cv[i].rulebook_version) for i in ids)

        def derived(holistic: str, weights: CheckWeights) -> list[float | None]:
            out: list[float | None] = []
            for i in ids:
                v = cv[i]
                if v.failure is not None:
                    out.append(None)
                elif not v.checks:  # bound by a precedent: no checks were asked
                    out.append(p_a_of(v))
                else:
                    signal = None
                    if holistic == "pairwise":
                        p = p_a_of(verdicts["bare"][i]) if "bare" in verdicts else None
                        if p is None:
                            out.append(None)
                            continue
                        signal = log_odds(p)
                    out.append(redecide(first_checks(v.checks, max_checks), rules, weights,
                                        holistic=holistic,  # type: ignore[arg-type]
                                        pairwise_signal=signal).p_a)
            return out

        add("checks", derived("none", prior), cv)
        add("checks+point", derived("pointwise", prior), cv)
        if "bare" in verdicts:
            add("checks+pair", derived("pairwise", prior), cv)
        add("checks+point*", derived("pointwise", weights_for(name, "pointwise")), cv)
        if "bare" in verdicts:
            add("checks+pair*", derived("pairwise", weights_for(name, "pairwise")), cv)
        for i in ids:
            v = cv[i]
            if v.failure is None and v.checks:
                d = redecide(v.checks, rules, prior, holistic="pointwise")
                labelled["pointwise"].append(Labelled(d.features, labels[i] == "A"))
                p = p_a_of(verdicts["bare"][i]) if "bare" in verdicts else None
                if p is not None:
                    d = redecide(v.checks, rules, prior, holistic="pairwise", pairwise_signal=log_odds(p))
                    labelled["pairwise"].append(Labelled(d.features, labels[i] == "A"))
    return rows, labelled


def first_checks(checks: list[CheckResult], max_checks: int | None) -> list[CheckResult]:
    """The rule checks a judge with a lower ``max_checks`` would have asked (the first ones of the stored plan
    order), and the holistic question."""
    if max_checks is None:
        return checks
    rule_checks = [c for c in checks if c.rule_id != HOLISTIC_ID]
    return rule_checks[:max_checks] + [c for c in checks if c.rule_id == HOLISTIC_ID]


def fmt(x: float, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "evals" / "results")
    ap.add_argument("--rulebook", type=Path, default=ROOT / "rulebook")
    ap.add_argument("--set", action="append", default=[], help="NAME=labelled.jsonl (default: the three dev sets)")
    ap.add_argument("--fit-all", action="store_true",
                    help="fit the weighting on every set together and print its leave-one-source-out validation")
    ap.add_argument("--write", type=Path, default=None,
                    help="with --fit-all: write DIR/embedded-checks-<signal>.json (the package default: "
                         "judge/judging/check_weights)")
    ap.add_argument("--gap", type=float, default=CheckWeights().decisive_gap,
                    help="compliance gap from which a check is decisive (default: the shipped weighting's)")
    ap.add_argument("--max-checks", type=int, default=None,
                    help="re-decide the checks rows from only the first K rule checks of each stored plan (what a "
                         "judge with max_checks=K asks: 2 x (K + 1) questions per comparison); the seconds and "
                         "prefilled tokens shown stay those measured with the full plan")
    args = ap.parse_args()
    prior = CheckWeights(decisive_gap=args.gap)
    sets = dict(s.split("=", 1) for s in args.set) if args.set else DEFAULT_SETS
    rules = {r.id: r for r in read_rulebook(args.rulebook)}
    labels = {name: labels_of(path) for name, path in sets.items()}

    # features of every set under the prior, for leave-one-source-out fitting
    pooled: dict[str, dict[str, list[Labelled]]] = {}
    judged_by: list[tuple[JudgeConfig, str | None]] = []
    for name in sets:
        _, pooled[name] = run_set(name, labels[name], args.results, rules, lambda _n, _m: prior, prior, judged_by)
    held_out = {mode: validate_by_source({n: rs.get(mode, []) for n, rs in pooled.items()}, prior)
                for mode in ("pointwise", "pairwise")}

    def loso(name: str, mode: str) -> CheckWeights:
        return held_out[mode][name]["weights"]  # type: ignore[no-any-return]

    print("| set | method | n | accuracy (95% CI) | AUROC | ECE-15 raw / recal | Brier raw / recal | "
          "consistent | failures | s / comparison | prefilled tok |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sets:
        rows, _ = run_set(name, labels[name], args.results, rules, loso, prior, max_checks=args.max_checks)
        for label, m in rows:
            if not m.get("n"):
                continue
            print(f"| {name} | {label} | {m['n']} | {fmt(m['acc'])} ({fmt(m['lo'], 2)}-{fmt(m['hi'], 2)}) | "
                  f"{fmt(m['auroc'], 2)} | {fmt(m['ece'])} / {fmt(m['ece_r'])} | {fmt(m['brier'])} / "
                  f"{fmt(m['brier_r'])} | {fmt(m['consistent'], 2)} | {m['failures']} | {fmt(m['sec'], 1)} | "
                  f"{fmt(m['prefilled'], 0)} |")
    if args.fit_all:
        fit_all(pooled, judged_by, prior, args.write)


def fit_all(pooled: dict[str, dict[str, list[Labelled]]], judged_by: list[tuple[JudgeConfig, str | None]],
            prior: CheckWeights, write: Path | None) -> None:
    """Fit on every set, print the leave-one-source-out validation, and write the weightings when asked."""
    keys = {json.dumps(weights_key(c), sort_keys=True) for c, _ in judged_by}
    if len(keys) != 1:
        raise SystemExit(f"the checks results were written by {len(keys)} judge configurations; fit one at a time")
    versions = sorted({v for _, v in judged_by if v})
    key = json.loads(keys.pop())
    command = "python benchmarks/checks_quality.py --fit-all --write judge/judging/check_weights"
    for mode in ("pointwise", "pairwise"):
        by_source = {n: rs.get(mode, []) for n, rs in pooled.items() if rs.get(mode)}
        fitted = fit_weights(by_source, judge={**key, "holistic": mode}, command=command, prior=prior,
                             rulebook_version=", ".join(versions) or None)
        print(f"\n{mode}: {fitted.id}, pull toward the prior {fitted.strength or 'inf (the prior)'}, fitted on "
              f"{sum(fitted.sources.values())} pairs: {fitted.weights.model_dump_json(exclude={'source'})}")
        print("| left-out set | n | accuracy prior / fitted | AUROC prior / fitted | log loss prior / fitted |")
        print("|---|---|---|---|---|")
        totals = {"prior": [0.0, 0.0], "fitted": [0.0, 0.0]}
        for name, scores in fitted.validation.items():
            p, f = scores["prior"], scores["fitted"]
            print(f"| {name} | {p.n} | {p.accuracy:.3f} / {f.accuracy:.3f} | {fmt(p.auroc, 2)} / {fmt(f.auroc, 2)} | "
                  f"{p.log_loss:.3f} / {f.log_loss:.3f} |")
            for which, s in (("prior", p), ("fitted", f)):
                totals[which][0] += s.accuracy * s.n
                totals[which][1] += s.log_loss * s.n
        n = sum(fitted.sources.values())
        print(f"| all (pooled) | {n} | {totals['prior'][0] / n:.3f} / {totals['fitted'][0] / n:.3f} | - | "
              f"{totals['prior'][1] / n:.3f} / {totals['fitted'][1] / n:.3f} |")
        if write is not None:
            write.mkdir(parents=True, exist_ok=True)
            path = write / f"embedded-checks-{mode}.json"
            path.write_text(fitted.model_dump_json(indent=2) + "\n", encoding="utf-8")
            print(f"written {path}")


if __name__ == "__main__":
    main()
