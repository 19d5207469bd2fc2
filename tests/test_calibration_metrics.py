"""Unit tests for judge.calibration.metrics: hand-computed values, scikit-learn agreement, edge cases."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import judge.calibration as calibration
from judge.calibration import (
    accuracy,
    accuracy_without_ties,
    aurc,
    auroc,
    bootstrap_ci,
    brier_binary,
    brier_multiclass,
    cohen_kappa,
    confusion_matrix,
    ece,
    ece_if_calibrated,
    ece_null_draws,
    length_preference,
    log_loss_binary,
    log_loss_multiclass,
    position_consistency,
    risk_coverage,
    wrong_at_high_confidence,
)


@pytest.fixture
def skm() -> Any:
    """scikit-learn's metrics as the reference; only the comparison tests skip when it is not installed."""
    return pytest.importorskip("sklearn.metrics")


PRED = ["A", "B", "tie", "A"]
LABEL = ["A", "A", "tie", "B"]


def _random_verdicts(seed: int, n: int = 200) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    outcomes = np.array(["A", "tie", "B"])
    return list(outcomes[rng.integers(0, 3, n)]), list(outcomes[rng.integers(0, 3, n)])


def _random_rows(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.dirichlet([2.0, 1.0, 2.0], size=n), rng.integers(0, 3, n)


# ------------------------------------------------------------------------------------------------ exports


def test_public_names_are_frozen() -> None:
    assert sorted(calibration.__all__) == sorted(
        [
            "OUTCOMES", "BootstrapCI", "CalibrationError", "HighConfidenceErrors", "LengthPreference",
            "NullECE", "ReliabilityBin", "RiskCoveragePoint", "accuracy", "accuracy_without_ties", "aurc", "auroc",
            "bootstrap_ci", "brier_binary", "brier_multiclass", "cohen_kappa", "confusion_matrix", "ece",
            "ece_if_calibrated", "ece_null_draws",
            "length_preference", "log_loss_binary", "log_loss_multiclass", "position_consistency",
            "risk_coverage", "wrong_at_high_confidence",
        ]
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ agreement


def test_accuracy_hand_computed() -> None:
    assert accuracy(PRED, LABEL) == pytest.approx(0.5)
    # non-tie labels are rows 0, 1, 3: only row 0 is right
    assert accuracy_without_ties(PRED, LABEL) == pytest.approx(1 / 3)


def test_accuracy_without_ties_all_ties_is_nan() -> None:
    assert math.isnan(accuracy_without_ties(["A", "tie"], ["tie", "tie"]))


def test_accuracy_matches_sklearn(skm: Any) -> None:
    pred, label = _random_verdicts(1)
    assert accuracy(pred, label) == pytest.approx(skm.accuracy_score(label, pred))


def test_confusion_matrix_hand_computed_and_sklearn(skm: Any) -> None:
    assert confusion_matrix(PRED, LABEL) == ((1, 0, 1), (0, 1, 0), (1, 0, 0))
    pred, label = _random_verdicts(2)
    expected = skm.confusion_matrix(label, pred, labels=["A", "tie", "B"])
    assert np.array_equal(np.array(confusion_matrix(pred, label)), expected)


def test_cohen_kappa_hand_computed() -> None:
    # p_o = 2/4, p_e = (2*2 + 1*1 + 1*1) / 16 = 0.375 -> (0.5 - 0.375) / 0.625
    assert cohen_kappa(PRED, LABEL) == pytest.approx(0.2)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_cohen_kappa_matches_sklearn(seed: int, skm: Any) -> None:
    pred, label = _random_verdicts(seed)
    assert cohen_kappa(pred, label) == pytest.approx(skm.cohen_kappa_score(label, pred, labels=["A", "tie", "B"]))


def test_cohen_kappa_single_outcome_is_nan() -> None:
    assert math.isnan(cohen_kappa(["A", "A"], ["A", "A"]))


def test_unknown_outcome_and_length_mismatch_raise() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        accuracy(["A", "C"], ["A", "B"])
    with pytest.raises(ValueError, match="different lengths"):
        accuracy(["A"], ["A", "B"])


# ------------------------------------------------------------------------------------------------ ece

CONF = [0.2, 0.4, 0.6, 0.8, 1.0]
CORRECT = [0, 1, 1, 1, 0]


def test_ece_uniform_hand_computed() -> None:
    result = ece(CONF, CORRECT, n_bins=2)
    # bin [0, .5): conf .3, acc .5 (gap .2, 2 rows); bin [.5, 1]: conf .8, acc 2/3 (gap 2/15, 3 rows)
    assert result.ece == pytest.approx((2 * 0.2 + 3 * 2 / 15) / 5)
    assert result.ece == pytest.approx(0.16)
    assert result.mce == pytest.approx(0.2)
    assert result.strategy == "uniform"
    (low, high) = result.bins
    assert (low.lower, low.upper, low.count) == (0.0, 0.5, 2)
    assert (low.mean_confidence, low.accuracy) == (pytest.approx(0.3), pytest.approx(0.5))
    assert (high.lower, high.upper, high.count) == (0.5, 1.0, 3)
    assert (high.mean_confidence, high.accuracy) == (pytest.approx(0.8), pytest.approx(2 / 3))


def test_ece_quantile_hand_computed() -> None:
    result = ece(CONF, CORRECT, n_bins=2, strategy="quantile")
    # sorted rows split 3 + 2: {.2,.4,.6} conf .4 acc 2/3 ; {.8, 1} conf .9 acc .5
    assert [(b.lower, b.upper, b.count) for b in result.bins] == [(0.2, 0.6, 3), (0.8, 1.0, 2)]
    assert result.ece == pytest.approx((3 * (0.4 / 1.5) + 2 * 0.4) / 5)
    assert result.ece == pytest.approx(0.32)
    assert result.mce == pytest.approx(0.4)


def test_ece_uniform_keeps_empty_bins_as_nan() -> None:
    result = ece([0.9, 0.95], [1, 1], n_bins=4)
    assert [b.count for b in result.bins] == [0, 0, 0, 2]
    assert math.isnan(result.bins[0].mean_confidence) and math.isnan(result.bins[0].accuracy)
    assert result.ece == pytest.approx(0.075)


def test_ece_quantile_with_fewer_rows_than_bins() -> None:
    result = ece([0.7, 0.9], [1, 0], n_bins=15, strategy="quantile")
    assert [b.count for b in result.bins] == [1, 1]
    assert result.ece == pytest.approx((0.3 + 0.9) / 2)


def test_ece_perfectly_calibrated_is_zero() -> None:
    assert ece([0.5, 0.5, 1.0], [1, 0, 1], n_bins=10).ece == pytest.approx(0.0)


def test_ece_if_calibrated_of_certain_verdicts_is_zero() -> None:
    # confidence 1 -> always right, 0 -> always wrong: a calibrated judge's ECE is exactly 0 in every draw
    null = ece_if_calibrated([1.0, 0.0, 1.0, 1.0], n_sim=50)
    assert (null.mean, null.p95) == (0.0, 0.0)
    assert math.isnan(null.p_value)  # nothing observed, nothing tested


def test_ece_if_calibrated_one_bin_hand_computed() -> None:
    # n verdicts at confidence 0.5 in one bin: ECE = |k/n - 0.5| with k ~ Binomial(n, 0.5).
    # For n = 4: P(k) = 1,4,6,4,1 / 16 and |k/4 - 0.5| = .5,.25,0,.25,.5, so E = (2*.5 + 8*.25) / 16 = 0.1875
    null = ece_if_calibrated([0.5] * 4, n_bins=1, n_sim=20_000, seed=1)
    assert null.mean == pytest.approx(0.1875, abs=0.005)
    assert null.p95 == pytest.approx(0.5)


def test_ece_if_calibrated_shrinks_with_n_and_bounds_a_calibrated_judge() -> None:
    rng = np.random.default_rng(3)
    small, large = rng.uniform(0.5, 1.0, 50), rng.uniform(0.5, 1.0, 2000)
    assert ece_if_calibrated(large, n_sim=200).mean < ece_if_calibrated(small, n_sim=200).mean / 3
    # a judge whose labels are drawn from its confidences lands under the p95 in about 95% of the draws
    null = ece_if_calibrated(small, n_sim=400, seed=5)
    inside = [ece(small, (rng.random(50) < small).astype(int)).ece <= null.p95 for _ in range(400)]
    assert 0.9 <= np.mean(inside) <= 0.99
    with pytest.raises(ValueError, match="n_sim"):
        ece_if_calibrated(small, n_sim=0)
    with pytest.raises(ValueError, match="ece_if_calibrated"):
        ece_if_calibrated([])


def test_ece_if_calibrated_p_value_hand_computed() -> None:
    # 4 verdicts at 0.5 in one bin: ECE 0.5 needs k = 0 or 4, P = 2/16; every draw has ECE >= 0
    null = ece_if_calibrated([0.5] * 4, n_bins=1, n_sim=20_000, seed=1, observed=0.5)
    assert null.p_value == pytest.approx(2 / 16, abs=0.01)
    assert ece_if_calibrated([0.5] * 4, n_bins=1, n_sim=99, observed=0.0).p_value == 1.0
    # never exactly 0: (0 + 1) / (n_sim + 1)
    assert ece_if_calibrated([1.0] * 4, n_sim=99, observed=0.3).p_value == pytest.approx(0.01)
    with pytest.raises(ValueError, match="observed"):
        ece_if_calibrated([0.5] * 4, observed=1.5)


def test_ece_if_calibrated_p_value_rejects_an_over_confident_judge_not_a_calibrated_one() -> None:
    rng = np.random.default_rng(11)
    conf = rng.uniform(0.6, 1.0, 300)

    def p_value(truth: np.ndarray) -> float:
        correct = (rng.random(len(conf)) < truth).astype(int)
        return ece_if_calibrated(conf, n_sim=200, seed=int(rng.integers(1 << 30)),
                                 observed=ece(conf, correct).ece).p_value

    calibrated = [p_value(conf) for _ in range(60)]
    over_confident = [p_value(conf - 0.15) for _ in range(60)]  # right 15 points less often than it says
    assert np.mean(np.asarray(calibrated) <= 0.05) <= 0.15  # about 5% false alarms
    assert np.mean(np.asarray(over_confident) <= 0.05) >= 0.9


def test_ece_null_draws_are_the_draws_behind_the_floor() -> None:
    conf = np.random.default_rng(2).uniform(0.5, 1.0, 80)
    draws = ece_null_draws(conf, n_sim=150, seed=4)
    assert draws.shape == (150,) and (draws >= 0).all() and (draws <= 1).all()
    assert ece_if_calibrated(conf, n_sim=150, seed=4).mean == pytest.approx(draws.mean())
    with pytest.raises(ValueError, match="ece_null_draws: n_sim"):
        ece_null_draws(conf, n_sim=0)


def test_ece_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="strategy"):
        ece(CONF, CORRECT, strategy="log")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_bins"):
        ece(CONF, CORRECT, n_bins=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece([1.2], [1])
    with pytest.raises(ValueError, match="0/1"):
        ece([0.5], [2])


# ------------------------------------------------------------------------------------------------ scores


def test_brier_binary_hand_computed_and_sklearn(skm: Any) -> None:
    assert brier_binary([0.8, 0.3], [1, 0]) == pytest.approx((0.04 + 0.09) / 2)
    rng = np.random.default_rng(6)
    p, y = rng.random(100), rng.integers(0, 2, 100)
    assert brier_binary(p, y) == pytest.approx(skm.brier_score_loss(y, p))


def test_brier_multiclass_hand_computed_and_sklearn(skm: Any) -> None:
    rows = [[0.7, 0.1, 0.2], [0.2, 0.2, 0.6]]
    # (.09 + .01 + .04) and (.04 + .04 + .16): the sum over classes, averaged over rows
    assert brier_multiclass(rows, ["A", "B"]) == pytest.approx(0.19)
    assert brier_multiclass(rows, [0, 2]) == pytest.approx(0.19)
    probs, labels = _random_rows(7)
    expected = skm.brier_score_loss(labels, probs, labels=[0, 1, 2], scale_by_half=False)
    assert brier_multiclass(probs, labels) == pytest.approx(expected)


def test_brier_multiclass_is_twice_binary_without_ties() -> None:
    p = np.array([0.8, 0.3, 0.6])
    rows = np.column_stack([p, np.zeros(3), 1 - p])
    assert brier_multiclass(rows, ["A", "B", "A"]) == pytest.approx(2 * brier_binary(p, [1, 0, 1]))


def test_log_loss_binary_hand_computed_and_sklearn(skm: Any) -> None:
    assert log_loss_binary([0.8, 0.3], [1, 0]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    rng = np.random.default_rng(8)
    p, y = rng.uniform(0.01, 0.99, 100), rng.integers(0, 2, 100)
    assert log_loss_binary(p, y) == pytest.approx(skm.log_loss(y, p))


def test_log_loss_clips_certain_misses() -> None:
    assert log_loss_binary([0.0], [1]) == pytest.approx(-math.log(1e-15))
    assert log_loss_binary([1.0], [0], eps=1e-3) == pytest.approx(-math.log(1e-3))
    assert log_loss_multiclass([[0.0, 0.0, 1.0]], ["A"]) == pytest.approx(-math.log(1e-15))


def test_log_loss_multiclass_hand_computed_and_sklearn(skm: Any) -> None:
    rows = [[0.7, 0.1, 0.2], [0.2, 0.2, 0.6]]
    assert log_loss_multiclass(rows, ["A", "B"]) == pytest.approx(-(math.log(0.7) + math.log(0.6)) / 2)
    probs, labels = _random_rows(9)
    assert log_loss_multiclass(probs, labels) == pytest.approx(skm.log_loss(labels, probs, labels=[0, 1, 2]))


def test_multiclass_rows_are_validated() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        brier_multiclass([[0.5, 0.4, 0.4]], ["A"])
    with pytest.raises(ValueError, match="shape"):
        log_loss_multiclass([[0.5, 0.5]], ["A"])
    with pytest.raises(ValueError, match="eps"):
        log_loss_binary([0.5], [1], eps=0.0)


# ------------------------------------------------------------------------------------------------ selective


def test_wrong_at_high_confidence_hand_computed() -> None:
    result = wrong_at_high_confidence([0.95, 0.92, 0.9, 0.5], [1, 0, 0, 1], threshold=0.9)
    assert result == (pytest.approx(2 / 3), 3, 2)
    assert (result.n_confident, result.n_wrong) == (3, 2)


def test_wrong_at_high_confidence_nobody_confident_is_nan() -> None:
    rate, n_conf, n_wrong = wrong_at_high_confidence([0.6, 0.7], [1, 0])
    assert math.isnan(rate) and (n_conf, n_wrong) == (0, 0)


def test_auroc_hand_computed() -> None:
    # correct {.9, .7} vs wrong {.8, .6}: 3 of 4 pairs ordered correctly
    assert auroc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)
    assert auroc([0.8, 0.8], [1, 0]) == pytest.approx(0.5)


def test_auroc_single_class_is_nan() -> None:
    assert math.isnan(auroc([0.9, 0.8], [1, 1]))
    assert math.isnan(auroc([0.9, 0.8], [False, False]))


@pytest.mark.parametrize("seed", [10, 11])
def test_auroc_matches_sklearn_with_ties(seed: int, skm: Any) -> None:
    rng = np.random.default_rng(seed)
    conf = np.round(rng.uniform(0.5, 1.0, 150), 1)  # rounding makes many ties
    correct = (rng.random(150) < conf).astype(int)
    assert auroc(conf, correct) == pytest.approx(skm.roc_auc_score(correct, conf))


def test_risk_coverage_hand_computed() -> None:
    points = risk_coverage([0.6, 0.9, 0.7, 0.8], [0, 1, 1, 0])
    assert [(p.coverage, p.risk, p.threshold) for p in points] == [
        (0.25, 0.0, 0.9),
        (0.5, 0.5, 0.8),
        (0.75, pytest.approx(1 / 3), 0.7),
        (1.0, 0.5, 0.6),
    ]
    # mean of the risks at k = 1..4
    assert aurc([0.6, 0.9, 0.7, 0.8], [0, 1, 1, 0]) == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)


def test_risk_coverage_groups_tied_confidences() -> None:
    points = risk_coverage([0.9, 0.9, 0.5], [1, 0, 1])
    assert [(p.coverage, p.risk) for p in points] == [(pytest.approx(2 / 3), 0.5), (1.0, pytest.approx(1 / 3))]
    assert aurc([0.9, 0.9, 0.5], [1, 0, 1]) == pytest.approx(2 / 3 * 0.5 + 1 / 3 * 1 / 3)


def test_aurc_extremes() -> None:
    assert aurc([0.9, 0.8], [1, 1]) == 0.0
    assert aurc([0.9, 0.8], [0, 0]) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ biases


def test_position_consistency() -> None:
    assert position_consistency([True, False, None, True]) == pytest.approx(2 / 3)
    assert position_consistency(np.array([True, True])) == 1.0
    assert math.isnan(position_consistency([None, None]))
    with pytest.raises(ValueError, match="bool or None"):
        position_consistency([1, None])  # type: ignore[list-item]


def test_length_preference_hand_computed() -> None:
    pred = ["A", "B", "tie", "A", "A"]
    label = ["A", "A", "B", "tie", "A"]
    len_a, len_b = [10, 10, 5, 3, 7], [5, 5, 9, 3, 9]
    # row 3 has equal lengths; longer: A, A, B, -, B
    # judge picks (ties dropped): rows 0 (A, longer), 1 (B, shorter), 4 (A, shorter) -> 1/3
    # labels: rows 0 (A, longer), 1 (A, longer), 2 (B, longer), 4 (A, shorter) -> 3/4
    result = length_preference(pred, label, len_a, len_b)
    assert result == (pytest.approx(1 / 3), pytest.approx(0.75))
    assert result.judge_longer == pytest.approx(1 / 3)


def test_length_preference_equal_lengths_is_nan() -> None:
    judge_longer, label_longer = length_preference(["A"], ["B"], [4], [4])
    assert math.isnan(judge_longer) and math.isnan(label_longer)


# ------------------------------------------------------------------------------------------------ empty input

EMPTY_CALLS: list[tuple[str, Callable[[], Any]]] = [
    ("accuracy", lambda: accuracy([], [])),
    ("accuracy_without_ties", lambda: accuracy_without_ties([], [])),
    ("confusion_matrix", lambda: confusion_matrix([], [])),
    ("cohen_kappa", lambda: cohen_kappa([], [])),
    ("ece", lambda: ece([], [])),
    ("ece_quantile", lambda: ece([], [], strategy="quantile")),
    ("brier_binary", lambda: brier_binary([], [])),
    ("brier_multiclass", lambda: brier_multiclass(np.empty((0, 3)), [])),
    ("log_loss_binary", lambda: log_loss_binary([], [])),
    ("log_loss_multiclass", lambda: log_loss_multiclass([], [])),
    ("wrong_at_high_confidence", lambda: wrong_at_high_confidence([], [])),
    ("auroc", lambda: auroc([], [])),
    ("risk_coverage", lambda: risk_coverage([], [])),
    ("aurc", lambda: aurc([], [])),
    ("position_consistency", lambda: position_consistency([])),
    ("length_preference", lambda: length_preference([], [], [], [])),
    ("bootstrap_ci", lambda: bootstrap_ci(accuracy, [], [])),
]


@pytest.mark.parametrize(("name", "call"), EMPTY_CALLS, ids=[name for name, _ in EMPTY_CALLS])
def test_empty_input_raises(name: str, call: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match="empty input"):
        call()


# ------------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    pred, label = _random_verdicts(12, n=60)
    first = bootstrap_ci(accuracy, pred, label, n_boot=200, seed=7)
    again = bootstrap_ci(accuracy, pred, label, n_boot=200, seed=7)
    other = bootstrap_ci(accuracy, pred, label, n_boot=200, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)


def test_bootstrap_interval_contains_point() -> None:
    pred, label = _random_verdicts(13, n=80)
    point, low, high = bootstrap_ci(cohen_kappa, pred, label, n_boot=300, seed=0)
    assert point == pytest.approx(cohen_kappa(pred, label))
    assert low <= point <= high
    assert low < high


def test_bootstrap_resamples_rows_jointly_including_2d() -> None:
    probs, labels = _random_rows(14, n=50)
    point, low, high = bootstrap_ci(brier_multiclass, probs, labels, n_boot=200, seed=1)
    assert point == pytest.approx(brier_multiclass(probs, labels))
    assert low <= point <= high
    # identical columns stay identical under joint resampling: accuracy of a copy is always 1
    same = ["A", "B", "tie"] * 5
    assert bootstrap_ci(accuracy, same, list(same), n_boot=50) == (1.0, 1.0, 1.0)


def test_bootstrap_drops_nan_replicates() -> None:
    # 1 wrong row out of 6: some resamples have only correct rows, where AUROC is NaN
    conf, correct = [0.9, 0.8, 0.7, 0.6, 0.55, 0.3], [1, 1, 1, 1, 1, 0]
    point, low, high = bootstrap_ci(auroc, conf, correct, n_boot=200, seed=2)
    assert point == 1.0 and not math.isnan(low) and high == 1.0
    nan_point, nan_low, nan_high = bootstrap_ci(auroc, [0.9, 0.8], [1, 1], n_boot=20)
    assert math.isnan(nan_point) and math.isnan(nan_low) and math.isnan(nan_high)


def test_bootstrap_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one array"):
        bootstrap_ci(accuracy)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(accuracy, ["A"], ["A"], n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(accuracy, ["A"], ["A"], alpha=1.0)
    with pytest.raises(ValueError, match="different lengths"):
        bootstrap_ci(accuracy, ["A"], ["A", "B"])
