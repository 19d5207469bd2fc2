"""Agreement and calibration metrics for pairwise verdicts, as pure functions over plain arrays.

Vocabulary:

* An *outcome* is one of ``OUTCOMES = ("A", "tie", "B")``; multi-class probability rows use that column order.
* A verdict's *confidence* is the probability it gave its predicted winner; ``correct`` is 1/0 (or bool) for
  whether that predicted winner equals the label.
* Binary metrics take ``p = P(A wins)`` and ``y`` in {0, 1} (1 = A) for the non-tie labels.

Edge-case convention (the same in every function):

* **Empty input raises** ``ValueError`` (so does malformed input: mismatched lengths, unknown outcomes,
  probabilities outside [0, 1], ``correct`` values other than 0/1).
* **A statistic that is undefined on non-empty input is NaN**, never an exception: accuracy without ties when
  every label is a tie, Cohen's kappa when chance agreement is 1, AUROC when ``correct`` holds one class only,
  the error rate above a threshold nobody reaches, shares after filtering leaves no rows. Each such case is
  named in the function's docstring.

Nothing here does I/O, keeps state or draws unseeded random numbers; :func:`bootstrap_ci` takes its seed
explicitly. The standard metrics (confusion matrix, Cohen's kappa, Brier score, log loss, AUROC) are
scikit-learn's and the bootstrap is scipy's; written here are only what those libraries lack: ECE and its
reliability table, the ECE a calibrated judge shows by chance, the risk-coverage curve and AURC, and the
pairwise-judging shares.

ECE and the ECE of a calibrated judge live in :mod:`judge.calibration.reliability`, the selective-prediction
metrics in :mod:`judge.calibration.ranking` and the input checks in :mod:`judge.calibration.inputs`; this
module re-exports them beside the agreement scores, proper scoring rules, pairwise biases and the bootstrap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import DegenerateDataWarning, bootstrap
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from judge.calibration.inputs import (
    _INDEX,
    _LABELS,
    OUTCOMES,
    Outcomes,
    _binary,
    _nonempty,
    _outcomes,
    _prob_rows,
    _probabilities,
    _same_length,
)
from judge.calibration.ranking import (
    HighConfidenceErrors,
    RiskCoveragePoint,
    aurc,
    auroc,
    risk_coverage,
    wrong_at_high_confidence,
)
from judge.calibration.reliability import (
    CalibrationError,
    NullECE,
    ReliabilityBin,
    ece,
    ece_if_calibrated,
    ece_null_draws,
)

__all__ = [
    "OUTCOMES",
    "BootstrapCI",
    "CalibrationError",
    "HighConfidenceErrors",
    "LengthPreference",
    "NullECE",
    "ReliabilityBin",
    "RiskCoveragePoint",
    "accuracy",
    "accuracy_without_ties",
    "aurc",
    "auroc",
    "bootstrap_ci",
    "brier_binary",
    "brier_multiclass",
    "cohen_kappa",
    "confusion_matrix",
    "ece",
    "ece_if_calibrated",
    "ece_null_draws",
    "length_preference",
    "log_loss_binary",
    "log_loss_multiclass",
    "position_consistency",
    "risk_coverage",
    "wrong_at_high_confidence",
]


# --------------------------------------------------------------------------------------------- result types


class LengthPreference(NamedTuple):
    """How often the longer response is picked, by the judge and by the labels."""

    judge_longer: float
    label_longer: float


class BootstrapCI(NamedTuple):
    """A point estimate with a percentile bootstrap confidence interval."""

    point: float
    low: float
    high: float


# --------------------------------------------------------------------------------------------- agreement


def accuracy(pred: Sequence[str], label: Sequence[str]) -> float:
    """Share of verdicts whose outcome equals the label (ties count as an outcome).

    Args:
        pred: Predicted outcomes, each ``"A"``, ``"tie"`` or ``"B"``.
        label: Reference outcomes, same length.

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: On empty input, different lengths or unknown outcomes.
    """
    _same_length("accuracy", pred, label)
    return float(np.mean(_outcomes("accuracy", pred) == _outcomes("accuracy", label)))


def accuracy_without_ties(pred: Sequence[str], label: Sequence[str]) -> float:
    """Accuracy over the rows whose *label* is not a tie (a predicted tie on such a row counts as wrong).

    Returns:
        The accuracy in [0, 1]; NaN when every label is a tie.

    Raises:
        ValueError: On empty input, different lengths or unknown outcomes.
    """
    _same_length("accuracy_without_ties", pred, label)
    p, y = _outcomes("accuracy_without_ties", pred), _outcomes("accuracy_without_ties", label)
    keep = y != _INDEX["tie"]
    return float(np.mean(p[keep] == y[keep])) if keep.any() else math.nan


def confusion_matrix(pred: Sequence[str], label: Sequence[str]) -> tuple[tuple[int, int, int], ...]:
    """Counts of (label, prediction) pairs over ``OUTCOMES``.

    Rows are the label and columns the prediction, both in the order ``("A", "tie", "B")`` — the layout of
    ``sklearn.metrics.confusion_matrix(label, pred, labels=["A", "tie", "B"])``.

    Raises:
        ValueError: On empty input, different lengths or unknown outcomes.
    """
    _same_length("confusion_matrix", pred, label)
    counts = skm.confusion_matrix(_outcomes("confusion_matrix", label), _outcomes("confusion_matrix", pred),
                                  labels=_LABELS)
    return tuple((int(r[0]), int(r[1]), int(r[2])) for r in counts)


def cohen_kappa(pred: Sequence[str], label: Sequence[str]) -> float:
    """Cohen's kappa between predictions and labels over the three outcomes.

    Returns:
        ``(p_o - p_e) / (1 - p_e)``; NaN when chance agreement ``p_e`` is 1 (both sides use one outcome only).

    Raises:
        ValueError: On empty input, different lengths or unknown outcomes.
    """
    _same_length("cohen_kappa", pred, label)
    y, p = _outcomes("cohen_kappa", label), _outcomes("cohen_kappa", pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # the undefined case is NaN by contract
        return float(skm.cohen_kappa_score(y, p, labels=_LABELS, replace_undefined_by=math.nan))


# --------------------------------------------------------------------------------------------- calibration

def brier_binary(p: ArrayLike, y: ArrayLike) -> float:
    """Mean squared error of ``p = P(A wins)`` against ``y`` (1 = A), as ``sklearn.metrics.brier_score_loss``.

    Raises:
        ValueError: On empty or malformed input.
    """
    prob, truth = _probabilities("brier_binary", p), _binary("brier_binary", y)
    _same_length("brier_binary", prob, truth)
    return float(skm.brier_score_loss(truth, prob, labels=[0, 1]))


def brier_multiclass(probs: ArrayLike, labels: Outcomes) -> float:
    """Multi-class Brier score: the mean over rows of the *sum over the three classes* of squared errors.

    This is Brier's original definition, ranging over [0, 2]; it equals
    ``sklearn.metrics.brier_score_loss(..., scale_by_half=False)`` for multi-class input, and is twice the
    binary Brier score when the tie column is always 0.

    Args:
        probs: Rows of ``(P(A), P(tie), P(B))`` each summing to 1, shape ``(n, 3)``.
        labels: Outcomes ``"A"``/``"tie"``/``"B"`` (or column indices 0/1/2).

    Raises:
        ValueError: On empty or malformed input.
    """
    rows = _prob_rows("brier_multiclass", probs)
    idx = _outcomes("brier_multiclass", labels)
    _same_length("brier_multiclass", rows, idx)
    return float(skm.brier_score_loss(idx, rows, labels=_LABELS, scale_by_half=False))


def log_loss_binary(p: ArrayLike, y: ArrayLike, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of ``y`` under ``p = P(A wins)``, natural log.

    Probabilities are clipped to ``[eps, 1 - eps]`` first so a confident miss costs a large finite amount.

    Raises:
        ValueError: On empty or malformed input, or ``eps`` outside (0, 0.5).
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"log_loss_binary: eps must lie in (0, 0.5), got {eps}")
    prob, truth = _probabilities("log_loss_binary", p), _binary("log_loss_binary", y)
    _same_length("log_loss_binary", prob, truth)
    return float(skm.log_loss(truth, np.clip(prob, eps, 1.0 - eps), labels=[0, 1]))


def log_loss_multiclass(probs: ArrayLike, labels: Outcomes, eps: float = 1e-15) -> float:
    """Mean negative log-probability of the true outcome, natural log.

    Probabilities are clipped to ``[eps, 1 - eps]``; rows are not renormalised.

    Args:
        probs: Rows of ``(P(A), P(tie), P(B))`` each summing to 1, shape ``(n, 3)``.
        labels: Outcomes ``"A"``/``"tie"``/``"B"`` (or column indices 0/1/2).
        eps: Clipping constant in (0, 0.5).

    Raises:
        ValueError: On empty or malformed input, or ``eps`` outside (0, 0.5).
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"log_loss_multiclass: eps must lie in (0, 0.5), got {eps}")
    rows = _prob_rows("log_loss_multiclass", probs)
    idx = _outcomes("log_loss_multiclass", labels)
    _same_length("log_loss_multiclass", rows, idx)
    return float(skm.log_loss(idx, np.clip(rows, eps, 1.0 - eps), labels=_LABELS))


# --------------------------------------------------------------------------------------------- biases


def position_consistency(flags: Sequence[bool | None] | NDArray[Any]) -> float:
    """Share of pairs judged consistently in both presentation orders, ignoring ``None`` (not measured).

    Returns:
        The share in [0, 1]; NaN when every flag is ``None``.

    Raises:
        ValueError: On empty input or a flag that is not bool/None.
    """
    _nonempty("position_consistency", len(flags))
    known: list[bool] = []
    for flag in flags:
        if flag is None:
            continue
        if not isinstance(flag, bool | np.bool_):
            raise ValueError(f"position_consistency: flags must be bool or None, got {flag!r}")
        known.append(bool(flag))
    return sum(known) / len(known) if known else math.nan


def length_preference(
    pred: Sequence[str], label: Sequence[str], len_a: ArrayLike, len_b: ArrayLike
) -> LengthPreference:
    """How often the judge, and the labels, pick the longer response.

    Rows where both responses have the same length are excluded; so are ties, which pick neither response
    (a predicted tie leaves the judge share, a tie label the label share).

    Returns:
        ``(judge_longer, label_longer)``; either share is NaN when no row is left for it.

    Raises:
        ValueError: On empty input, different lengths or unknown outcomes.
    """
    la, lb = np.asarray(len_a, dtype=float), np.asarray(len_b, dtype=float)
    _same_length("length_preference", pred, label, la, lb)
    longer = np.where(la > lb, _INDEX["A"], _INDEX["B"])
    unequal = la != lb

    def share(outcomes: NDArray[np.int_]) -> float:
        keep = unequal & (outcomes != _INDEX["tie"])
        return float(np.mean(outcomes[keep] == longer[keep])) if keep.any() else math.nan

    return LengthPreference(share(_outcomes("length_preference", pred)), share(_outcomes("length_preference", label)))


# --------------------------------------------------------------------------------------------- uncertainty


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapCI:
    """Percentile bootstrap interval for ``metric_fn(*arrays)``, resampling rows of all arrays jointly.

    ``scipy.stats.bootstrap`` resamples the row indices with ``numpy.random.default_rng(seed)``, so the result
    is deterministic for a seed. Replicates where the metric is NaN (e.g. AUROC on a one-class resample) are
    dropped; if all are, the bounds are NaN. A single row has only itself to resample: its interval is the
    point.

    Args:
        metric_fn: Takes the arrays (as numpy arrays, rows resampled) and returns a number.
        *arrays: One or more same-length sequences; 2-d arrays are resampled by row.
        n_boot: Number of bootstrap replicates (at least 1).
        seed: Seed for the random generator.
        alpha: Two-sided miss rate; the interval spans the ``alpha/2`` and ``1 - alpha/2`` quantiles.

    Returns:
        ``(point, low, high)`` where ``point`` is the metric on the original rows.

    Raises:
        ValueError: With no arrays, empty or different-length arrays, ``n_boot < 1`` or ``alpha`` not in (0, 1).
    """
    if not arrays:
        raise ValueError("bootstrap_ci: pass at least one array")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"bootstrap_ci: alpha must lie in (0, 1), got {alpha}")
    data = [np.asarray(a) for a in arrays]
    n = _same_length("bootstrap_ci", *data)
    point = float(metric_fn(*data))
    if n == 1:
        return BootstrapCI(point, point, point)

    def statistic(idx: NDArray[np.int_]) -> float:
        return float(metric_fn(*(a[idx] for a in data)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # NaN replicates: dropped below
        result = bootstrap((np.arange(n),), statistic, n_resamples=n_boot, vectorized=False,
                           confidence_level=1.0 - alpha, method="percentile", rng=np.random.default_rng(seed))
    replicates = np.asarray(result.bootstrap_distribution, dtype=float)
    finite = replicates[~np.isnan(replicates)]
    if finite.size == 0:
        return BootstrapCI(point, math.nan, math.nan)
    if finite.size < replicates.size:
        low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    else:
        low, high = result.confidence_interval
    return BootstrapCI(point, float(low), float(high))
