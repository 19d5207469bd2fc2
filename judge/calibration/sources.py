"""Leave-one-source-out validation: how a calibrator does on a source it was not fitted on.

Pooled cross-validation mixes every source into every fold, so it measures a calibrator on pairs like the ones
it was fitted on. A user's pairs come from elsewhere. :func:`leave_one_source_out` fits the whole calibration
procedure (feature choice, method choice, fit, tie model, abstention threshold) on all sources but one and
scores it on the one left out, for every source; the choices inside each fit are themselves made by the worst
left-out source among the training sources (random folds when only one is left), so the left-out source's
labels reach its figures through nothing.

Pure functions: signals, labels and source names in, a :class:`SourceValidation` out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from judge.calibration import metrics as m
from judge.calibration.evaluate import _pred, point_metrics
from judge.calibration.recalibrate import (
    METHODS,
    abstention_threshold,
    distributions,
    fit,
    fit_ties,
    predict,
    select_features,
    select_method,
)
from judge.calibration.signals import SignalTable

__all__ = ["SourceFigures", "SourceValidation", "leave_one_source_out", "source_metrics"]

_MIN_SOURCE_ROWS = 10


def source_metrics(probs: NDArray[np.float64], labels: Sequence[str], n_bins: int = 15) -> dict[str, float]:
    """Accuracy (3-way, a tie label is an error unless the verdict is a tie), accuracy on non-tie labels, ECE,
    Brier score and log loss (see `point_metrics`) of rows ``(P(A), P(tie), P(B))``."""
    pred = _pred(np.asarray(probs, dtype=float))
    lab = list(labels)
    out = {"accuracy": m.accuracy(pred, lab)}
    decided = [i for i, x in enumerate(lab) if x != "tie"]
    out["accuracy_without_ties"] = (m.accuracy_without_ties([pred[i] for i in decided], [lab[i] for i in decided])
                                    if decided else math.nan)
    out.update(point_metrics(probs, lab, n_bins=n_bins))
    return out


class SourceFigures(BaseModel):
    """One left-out source: the calibrator fitted without it, scored on it."""

    source: str
    n: int = Field(description="Scored verdicts of the left-out source.")
    n_fitted: int = Field(description="Verdicts of the other sources the calibrator was fitted on.")
    method: str
    features: list[str] = Field(default_factory=list, description="Logistic features (empty for other methods).")
    raw: dict[str, float]
    recalibrated: dict[str, float]
    selective: dict[str, Any] = Field(default_factory=dict,
                                      description="The threshold chosen on the other sources, applied here.")
    skipped: str | None = None


class SourceValidation(BaseModel):
    """Leave-one-source-out figures, one row per source."""

    method: str
    target: float
    delta: float
    rows: list[SourceFigures]

    def worst(self, metric: str, variant: str = "recalibrated") -> float:
        """The largest value of ``metric`` over the left-out sources (NaN when none was scored)."""
        vals = [getattr(r, variant).get(metric, math.nan) for r in self.rows if not r.skipped]
        vals = [v for v in vals if math.isfinite(v)]
        return max(vals) if vals else math.nan

    def summary(self) -> list[dict[str, Any]]:
        """Plain rows for storing beside a calibrator."""
        return [r.model_dump(mode="json") for r in self.rows]


def _fit_on(t: SignalTable, labels: list[str], groups: list[str], method: str,
            features: Sequence[str] | None, n_folds: int, seed: int) -> tuple[str, dict[str, Any], list[str],
                                                                              float, tuple[float, float] | None]:
    feats = list(features) if features is not None else list(select_features(t, labels, groups, n_folds=n_folds,
                                                                              seed=seed)[0])
    name = method if method != "auto" else select_method(t, labels, n_folds=n_folds, seed=seed, groups=groups,
                                                         features=feats)[0]
    params = fit(name, t, labels, features=feats)
    tie_rate = sum(x == "tie" for x in labels) / len(labels)
    return name, params, feats if name == "logistic" else [], tie_rate, fit_ties(predict(name, params, t), t.tie,
                                                                                 labels)


def leave_one_source_out(t: SignalTable, labels: Sequence[str], sources: Sequence[str], *, method: str = "auto",
                         features: Sequence[str] | None = None, target: float = 0.9, delta: float = 0.1,
                         n_folds: int = 5, seed: int = 0) -> SourceValidation:
    """Fit on every source but one, score on the one left out, for every source.

    Args:
        t, labels: Signals and labels of the scored verdicts.
        sources: Each row's source (at least two distinct).
        method: ``auto`` (chosen by the worst left-out source among the training sources) or a method name.
        features: The logistic features, or None to choose them on the training sources (`select_features`).
        target, delta: The abstention target: the threshold is chosen on the training sources' own calibrated
            confidences and applied to the left-out source (coverage and agreement measured there).
        n_folds, seed: Folds for choices made on a single training source.

    Raises:
        ValueError: With fewer than two sources, mismatched lengths, or an unknown method.
    """
    lab, src = list(labels), list(sources)
    if len(lab) != len(t) or len(src) != len(t):
        raise ValueError(f"leave-one-source-out: {len(t)} rows, {len(lab)} labels, {len(src)} sources")
    if method != "auto" and method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; known: auto, {', '.join(METHODS)}")
    names = sorted(set(src))
    if len(names) < 2:
        raise ValueError(f"leave-one-source-out needs at least two sources, got {names}")
    arr = np.asarray(src, dtype=object)
    rows: list[SourceFigures] = []
    for name in names:
        held, train = np.flatnonzero(arr == name), np.flatnonzero(arr != name)
        held_lab, train_lab = [lab[i] for i in held], [lab[i] for i in train]
        raw = np.column_stack([t.raw_p_a[held] * (1 - t.tie[held]), t.tie[held],
                               (1 - t.raw_p_a[held]) * (1 - t.tie[held])])
        raw_m = source_metrics(raw, held_lab)
        common = {"source": name, "n": len(held), "n_fitted": len(train), "raw": raw_m}
        if len(held) < _MIN_SOURCE_ROWS:
            rows.append(SourceFigures(**common, method="none", recalibrated=raw_m,
                                      skipped=f"{len(held)} verdicts; at least {_MIN_SOURCE_ROWS} are needed"))
            continue
        sub = t.subset(train)
        try:
            chosen, params, feats, tie_rate, tie_model = _fit_on(sub, train_lab, [src[i] for i in train], method,
                                                                 features, n_folds, seed)
        except ValueError as exc:
            rows.append(SourceFigures(**common, method="none", recalibrated=raw_m,
                                      skipped=f"cannot fit on the other sources: {exc}"))
            continue
        held_t = t.subset(held)
        probs = distributions(predict(chosen, params, held_t), held_t.tie, tie_rate, tie_model)
        th = abstention_threshold(distributions(predict(chosen, params, sub), sub.tie, tie_rate, tie_model),
                                  train_lab, target=target, delta=delta)
        conf = probs.max(axis=1)
        correct = np.asarray([p == y for p, y in zip(_pred(probs), held_lab, strict=True)], dtype=int)
        keep = conf >= th.threshold
        selective = {"threshold": th.threshold if th.certified else None, "certified": th.certified,
                     "coverage": float(keep.mean()), "n_kept": int(keep.sum()),
                     "agreement": float(correct[keep].mean()) if keep.any() else math.nan}
        rows.append(SourceFigures(**common, method=chosen, features=feats, recalibrated=source_metrics(probs, held_lab),
                                  selective=selective))
    return SourceValidation(method=method, target=target, delta=delta, rows=rows)

