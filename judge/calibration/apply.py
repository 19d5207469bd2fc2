"""Apply a fitted calibrator (and an abstention threshold) to verdicts as they are made."""

from __future__ import annotations

from judge.calibration.recalibrate import Calibrator
from judge.calibration.signals import signals_from_verdicts
from judge.judging.pairwise import Distribution
from judge.judging.verdict import Verdict
from judge.rules.model import Pair

__all__ = ["calibrate_verdict", "mark_escalated"]


def calibrate_verdict(verdict: Verdict, calibrator: Calibrator, pair: Pair) -> Verdict:
    """The verdict with calibrated probabilities; the judge's own are kept in ``raw_probabilities``.

    A failed verdict is returned unchanged (it has no probabilities). Compatibility of the calibrator with the
    judge configuration is checked once, when the judge is built (:func:`~judge.calibration.recalibrate.
    check_compatible`), not here.
    """
    if verdict.failure is not None or verdict.probabilities is None:
        return verdict
    table = signals_from_verdicts([verdict], [(len(pair.response_a.text), len(pair.response_b.text))])
    a, tie, b = (float(x) for x in calibrator.predict(table)[0])
    total = a + tie + b
    dist = Distribution(a=a / total, tie=tie / total, b=b / total)
    return verdict.model_copy(update={"raw_probabilities": verdict.probabilities, "probabilities": dist,
                                      "winner": dist.winner, "calibrator": calibrator.id})


def mark_escalated(verdict: Verdict, threshold: float) -> Verdict:
    """Flag the verdict ``escalated`` when its confidence is below ``threshold`` (failures stay failures)."""
    if verdict.failure is not None or verdict.confidence is None:
        return verdict
    return verdict.model_copy(update={"escalated": verdict.confidence < threshold})
