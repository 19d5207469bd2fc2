"""Expected calibration error with its reliability table, and the ECE a calibrated judge shows by chance.

Pure functions over plain arrays, under the conventions of :mod:`judge.calibration.metrics`; the null draws
take their seed explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from judge.calibration.inputs import _conf_correct, _nonempty, _probabilities

__all__ = ["CalibrationError", "NullECE", "ReliabilityBin", "ece", "ece_if_calibrated", "ece_null_draws"]


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

