"""Judging methods side by side on the same labelled pairs, from committed evaluation results.

For each dev set it reads the results of the three judged methods in evals/results/ (SET-bare.jsonl: the bare
pairwise question in both orders; SET-rules.jsonl: the rules in the prompt, both orders; SET-checks.jsonl: the
rule checks with the general pointwise question) and derives the others from the stored check answers:

  bare2            the bare pairwise question, both orders
  rules2           rules shown in the prompt, both orders
  checks           rule checks only (the general question dropped), prior weights
  checks+point     rule checks and the general pointwise question, prior weights
  checks+pair      rule checks and the bare pairwise signal (from SET-bare), prior weights
  checks+point*    checks+point with weights fitted on the OTHER sets (leave one source out)
  checks+pair*     checks+pair with weights fitted on the OTHER sets (leave one source out)

Every row is computed on the pairs all available files share (non-tie labels). Metrics: accuracy with its
Wilson 95% interval, AUROC of the confidence for being right, ECE-15 and Brier raw and recalibrated
(cross-fitted, 5 folds: a logistic map of the log-odds), position consistency, failures, median seconds and
prefilled prompt tokens per comparison.

    python benchmarks/checks_quality.py [--results evals/results] [--rulebook rulebook] \\
        [--set modelspec=data/model_spec/pairs.jsonl --set hh=... --set pandalm=...] [--fit-all]

--fit-all also prints the weights fitted on every set together (the shipped default's numbers).
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
from judge.judging.weights import Labelled, fit_check_weights, redecide
from judge.records import read_results
from judge.rules.model import Rule
from judge.rules.textio import read_rulebook
from judge.verdicts import CheckWeights, Verdict

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
            weights_for: Callable[[str, str], CheckWeights], prior: CheckWeights) -> tuple[Rows,
                                                                                          dict[str, list[Labelled]]]:
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
                    out.append(redecide(v.checks, rules, weights, holistic=holistic,  # type: ignore[arg-type]
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


def fmt(x: float, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "evals" / "results")
    ap.add_argument("--rulebook", type=Path, default=ROOT / "rulebook")
    ap.add_argument("--set", action="append", default=[], help="NAME=labelled.jsonl (default: the three dev sets)")
    ap.add_argument("--fit-all", action="store_true", help="print the weights fitted on every set together")
    ap.add_argument("--gap", type=float, default=CheckWeights().decisive_gap,
                    help="compliance gap from which a check is decisive (default: the shipped weighting's)")
    args = ap.parse_args()
    prior = CheckWeights(decisive_gap=args.gap)
    sets = dict(s.split("=", 1) for s in args.set) if args.set else DEFAULT_SETS
    rules = {r.id: r for r in read_rulebook(args.rulebook)}
    labels = {name: labels_of(path) for name, path in sets.items()}

    # features of every set under the prior, for leave-one-source-out fitting
    pooled: dict[str, dict[str, list[Labelled]]] = {}
    for name in sets:
        _, pooled[name] = run_set(name, labels[name], args.results, rules, lambda _n, _m: prior, prior)

    def loso(name: str, mode: str) -> CheckWeights:
        rows = [r for other, rs in pooled.items() if other != name for r in rs.get(mode, [])]
        return fit_check_weights(rows, prior=prior, source=f"{mode}, fitted without {name}")

    print("| set | method | n | accuracy (95% CI) | AUROC | ECE-15 raw / recal | Brier raw / recal | "
          "consistent | failures | s / comparison | prefilled tok |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sets:
        rows, _ = run_set(name, labels[name], args.results, rules, loso, prior)
        for label, m in rows:
            if not m.get("n"):
                continue
            print(f"| {name} | {label} | {m['n']} | {fmt(m['acc'])} ({fmt(m['lo'], 2)}-{fmt(m['hi'], 2)}) | "
                  f"{fmt(m['auroc'], 2)} | {fmt(m['ece'])} / {fmt(m['ece_r'])} | {fmt(m['brier'])} / "
                  f"{fmt(m['brier_r'])} | {fmt(m['consistent'], 2)} | {m['failures']} | {fmt(m['sec'], 1)} | "
                  f"{fmt(m['prefilled'], 0)} |")
    if args.fit_all:
        for mode in ("pointwise", "pairwise"):
            every = [r for rs in pooled.values() for r in rs.get(mode, [])]
            print(f"\n{mode}: weights fitted on every set ({len(every)} pairs):",
                  fit_check_weights(every, prior=prior, source=f"{mode}, all sets").model_dump_json())


if __name__ == "__main__":
    main()
