"""Evaluate verdicts against labels: the full metric set with bootstrap CIs, breakdowns, signals, selective judging.

:func:`join` matches verdicts to labelled pairs by pair id (no I/O: both arrive as objects);
:func:`evaluate` turns the matched rows into an :class:`EvalReport` (pydantic, JSON-serialisable). Failed and
escalated verdicts, and labelled pairs without a verdict, are counted on their own and never folded into
accuracy. Every headline number carries a seeded 95% bootstrap interval.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from judge.calibration import metrics as m
from judge.calibration.selective import SelectiveResult, Threshold, clopper_pearson_interval, cross_fitted_selective
from judge.calibration.signals import SignalTable, signals_from_verdicts
from judge.verdicts import Verdict

__all__ = ["Estimate", "EvalReport", "GroupMetrics", "LabelledRow", "PairLabel", "Suspect", "evaluate", "join",
           "point_metrics"]

_OUT = {0: "A", 1: "tie", 2: "B"}
#: Uniform bins of a breakdown group's ECE: fewer than the headline's 15, as a group holds few verdicts (the
#: report labels the column with this count).
GROUP_ECE_BINS = 10


@dataclass(frozen=True)
class PairLabel:
    """What evaluation needs to know about a labelled pair (never shown to the judge)."""

    label: Literal["A", "B", "tie"]
    source: str
    len_a: int
    len_b: int


@dataclass(frozen=True)
class LabelledRow:
    """A verdict and the label of its pair."""

    verdict: Verdict
    truth: PairLabel


@dataclass(frozen=True)
class Joined:
    """Verdicts matched to labels, and what did not match."""

    rows: list[LabelledRow]
    missing: list[str]
    unlabelled: list[str]


def join(verdicts: Sequence[Verdict], labels: Mapping[str, PairLabel]) -> Joined:
    """Match verdicts to labels by pair id; the last verdict for an id wins (a resumed run may repeat one)."""
    latest: dict[str, Verdict] = {}
    unlabelled: list[str] = []
    for v in verdicts:
        pid = v.pair_id or ""
        if pid in labels:
            latest[pid] = v
        else:
            unlabelled.append(pid)
    rows = [LabelledRow(latest[pid], truth) for pid, truth in labels.items() if pid in latest]
    missing = [pid for pid in labels if pid not in latest]
    return Joined(rows, missing, unlabelled)


class Estimate(BaseModel):
    """A number with its 95% bootstrap interval (NaN bounds when it cannot be resampled)."""

    point: float
    low: float
    high: float


class GroupMetrics(BaseModel):
    """Metrics of one group of verdicts (a data source, a deciding rule, a layer, a spec entry)."""

    key: str
    n: int
    accuracy: float
    mean_confidence: float
    ece: float
    brier: float


class Suspect(BaseModel):
    """A labelled pair the judge confidently disagrees with (often a wrong label)."""

    pair_id: str
    label: str
    judged: str
    confidence: float
    source: str


class EvalReport(BaseModel):
    """Everything `judge eval` reports for one set of probabilities (raw or recalibrated)."""

    variant: str
    n_labelled: int
    n_scored: int
    n_failed: int
    n_escalated: int
    n_missing: int
    n_ties_labelled: int
    failures_by_stage: dict[str, int] = Field(default_factory=dict)
    headline: dict[str, Estimate]
    wrong_at_high: dict[str, float]
    confusion: list[list[int]]
    reliability: dict[str, list[dict[str, float]]]
    risk_coverage: list[tuple[float, float, float]]
    length_preference: dict[str, float]
    signal_auroc: dict[str, float]
    breakdowns: dict[str, list[GroupMetrics]]
    selective: dict[str, Any] | None = None
    ece_if_calibrated: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="ECE a perfectly calibrated judge with these confidences shows by chance "
                                          "at this n (mean, p95), per binning: the floor to read ECE against; "
                                          "p_value: how often such a judge shows this report's ECE or more.")
    suspects: list[Suspect] = Field(default_factory=list, description="Labels the judge most confidently "
                                                                      "contradicts: review them first.")
    notes: list[str] = Field(default_factory=list)

    def selective_text(self) -> str:
        """Held-out selective judging in one line, 95% exact intervals in brackets:
        ``0.11 [0.08, 0.15] at agreement 1.00 [0.89, 1.00]``; ``-`` when not estimated."""
        sel = self.selective
        if not sel:
            return "-"

        def part(value: Any, ci: Any) -> str:
            if value is None or not math.isfinite(value):
                return "-"
            bounds = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and all(math.isfinite(b) for b in ci) else ""
            return f"{value:.2f}{bounds}"

        return (f"{part(sel.get('coverage'), sel.get('coverage_ci'))} at agreement "
                f"{part(sel.get('agreement'), sel.get('agreement_ci'))}")

    def ece_floor_text(self) -> str:
        """The ECE a calibrated judge shows at this n, per binning, in one line:
        ``uniform_15: 0.037 / 0.054; p=0.184; quantile_15: ...`` (mean / p95; p-value of this report's ECE);
        ``-`` when not estimated."""

        def num(x: Any) -> str:
            return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"

        return "; ".join(f"{k}: {num(v.get('mean'))} / {num(v.get('p95'))}; p={num(v.get('p_value'))}"
                         for k, v in self.ece_if_calibrated.items()) or "-"


def _pred(probs: NDArray[np.float64]) -> list[str]:
    out = []
    for a, t, b in probs:
        best = max(a, t, b)
        out.append("A" if a == best and b < best else "B" if b == best and a < best else "tie")
    return out


def _outcomes(probs: NDArray[np.float64], labels: Sequence[str]) -> tuple[
        list[str], NDArray[np.float64], NDArray[np.int_], NDArray[np.bool_], NDArray[np.float64], NDArray[np.int_]]:
    """Per row: the predicted outcome, the confidence in it, whether it is right, whether the label is decided
    (not a tie), ``P(A) / (P(A) + P(B))`` and whether the label is A."""
    pred = _pred(probs)
    # the verdict's confidence (`Distribution.confidence`): A and B level above the tie mass predict a tie
    # with the probability each has, not the tie mass (often 0)
    conf = probs.max(axis=1)
    correct = np.asarray([p == y for p, y in zip(pred, labels, strict=True)], dtype=int)
    decided = np.asarray([x != "tie" for x in labels])
    both = probs[:, 0] + probs[:, 2]
    p_a = np.where(both > 0, probs[:, 0] / np.where(both > 0, both, 1.0), 0.5)
    return pred, conf, correct, decided, p_a, np.asarray([x == "A" for x in labels], dtype=int)


def point_metrics(probs: NDArray[np.float64], labels: Sequence[str], n_bins: int = 15) -> dict[str, float]:
    """The calibration headline of `evaluate` as point estimates (no bootstrap), for rows ``(P(A), P(tie), P(B))``.

    ECE (equal-width and equal-mass) on the confidence in the predicted outcome, a tie label counting as an
    error unless the prediction is a tie; Brier score and log loss on the non-tie labels, from
    ``P(A) / (P(A) + P(B))``. What `evaluate` reports as ``ece_uniform_{n_bins}``, ``ece_quantile_{n_bins}``,
    ``brier_binary`` and ``log_loss_binary``.
    """
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != 3 or len(probs) != len(labels):
        raise ValueError(f"point_metrics: probs of shape {probs.shape} for {len(labels)} labels")
    _, conf, correct, decided, p_a, y = _outcomes(probs, labels)
    out = {f"ece_uniform_{n_bins}": m.ece(conf, correct, n_bins=n_bins).ece,
           f"ece_quantile_{n_bins}": m.ece(conf, correct, n_bins=n_bins, strategy="quantile").ece}
    out["brier_binary"] = m.brier_binary(p_a[decided], y[decided]) if decided.any() else math.nan
    out["log_loss_binary"] = m.log_loss_binary(p_a[decided], y[decided]) if decided.any() else math.nan
    return out


def _nan(x: float) -> float:
    return float(x) if x is not None else math.nan


def _group(key: str, conf: NDArray[np.float64], correct: NDArray[np.int_], p_a: NDArray[np.float64],
           y: NDArray[np.int_], decided: NDArray[np.bool_]) -> GroupMetrics:
    brier = m.brier_binary(p_a[decided], y[decided]) if decided.any() else math.nan
    return GroupMetrics(key=key, n=len(conf), accuracy=float(correct.mean()), mean_confidence=float(conf.mean()),
                        ece=m.ece(conf, correct, n_bins=GROUP_ECE_BINS).ece, brier=brier)


def _top_spec(v: Verdict) -> str:
    specs = [r for r in v.retrieved if r.get("layer") == "spec"]
    return max(specs, key=lambda r: r.get("score", 0.0))["id"] if specs else "(no spec retrieved)"


def _deciding(v: Verdict) -> tuple[str, str]:
    if v.deciding_rule is None:
        return "(no explanation)", "(no explanation)"
    layer = next((c.layer for c in v.citations if c.rule_id == v.deciding_rule), None)
    if layer is None:
        layer = next((r.get("layer") for r in v.retrieved if r.get("id") == v.deciding_rule), None)
    return v.deciding_rule, layer or "(unknown)"


def evaluate(
    rows: Sequence[LabelledRow],
    *,
    probs: NDArray[np.float64] | None = None,
    variant: str = "raw",
    n_missing: int = 0,
    n_boot: int = 1000,
    seed: int = 0,
    high: float = 0.9,
    n_bins: int = 15,
    target: float = 0.9,
    delta: float = 0.1,
    n_suspects: int = 25,
    suspect_confidence: float = 0.0,
    selective_result: tuple[SelectiveResult, Sequence[Threshold]] | None = None,
) -> EvalReport:
    """The full metric set for labelled verdicts.

    Args:
        rows: Verdicts with labels (failed and escalated verdicts included: they are counted, not scored).
        probs: Optional ``(n_scored, 3)`` rows (P(A), P(tie), P(B)) replacing the verdicts' own probabilities
            for the scored rows, in order (e.g. cross-fitted recalibrated probabilities).
        variant: A name for this set of probabilities.
        n_missing: Labelled pairs that have no verdict at all.
        n_boot, seed: Bootstrap replicates and seed for every interval.
        high: The threshold of wrong-at-high-confidence.
        n_bins: Bins for ECE.
        target, delta: Target agreement and risk tolerance of selective judging (cross-fitted).
        selective_result: Held-out selective judging measured elsewhere (e.g. `CrossFit.abstention` for
            recalibrated probabilities, whose thresholds belong to each fold's calibrator); by default a
            threshold on ``probs``' confidence is cross-fitted here.
        n_suspects, suspect_confidence: How many confidently contradicted labels to list (most confident
            first), and the least confidence to list one.

    Raises:
        ValueError: When no row can be scored, or ``probs`` does not match the scored rows.
    """
    failed = [r for r in rows if r.verdict.failure is not None]
    escalated = [r for r in rows if r.verdict.failure is None and r.verdict.escalated]
    scored = [r for r in rows if r.verdict.failure is None and not r.verdict.escalated]
    if not scored:
        raise ValueError("evaluate: no scored verdict (every labelled pair failed, escalated or is missing)")
    verdicts = [r.verdict for r in scored]
    table: SignalTable = signals_from_verdicts(verdicts, [(r.truth.len_a, r.truth.len_b) for r in scored])
    if probs is None:
        probs = np.asarray([[v.probabilities.a, v.probabilities.tie, v.probabilities.b]  # type: ignore[union-attr]
                            for v in verdicts])
    elif probs.shape != (len(scored), 3):
        raise ValueError(f"evaluate: probs has shape {probs.shape}, expected ({len(scored)}, 3)")
    labels = [r.truth.label for r in scored]
    lab_idx = np.asarray([{"A": 0, "tie": 1, "B": 2}[x] for x in labels])
    pred, conf, correct, decided, p_a, y = _outcomes(probs, labels)
    idx = np.arange(len(scored))
    notes: list[str] = []

    def ci(fn: Callable[[NDArray[np.int_]], float]) -> Estimate:
        try:
            point, low, high_ = m.bootstrap_ci(lambda ix: fn(ix.astype(int)), idx, n_boot=n_boot, seed=seed)
        except ValueError:
            return Estimate(point=math.nan, low=math.nan, high=math.nan)
        return Estimate(point=point, low=low, high=high_)

    def on_decided(fn: Callable[[NDArray[np.int_]], float]) -> Callable[[NDArray[np.int_]], float]:
        def inner(ix: NDArray[np.int_]) -> float:
            keep = ix[decided[ix]]
            return fn(keep) if keep.size else math.nan
        return inner

    pred_arr = np.asarray(pred, dtype=object)
    lab_arr = np.asarray(labels, dtype=object)
    flags = [None if v.position_inconsistent is None else not v.position_inconsistent for v in verdicts]
    headline = {
        "accuracy": ci(lambda ix: m.accuracy(pred_arr[ix].tolist(), lab_arr[ix].tolist())),
        "accuracy_without_ties": ci(lambda ix: m.accuracy_without_ties(pred_arr[ix].tolist(), lab_arr[ix].tolist())),
        "kappa": ci(lambda ix: m.cohen_kappa(pred_arr[ix].tolist(), lab_arr[ix].tolist())),
        f"ece_uniform_{n_bins}": ci(lambda ix: m.ece(conf[ix], correct[ix], n_bins=n_bins).ece),
        f"ece_quantile_{n_bins}": ci(lambda ix: m.ece(conf[ix], correct[ix], n_bins=n_bins,
                                                      strategy="quantile").ece),
        "brier_binary": ci(on_decided(lambda ix: m.brier_binary(p_a[ix], y[ix]))),
        "brier_multiclass": ci(lambda ix: m.brier_multiclass(probs[ix], lab_idx[ix])),
        "log_loss_binary": ci(on_decided(lambda ix: m.log_loss_binary(p_a[ix], y[ix]))),
        "log_loss_multiclass": ci(lambda ix: m.log_loss_multiclass(probs[ix], lab_idx[ix])),
        f"wrong_at_{high:g}": ci(lambda ix: m.wrong_at_high_confidence(conf[ix], correct[ix], high).error_rate),
        "auroc": ci(lambda ix: m.auroc(conf[ix], correct[ix])),
        "aurc": ci(lambda ix: m.aurc(conf[ix], correct[ix])),
    }
    if any(f is not None for f in flags):
        flag_arr = np.asarray(flags, dtype=object)
        headline["position_consistency"] = ci(lambda ix: m.position_consistency(flag_arr[ix].tolist()))
    wh = m.wrong_at_high_confidence(conf, correct, high)

    def bins(strategy: Literal["uniform", "quantile"]) -> list[dict[str, float]]:
        return [{"lower": b.lower, "upper": b.upper, "count": b.count, "mean_confidence": b.mean_confidence,
                 "accuracy": b.accuracy} for b in m.ece(conf, correct, n_bins=n_bins, strategy=strategy).bins]

    curve = m.risk_coverage(conf, correct)
    step = max(1, len(curve) // 200)
    lengths = np.asarray([(r.truth.len_a, r.truth.len_b) for r in scored])
    lp = m.length_preference(pred, labels, lengths[:, 0], lengths[:, 1])

    signal_auroc: dict[str, float] = {"confidence": m.auroc(conf, correct)}
    for name, score in (("|logit|", np.abs(table.logit)), ("orders agree", table.agree),
                        ("retrieval", table.retrieval), ("|verbal|", np.abs(table.verbal)),
                        ("|length|", np.abs(table.length))):
        if np.ptp(score) > 0:  # AUROC depends on ranks only: squash any real score into [0, 1]
            signal_auroc[name] = m.auroc(np.arctan(score - score.min()) / (np.pi / 2), correct)
        else:
            notes.append(f"signal {name!r} is constant on this data (no information)")

    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(scored):
        rule, layer = _deciding(r.verdict)
        groups["by_source"][r.truth.source].append(i)
        groups["by_deciding_rule"][rule].append(i)
        groups["by_layer"][layer].append(i)
        groups["by_top_spec_entry"][_top_spec(r.verdict)].append(i)
    breakdowns = {
        name: sorted((_group(k, conf[ix], correct[ix], p_a[ix], y[ix], decided[ix])
                      for k, ix in ((k, np.asarray(v)) for k, v in g.items())), key=lambda gm: (-gm.n, gm.key))
        for name, g in groups.items()
    }

    selective = None
    if len(scored) >= 20:
        result, thresholds = selective_result or cross_fitted_selective(conf, correct, target=target, delta=delta,
                                                                        seed=seed)
        n_right = round(result.agreement * result.n_kept) if result.n_kept else 0
        selective = {"target": target, "delta": delta, "coverage": result.coverage,
                     "coverage_ci": clopper_pearson_interval(result.n_kept, result.n),
                     "agreement": result.agreement,
                     "agreement_ci": clopper_pearson_interval(n_right, result.n_kept),
                     "n_kept": result.n_kept, "n_escalated": result.n_escalated,
                     "fold_thresholds": [t.threshold for t in thresholds],
                     "certified_folds": sum(t.certified for t in thresholds)}
    wrong = np.flatnonzero(correct == 0)
    ranked = wrong[np.argsort(-conf[wrong], kind="stable")][:n_suspects]
    suspects = [Suspect(pair_id=scored[i].verdict.pair_id or "", label=labels[i], judged=pred[i],
                        confidence=float(conf[i]), source=scored[i].truth.source)
                for i in ranked if conf[i] >= suspect_confidence]
    return EvalReport(
        variant=variant, suspects=suspects, n_labelled=len(rows) + n_missing, n_scored=len(scored),
        n_failed=len(failed),
        n_escalated=len(escalated), n_missing=n_missing, n_ties_labelled=int((~decided).sum()),
        failures_by_stage=dict(Counter(r.verdict.failure.stage for r in failed if r.verdict.failure)),
        headline=headline,
        wrong_at_high={"threshold": high, "n_confident": wh.n_confident, "n_wrong": wh.n_wrong,
                       "error_rate": wh.error_rate},
        confusion=[list(row) for row in m.confusion_matrix(pred, labels)],
        reliability={"uniform": bins("uniform"), "quantile": bins("quantile")},
        risk_coverage=[(p.coverage, p.risk, p.threshold) for p in curve[::step]],
        length_preference={"judge_longer": _nan(lp.judge_longer), "label_longer": _nan(lp.label_longer)},
        signal_auroc=signal_auroc, breakdowns=breakdowns, selective=selective, notes=notes,
        ece_if_calibrated={
            f"{strategy}_{n_bins}": m.ece_if_calibrated(conf, n_bins, strategy, seed=seed,
                                                        observed=headline[f"ece_{strategy}_{n_bins}"].point)._asdict()
            for strategy in ("uniform", "quantile")})
