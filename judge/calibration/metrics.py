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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import DegenerateDataWarning, bootstrap
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

OUTCOMES: tuple[str, str, str] = ("A", "tie", "B")
_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
_LABELS = list(range(len(OUTCOMES)))
_ROW_SUM_TOL = 1e-6

Sized = Sequence[Any] | NDArray[Any]
Outcomes = Sequence[str] | Sequence[int] | NDArray[Any]


# --------------------------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class ReliabilityBin:
    """One row of a reliability table.

    Attributes:
        lower: Lower edge of the bin (for quantile bins: the smallest confidence in it).
        upper: Upper edge of the bin (for quantile bins: the largest confidence in it).
        count: Number of verdicts in the bin.
        mean_confidence: Mean confidence in the bin; NaN when the bin is empty.
        accuracy: Share of correct verdicts in the bin; NaN when the bin is empty.
    """

    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float


@dataclass(frozen=True)
class CalibrationError:
    """Expected calibration error with the reliability table it was computed from.

    Attributes:
        ece: Count-weighted mean of ``|accuracy - mean_confidence|`` over non-empty bins.
        mce: Largest ``|accuracy - mean_confidence|`` over non-empty bins.
        bins: The reliability table, lowest confidence first.
        strategy: ``"uniform"`` (equal-width) or ``"quantile"`` (equal-mass) binning.
    """

    ece: float
    mce: float
    bins: tuple[ReliabilityBin, ...]
    strategy: str


class HighConfidenceErrors(NamedTuple):
    """Errors among verdicts at or above a confidence threshold."""

    error_rate: float
    n_confident: int
    n_wrong: int


class RiskCoveragePoint(NamedTuple):
    """A point of the risk-coverage curve: keep verdicts with confidence >= ``threshold``."""

    coverage: float
    risk: float
    threshold: float


class LengthPreference(NamedTuple):
    """How often the longer response is picked, by the judge and by the labels."""

    judge_longer: float
    label_longer: float


class BootstrapCI(NamedTuple):
    """A point estimate with a percentile bootstrap confidence interval."""

    point: float
    low: float
    high: float


# --------------------------------------------------------------------------------------------- validation


def _nonempty(name: str, n: int) -> None:
    if n == 0:
        raise ValueError(f"{name}: empty input; at least one row is required")


def _same_length(name: str, *arrays: Sized) -> int:
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"{name}: inputs have different lengths {sorted(lengths)}")
    n = lengths.pop()
    _nonempty(name, n)
    return n


def _outcomes(name: str, values: Outcomes) -> NDArray[np.int_]:
    """Map outcome names to column indices 0/1/2; integer indices are accepted as they are."""
    out = np.empty(len(values), dtype=int)
    for i, v in enumerate(values):
        if isinstance(v, str) and v in _INDEX:
            out[i] = _INDEX[v]
        elif isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v <= 2:
            out[i] = int(v)
        else:
            raise ValueError(f"{name}: unknown outcome {v!r}; expected one of {OUTCOMES} or 0/1/2")
    return out


def _probabilities(name: str, values: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d sequence of probabilities, got shape {arr.shape}")
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    return arr


def _binary(name: str, values: ArrayLike) -> NDArray[np.int_]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d sequence of 0/1 values, got shape {arr.shape}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name}: values must be 0/1 (or bool)")
    return arr.astype(int)


def _prob_rows(name: str, probs: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(probs, dtype=float)
    if arr.size == 0:
        _nonempty(name, 0)
    if arr.ndim != 2 or arr.shape[1] != len(OUTCOMES):
        raise ValueError(f"{name}: expected probability rows of shape (n, 3) in order {OUTCOMES}, got {arr.shape}")
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    if not np.allclose(arr.sum(axis=1), 1.0, atol=_ROW_SUM_TOL, rtol=0.0):
        raise ValueError(f"{name}: every probability row must sum to 1")
    return arr


def _conf_correct(name: str, confidence: ArrayLike, correct: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
    conf = _probabilities(name, confidence)
    corr = _binary(name, correct)
    _same_length(name, conf, corr)
    return conf, corr


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


def ece(
    confidence: ArrayLike,
    correct: ArrayLike,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> CalibrationError:
    """Expected calibration error and its reliability table.

    ``"uniform"`` cuts [0, 1] into ``n_bins`` equal-width bins ``[lower, upper)``, the last one closed at 1;
    every bin appears in the table, empty ones with count 0 and NaN means. ``"quantile"`` sorts the verdicts by
    confidence (stably) and splits them into ``min(n_bins, n)`` groups whose sizes differ by at most one, so
    equal confidences may straddle two bins; each bin's edges are its smallest and largest confidence.

    Args:
        confidence: Probability given to the predicted winner, in [0, 1].
        correct: 1/0 whether the predicted winner equals the label.
        n_bins: Number of bins (at least 1).
        strategy: ``"uniform"`` or ``"quantile"``.

    Returns:
        A :class:`CalibrationError` holding ECE, MCE and the table.

    Raises:
        ValueError: On empty or malformed input, ``n_bins < 1`` or an unknown strategy.
    """
    conf, corr = _conf_correct("ece", confidence, correct)
    if n_bins < 1:
        raise ValueError(f"ece: n_bins must be >= 1, got {n_bins}")
    groups: list[tuple[float, float, NDArray[np.int_]]] = []
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
        groups = [(float(edges[b]), float(edges[b + 1]), np.flatnonzero(which == b)) for b in range(n_bins)]
    elif strategy == "quantile":
        order = np.argsort(conf, kind="stable")
        for chunk in np.array_split(order, min(n_bins, len(conf))):
            groups.append((float(conf[chunk].min()), float(conf[chunk].max()), chunk))
    else:
        raise ValueError(f"ece: strategy must be 'uniform' or 'quantile', got {strategy!r}")

    bins: list[ReliabilityBin] = []
    total, worst = 0.0, 0.0
    for lower, upper, idx in groups:
        if idx.size == 0:
            bins.append(ReliabilityBin(lower, upper, 0, math.nan, math.nan))
            continue
        mean_conf, acc = float(conf[idx].mean()), float(corr[idx].mean())
        gap = abs(acc - mean_conf)
        total += idx.size * gap
        worst = max(worst, gap)
        bins.append(ReliabilityBin(lower, upper, int(idx.size), mean_conf, acc))
    return CalibrationError(ece=total / len(conf), mce=worst, bins=tuple(bins), strategy=strategy)


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


# --------------------------------------------------------------------------------------------- selective


def wrong_at_high_confidence(confidence: ArrayLike, correct: ArrayLike, threshold: float = 0.9) -> HighConfidenceErrors:
    """How often verdicts with ``confidence >= threshold`` are wrong.

    Returns:
        ``(error_rate, n_confident, n_wrong)``; the rate is NaN when no verdict reaches the threshold.

    Raises:
        ValueError: On empty or malformed input.
    """
    conf, corr = _conf_correct("wrong_at_high_confidence", confidence, correct)
    confident = conf >= threshold
    n_conf = int(confident.sum())
    n_wrong = int((corr[confident] == 0).sum())
    return HighConfidenceErrors(n_wrong / n_conf if n_conf else math.nan, n_conf, n_wrong)


def auroc(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Area under the ROC curve of confidence as a score for separating correct from wrong verdicts.

    ``sklearn.metrics.roc_auc_score(correct, confidence)`` (tied confidences count half).

    Returns:
        AUROC in [0, 1]; NaN when ``correct`` is all 1 or all 0 (the curve is undefined).

    Raises:
        ValueError: On empty or malformed input.
    """
    conf, corr = _conf_correct("auroc", confidence, correct)
    if corr.min() == corr.max():
        return math.nan
    return float(skm.roc_auc_score(corr, conf))


def risk_coverage(confidence: ArrayLike, correct: ArrayLike) -> tuple[RiskCoveragePoint, ...]:
    """The risk-coverage curve: for each distinct confidence threshold, highest first, keep the verdicts at or
    above it and report the share kept (coverage) and the error rate among them (risk).

    Equal confidences cannot be separated by a threshold, so they enter the curve together; the last point has
    coverage 1.

    Raises:
        ValueError: On empty or malformed input.
    """
    conf, corr = _conf_correct("risk_coverage", confidence, correct)
    order = np.argsort(-conf, kind="stable")
    conf, wrong = conf[order], 1 - corr[order]
    n = len(conf)
    cum_wrong = np.cumsum(wrong)
    # the last index of each run of equal confidences is where a threshold can stop
    ends = np.flatnonzero(np.append(conf[1:] != conf[:-1], True))
    return tuple(RiskCoveragePoint((e + 1) / n, float(cum_wrong[e]) / (e + 1), float(conf[e])) for e in ends)


def aurc(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk-coverage curve (lower is better).

    A right-endpoint step integral, ``sum(Δcoverage * risk)`` over :func:`risk_coverage`; without tied
    confidences it equals the usual ``mean_k(errors in top k / k)``.

    Raises:
        ValueError: On empty or malformed input.
    """
    points = risk_coverage(confidence, correct)
    area, previous = 0.0, 0.0
    for point in points:
        area += (point.coverage - previous) * point.risk
        previous = point.coverage
    return area


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


class NullECE(NamedTuple):
    """The ECE a perfectly calibrated judge shows by chance (see `ece_if_calibrated`)."""

    mean: float
    p95: float
    p_value: float = math.nan


def ece_null_draws(
    confidence: ArrayLike,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    n_sim: int = 1000,
    seed: int = 0,
) -> NDArray[np.float64]:
    """``n_sim`` ECEs of a perfectly calibrated judge with exactly these confidences, at this sample size.

    Each simulation draws every verdict's correctness from Bernoulli(its confidence) - calibration holding by
    construction - and computes `ece` with the same binning. Their spread is what ECE measures on a judge that
    is honest; e.g. ``(draws <= 0.05).mean()`` is how often such a judge would meet an ECE target of 0.05.

    Raises:
        ValueError: On empty or malformed input or ``n_sim < 1``.
    """
    return _null_draws("ece_null_draws", confidence, n_bins, strategy, n_sim, seed)


def _null_draws(name: str, confidence: ArrayLike, n_bins: int, strategy: Literal["uniform", "quantile"],
                n_sim: int, seed: int) -> NDArray[np.float64]:
    conf = _probabilities(name, confidence)
    _nonempty(name, len(conf))
    if n_sim < 1:
        raise ValueError(f"{name}: n_sim must be >= 1, got {n_sim}")
    rng = np.random.default_rng(seed)
    return np.asarray([ece(conf, (rng.random(len(conf)) < conf).astype(int), n_bins=n_bins,
                           strategy=strategy).ece for _ in range(n_sim)])


def ece_if_calibrated(
    confidence: ArrayLike,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    n_sim: int = 1000,
    seed: int = 0,
    *,
    observed: float | None = None,
) -> NullECE:
    """The ECE that a perfectly calibrated judge with exactly these confidences would show at this sample size.

    The mean of `ece_null_draws` is the finite-sample floor of ECE; an observed ECE below the 95th percentile is
    indistinguishable from perfect calibration at this ``n``. Given the ``observed`` ECE of the same
    confidences, ``p_value`` tests the hypothesis that they are calibrated: the share of simulated ECEs at least
    as large, ``(k + 1) / (n_sim + 1)`` (a Monte Carlo p-value, never exactly 0); NaN without ``observed``.

    Args:
        confidence: Probability given to the predicted winner, in [0, 1].
        n_bins: Number of bins, as in `ece`.
        strategy: ``"uniform"`` or ``"quantile"``, as in `ece`.
        n_sim: Number of simulated label draws (at least 1).
        seed: Seed for ``numpy.random.default_rng``.
        observed: The ECE measured on these confidences with the same binning, to test.

    Raises:
        ValueError: On empty or malformed input, ``n_sim < 1`` or an ``observed`` ECE outside [0, 1].
    """
    if observed is not None and not 0.0 <= observed <= 1.0:
        raise ValueError(f"ece_if_calibrated: observed ECE must lie in [0, 1], got {observed}")
    draws = _null_draws("ece_if_calibrated", confidence, n_bins, strategy, n_sim, seed)
    p_value = math.nan if observed is None else float((np.sum(draws >= observed - 1e-12) + 1) / (len(draws) + 1))
    return NullECE(float(draws.mean()), float(np.quantile(draws, 0.95)), p_value)


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
