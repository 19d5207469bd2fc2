"""Selective-prediction metrics: how well a verdict's confidence ranks right verdicts above wrong ones.

Errors above a confidence threshold, AUROC of confidence for correctness, the risk-coverage curve and its area
(AURC). Pure functions over plain arrays, under the conventions of :mod:`judge.calibration.metrics`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from judge.calibration.inputs import _conf_correct

__all__ = ["HighConfidenceErrors", "RiskCoveragePoint", "aurc", "auroc", "risk_coverage", "wrong_at_high_confidence"]


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

