"""The label-free slot-preference correction over a batch of verdicts judged in both orders.

Over a batch judged in both orders, every response sits first as often as second, so an unbiased judge's
mean log-odds for "the first-shown response wins" is 0. The embedded 1.5B model's is far above 0 (it
prefers slot A). `correct_batch` estimates that bias from the batch itself (no labels), subtracts it from
each order, and re-combines. Raw figures stay in ``orders``; the corrected verdict records the bias.
"""

from __future__ import annotations

from collections.abc import Sequence

from judge.judging.pairwise import combine, correct_slot_bias, slot_bias
from judge.verdicts import Distribution, Verdict

__all__ = ["batch_slot_bias", "correct_batch"]


def batch_slot_bias(verdicts: Sequence[Verdict]) -> float:
    """Mean log-odds that the first-shown response wins, over every order of every successful verdict."""
    firsts: list[float] = []
    for v in verdicts:
        if v.failure is not None:
            continue
        for o in v.orders:
            d = o.distribution
            first, second = (d.a, d.b) if o.shown_first == "A" else (d.b, d.a)
            if first + second > 0:
                firsts.append(first / (first + second))
    return slot_bias(firsts)


def correct_batch(verdicts: Sequence[Verdict], bias: float | None = None) -> tuple[list[Verdict], float]:
    """Verdicts with the slot bias removed from each order and the orders re-combined.

    Args:
        verdicts: results of one judge configuration (failures pass through unchanged).
        bias: a bias estimated elsewhere (e.g. on a larger batch); default: estimated from `verdicts`.

    Returns:
        The corrected verdicts (``slot_bias`` set on each) and the bias used.
    """
    bias = batch_slot_bias(verdicts) if bias is None else bias
    out: list[Verdict] = []
    for v in verdicts:
        if v.failure is not None or not v.orders:
            out.append(v)
            continue
        fixed = [correct_slot_bias(o.distribution, bias, shown_first=o.shown_first) for o in v.orders]
        if len(fixed) == 2:
            combined = combine(fixed[0], fixed[1])
            dist: Distribution = combined.distribution
            inconsistent: bool | None = combined.position_inconsistent
        else:
            dist, inconsistent = fixed[0], None
        out.append(v.model_copy(update={"probabilities": dist, "winner": dist.winner,
                                        "position_inconsistent": inconsistent, "slot_bias": bias}))
    return out, bias
