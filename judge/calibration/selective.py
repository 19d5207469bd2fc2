"""Selective judging: abstain (``escalate``) below a confidence threshold chosen with a finite-sample guarantee.

Given labelled calibration verdicts (a confidence and whether the verdict agreed with the label), a *target*
agreement (e.g. 0.90) and a risk tolerance *delta* (e.g. 0.1), :func:`choose_threshold` picks a confidence
threshold such that, over the draw of the calibration set,

    P(true agreement among verdicts with confidence >= threshold < target) <= delta,

for calibration and future rows drawn i.i.d. from the same distribution. Every candidate threshold ``t`` is a
hypothesis test of "agreement above ``t`` is below target", rejected when the one-sided Clopper-Pearson lower
bound (level ``1 - delta``) on the agreement of the kept rows reaches the target. The candidates are tested in
a fixed order, most selective first, and testing stops at the first failure (*fixed-sequence testing*, as in
Learn-then-Test); this keeps the family-wise error at ``delta`` without a multiplicity correction, whether or not
agreement is monotone in the threshold.

Verdicts below the threshold are not dropped: they become a verdict of their own, :data:`ESCALATE`, counted
in :class:`SelectiveResult` and listed by :func:`apply_threshold` (a mask) and :func:`selective_verdicts`.
The threshold is judged on data not used to choose it, either a held-out split passed to
:func:`evaluate_threshold` or cross-fitting with :func:`cross_fitted_selective`.

Caveats, stated once here:

* The candidates are the distinct calibration confidences, so the grid itself depends on the data; fixed-
  sequence testing is exact for a grid fixed in advance. Let ``t*`` be the most selective threshold whose true
  agreement is below target. Every certified error passes through a test whose kept rows are exactly those at or
  above ``t*``, so the error rate is at most ``delta`` plus the chance that fewer calibration rows than the walk
  needs to start (see below) land at or above ``t*``. That extra term is negligible unless the most confident
  verdicts are themselves worse than target; the simulations in the tests (including such a judge) stay under
  ``delta``.
* Candidates keeping too few rows are not tested at all (see :func:`choose_threshold`): a test that could not
  pass even with every kept verdict correct would otherwise end the sequence at its first step.
* Cross-fitted results describe the *procedure* (each fold gets its own threshold), not one threshold.

Edge-case convention, as in :mod:`judge.calibration.metrics`: empty or malformed input raises ``ValueError``;
a statistic that is undefined on valid input (agreement when nothing is kept, a bound on zero rows) is NaN.
Nothing here does I/O, keeps state or draws unseeded random numbers. Needs numpy and scipy.
The Clopper-Pearson bounds are in :mod:`judge.calibration.bounds` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from judge.calibration.bounds import _cp_lower, _unit_open, clopper_pearson_interval, clopper_pearson_lower

ESCALATE = "escalate"
"""The verdict recorded instead of A/tie/B when the judge abstains; escalated rows are counted, never dropped."""

__all__ = [
    "ESCALATE",
    "SelectiveResult",
    "Threshold",
    "apply_threshold",
    "choose_threshold",
    "clopper_pearson_interval",
    "clopper_pearson_lower",
    "cross_fitted_selective",
    "evaluate_threshold",
    "selective_verdicts",
]


# --------------------------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class Threshold:
    """The chosen confidence threshold and the evidence for it.

    Attributes:
        threshold: Keep verdicts with ``confidence >= threshold``; ``math.inf`` when no threshold certifies the
            target (then every verdict escalates).
        target: Target agreement (accuracy among kept verdicts), e.g. 0.90.
        delta: Risk tolerance: ``P(true agreement among kept < target) <= delta`` over calibration draws.
        n_calibration: Number of calibration rows the threshold was chosen on.
        n_kept: Calibration rows kept at the threshold (0 when not certified).
        lower_bound: One-sided Clopper-Pearson lower bound (level ``1 - delta``) on the agreement among the kept
            calibration rows; NaN when nothing is kept.
        certified: False when no threshold passes; then ``threshold`` is ``math.inf``.
    """

    threshold: float
    target: float
    delta: float
    n_calibration: int
    n_kept: int
    lower_bound: float
    certified: bool


@dataclass(frozen=True)
class SelectiveResult:
    """Coverage and agreement of a threshold applied to a set of verdicts.

    Attributes:
        coverage: Share of verdicts kept (not escalated), in [0, 1].
        agreement: Accuracy among the kept verdicts; NaN when nothing is kept.
        n: Number of verdicts.
        n_kept: Verdicts kept.
        n_escalated: Verdicts escalated; ``n_kept + n_escalated == n``.
    """

    coverage: float
    agreement: float
    n: int
    n_kept: int
    n_escalated: int


# --------------------------------------------------------------------------------------------- validation


def _confidence(name: str, confidence: ArrayLike) -> NDArray[np.float64]:
    conf = np.asarray(confidence, dtype=float)
    if conf.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d sequence of confidences, got shape {conf.shape}")
    if conf.size == 0:
        raise ValueError(f"{name}: empty input; at least one row is required")
    if not np.all((conf >= 0.0) & (conf <= 1.0)):
        raise ValueError(f"{name}: confidences must lie in [0, 1]")
    return conf


def _conf_correct(name: str, confidence: ArrayLike, correct: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
    conf = _confidence(name, confidence)
    corr = np.asarray(correct)
    if corr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d sequence of 0/1 values, got shape {corr.shape}")
    if len(corr) != len(conf):
        raise ValueError(f"{name}: inputs have different lengths {sorted({len(conf), len(corr)})}")
    if not np.all((corr == 0) | (corr == 1)):
        raise ValueError(f"{name}: correct values must be 0/1 (or bool)")
    return conf, corr.astype(int)


def _threshold_value(name: str, threshold: float) -> float:
    value = float(threshold)
    if math.isnan(value):
        raise ValueError(f"{name}: threshold must not be NaN")
    return value


# --------------------------------------------------------------------------------------------- choosing


def choose_threshold(
    confidence: ArrayLike,
    correct: ArrayLike,
    target: float = 0.9,
    delta: float = 0.1,
    min_kept: int = 1,
    resolution: float | None = 0.01,
) -> Threshold:
    """Choose the lowest confidence threshold whose agreement is certified at ``target`` by fixed-sequence testing.

    Candidate thresholds lie on a grid fixed in advance (multiples of ``resolution``; with ``None``, the distinct
    confidences themselves), highest (most selective) first; a candidate ``t`` keeps
    the rows with ``confidence >= t``. Walking down the candidates, a test *passes* when the Clopper-Pearson
    lower bound (:func:`clopper_pearson_lower`, level ``1 - delta``) on the kept rows' agreement is
    ``>= target``; the walk stops at the first failure and returns the lowest candidate that passed before it.
    A passing candidate further down, after a failure, is never used (that would be best-of selection, which
    needs a multiplicity correction).

    The walk starts at the first candidate keeping at least ``max(min_kept, m)`` rows, where ``m`` is the
    fewest kept rows for which the test *can* pass (``delta ** (1 / m) >= target``: 22 for target 0.9 and
    delta 0.1). Candidates above the start are not tested: they neither pass nor end the walk. The start depends
    only on the count of kept rows, never on their correctness. Without this, continuous confidences would put a
    one-row candidate first and the walk would always fail at once.

    Args:
        confidence: Confidence of each calibration verdict, in [0, 1].
        correct: 1/0 (or bool) whether each calibration verdict agreed with its label.
        target: Target agreement among kept verdicts, in (0, 1).
        delta: Risk tolerance, in (0, 1): the chance that the returned threshold's true agreement is below
            ``target`` is at most ``delta``.
        min_kept: Fewest kept calibration rows a candidate needs to be tested (at least 1).
        resolution: Step of the threshold grid. A fixed grid keeps the walk exact (the candidates do not depend
            on the data), gives it fewer chances to stop early, and ignores float noise between confidences
            that are equal in substance (``p`` vs ``1 - (1 - p)``).

    Returns:
        A :class:`Threshold`. When the first tested candidate fails, or no candidate keeps enough rows, it is
        uncertified: ``threshold`` is ``math.inf``, ``n_kept`` is 0 and ``lower_bound`` is NaN.

    Raises:
        ValueError: On empty input, different lengths, confidences outside [0, 1], ``correct`` values other than
            0/1, ``target`` or ``delta`` outside (0, 1), or ``min_kept < 1``.
    """
    name = "choose_threshold"
    conf, corr = _conf_correct(name, confidence, correct)
    target = _unit_open(name, "target", target)
    delta = _unit_open(name, "delta", delta)
    if isinstance(min_kept, bool) or not isinstance(min_kept, int | np.integer) or min_kept < 1:
        raise ValueError(f"{name}: min_kept must be an integer >= 1, got {min_kept!r}")
    n = len(conf)
    if resolution is not None:
        if not 0.0 < resolution <= 1.0:
            raise ValueError(f"{name}: resolution must lie in (0, 1], got {resolution!r}")
        # each row's grid point: the largest multiple of the step not above it (kept by t <=> conf >= t)
        conf = np.round(np.floor(conf / resolution + 1e-9) * resolution, 10)

    # distinct (grid) confidences, highest first, with the rows and correct rows kept at each
    values, inverse = np.unique(conf, return_inverse=True)
    per_value_n = np.bincount(inverse, minlength=len(values))
    per_value_k = np.bincount(inverse, weights=corr, minlength=len(values)).astype(int)
    candidates = values[::-1]
    n_kept = np.cumsum(per_value_n[::-1])
    k_kept = np.cumsum(per_value_k[::-1])

    bounds = _cp_lower(k_kept, n_kept, delta)
    feasible = _cp_lower(n_kept, n_kept, delta) >= target  # could pass with every kept verdict correct
    tested = feasible & (n_kept >= min_kept)  # a suffix: both conditions are monotone in n_kept

    uncertified = Threshold(math.inf, target, delta, n, 0, math.nan, False)
    if not tested.any():
        return uncertified
    start = int(np.argmax(tested))
    failures = np.flatnonzero(bounds[start:] < target)
    passed_until = (start + int(failures[0]) if failures.size else len(candidates)) - 1
    if passed_until < start:
        return uncertified
    return Threshold(
        threshold=float(candidates[passed_until]),
        target=target,
        delta=delta,
        n_calibration=n,
        n_kept=int(n_kept[passed_until]),
        lower_bound=float(bounds[passed_until]),
        certified=True,
    )


# --------------------------------------------------------------------------------------------- applying


def apply_threshold(confidence: ArrayLike, threshold: float) -> NDArray[np.bool_]:
    """Which verdicts to keep at a threshold.

    Args:
        confidence: Confidence of each verdict, in [0, 1].
        threshold: Keep verdicts with ``confidence >= threshold``; ``math.inf`` keeps none.

    Returns:
        A boolean mask, True = keep the verdict, False = escalate (abstain).

    Raises:
        ValueError: On empty input, confidences outside [0, 1], or a NaN threshold.
    """
    conf = _confidence("apply_threshold", confidence)
    return conf >= _threshold_value("apply_threshold", threshold)


def selective_verdicts(pred: Sequence[str], confidence: ArrayLike, threshold: float) -> list[str]:
    """The verdicts with every abstention written out as :data:`ESCALATE`, one per input row, in input order.

    Args:
        pred: The judge's verdicts (e.g. ``"A"``, ``"tie"``, ``"B"``).
        confidence: Confidence of each verdict, in [0, 1].
        threshold: Keep verdicts with ``confidence >= threshold``.

    Returns:
        ``pred[i]`` where the verdict is kept and ``"escalate"`` where it is not.

    Raises:
        ValueError: On empty input, different lengths, confidences outside [0, 1], or a NaN threshold.
    """
    keep = apply_threshold(confidence, threshold)
    if len(pred) != len(keep):
        raise ValueError(f"selective_verdicts: inputs have different lengths {sorted({len(pred), len(keep)})}")
    return [str(p) if k else ESCALATE for p, k in zip(pred, keep, strict=True)]


def _result(n: int, n_kept: int, n_correct_kept: int) -> SelectiveResult:
    return SelectiveResult(
        coverage=n_kept / n,
        agreement=n_correct_kept / n_kept if n_kept else math.nan,
        n=n,
        n_kept=n_kept,
        n_escalated=n - n_kept,
    )


def evaluate_threshold(confidence: ArrayLike, correct: ArrayLike, threshold: float) -> SelectiveResult:
    """Coverage and agreement of a threshold on labelled verdicts (use rows it was *not* chosen on).

    Args:
        confidence: Confidence of each verdict, in [0, 1].
        correct: 1/0 (or bool) whether each verdict agreed with its label.
        threshold: Keep verdicts with ``confidence >= threshold``; ``math.inf`` escalates all.

    Returns:
        A :class:`SelectiveResult`; ``agreement`` is NaN when nothing is kept.

    Raises:
        ValueError: On empty input, different lengths, confidences outside [0, 1], ``correct`` values other than
            0/1, or a NaN threshold.
    """
    conf, corr = _conf_correct("evaluate_threshold", confidence, correct)
    keep = conf >= _threshold_value("evaluate_threshold", threshold)
    return _result(len(conf), int(keep.sum()), int(corr[keep].sum()))


def cross_fitted_selective(
    confidence: ArrayLike,
    correct: ArrayLike,
    target: float = 0.9,
    delta: float = 0.1,
    n_folds: int = 5,
    seed: int = 0,
    min_kept: int = 1,
) -> tuple[SelectiveResult, list[Threshold]]:
    """Held-out coverage and agreement of :func:`choose_threshold` by k-fold cross-fitting.

    Rows are shuffled with ``numpy.random.default_rng(seed).permutation`` and split into ``n_folds`` folds whose
    sizes differ by at most one. Each fold's threshold is chosen on the other folds and applied to that fold;
    the held-out counts are pooled. Every row is scored exactly once, by a threshold that never saw it. The
    result describes the selection *procedure*: each fold has its own threshold, and the pooled agreement is an
    estimate, not a guarantee.

    Args:
        confidence: Confidence of each verdict, in [0, 1].
        correct: 1/0 (or bool) whether each verdict agreed with its label.
        target: Target agreement, in (0, 1).
        delta: Risk tolerance, in (0, 1).
        n_folds: Number of folds, at least 2.
        seed: Seed for the fold assignment.
        min_kept: Passed on to :func:`choose_threshold`.

    Returns:
        ``(pooled, thresholds)``: the pooled held-out :class:`SelectiveResult` (its ``n`` is the number of rows)
        and the per-fold :class:`Threshold` list, fold order.

    Raises:
        ValueError: On malformed input as :func:`choose_threshold`, ``n_folds < 2``, or fewer rows than folds.
    """
    name = "cross_fitted_selective"
    conf, corr = _conf_correct(name, confidence, correct)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ValueError(f"{name}: n_folds must be an integer >= 2, got {n_folds!r}")
    n = len(conf)
    if n < n_folds:
        raise ValueError(f"{name}: need at least n_folds={n_folds} rows, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    thresholds: list[Threshold] = []
    total_kept = total_correct = 0
    for held_out in np.array_split(order, int(n_folds)):
        fit = np.ones(n, dtype=bool)
        fit[held_out] = False
        chosen = choose_threshold(conf[fit], corr[fit], target=target, delta=delta, min_kept=min_kept)
        thresholds.append(chosen)
        keep = conf[held_out] >= chosen.threshold
        total_kept += int(keep.sum())
        total_correct += int(corr[held_out][keep].sum())
    return _result(n, total_kept, total_correct), thresholds
