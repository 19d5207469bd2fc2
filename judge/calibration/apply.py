"""Apply a fitted calibrator (and an abstention threshold) to verdicts as they are made, and check a judged batch
against the calibrator's data (the shift alarm) once the batch is complete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from judge.calibration.recalibrate import Calibrator
from judge.calibration.shift import DEFAULT_ALPHA, ShiftReport, shift_test
from judge.calibration.signals import raw_view, signals_from_verdicts
from judge.rules.model import Pair
from judge.verdicts import Distribution, Verdict

__all__ = ["batch_shift", "calibrate_verdict", "escalate_uncalibrated", "mark_escalated"]


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
    return verdict.model_copy(update={"escalated": verdict.confidence < threshold, "escalate_below": threshold})


def escalate_uncalibrated(verdict: Verdict, threshold: float) -> Verdict:
    """The uncalibrated rule, for a batch the calibrator's guarantee does not cover: escalate when the judge's
    *own* confidence (its raw probabilities, not the calibrated ones) is below ``threshold``."""
    if verdict.failure is not None or verdict.probabilities is None:
        return verdict
    raw = verdict.raw_probabilities or verdict.probabilities
    return verdict.model_copy(update={"escalated": max(raw.a, raw.tie, raw.b) < threshold,
                                      "escalate_below": threshold})


def batch_shift(calibrator: Calibrator, verdicts: Sequence[Verdict], lengths: Mapping[str, tuple[int, int]], *,
                alpha: float = DEFAULT_ALPHA) -> ShiftReport:
    """The shift alarm on a judged batch: its verdicts' raw signals against the calibrator's reference sample.

    Failed verdicts and precedent-bound ones (which the calibrator does not touch) are left out.

    Args:
        calibrator: The calibrator applied to the batch.
        verdicts: The batch's verdicts (calibrated or not).
        lengths: ``(len(response_a), len(response_b))`` by pair id.
        alpha: Family-wise false-alarm level.
    """
    scored = [raw_view(v) for v in verdicts
              if v.failure is None and v.probabilities is not None and v.precedent is None and v.pair_id in lengths]
    table = signals_from_verdicts(scored, [lengths[v.pair_id or ""] for v in scored])
    return shift_test(calibrator.reference, table, alpha=alpha)
