"""The fitted check weighting: pulled toward the prior, its strength chosen and validated by leaving one source
out, stored per judge configuration, and the shipped one applied by default."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from judge.errors import InputError
from judge.judging.checks import CHECKS_TEMPLATE_VERSION
from judge.judging.decide import CheckWeights
from judge.judging.verdict import JudgeConfig
from judge.judging.weights import (
    FittedWeights,
    Labelled,
    choose_strength,
    fit_check_weights,
    fit_weights,
    load_weights,
    score,
    shipped_weights,
    validate_by_source,
    weights_key,
    with_shipped_weights,
)

PRIOR = CheckWeights()
EMBEDDED = JudgeConfig(backend="local", model="qwen2.5-coder-1.5b-instruct-q4_k_m",
                       template_version=CHECKS_TEMPLATE_VERSION, method="checks", explain=False)


def _rows(n: int, *, lower_sign: float, seed: int, holistic_noise: float = 1.0) -> list[Labelled]:
    """Open-regime pairs whose rule difference predicts the label with ``lower_sign`` (+1 the rulebook's
    direction, -1 the opposite); the holistic signal is noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a_wins = rng.random() < 0.5
        lower = lower_sign * (1.0 if a_wins else -1.0) * rng.uniform(0.5, 3.0)
        rows.append(Labelled({"rules": 0.0, "lower": lower, "holistic": rng.gauss(0, holistic_noise),
                              "decisive": 0.0}, a_wins))
    return rows


def test_the_pull_toward_the_prior_keeps_little_data_near_it_and_lets_much_data_move_it() -> None:
    few, many = _rows(6, lower_sign=1, seed=1), _rows(600, lower_sign=1, seed=2)
    near = fit_check_weights(few, strength=10.0)
    far = fit_check_weights(many, strength=10.0)
    assert abs(near.lower - PRIOR.lower) < abs(far.lower - PRIOR.lower)
    assert far.lower > 1.0 and far.holistic_open < PRIOR.holistic_open  # the noise loses weight
    # the decided regime had no pairs: its weights stay at the prior exactly
    assert (far.rules, far.holistic_decided) == pytest.approx((PRIOR.rules, PRIOR.holistic_decided))
    assert fit_check_weights(many, strength=math.inf, source="s") == PRIOR.model_copy(update={"source": "s"})
    with pytest.raises(ValueError, match="strength"):
        fit_check_weights(many, strength=0.0)


def test_weights_are_never_negative() -> None:
    against = fit_check_weights(_rows(400, lower_sign=-1, seed=3), strength=0.1)
    assert against.lower == 0.0


def test_leave_one_source_out_moves_off_the_prior_only_when_every_source_agrees() -> None:
    agree = {"s1": _rows(200, lower_sign=1, seed=4), "s2": _rows(200, lower_sign=1, seed=5),
             "s3": _rows(200, lower_sign=1, seed=6)}
    strength, trials = choose_strength(agree, PRIOR)
    assert math.isfinite(strength) and set(trials) == {str(s) for s in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0,
                                                                         math.inf)}
    # a source where the rules point the other way: no fit holds on it, the prior is kept
    clash = {**agree, "s3": _rows(200, lower_sign=-1, seed=7)}
    assert choose_strength(clash, PRIOR)[0] == math.inf
    assert choose_strength({"s1": agree["s1"]}, PRIOR)[0] == math.inf  # one source: nothing to validate on


def test_validation_scores_the_prior_and_a_weighting_fitted_without_the_source() -> None:
    by_source = {"s1": _rows(150, lower_sign=1, seed=8), "s2": _rows(150, lower_sign=1, seed=9),
                 "s3": _rows(150, lower_sign=1, seed=10)}
    checked = validate_by_source(by_source, PRIOR)
    for name, v in checked.items():
        assert v["prior"] == score(by_source[name], PRIOR)
        assert v["fitted"].log_loss < v["prior"].log_loss  # the shared signal is learnt without the source
        assert v["fitted"].n == 150 and 0.5 < v["fitted"].accuracy <= 1.0


def test_score_counts_an_even_call_as_wrong() -> None:
    rows = [Labelled({"rules": 0.0, "lower": 0.0, "holistic": 0.0, "decisive": 0.0}, True)]
    s = score(rows, PRIOR)
    assert s.accuracy == 0.0 and s.auroc is None and s.log_loss == pytest.approx(math.log(2))


def test_a_fitted_weighting_round_trips_and_belongs_to_one_configuration(tmp_path: Path) -> None:
    by_source = {"s1": _rows(60, lower_sign=1, seed=11), "s2": _rows(60, lower_sign=1, seed=12)}
    fitted = fit_weights(by_source, judge=weights_key(EMBEDDED), command="cmd", rulebook_version="rb-1")
    path = tmp_path / "w.json"
    path.write_text(fitted.model_dump_json(), encoding="utf-8")
    loaded = load_weights(path)
    assert loaded == fitted and loaded.id == fitted.id and loaded.sources == {"s1": 60, "s2": 60}
    assert set(loaded.validation) == {"s1", "s2"}
    assert loaded.matches(EMBEDDED)
    assert not loaded.matches(EMBEDDED.model_copy(update={"holistic": "pairwise"}))
    assert not loaded.matches(EMBEDDED.model_copy(update={"model": "other"}))
    # the weights it carries are not part of what it belongs to
    assert loaded.matches(EMBEDDED.model_copy(update={"check_weights": loaded.weights}))


def test_a_bad_weights_file_is_an_input_error_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"format": "judge-check-weights/1", "judge": {}}), encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_weights(path)
    assert "weights" in str(info.value)
    with pytest.raises(InputError, match="cannot read"):
        load_weights(tmp_path / "missing.json")


def test_the_shipped_weighting_is_applied_to_the_configuration_it_was_fitted_for() -> None:
    for holistic in ("pointwise", "pairwise"):
        config = EMBEDDED.model_copy(update={"holistic": holistic})
        fitted = shipped_weights(config)
        assert fitted is not None and isinstance(fitted, FittedWeights)
        assert fitted.judge["holistic"] == holistic and set(fitted.validation) == set(fitted.sources)
        assert fitted.weights.source.startswith("fitted on")
        applied = with_shipped_weights(config).check_weights
        if fitted.weights.model_dump(exclude={"source"}) == PRIOR.model_dump(exclude={"source"}):
            assert applied == PRIOR  # a fit no better than the prior leaves the configuration as it was
        else:
            assert applied == fitted.weights
    # another model, or the pairwise method, keeps the prior
    other = EMBEDDED.model_copy(update={"model": "another-model"})
    assert shipped_weights(other) is None and with_shipped_weights(other).check_weights == PRIOR
    pairwise = EMBEDDED.model_copy(update={"method": "pairwise"})
    assert with_shipped_weights(pairwise) is pairwise
