"""Unit tests for judge.calibration.selective: exact bounds, the fixed-sequence walk, escalation, and the guarantee
on simulated judges across many seeds."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest

from judge.calibration.selective import (
    ESCALATE,
    SelectiveResult,
    Threshold,
    apply_threshold,
    choose_threshold,
    clopper_pearson_interval,
    clopper_pearson_lower,
    cross_fitted_selective,
    evaluate_threshold,
    selective_verdicts,
)

# ------------------------------------------------------------------------------------------------ Clopper-Pearson


def test_clopper_pearson_all_correct_is_delta_root() -> None:
    # k == n: the bound solves L**n = delta
    assert clopper_pearson_lower(22, 22, 0.1) == pytest.approx(0.1 ** (1 / 22))
    assert clopper_pearson_lower(22, 22, 0.1) == pytest.approx(0.900628, abs=1e-6)
    assert clopper_pearson_lower(21, 21, 0.1) == pytest.approx(0.896151, abs=1e-6)  # just under 0.9
    assert clopper_pearson_lower(1, 1, 0.05) == pytest.approx(0.05)


def test_clopper_pearson_one_success_closed_form() -> None:
    # k == 1: P(Bin(n, L) >= 1) = 1 - (1 - L)**n = delta  ->  L = 1 - (1 - delta)**(1/n)
    assert clopper_pearson_lower(1, 2, 0.1) == pytest.approx(1 - math.sqrt(0.9))
    assert clopper_pearson_lower(1, 10, 0.2) == pytest.approx(1 - 0.8 ** (1 / 10))


def test_clopper_pearson_edges() -> None:
    assert clopper_pearson_lower(0, 10, 0.1) == 0.0
    assert math.isnan(clopper_pearson_lower(0, 0, 0.1))
    assert clopper_pearson_lower(np.int64(3), np.int64(4), 0.1) == clopper_pearson_lower(3, 4, 0.1)


@pytest.mark.parametrize(("k", "n", "delta"), [(1, 5, 0.1), (7, 10, 0.05), (45, 50, 0.1), (180, 200, 0.2), (3, 3, 0.3)])
def test_clopper_pearson_matches_scipy_two_sided_exact(k: int, n: int, delta: float) -> None:
    # the one-sided bound at 1 - delta is the low end of the two-sided exact interval at 1 - 2 * delta
    expected = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * delta, method="exact").low
    assert clopper_pearson_lower(k, n, delta) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("k", "n"), [(0, 7), (1, 5), (33, 300), (299, 300), (12, 12)])
def test_the_two_sided_interval_is_scipys_exact_interval(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    low, high = clopper_pearson_interval(k, n)
    assert (low, high) == (pytest.approx(expected.low, abs=1e-12), pytest.approx(expected.high, abs=1e-12))
    assert all(math.isnan(x) for x in clopper_pearson_interval(0, 0))


@pytest.mark.parametrize(
    ("k", "n", "delta"),
    [(3, 2, 0.1), (-1, 2, 0.1), (1, -1, 0.1), (1.5, 2, 0.1), (True, 2, 0.1), (1, 2, 0.0), (1, 2, 1.0)],
)
def test_clopper_pearson_rejects_bad_arguments(k: Any, n: Any, delta: float) -> None:
    with pytest.raises(ValueError):
        clopper_pearson_lower(k, n, delta)


# ------------------------------------------------------------------------------------------------ choose_threshold

# 3 rows at 0.99 (too few to test at target 0.9 / delta 0.1, which needs >= 22 kept rows), 22 correct at 0.95,
# 10 wrong at 0.80, 5 correct at 0.60
HAND_CONF = [0.99] * 3 + [0.95] * 22 + [0.80] * 10 + [0.60] * 5
HAND_CORRECT = [1] * 3 + [1] * 22 + [0] * 10 + [1] * 5


def test_choose_threshold_hand_made() -> None:
    # 0.99 keeps 3 rows: not tested. 0.95 keeps 25, all correct: bound 0.1**(1/25) = 0.912 >= 0.9, passes.
    # 0.80 keeps 35 with 25 correct: fails, the walk stops. Answer 0.95.
    chosen = choose_threshold(HAND_CONF, HAND_CORRECT, target=0.9, delta=0.1)
    assert chosen == Threshold(
        threshold=0.95,
        target=0.9,
        delta=0.1,
        n_calibration=40,
        n_kept=25,
        lower_bound=pytest.approx(0.1 ** (1 / 25)),
        certified=True,
    )


def test_choose_threshold_does_not_depend_on_row_order() -> None:
    order = np.random.default_rng(0).permutation(len(HAND_CONF))
    shuffled = choose_threshold(np.array(HAND_CONF)[order], np.array(HAND_CORRECT)[order], target=0.9, delta=0.1)
    assert shuffled == choose_threshold(HAND_CONF, HAND_CORRECT, target=0.9, delta=0.1)


def test_choose_threshold_stops_at_first_failure_not_best_of() -> None:
    # 0.9: 22/22 passes; 0.8: 22/25 fails; 0.7 would pass on its own (222/225) but comes after the failure
    conf = [0.9] * 22 + [0.8] * 3 + [0.7] * 200
    correct = [1] * 22 + [0] * 3 + [1] * 200
    assert clopper_pearson_lower(22, 25, 0.1) < 0.9 <= clopper_pearson_lower(222, 225, 0.1)
    chosen = choose_threshold(conf, correct, target=0.9, delta=0.1)
    assert (chosen.threshold, chosen.n_kept, chosen.certified) == (0.9, 22, True)
    # without the failing step the walk goes all the way down
    rest = choose_threshold(conf[:22] + conf[25:], correct[:22] + correct[25:], target=0.9, delta=0.1)
    assert (rest.threshold, rest.n_kept) == (0.7, 222)


def test_choose_threshold_all_pass_keeps_everything() -> None:
    conf = np.linspace(0.6, 1.0, 30)
    chosen = choose_threshold(conf, np.ones(30, dtype=bool), target=0.9, delta=0.1)
    assert (chosen.threshold, chosen.n_kept, chosen.certified) == (pytest.approx(0.6), 30, True)
    assert chosen.lower_bound == pytest.approx(0.1 ** (1 / 30))
    assert apply_threshold(conf, chosen.threshold).all()


def test_choose_threshold_tied_confidences_enter_together() -> None:
    # 30 rows all at 0.8, 28 correct: a threshold cannot split them
    chosen = choose_threshold([0.8] * 30, [1] * 28 + [0] * 2, target=0.8, delta=0.1)
    assert (chosen.threshold, chosen.n_kept) == (0.8, 30)
    assert chosen.lower_bound == pytest.approx(clopper_pearson_lower(28, 30, 0.1))


def test_min_kept_moves_the_start_of_the_walk() -> None:
    # with min_kept=30 the first tested candidate is 0.80 (35 kept, 25 correct), which fails
    chosen = choose_threshold(HAND_CONF, HAND_CORRECT, target=0.9, delta=0.1, min_kept=30)
    assert not chosen.certified and chosen.threshold == math.inf
    # min_kept below the informative count changes nothing
    assert choose_threshold(HAND_CONF, HAND_CORRECT, target=0.9, delta=0.1, min_kept=5).threshold == 0.95


def test_result_is_consistent_with_its_own_threshold() -> None:
    rng = np.random.default_rng(7)
    conf = rng.uniform(0.5, 1.0, 400)
    correct = rng.random(400) < conf
    chosen = choose_threshold(conf, correct, target=0.8, delta=0.1)
    assert chosen.certified
    keep = apply_threshold(conf, chosen.threshold)
    assert chosen.n_kept == int(keep.sum())
    assert chosen.lower_bound == pytest.approx(clopper_pearson_lower(int(correct[keep].sum()), chosen.n_kept, 0.1))
    assert chosen.lower_bound >= 0.8
    assert chosen.threshold == pytest.approx(round(chosen.threshold, 2))  # a point of the fixed 0.01 grid
    exact = choose_threshold(conf, correct, target=0.8, delta=0.1, resolution=None)
    assert exact.threshold in set(conf.tolist())  # without a grid: one of the confidences


def test_the_grid_ignores_float_noise_between_equal_confidences() -> None:
    # the same confidence computed two ways (p vs 1 - (1 - p)) can differ in the last bit; tested apart, the
    # slightly higher group alone would be tested first and end the walk
    p = 0.696
    conf = np.array([p] * 90 + [float(np.nextafter(p, 0.0))] * 90)
    correct = np.array([1] * 50 + [0] * 40 + [1] * 80 + [0] * 10)
    assert not choose_threshold(conf, correct, target=0.6, delta=0.1, resolution=None).certified
    chosen = choose_threshold(conf, correct, target=0.6, delta=0.1)
    assert chosen.certified and chosen.n_kept == 180 and chosen.threshold == pytest.approx(0.69)


# ------------------------------------------------------------------------------------------------ escalation


def _assert_everything_escalates(chosen: Threshold, conf: list[float], correct: list[int]) -> None:
    n = len(conf)
    assert not chosen.certified
    assert chosen.threshold == math.inf
    assert chosen.n_kept == 0 and math.isnan(chosen.lower_bound) and chosen.n_calibration == n
    assert not apply_threshold(conf, chosen.threshold).any()
    result = evaluate_threshold(conf, correct, chosen.threshold)
    assert (result.coverage, result.n, result.n_kept, result.n_escalated) == (0.0, n, 0, n)
    assert math.isnan(result.agreement)
    assert selective_verdicts(["A"] * n, conf, chosen.threshold) == [ESCALATE] * n


def test_uncertified_when_the_first_test_fails() -> None:
    conf, correct = [0.9] * 40, [1, 0] * 20
    _assert_everything_escalates(choose_threshold(conf, correct, target=0.9, delta=0.1), conf, correct)


def test_uncertified_when_too_few_rows_to_reach_target() -> None:
    conf, correct = [0.99] * 21, [1] * 21  # 0.1**(1/21) < 0.9 even with every verdict right
    _assert_everything_escalates(choose_threshold(conf, correct, target=0.9, delta=0.1), conf, correct)


def test_evaluate_threshold_hand_computed() -> None:
    conf, correct = [0.2, 0.5, 0.8, 0.9], [1, 0, 1, 0]
    assert evaluate_threshold(conf, correct, 0.5) == SelectiveResult(0.75, pytest.approx(1 / 3), 4, 3, 1)
    assert evaluate_threshold(conf, correct, 0.0) == SelectiveResult(1.0, 0.5, 4, 4, 0)
    assert evaluate_threshold(conf, correct, 0.95).n_escalated == 4


def test_selective_verdicts_lists_escalations_in_place() -> None:
    assert ESCALATE == "escalate"
    got = selective_verdicts(["A", "tie", "B", "A"], [0.95, 0.6, 0.7, 0.99], 0.7)
    assert got == ["A", ESCALATE, "B", "A"]


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("conf", "correct", "kwargs", "match"),
    [
        ([], [], {}, "empty"),
        ([0.5, 0.6], [1], {}, "different lengths"),
        ([0.5, 1.2], [1, 0], {}, r"\[0, 1\]"),
        ([0.5, math.nan], [1, 0], {}, r"\[0, 1\]"),
        ([0.5, 0.6], [1, 2], {}, "0/1"),
        ([[0.5, 0.6]], [[1, 0]], {}, "1-d"),
        ([0.5], [1], {"target": 1.0}, "target"),
        ([0.5], [1], {"target": 0.0}, "target"),
        ([0.5], [1], {"delta": 0.0}, "delta"),
        ([0.5], [1], {"delta": 1.0}, "delta"),
        ([0.5], [1], {"min_kept": 0}, "min_kept"),
        ([0.5], [1], {"min_kept": 2.5}, "min_kept"),
    ],
)
def test_choose_threshold_rejects_bad_input(conf: Any, correct: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        choose_threshold(conf, correct, **kwargs)


def test_apply_and_evaluate_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        apply_threshold([], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        apply_threshold([0.5], math.nan)
    with pytest.raises(ValueError, match="different lengths"):
        evaluate_threshold([0.5, 0.6], [1], 0.5)
    with pytest.raises(ValueError, match="different lengths"):
        selective_verdicts(["A"], [0.5, 0.6], 0.5)


def test_cross_fitted_rejects_too_few_rows_or_folds() -> None:
    with pytest.raises(ValueError, match="n_folds"):
        cross_fitted_selective([0.5, 0.6, 0.7], [1, 1, 0], n_folds=5)
    with pytest.raises(ValueError, match="n_folds"):
        cross_fitted_selective([0.5, 0.6, 0.7], [1, 1, 0], n_folds=1)


# ------------------------------------------------------------------------------------------------ the guarantee
#
# Confidence ~ U(0.5, 1) and P(correct | confidence = c) = g(c). Keeping confidence >= t, the TRUE agreement is
# the mean of g over [t, 1], computed in closed form below. Over many seeds, the share of calibration sets whose
# chosen threshold has true agreement below target must stay at or under delta (plus Monte Carlo slack: the
# standard error of a share near 0.1 over 300 seeds is about 0.017).

N_CAL, TARGET, DELTA, SEEDS = 500, 0.85, 0.1, 300


def _true_agreement_calibrated(t: np.ndarray) -> np.ndarray:
    return (1.0 + t) / 2.0  # g(c) = c


def _true_agreement_overconfident(t: np.ndarray) -> np.ndarray:
    return 0.5 + 0.45 * t  # g(c) = 0.5 + 0.9 (c - 0.5): stated confidence overshoots


def _true_agreement_bad_top(t: np.ndarray) -> np.ndarray:
    # g(c) = c, except 0.75 above 0.97: the most confident verdicts are the least reliable (not monotone)
    below = np.minimum(t, 0.97)
    mass = (0.97**2 - below**2) / 2.0 + 0.75 * (1.0 - np.maximum(t, 0.97))
    return mass / (1.0 - t)


def _g_calibrated(c: np.ndarray) -> np.ndarray:
    return c


def _g_overconfident(c: np.ndarray) -> np.ndarray:
    return 0.5 + 0.9 * (c - 0.5)


def _g_bad_top(c: np.ndarray) -> np.ndarray:
    return np.where(c > 0.97, 0.75, c)


def _simulate(g: Callable[[np.ndarray], np.ndarray], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.5, 1.0, N_CAL)
    return conf, (rng.random(N_CAL) < g(conf)).astype(int)


def _guarantee_run(
    g: Callable[[np.ndarray], np.ndarray], truth: Callable[[np.ndarray], np.ndarray], min_kept: int = 1
) -> tuple[float, float]:
    """(share of seeds whose chosen threshold's true agreement is below target, mean true coverage)."""
    thresholds = np.array(
        [
            choose_threshold(*_simulate(g, seed), target=TARGET, delta=DELTA, min_kept=min_kept).threshold
            for seed in range(SEEDS)
        ]
    )
    certified = np.isfinite(thresholds)
    agreement = truth(thresholds[certified])
    coverage = np.zeros(SEEDS)
    coverage[certified] = (1.0 - thresholds[certified]) / 0.5
    # an uncertified run escalates everything: nothing is kept, so nothing violates the target
    return float(np.sum(agreement < TARGET)) / SEEDS, float(coverage.mean())


def test_true_agreement_formulas_match_a_fresh_sample() -> None:
    rng = np.random.default_rng(99)
    conf = rng.uniform(0.5, 1.0, 200_000)
    for g, truth in [
        (_g_calibrated, _true_agreement_calibrated),
        (_g_overconfident, _true_agreement_overconfident),
        (_g_bad_top, _true_agreement_bad_top),
    ]:
        for t in (0.6, 0.8, 0.96, 0.98):
            assert truth(np.array([t]))[0] == pytest.approx(g(conf[conf >= t]).mean(), abs=2e-3)


def test_guarantee_holds_for_a_calibrated_judge() -> None:
    violation, coverage = _guarantee_run(_g_calibrated, _true_agreement_calibrated)
    assert violation <= DELTA + 0.03
    # the oracle keeps 60% (agreement (1 + t) / 2 = 0.85 at t = 0.7); the certified threshold keeps a fair share
    assert coverage > 0.25


def test_guarantee_holds_for_an_overconfident_judge() -> None:
    violation, coverage = _guarantee_run(_g_overconfident, _true_agreement_overconfident, min_kept=100)
    assert violation <= DELTA + 0.03
    assert coverage > 0.1  # the oracle keeps 44.5%


def test_guarantee_holds_when_the_most_confident_verdicts_are_worst() -> None:
    violation, _ = _guarantee_run(_g_bad_top, _true_agreement_bad_top, min_kept=100)
    assert violation <= DELTA + 0.03


def test_guarantee_holds_for_discrete_confidences() -> None:
    # a verbalised confidence on five levels; P(correct) = level - 0.005, so keeping >= 0.7 gives true agreement
    # 0.845, just under target, and >= 0.8 gives 0.895
    levels = np.array([0.6, 0.7, 0.8, 0.9, 1.0])
    truth = {lv: float(np.mean(levels[levels >= lv] - 0.005)) for lv in levels}
    violations, coverage = 0, 0.0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        conf = rng.choice(levels, N_CAL)
        chosen = choose_threshold(conf, rng.random(N_CAL) < conf - 0.005, target=TARGET, delta=DELTA)
        if chosen.certified:
            violations += truth[chosen.threshold] < TARGET
            coverage += float(np.mean(levels >= chosen.threshold)) / SEEDS
    assert violations / SEEDS <= DELTA + 0.03
    assert coverage > 0.2  # the oracle keeps 60%


def test_plug_in_threshold_breaks_the_guarantee() -> None:
    """Negative control: the lowest threshold whose *observed* agreement meets the target misses it about half
    the time, so the simulation above can tell a guaranteed rule from one that is not."""
    misses = 0
    for seed in range(SEEDS):
        conf, correct = _simulate(_g_calibrated, seed)
        order = np.argsort(-conf)
        observed = np.cumsum(correct[order]) / np.arange(1, N_CAL + 1)
        lowest = conf[order][np.flatnonzero(observed >= TARGET)[-1]]
        misses += bool(_true_agreement_calibrated(np.array([lowest]))[0] < TARGET)
    assert misses / SEEDS > 2 * DELTA


# ------------------------------------------------------------------------------------------------ cross-fitting


def test_cross_fitted_counts_add_up_and_match_a_manual_split() -> None:
    conf, correct = _simulate(_g_calibrated, 2024)
    pooled, thresholds = cross_fitted_selective(conf, correct, target=TARGET, delta=DELTA, n_folds=5, seed=3)
    assert pooled.n == N_CAL and pooled.n_kept + pooled.n_escalated == N_CAL
    assert pooled.coverage == pytest.approx(pooled.n_kept / N_CAL)
    assert [t.n_calibration for t in thresholds] == [400] * 5
    # the same folds by hand: default_rng(seed).permutation, split into near-equal parts
    kept = right = 0
    for fold, chosen in zip(np.array_split(np.random.default_rng(3).permutation(N_CAL), 5), thresholds, strict=True):
        others = np.setdiff1d(np.arange(N_CAL), fold)
        assert chosen == choose_threshold(conf[others], correct[others], target=TARGET, delta=DELTA)
        held_out = evaluate_threshold(conf[fold], correct[fold], chosen.threshold)
        kept += held_out.n_kept
        right += round(held_out.agreement * held_out.n_kept) if held_out.n_kept else 0
    assert pooled.n_kept == kept
    assert pooled.agreement == pytest.approx(right / kept)
    assert pooled.agreement >= TARGET - 0.05
    # deterministic for a seed
    assert cross_fitted_selective(conf, correct, target=TARGET, delta=DELTA, n_folds=5, seed=3) == (pooled, thresholds)


def test_cross_fitted_escalates_everything_when_no_fold_certifies() -> None:
    pooled, thresholds = cross_fitted_selective([0.9] * 10, [1, 0] * 5, n_folds=5)
    assert all(not t.certified for t in thresholds)
    assert (pooled.n, pooled.n_kept, pooled.n_escalated, pooled.coverage) == (10, 0, 10, 0.0)
    assert math.isnan(pooled.agreement)
