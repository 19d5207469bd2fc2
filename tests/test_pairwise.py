"""Reading verdict distributions from logprobs, swapping orders back, combining, slot-bias correction."""

from __future__ import annotations

import math

import pytest

from judge.judging.pairwise import (
    VerdictTokenError,
    combine,
    correct_slot_bias,
    distribution_from_top_logprobs,
    slot_bias,
    swap,
)
from judge.verdicts import Distribution


def lp(p: float) -> float:
    return math.log(p)


def test_distribution_renormalises_over_answer_tokens() -> None:
    dist, mass = distribution_from_top_logprobs([("A", lp(0.6)), ("B", lp(0.2)), ("T", lp(0.1)), ("The", lp(0.1))])
    assert mass == pytest.approx(0.9)
    assert (dist.a, dist.tie, dist.b) == pytest.approx((0.6 / 0.9, 0.1 / 0.9, 0.2 / 0.9))
    assert dist.winner == "A"


def test_token_variants_are_merged() -> None:
    dist, _ = distribution_from_top_logprobs([(" A", lp(0.5)), ("**B", lp(0.25)), ("B", lp(0.25))])
    assert (dist.a, dist.b) == pytest.approx((0.5, 0.5))
    assert dist.winner == "tie"  # an exact split is not a win for either


def test_tie_tokens_ignored_when_ties_not_allowed() -> None:
    dist, mass = distribution_from_top_logprobs([("A", lp(0.3)), ("T", lp(0.4)), ("B", lp(0.3))], allow_tie=False)
    assert dist.tie == 0.0 and mass == pytest.approx(0.6)


def test_reply_without_answer_token_is_an_error_not_a_score() -> None:
    with pytest.raises(VerdictTokenError, match="top tokens"):
        distribution_from_top_logprobs([("Sure", lp(0.9)), ("A", lp(0.05))])


def test_swap_maps_second_order_back() -> None:
    assert swap(Distribution(a=0.7, tie=0.1, b=0.2)) == Distribution(a=0.2, tie=0.1, b=0.7)


def test_combine_averages_and_flags_disagreement_without_forcing_a_tie() -> None:
    # Order 1 (A shown first) says A 0.9; order 2 (B shown first, mapped back) says B 0.6.
    combined = combine(Distribution(a=0.9, tie=0.0, b=0.1), Distribution(a=0.4, tie=0.0, b=0.6))
    assert combined.position_inconsistent
    assert combined.distribution.winner == "A"
    assert combined.distribution.a == pytest.approx(0.65)


def test_combine_consistent_orders() -> None:
    combined = combine(Distribution(a=0.2, tie=0.0, b=0.8), Distribution(a=0.3, tie=0.0, b=0.7))
    assert not combined.position_inconsistent and combined.distribution.winner == "B"


def test_slot_bias_is_zero_for_an_unbiased_judge_and_positive_for_slot_a_lovers() -> None:
    assert slot_bias([0.7, 0.3, 0.6, 0.4]) == pytest.approx(0.0, abs=1e-9)
    assert slot_bias([0.9, 0.8, 0.85]) > 1.0
    assert slot_bias([]) == 0.0


def test_correct_slot_bias_removes_the_mean_preference() -> None:
    bias = math.log(0.8 / 0.2)
    corrected = correct_slot_bias(Distribution(a=0.8, tie=0.0, b=0.2), bias, shown_first="A")
    assert corrected.a == pytest.approx(0.5)
    # In the swapped order the first slot holds B.
    corrected_b = correct_slot_bias(Distribution(a=0.2, tie=0.0, b=0.8), bias, shown_first="B")
    assert corrected_b.b == pytest.approx(0.5)


def test_distribution_validates() -> None:
    with pytest.raises(ValueError):
        Distribution(a=0.5, tie=0.0, b=0.6)


def test_correct_batch_removes_a_constant_slot_preference() -> None:
    from judge.judging.prompts import TEMPLATE_VERSION
    from judge.judging.slot import correct_batch
    from judge.verdicts import JudgeConfig, OrderResult, Verdict

    config = JudgeConfig(backend="fake", model="m", template_version=TEMPLATE_VERSION)

    def order(first: str, p_first: float) -> OrderResult:
        d = Distribution(a=p_first, tie=0.0, b=1 - p_first) if first == "A" else \
            Distribution(a=1 - p_first, tie=0.0, b=p_first)
        return OrderResult(shown_first=first, distribution=d, answer_mass=1.0, top_logprobs=[],
                           prompt_tokens=1, completion_tokens=1, latency_s=0.0)

    # Truth: A better in pair 1 (judge: 0.9 first slot when A first, 0.6 when B first), B better in pair 2.
    verdicts = []
    for pid, (pa, pb) in {"1": (0.9, 0.6), "2": (0.6, 0.9)}.items():
        orders = [order("A", pa), order("B", pb)]
        avg = combine(orders[0].distribution, orders[1].distribution)
        verdicts.append(Verdict(pair_id=pid, winner=avg.distribution.winner, probabilities=avg.distribution,
                                orders=orders, position_inconsistent=avg.position_inconsistent, config=config,
                                cache_key="k"))
    fixed, bias = correct_batch(verdicts)
    assert bias > 0.5
    assert [v.winner for v in fixed] == ["A", "B"]
    assert all(v.position_inconsistent is False and v.slot_bias == bias for v in fixed)
