"""Unit tests for judge.calibration.signals and judge.calibration.recalibrate: hand-computed signals, recalibration
of simulated over- and under-confident judges, A/B symmetry, ties, cross-fitting without leakage, method selection,
input errors, and the calibrator artefact (JSON round trip, id, compatibility, abstention threshold)."""

from __future__ import annotations

import json
import logging
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from judge.calibration.metrics import ece
from judge.calibration.recalibrate import (
    ESCALATE_ALL,
    METHODS,
    Calibrator,
    abstention_threshold,
    calibration_key,
    check_compatible,
    cross_fit,
    cross_fit_abstention,
    distributions,
    fit,
    fit_calibrator,
    fit_ties,
    load_calibrator,
    predict,
    select_features,
    select_method,
)
from judge.calibration.signals import SIGNAL_NAMES, SignalTable, binary_p_a, signals_from_verdicts
from judge.errors import CalibratorMismatchError, ConfigError, InputError
from judge.verdicts import Distribution, Failure, JudgeConfig, Verdict

RETRIEVED = [{"id": "spec/x", "layer": "spec", "score": 0.4}, {"id": "constitution/y", "layer": "constitution",
                                                                "score": 0.9}]


def _config(**changes: Any) -> JudgeConfig:
    return JudgeConfig(**{"backend": "fake", "model": "m", "template_version": "t", **changes})


def _verdict(pair_id: str, winner: str, a: float, tie: float, b: float, *, position_inconsistent: bool | None,
             verbal: float | None, retrieved: list[dict[str, Any]] | None = None) -> Verdict:
    return Verdict(pair_id=pair_id, winner=winner, probabilities=Distribution(a=a, tie=tie, b=b), config=_config(),
                   cache_key="k", position_inconsistent=position_inconsistent, retrieved=retrieved or [],
                   verbal_confidence=verbal, failure=None)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _table(logit: np.ndarray, *, raw_p_a: np.ndarray | None = None, tie: np.ndarray | None = None,
           agree: np.ndarray | None = None, length: np.ndarray | None = None, retrieval: np.ndarray | None = None,
           verbal: np.ndarray | None = None) -> SignalTable:
    """A signal table built directly; raw P(A) defaults to sigmoid(logit), other signals to 0."""
    n = len(logit)
    zeros = np.zeros(n)
    return SignalTable(
        pair_ids=tuple(f"p{i}" for i in range(n)),
        raw_p_a=_sigmoid(logit) if raw_p_a is None else raw_p_a,
        tie=zeros.copy() if tie is None else tie,
        logit=np.clip(logit, -12.0, 12.0),
        agree=zeros.copy() if agree is None else agree,
        length=zeros.copy() if length is None else length,
        retrieval=zeros.copy() if retrieval is None else retrieval,
        verbal=zeros.copy() if verbal is None else verbal)


@cache
def _simulated(scale: float, n: int = 2000, seed: int = 7) -> tuple[SignalTable, tuple[str, ...], np.ndarray]:
    """True P(A) = sigmoid(z), z ~ N(0, 1.5); the judge reports logit = scale * z. Returns (table, labels, z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    labels = tuple(np.where(rng.random(n) < _sigmoid(z), "A", "B").tolist())
    return _table(scale * z), labels, z


def _noise(n: int, seed: int) -> tuple[SignalTable, list[str]]:
    """Labels independent of the signals (a fair coin)."""
    rng = np.random.default_rng(seed)
    return _table(rng.normal(0.0, 1.5, n)), np.where(rng.random(n) < 0.5, "A", "B").tolist()


def _top_label_ece(p_a: np.ndarray, labels: tuple[str, ...] | list[str]) -> float:
    conf = np.maximum(p_a, 1.0 - p_a)
    pred = np.where(p_a >= 0.5, "A", "B")
    return ece(conf, (pred == np.asarray(labels)).astype(int)).ece


def _log_loss(p_a: np.ndarray, labels: list[str]) -> float:
    y = (np.asarray(labels) == "A").astype(float)
    p = np.clip(p_a, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _swapped(t: SignalTable) -> SignalTable:
    """The same pairs with A and B swapped: oriented signals negate, symmetric ones stay."""
    return SignalTable(pair_ids=t.pair_ids, raw_p_a=1.0 - t.raw_p_a, tie=t.tie, logit=-t.logit, agree=t.agree,
                       length=-t.length, retrieval=t.retrieval, verbal=-t.verbal)


# ------------------------------------------------------------------------------------------------ signals


@pytest.mark.parametrize(("a", "b", "expected"), [(0.6, 0.2, 0.75), (0.0, 0.0, 0.5), (0.0, 0.3, 0.0), (1.0, 0.0, 1.0)])
def test_binary_p_a(a: float, b: float, expected: float) -> None:
    assert binary_p_a(a, b) == pytest.approx(expected)


def test_signals_from_verdicts_hand_computed() -> None:
    verdicts = [
        _verdict("v1", "A", 0.7, 0.1, 0.2, position_inconsistent=False, verbal=0.9, retrieved=RETRIEVED),
        _verdict("v2", "B", 0.25, 0.0, 0.75, position_inconsistent=True, verbal=0.8, retrieved=RETRIEVED[1:]),
        _verdict("v3", "tie", 0.3, 0.4, 0.3, position_inconsistent=None, verbal=0.9),
        _verdict("v4", "A", 0.6, 0.0, 0.4, position_inconsistent=None, verbal=None),
    ]
    t = signals_from_verdicts(verdicts, [(99, 9), (0, 0), (4, 9), (10, 10)])
    assert len(t) == 4
    assert t.pair_ids == ("v1", "v2", "v3", "v4")
    assert t.raw_p_a == pytest.approx([0.7 / 0.9, 0.25, 0.5, 0.6])
    assert t.tie == pytest.approx([0.1, 0.0, 0.4, 0.0])
    assert t.logit == pytest.approx([math.log(0.7 / 0.2), math.log(0.25 / 0.75), 0.0, math.log(0.6 / 0.4)])
    # agree only when the two orders were consistent (False); True and None (one order) are 0
    assert t.agree.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert t.length == pytest.approx([math.log(100 / 10), 0.0, math.log(5 / 10), 0.0])
    # the constitution entry (0.9) never counts: best non-constitution score, 0 without one
    assert t.retrieval == pytest.approx([0.4, 0.0, 0.0, 0.0])
    # signed toward A; a tie winner or a missing explanation gives 0
    assert t.verbal == pytest.approx([0.4, -0.3, 0.0, 0.0])
    assert t.raw_confidence == pytest.approx([0.7 / 0.9, 0.75, 0.5, 0.6])
    for name in SIGNAL_NAMES:
        assert t.column(name) == pytest.approx(getattr(t, name))


def test_signals_logit_is_clipped() -> None:
    verdicts = [_verdict("a", "A", 1.0, 0.0, 0.0, position_inconsistent=False, verbal=None),
                _verdict("b", "B", 0.0, 0.0, 1.0, position_inconsistent=False, verbal=None)]
    t = signals_from_verdicts(verdicts, [(1, 1), (1, 1)])
    assert t.logit.tolist() == [12.0, -12.0]
    assert t.raw_p_a.tolist() == [1.0, 0.0]


def test_signals_subset_and_unknown_column() -> None:
    t = _table(np.array([0.0, 1.0, 2.0]), verbal=np.array([0.1, 0.2, 0.3]))
    sub = t.subset([2, 0])
    assert sub.pair_ids == ("p2", "p0")
    assert sub.logit.tolist() == [2.0, 0.0]
    assert sub.verbal.tolist() == [0.3, 0.1]
    with pytest.raises(ValueError, match="unknown signal 'bogus'"):
        t.column("bogus")


def test_signals_refuse_failures_and_mismatched_lengths() -> None:
    ok = _verdict("ok", "A", 0.6, 0.0, 0.4, position_inconsistent=False, verbal=None)
    failed = Verdict(pair_id="bad", winner=None, probabilities=None, config=_config(), cache_key="k",
                     failure=Failure(stage="backend", reason="timeout"))
    with pytest.raises(ValueError, match=r"'bad' failed \(backend\)"):
        signals_from_verdicts([ok, failed], [(1, 1), (1, 1)])
    with pytest.raises(ValueError, match="2 verdicts but 1 length pairs"):
        signals_from_verdicts([ok, ok], [(1, 1)])


# ------------------------------------------------------------------------------------------------ recalibration


@pytest.mark.parametrize("scale", [3.0, 0.25], ids=["over-confident", "under-confident"])
@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic", "logistic", "auto"])
def test_recalibration_improves_ece_on_a_miscalibrated_judge(scale: float, method: str) -> None:
    t, labels, _ = _simulated(scale)
    raw = _top_label_ece(t.raw_p_a, labels)
    assert raw > 0.1  # the simulated judge really is miscalibrated
    out, chosen = cross_fit(t, labels, method=method, n_folds=5, seed=0)
    assert len(chosen) == 5
    assert np.allclose(out.sum(axis=1), 1.0)
    assert out[:, 1] == pytest.approx(0.0)  # no tie labels, no judge tie mass
    assert _top_label_ece(out[:, 0], labels) <= 0.5 * raw


@pytest.mark.parametrize(("scale", "expected"), [(3.0, 3.0), (0.25, 0.25)])
def test_fitted_temperature_recovers_the_scale(scale: float, expected: float) -> None:
    t, labels, z = _simulated(scale)
    temperature = fit("temperature", t, labels)["temperature"]
    assert temperature == pytest.approx(expected, rel=0.15)
    # dividing by the temperature brings the judge's log-odds back near the true ones
    assert predict("temperature", {"temperature": temperature}, t) == pytest.approx(_sigmoid(z), abs=0.06)


def test_none_method_is_the_raw_probability() -> None:
    t, labels, _ = _simulated(3.0)
    assert fit("none", t, labels) == {}
    assert np.array_equal(predict("none", {}, t), t.raw_p_a)


# ------------------------------------------------------------------------------------------------ symmetry


def _rich_table(n: int, seed: int) -> tuple[SignalTable, list[str]]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    logit = 2.0 * z + rng.normal(0.0, 0.5, n)
    logit[:5] = 0.0  # exactly even rows
    t = _table(logit, agree=(rng.random(n) < 0.7).astype(float), length=rng.normal(0.0, 0.5, n),
               retrieval=rng.uniform(0.0, 1.0, n), verbal=rng.uniform(-0.5, 0.5, n))
    labels = np.where(rng.random(n) < _sigmoid(z + 0.3 * t.length), "A", "B").tolist()
    return t, labels


@pytest.mark.parametrize("method", METHODS)
def test_swapping_a_and_b_gives_one_minus_p(method: str) -> None:
    t, labels = _rich_table(300, seed=11)
    params = fit(method, t, labels)
    p, p_swapped = predict(method, params, t), predict(method, params, _swapped(t))
    assert p_swapped == pytest.approx(1.0 - p, abs=1e-12)


def test_logistic_leaves_length_out_unless_named() -> None:
    t, labels = _rich_table(300, seed=11)
    default = fit("logistic", t, labels)
    assert default["features"] == ["logit", "logit*agree", "logit*retrieval", "verbal"]
    assert len(default["coef"]) == 4
    params = fit("logistic", t, labels, features=["logit", "logit*agree", "length", "logit*retrieval", "verbal"])
    assert params["features"] == ["logit", "logit*agree", "length", "logit*retrieval", "verbal"]
    assert params["coef"][2] > 0  # the labels do favour the longer response
    # no intercept: an even row (all oriented signals 0) is exactly 0.5
    even = _table(np.zeros(3), agree=np.ones(3), retrieval=np.full(3, 0.7))
    assert predict("logistic", params, even).tolist() == [0.5, 0.5, 0.5]


def test_logistic_params_without_a_feature_list_read_as_the_five_original_features() -> None:
    t, labels = _rich_table(300, seed=11)
    params = fit("logistic", t, labels, features=["logit", "logit*agree", "length", "logit*retrieval", "verbal"])
    legacy = {k: v for k, v in params.items() if k != "features"}
    assert predict("logistic", legacy, t).tolist() == predict("logistic", params, t).tolist()


def test_logistic_uses_a_compressed_judge_signal() -> None:
    """A small judge keeps its log-odds within a few hundredths of 0 while they still rank the truth; the
    regularised logistic model must use them (features are put on one scale before the L2 penalty)."""
    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 1.5, 600)
    labels = np.where(rng.random(600) < _sigmoid(z), "A", "B").tolist()
    compressed = _table(0.02 * z, length=rng.normal(0.0, 0.5, 600))  # length carries nothing here
    params = fit("logistic", compressed, labels)
    assert params["feature_scale"][0] == pytest.approx(0.02 * np.sqrt(np.mean(z**2)), rel=1e-6)
    assert params["coef"][0] > 20  # ~1 / 0.02 would recover the true log-odds
    p_cross, _ = cross_fit(compressed, labels, method="logistic")
    p_temp, _ = cross_fit(compressed, labels, method="temperature")  # the one-parameter reference
    assert _log_loss(p_cross[:, 0], labels) < _log_loss(p_temp[:, 0], labels) + 0.02
    assert _log_loss(p_cross[:, 0], labels) < math.log(2) - 0.1  # far better than a coin


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_top_label_methods_keep_even_rows_even(method: str) -> None:
    t, labels = _rich_table(300, seed=12)
    assert np.count_nonzero(t.raw_p_a == 0.5) == 5
    p = predict(method, fit(method, t, labels), t)
    assert p[t.raw_p_a == 0.5].tolist() == [0.5] * 5
    assert np.all(p[t.raw_p_a != 0.5] != 0.5)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_top_label_methods_flip_an_anti_correlated_judge(method: str) -> None:
    rng = np.random.default_rng(5)
    n = 500
    labels = np.where(rng.random(n) < 0.5, "A", "B")
    judge_right = rng.random(n) < 0.2
    judge_says_a = np.where(judge_right, labels == "A", labels == "B")
    conf = rng.uniform(0.55, 0.95, n)
    t = _table(np.log(conf / (1 - conf)) * np.where(judge_says_a, 1.0, -1.0))
    assert np.mean(judge_right) == pytest.approx(0.2, abs=0.05)
    out, _ = cross_fit(t, labels.tolist(), method=method, n_folds=5, seed=0)
    calibrated_says_a = out[:, 0] > out[:, 2]
    assert np.mean(calibrated_says_a != judge_says_a) >= 0.9  # names the other response on most rows
    assert np.mean(calibrated_says_a == (labels == "A")) >= 0.7
    # and its probability for its new winner is about the judge's error rate, not the judge's confidence
    assert np.mean(np.maximum(out[:, 0], out[:, 2])) == pytest.approx(0.8, abs=0.06)


# ------------------------------------------------------------------------------------------------ ties


def test_distributions_keep_judge_ties_and_fill_the_rest() -> None:
    rows = distributions(np.array([0.8, 0.3, 0.5]), np.array([0.2, 0.0, 0.5]), 0.1)
    assert rows[0] == pytest.approx([0.64, 0.2, 0.16])  # the judge's own tie mass is kept
    assert rows[1] == pytest.approx([0.27, 0.1, 0.63])  # no tie mass: the calibration tie rate
    assert rows[2] == pytest.approx([0.25, 0.5, 0.25])
    assert rows.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0])
    assert distributions(np.array([0.7]), np.array([0.0]), 0.0)[0] == pytest.approx([0.7, 0.0, 0.3])


def test_fit_calibrator_records_the_tie_rate() -> None:
    t, labels = _rich_table(200, seed=13)
    labels = ["tie" if i % 8 == 0 else x for i, x in enumerate(labels)]  # 25 of 200
    judge_tie = np.where(np.arange(200) % 3 == 0, 0.3, 0.0)
    t = SignalTable(t.pair_ids, t.raw_p_a, judge_tie, t.logit, t.agree, t.length, t.retrieval, t.verbal)
    cal = fit_calibrator(t, labels, _config(), method="logistic")
    assert cal.tie_rate == pytest.approx(25 / 200)
    assert cal.n_fitted == 200
    rows = cal.predict(t)
    assert rows.shape == (200, 3)
    assert rows.sum(axis=1) == pytest.approx(np.ones(200))
    assert rows[:, 1] == pytest.approx(np.where(judge_tie > 0, 0.3, 25 / 200))
    assert rows[:, 0] / (rows[:, 0] + rows[:, 2]) == pytest.approx(cal.predict_p_a(t))


def test_cross_fit_uses_the_training_tie_rate() -> None:
    t, labels = _rich_table(200, seed=14)
    labels = ["tie" if i % 5 == 0 else x for i, x in enumerate(labels)]  # 20 %
    out, _ = cross_fit(t, labels, method="temperature", n_folds=4, seed=1)
    assert out.sum(axis=1) == pytest.approx(np.ones(200))
    # ties unrelated to closeness: the fitted curve stays near the training rate
    assert np.all((out[:, 1] > 0.05) & (out[:, 1] < 0.45))
    assert np.mean(out[:, 1]) == pytest.approx(0.2, abs=0.02)


def _close_call_ties(n: int = 2000, seed: int = 21) -> tuple[SignalTable, list[str]]:
    """A calibrated judge that never says tie, on labels where ties gather at close calls:
    P(tie) = sigmoid(-0.5 - 2 |z|), the rest A / B with P(A) = sigmoid(z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    tie = rng.random(n) < _sigmoid(-0.5 - 2.0 * np.abs(z))
    labels = np.where(tie, "tie", np.where(rng.random(n) < _sigmoid(z), "A", "B")).tolist()
    return _table(z), labels


def test_fit_ties_finds_ties_gathering_at_close_calls() -> None:
    t, labels = _close_call_ties(6000)  # ~700 tie labels: the curve's parameters within ~2 standard errors
    c0, c1 = fit_ties(t.raw_p_a, t.tie, labels)  # type: ignore[misc]
    assert c0 == pytest.approx(-0.5, abs=0.2) and c1 == pytest.approx(-2.0, abs=0.35)
    rows = distributions(np.array([0.5, 0.95]), np.zeros(2), 0.2, (c0, c1))
    assert rows[0, 1] > 0.3 > 0.05 > rows[1, 1]  # a torn verdict gets more tie mass than a confident one
    assert rows.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert rows[:, 0] / (rows[:, 0] + rows[:, 2]) == pytest.approx([0.5, 0.95])  # P(A | not tie) unchanged


def test_fit_ties_keeps_the_constant_rate_without_enough_ties_or_for_a_judge_that_says_tie() -> None:
    t, labels = _close_call_ties(200)
    few = ["A" if x == "tie" else x for x in labels]
    few[:9] = ["tie"] * 9
    assert fit_ties(t.raw_p_a, t.tie, few) is None  # 9 tie labels
    assert fit_ties(t.raw_p_a, np.full(200, 0.1), labels) is None  # the judge gives tie mass itself
    assert fit_ties(t.raw_p_a, t.tie, labels) is not None


def test_a_closeness_tie_model_beats_the_constant_rate_held_out() -> None:
    t, labels = _close_call_ties()
    out, _ = cross_fit(t, labels, method="temperature", n_folds=5, seed=0)
    rate = sum(x == "tie" for x in labels) / len(labels)
    constant = distributions(_sigmoid(t.logit), t.tie, rate)
    idx = np.asarray([{"A": 0, "tie": 1, "B": 2}[x] for x in labels])

    def nll(p: np.ndarray) -> float:
        return float(-np.mean(np.log(p[np.arange(len(idx)), idx])))

    assert nll(out) < nll(constant) - 0.02  # cross-fitted curve vs the true P(A | not tie) with a constant rate
    cal = fit_calibrator(t, labels, _config(), method="temperature")
    assert cal.tie_model is not None and cal.tie_model[1] < 0
    assert cal.id != cal.model_copy(update={"tie_model": None}).id


def test_a_calibrator_saved_before_the_tie_model_loads_with_its_id_and_constant_rate(tmp_path: Path) -> None:
    t, labels = _rich_table(200, seed=17)
    cal = Calibrator(method="temperature", params=fit("temperature", t, labels), judge=calibration_key(_config()),
                     n_fitted=200, tie_rate=0.05)
    old = {k: v for k, v in json.loads(cal.model_dump_json()).items() if k != "tie_model"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    loaded = load_calibrator(path)
    assert loaded.tie_model is None and loaded.id == cal.id
    assert loaded.predict(t)[:, 1] == pytest.approx(np.full(200, 0.05))


# ------------------------------------------------------------------------------------------------ cross-fitting


def test_cross_fit_on_noise_does_not_beat_chance_unlike_an_in_sample_fit() -> None:
    t, labels = _noise(400, seed=3)
    out, chosen = cross_fit(t, labels, method="isotonic", n_folds=5, seed=0)
    assert chosen == ["isotonic"] * 5
    out_of_fold = _log_loss(out[:, 0], labels)
    in_sample = _log_loss(predict("isotonic", fit("isotonic", t, labels), t), labels)
    assert out_of_fold > math.log(2) - 0.005
    assert in_sample < math.log(2) - 0.005  # isotonic regression fits noise when it sees the labels
    assert in_sample < out_of_fold - 0.01


@pytest.mark.parametrize("method", ["isotonic", "logistic", "auto"])
def test_cross_fit_prediction_does_not_depend_on_its_own_label(method: str) -> None:
    t, labels = _noise(150, seed=4)
    out, _ = cross_fit(t, labels, method=method, n_folds=5, seed=2)
    changed_any = False
    for i in (0, 149):
        flipped = list(labels)
        flipped[i] = "B" if labels[i] == "A" else "A"
        out_flipped, _ = cross_fit(t, flipped, method=method, n_folds=5, seed=2)
        assert np.array_equal(out_flipped[i], out[i])  # row i was held out of every fit that predicted it
        changed_any = changed_any or not np.array_equal(out_flipped, out)
    assert changed_any  # the label did reach the other folds' calibrators


@pytest.mark.parametrize("n_folds", [2, 3, 7])
def test_cross_fit_reports_one_method_per_fold(n_folds: int) -> None:
    t, labels = _rich_table(200, seed=15)
    out, chosen = cross_fit(t, labels, method="temperature", n_folds=n_folds, seed=0)
    assert chosen == ["temperature"] * n_folds
    assert out.shape == (200, 3)
    again, _ = cross_fit(t, labels, method="temperature", n_folds=n_folds, seed=0)
    assert np.array_equal(again, out)  # seeded: reproducible


def test_cross_fit_auto_chooses_a_known_method_per_fold() -> None:
    t, labels = _rich_table(150, seed=15)
    out, chosen = cross_fit(t, labels, method="auto", n_folds=3, seed=0)
    assert len(chosen) == 3
    assert set(chosen) <= set(METHODS)
    assert out.sum(axis=1) == pytest.approx(np.ones(150))


# ------------------------------------------------------------------------------------------------ select_method


def test_select_method_takes_the_simplest_within_one_standard_error() -> None:
    t, labels, _ = _simulated(3.0, n=400, seed=8)
    chosen, losses = select_method(t, labels, n_folds=5, seed=0)
    assert set(losses) == set(METHODS)
    assert all(math.isfinite(v) and v > 0 for v in losses.values())
    assert chosen != "none"  # a 3x over-confident judge clearly needs correcting
    simpler = METHODS[:METHODS.index(chosen)]
    assert losses[chosen] <= min(losses.values()) + 0.05
    assert all(losses[m] > losses[chosen] for m in simpler)  # nothing simpler was as good


def test_select_method_keeps_the_judge_when_the_data_cannot_tell() -> None:
    # an honest judge on few pairs: flexible methods only fit noise, so the judge's own probability is kept
    kept = 0
    for seed in range(10):
        t, labels, _ = _simulated(1.0, n=60, seed=seed)
        chosen, losses = select_method(t, labels, n_folds=5, seed=0)
        kept += chosen == "none"
        # "none" fits nothing: its loss is the judge's own log loss
        assert losses["none"] == pytest.approx(_log_loss(t.raw_p_a, list(labels)))
    assert kept >= 8


def test_select_method_restricted_methods_and_ties_left_out() -> None:
    t, labels, _ = _simulated(3.0, n=400, seed=8)
    best, losses = select_method(t, labels, methods=("none", "temperature"), n_folds=4, seed=0)
    assert set(losses) == {"none", "temperature"}
    assert best == "temperature"
    # appending tie-labelled rows changes nothing: they are left out before the folds are cut
    extra = _table(np.concatenate([t.logit, np.ones(30)]))
    best_t, losses_t = select_method(extra, [*labels, *["tie"] * 30], methods=("none", "temperature"), n_folds=4,
                                     seed=0)
    assert best_t == best
    assert losses_t == pytest.approx(losses)


# ------------------------------------------------------------------------------------------------ errors


def _labelled(n: int = 30) -> tuple[SignalTable, list[str]]:
    return _table(np.linspace(-2.0, 2.0, n)), ["A" if i % 2 else "B" for i in range(n)]


@pytest.mark.parametrize("call", ["fit", "select_method", "cross_fit", "fit_calibrator"])
@pytest.mark.parametrize(("labels", "message"), [
    (["A"] * 30, "one winner only"),
    (["B"] * 20 + ["tie"] * 10, "one winner only"),
    (["A", "B", "C"] * 10, r"labels must be 'A', 'B' or 'tie', got \['C'\]"),
    (["A", "B"] * 14, "30 signal rows but 28 labels"),
])
def test_bad_labels_raise(call: str, labels: list[str], message: str) -> None:
    t, _ = _labelled()
    calls = {"fit": lambda: fit("platt", t, labels), "select_method": lambda: select_method(t, labels),
             "cross_fit": lambda: cross_fit(t, labels), "fit_calibrator": lambda: fit_calibrator(t, labels, _config())}
    with pytest.raises(ValueError, match=message):
        calls[call]()


@pytest.mark.parametrize("call", ["select_method", "cross_fit", "fit_calibrator"])
def test_too_few_non_tie_rows_raise(call: str) -> None:
    t, _ = _labelled(15)
    labels = ["A", "B", "A", "B", "A", "B", "A", "B", "A"] + ["tie"] * 6
    calls = {"select_method": lambda: select_method(t, labels), "cross_fit": lambda: cross_fit(t, labels),
             "fit_calibrator": lambda: fit_calibrator(t, labels, _config())}
    with pytest.raises(ValueError, match="9 labelled non-tie verdicts; at least 10 are needed"):
        calls[call]()


def test_fit_alone_accepts_small_data() -> None:
    t, labels = _labelled(4)
    assert fit("temperature", t, labels)["temperature"] > 0


def test_unknown_method_raises() -> None:
    t, labels = _labelled()
    with pytest.raises(ValueError, match="unknown calibration method 'beta'"):
        fit("beta", t, labels)
    with pytest.raises(ValueError, match="unknown calibration method 'beta'"):
        predict("beta", {}, t)
    with pytest.raises(ValueError, match="unknown calibration method 'beta'; known: auto"):
        cross_fit(t, labels, method="beta")
    with pytest.raises(ValueError, match="unknown calibration method 'beta'; known: auto"):
        fit_calibrator(t, labels, _config(), method="beta")


def test_more_folds_than_rows_raise() -> None:
    t, labels = _labelled(12)
    with pytest.raises(ValueError, match="12 rows cannot be split into 20 folds"):
        cross_fit(t, labels, n_folds=20)


# ------------------------------------------------------------------------------------------------ the artefact


@pytest.fixture(scope="module")
def fitted() -> tuple[Calibrator, SignalTable, list[str]]:
    t, labels = _rich_table(200, seed=16)
    cal = fit_calibrator(t, labels, _config(params={"top_p": 0.9}), rulebook_version="v1", n_folds=4, seed=3)
    return cal, t, labels


def test_fit_calibrator_records_its_choice(fitted: tuple[Calibrator, SignalTable, list[str]]) -> None:
    cal, t, labels = fitted
    features, trials = select_features(t, labels, n_folds=4, seed=3)
    best, losses = select_method(t, labels, n_folds=4, seed=3, features=features)
    assert cal.method == best
    assert cal.cv_log_loss == {k: round(v, 6) for k, v in losses.items()}
    assert cal.params == fit(best, t, labels, features=features)
    assert cal.selection == "cross-validation" and set(cal.feature_trials) == set(trials)
    assert cal.reference is not None and cal.reference.n == 200
    assert cal.judge == calibration_key(_config(params={"top_p": 0.9}))
    assert "explain" not in cal.judge and "max_retries" not in cal.judge
    assert (cal.rulebook_version, cal.n_fitted, cal.n_folds, cal.seed, cal.tie_rate) == ("v1", 200, 4, 3, 0.0)
    assert cal.id.startswith("cal-") and len(cal.id) == 16


@pytest.mark.parametrize("method", METHODS)
def test_json_round_trip_preserves_predictions_and_id(method: str, tmp_path: Path) -> None:
    t, labels = _rich_table(200, seed=17)
    cal = Calibrator(method=method, params=fit(method, t, labels), judge=calibration_key(_config()), n_fitted=200,
                     tie_rate=0.05)
    path = tmp_path / "cal.json"
    path.write_text(cal.model_dump_json(indent=2), encoding="utf-8")
    loaded = load_calibrator(path)
    assert loaded.id == cal.id
    assert loaded == cal
    assert np.array_equal(loaded.predict(t), cal.predict(t))
    check_compatible(loaded, _config(), None)  # the judge key survives JSON


def test_id_follows_the_content(fitted: tuple[Calibrator, SignalTable, list[str]]) -> None:
    cal = fitted[0]
    changed = [
        cal.model_copy(update={"params": {**cal.params, "extra": 1}}),
        cal.model_copy(update={"method": "none", "params": {}}),
        cal.model_copy(update={"judge": {**cal.judge, "model": "other"}}),
        cal.model_copy(update={"rulebook_version": "v2"}),
    ]
    assert len({cal.id, *(c.id for c in changed)}) == 5
    # metadata that does not change predictions keeps the id
    same = cal.model_copy(update={"n_fitted": 1, "cv_log_loss": {}, "created_at": cal.created_at.replace(year=2000)})
    assert same.id == cal.id


def test_id_changes_when_tie_rate_changes(fitted: tuple[Calibrator, SignalTable, list[str]]) -> None:
    cal, t, _ = fitted
    other = cal.model_copy(update={"tie_rate": 0.3})
    assert not np.array_equal(other.predict(t), cal.predict(t))
    assert other.id != cal.id


def test_load_calibrator_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(InputError, match="cannot read the calibrator") as info:
        load_calibrator(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("text", "where"), [
    ('{"foo": 1}', "method"),
    ("[1, 2]", "(document)"),
    ("not json at all", "(document)"),
    ('{"format": "judge-calibrator/2", "method": "none", "judge": {}, "n_fitted": 1}', "format"),
    ('{"method": "auto", "judge": {}, "n_fitted": 1}', "method"),
    ('{"method": "none", "judge": {}, "n_fitted": 1, "tie_rate": 1.0}', "tie_rate"),
])
def test_load_calibrator_refuses_what_is_not_a_calibrator(text: str, where: str, tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match="not a judge calibrator") as info:
        load_calibrator(path)
    assert str(path) in str(info.value)
    assert f"({where}:" in str(info.value)


def test_load_calibrator_refuses_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00\x01 not text")
    with pytest.raises(InputError) as info:
        load_calibrator(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------------ compatibility


def test_check_compatible_accepts_the_same_configuration(fitted: tuple[Calibrator, SignalTable, list[str]]) -> None:
    cal = fitted[0]
    assert check_compatible(cal, _config(params={"top_p": 0.9}), "v1") is None
    # explain and retries are not calibration key fields
    assert check_compatible(cal, _config(params={"top_p": 0.9}, explain=False, max_retries=5), "v1") is None


@pytest.mark.parametrize(("field", "value"), [
    ("model", "m2"), ("template_version", "t2"), ("backend", "openai"), ("allow_tie", True), ("k_spec", 5),
    ("temperature", 0.7), ("params", {"top_p": 0.5}),
])
def test_check_compatible_names_the_differing_field(field: str, value: Any,
                                                    fitted: tuple[Calibrator, SignalTable, list[str]]) -> None:
    cal = fitted[0]
    base: dict[str, Any] = {"params": {"top_p": 0.9}}
    with pytest.raises(CalibratorMismatchError, match=f"{field}: calibrator ") as info:
        check_compatible(cal, _config(**{**base, field: value}), "v1")
    message = str(info.value)
    assert cal.id in message
    assert repr(value) in message
    others = [k for k in ("model", "template_version", "backend", "allow_tie", "k_spec") if k != field]
    assert not any(f"{k}: calibrator" in message for k in others)
    assert isinstance(info.value, ConfigError)


def test_check_compatible_rulebook_version(fitted: tuple[Calibrator, SignalTable, list[str]]) -> None:
    cal, config = fitted[0], _config(params={"top_p": 0.9})
    with pytest.raises(CalibratorMismatchError, match="rulebook_version: calibrator v1 != judge v2"):
        check_compatible(cal, config, "v2")
    assert check_compatible(cal, config, "v2", allow_rulebook_change=True) is None
    # allowing a rulebook change does not allow a model change
    with pytest.raises(CalibratorMismatchError, match="model") as info:
        check_compatible(cal, _config(model="m2", params={"top_p": 0.9}), "v2", allow_rulebook_change=True)
    assert "rulebook_version" not in str(info.value)


# ------------------------------------------------------------------------------------------------ abstention


def test_abstain_threshold(fitted: tuple[Calibrator, SignalTable, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    cal = fitted[0]
    certified = cal.model_copy(update={"abstain": {"threshold": 0.83, "target": 0.9, "delta": 0.1,
                                                   "certified": True}})
    assert certified.abstain_threshold() == pytest.approx(0.83)
    uncertified = cal.model_copy(update={"abstain": {"threshold": None, "target": 0.99, "delta": 0.1,
                                                     "certified": False}})
    with caplog.at_level(logging.WARNING, logger="judge.calibration.recalibrate"):
        assert uncertified.abstain_threshold() == ESCALATE_ALL > 1.0
    assert "every verdict is escalated" in caplog.text
    assert cal.abstain is None
    with pytest.raises(ConfigError, match=f"calibrator {cal.id} has no abstention threshold"):
        cal.abstain_threshold()


# ------------------------------------------------------------------------------ abstention on calibrated scale
def test_abstention_threshold_is_on_the_calibrators_own_scale() -> None:
    table, labels, _ = _simulated(0.25, n=600, seed=11)  # under-confident: calibration stretches confidences
    cal = fit_calibrator(table, labels, _config(), method="temperature")
    probs = cal.predict(table)
    th = abstention_threshold(probs, labels, target=0.9, delta=0.1)
    assert th.certified and th.threshold > 0.5
    pred = np.asarray(["A", "tie", "B"])[probs.argmax(axis=1)]
    kept = probs.max(axis=1) >= th.threshold
    assert int(kept.sum()) == th.n_kept  # the threshold selects exactly the rows it was certified on
    assert (pred[kept] == np.asarray(labels)[kept]).mean() >= th.lower_bound >= 0.9


@pytest.mark.parametrize("seed", range(6))
def test_cross_fitted_abstention_keeps_its_target_on_held_out_folds(seed: int) -> None:
    """An under-confident judge whose confidence ranks correctness: recalibrated selective judging keeps a
    useful share of held-out pairs, and they agree at least at the target (up to sampling noise)."""
    rng = np.random.default_rng(100 + seed)
    z = rng.normal(0.0, 3.0, 600)  # a judge that is often sure, reporting a quarter of its log-odds
    labels = np.where(rng.random(600) < _sigmoid(z), "A", "B").tolist()
    table = _table(0.25 * z)
    result, thresholds = cross_fit_abstention(table, labels, target=0.9, delta=0.1, seed=seed)
    assert len(thresholds) == 5 and all(t.certified for t in thresholds)
    assert result.n == 600 and result.n_kept + result.n_escalated == 600
    assert result.coverage > 0.2
    assert result.agreement >= 0.87  # the target, less a few held-out points of noise on ~150+ kept pairs


def test_cross_fitted_abstention_escalates_everything_on_noise() -> None:
    table, labels = _noise(300, seed=5)
    result, thresholds = cross_fit_abstention(table, labels, target=0.9, delta=0.1)
    assert not any(t.certified for t in thresholds)
    assert result.n_kept == 0 and math.isnan(result.agreement)


def test_an_uncertified_abstention_escalates_every_verdict_in_the_engine(tmp_path: Path) -> None:
    from judge.backends.fake import FakeBackend, FakeReply
    from judge.calibration.recalibrate import ESCALATE_ALL
    from judge.judging.engine import Judge

    fake = FakeBackend(lambda body: FakeReply("A", top_logprobs=[("A", -0.01), ("B", -5.0)]))
    from judge.rules.model import Pair

    config = JudgeConfig(backend="fake", model="fake", template_version="rules-v2", use_rules=False,
                         method="pairwise", explain=False, both_orders=False)
    judge = Judge(fake, None, config=config, escalate_below=ESCALATE_ALL)
    verdict = judge.compare(Pair(prompt="q", response_a="a", response_b="b"))
    assert verdict.failure is None and verdict.confidence is not None and verdict.confidence > 0.9
    assert verdict.escalated


def test_a_calibrator_keeps_its_id_through_a_save_when_no_threshold_certifies(tmp_path: Path) -> None:
    t, labels = _rich_table(200, seed=17)
    cal = Calibrator(method="temperature", params=fit("temperature", t, labels), judge=calibration_key(_config()),
                     n_fitted=200, abstain={"threshold": None, "target": 0.99, "delta": 0.1, "certified": False,
                                            "lower_bound": math.nan})
    path = tmp_path / "cal.json"
    path.write_text(cal.model_dump_json(), encoding="utf-8")
    assert cal.abstain is not None and cal.abstain["lower_bound"] is None
    assert load_calibrator(path).id == cal.id


@pytest.mark.parametrize(("method", "params", "field"), [
    ("temperature", {}, "temperature"), ("temperature", {"temperature": "NaN"}, "temperature"),
    ("temperature", {"temperature": 0}, "temperature"), ("temperature", {"temperature": -1.0}, "temperature"),
    ("platt", {"a": 1.0}, "b"), ("logistic", {"features": ["logit"], "coef": [1.0, 2.0]}, "coef"),
    ("logistic", {"features": ["nope"], "coef": [1.0]}, "features"),
    ("isotonic", {"x": [0.6, 0.5], "y": [0.5, 0.6]}, "x"), ("isotonic", {"x": [0.5, 0.6], "y": [0.5, 1.5]}, "y"),
])
def test_a_calibrator_file_with_parameters_it_cannot_apply_is_refused(tmp_path: Path, method: str,
                                                                      params: dict[str, Any], field: str) -> None:
    t, labels = _rich_table(200, seed=17)
    cal = Calibrator(method="temperature", params=fit("temperature", t, labels), judge=calibration_key(_config()),
                     n_fitted=200)
    data = {**json.loads(cal.model_dump_json()), "method": method, "params": params}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data).replace('"NaN"', "NaN"), encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_calibrator(path)
    assert f"params.{field}" in str(err.value) and str(path) in str(err.value)
