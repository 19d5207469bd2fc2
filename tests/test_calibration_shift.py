"""The shift alarm (pure tests on literal data), the uncalibrated escalation rule, and `judge run --calibrator`
on a shifted batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from judge.backends.fake import FakeBackend
from judge.calibration.apply import batch_shift, escalate_uncalibrated
from judge.calibration.recalibrate import Calibrator, calibration_key, load_calibrator
from judge.calibration.shift import MIN_BATCH, ReferenceSample, reference_from_table, shift_test, shift_test_columns
from judge.calibration.signals import SHIFT_COLUMNS, raw_view
from judge.judging.prompts import TEMPLATE_VERSION
from judge.verdicts import Distribution, JudgeConfig, Verdict
from tests.test_calibration_recalibrate import _config, _rich_table, _table
from tests.test_engine import PAIR, router, verdict

CONF = [0.51, 0.52, 0.55, 0.6, 0.53, 0.5, 0.58, 0.51, 0.62, 0.54] * 3


def test_the_same_columns_raise_no_alarm() -> None:
    ref = {"raw_confidence": CONF * 4, "orders_agree": [1.0, 0.0, 0.0] * 40}
    rep = shift_test_columns(ref, {"raw_confidence": CONF, "orders_agree": [1.0, 0.0, 0.0] * 10})
    assert rep.status == "not_detected" and not rep.shifted and rep.guarantee_applies
    assert [(t.name, t.test) for t in rep.tests] == [("raw_confidence", "ks"), ("orders_agree", "fisher")]
    assert all(t.p_value > 0.5 for t in rep.tests) and rep.flagged() == []
    assert rep.n_batch == 30 and rep.n_reference == 120
    assert rep.describe().startswith("no shift detected: 30 verdicts vs 120 calibration rows")


def test_a_moved_column_is_named_and_the_guarantee_withdrawn() -> None:
    ref = {"raw_confidence": CONF * 4, "retrieval": [0.3, 0.32, 0.28, 0.31] * 30}
    batch = {"raw_confidence": CONF, "retrieval": [0.6, 0.62, 0.58] * 10}
    rep = shift_test_columns(ref, batch)
    assert rep.shifted and not rep.guarantee_applies
    assert [t.name for t in rep.flagged()] == ["retrieval"]
    retrieval = rep.flagged()[0]
    assert retrieval.reference_mean == pytest.approx(0.3025) and retrieval.batch_mean == pytest.approx(0.6)
    assert retrieval.statistic == pytest.approx(1.0)  # KS: the two samples do not overlap
    text = rep.describe()
    assert text.startswith("SHIFT: this batch of 30 differs") and "retrieval (mean 0.302 -> 0.600" in text
    assert "not applicable" in text and "raw_confidence" not in text


def test_the_bonferroni_level_decides() -> None:
    # agreement 0.1 in the reference and 0.4 here: Fisher's p is small, but is it below alpha / 2?
    ref = {"a": [1.0] * 10 + [0.0] * 90, "b": CONF * 3}
    batch = {"a": [1.0] * 12 + [0.0] * 18, "b": CONF}
    p = shift_test_columns(ref, batch, alpha=0.5).tests[0].p_value
    assert 0.0 < p < 0.01
    assert shift_test_columns(ref, batch, alpha=2 * p * 1.01).shifted
    assert not shift_test_columns(ref, batch, alpha=2 * p * 0.99).shifted


def test_too_small_and_unreferenced_batches_are_not_tested() -> None:
    small = shift_test_columns({"x": CONF}, {"x": CONF[: MIN_BATCH - 1]})
    assert small.status == "too_small" and small.tests == [] and not small.guarantee_applies
    assert "at least 20 are needed" in small.describe()
    t, _ = _rich_table(50, seed=1)
    none = shift_test(None, t)
    assert none.status == "no_reference" and not none.shifted and not none.guarantee_applies
    assert "carries no sample" in none.describe()


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 1.0}])
def test_bad_alpha_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="alpha"):
        shift_test_columns({"x": CONF}, {"x": CONF}, **kwargs)


def test_no_common_column_is_refused() -> None:
    with pytest.raises(ValueError, match="share no column"):
        shift_test_columns({"x": CONF}, {"y": CONF})


def test_reference_keeps_every_symmetric_column_and_samples_large_data() -> None:
    t, _ = _rich_table(300, seed=2)
    ref = reference_from_table(t)
    assert ref.n == 300 and set(ref.columns) == set(SHIFT_COLUMNS)
    assert ref.columns["raw_confidence"] == pytest.approx(t.raw_confidence.tolist(), abs=1e-6)
    small = reference_from_table(t, max_rows=50, seed=4)
    assert small.n == 300 and len(small.columns["retrieval"]) == 50
    assert small == reference_from_table(t, max_rows=50, seed=4)


def test_false_alarms_are_rare_and_a_shift_is_seen() -> None:
    """Batches from the calibration distribution raise the alarm at about alpha; a batch whose judge is surer and
    whose rules match better raises it nearly always."""
    rng = np.random.default_rng(0)

    def table(n: int, scale: float, retrieval: float):  # type: ignore[no-untyped-def]
        z = rng.normal(0.0, scale, n)
        return _table(z, agree=(rng.random(n) < 0.3).astype(float), retrieval=rng.normal(retrieval, 0.05, n),
                      length=rng.normal(0.0, 0.5, n))

    ref = reference_from_table(table(600, 0.2, 0.30))
    same = sum(shift_test(ref, table(200, 0.2, 0.30)).shifted for _ in range(100))
    moved = sum(shift_test(ref, table(200, 0.35, 0.33)).shifted for _ in range(100))
    assert same <= 5 and moved >= 90


def _calibrated(pid: str, raw_a: float, cal_a: float) -> Verdict:
    cal = Distribution(a=cal_a, tie=0.0, b=1 - cal_a)
    return Verdict(pair_id=pid, winner=cal.winner, probabilities=cal, config=_config(), cache_key=pid,
                   raw_probabilities=Distribution(a=raw_a, tie=0.0, b=1 - raw_a), calibrator="cal-x", escalated=False)


def test_the_uncalibrated_rule_reads_the_judges_own_confidence() -> None:
    # calibrated 0.9 but the judge itself said 0.55: escalated below 0.8 by the uncalibrated rule
    assert escalate_uncalibrated(_calibrated("p", 0.55, 0.9), 0.8).escalated is True
    assert escalate_uncalibrated(_calibrated("p", 0.15, 0.6), 0.8).escalated is False  # the judge said B at 0.85
    v = _calibrated("p", 0.55, 0.9)
    assert escalate_uncalibrated(v, 0.8).probabilities == v.probabilities  # the calibrated numbers are kept
    raw = raw_view(v)
    assert raw.probabilities is not None and raw.probabilities.a == pytest.approx(0.55) and raw.winner == "A"


def test_batch_shift_compares_raw_signals_and_skips_failures() -> None:
    verdicts = [_calibrated(f"p{i}", 0.8, 0.95) for i in range(25)]
    lengths = {f"p{i}": (100, 100) for i in range(25)}
    near_even = reference_from_table(_table(np.full(100, 0.05)))  # a judge that always said ~0.51
    calibrator = Calibrator(method="none", judge=calibration_key(_config()), n_fitted=100, reference=near_even)
    rep = batch_shift(calibrator, verdicts, lengths)
    assert rep.shifted and rep.n_batch == 25
    assert rep.flagged()[0].name == "raw_confidence" and rep.flagged()[0].batch_mean == pytest.approx(0.8)
    assert batch_shift(calibrator, verdicts[:5], lengths).status == "too_small"


def test_eval_tests_escalated_verdicts_for_shift_too(tmp_path: Path) -> None:
    """`judge eval --calibrator` tests every judged verdict's inputs, as `judge run` does: escalation changes
    what is done with a verdict, not what it was judged from (it tested only the 5 kept, and said too few)."""
    from judge.calibration.workflow import evaluate_results

    verdicts = [_calibrated(f"p{i}", 0.8, 0.95).model_copy(update={"escalated": i >= 5}) for i in range(25)]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"id": f"p{i}", "prompt": "q", "response_a": "a" * 100,
                                            "response_b": "b" * 100, "label": "A"}) + "\n" for i in range(25)))
    results = tmp_path / "results.jsonl"
    results.write_text("".join(v.model_dump_json() + "\n" for v in verdicts))
    near_even = reference_from_table(_table(np.full(100, 0.05)))
    calibrator = Calibrator(method="none", judge=calibration_key(_config()), n_fitted=100, reference=near_even)
    ev = evaluate_results(labelled, results, recalibrate=None, calibrator=calibrator, n_boot=20)
    assert ev.shift is not None and ev.shift.n_batch == 25 and ev.shift.shifted


def test_an_older_calibrator_file_loads_without_a_reference(tmp_path: Path) -> None:
    cal = Calibrator(method="temperature", params={"temperature": 2.0}, judge=calibration_key(_config()),
                     n_fitted=100, reference=ReferenceSample(n=3, columns={"raw_confidence": [0.5, 0.6, 0.7]}))
    new_fields = {"reference", "selection", "sources", "feature_trials", "source_validation"}
    old = {k: v for k, v in json.loads(cal.model_dump_json()).items() if k not in new_fields}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    loaded = load_calibrator(path)
    assert loaded.reference is None and loaded.id == cal.id  # the reference sample does not change the id
    assert loaded.selection == "cross-validation" and loaded.source_validation == []
    again = tmp_path / "new.json"
    again.write_text(cal.model_dump_json(), encoding="utf-8")
    assert load_calibrator(again).reference == cal.reference


# ---------------------------------------------------------------- judge run --calibrator on a shifted batch
def _shifted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                 sqlite_url: str, *extra: str) -> tuple[list[dict], str]:
    from judge.backends import registry
    from judge.rulebook import Rulebook as _Rb
    from judge.settings import Settings
    from tests.test_cli import REPO, run_cli

    monkeypatch.setattr(registry, "make_backend",
                        lambda *a, **k: FakeBackend(router(verdict(A=0.8, B=0.2), verdict(B=0.8, A=0.2))))
    assert run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)[0] == 0
    version = _Rb.open(settings=Settings(db_url=sqlite_url, embedding_model="hash"), with_index=False).version
    config = JudgeConfig(backend="fake", model="fake-judge", template_version=TEMPLATE_VERSION)
    # calibrated on a judge that was never surer than 0.52; the temperature 0.5 makes 0.8 into 0.94
    cal = Calibrator(method="temperature", params={"temperature": 0.5}, judge=calibration_key(config),
                     rulebook_version=version, n_fitted=100,
                     abstain={"certified": True, "threshold": 0.9, "target": 0.9, "delta": 0.1},
                     reference=reference_from_table(_table(np.linspace(-0.08, 0.08, 100))))
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(cal.model_dump_json())
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"x{i}", "prompt": f"{PAIR.prompt} ({i})",
                                         "response_a": PAIR.response_a.text, "response_b": PAIR.response_b.text})
                             + "\n" for i in range(25)))
    out = tmp_path / "out.jsonl"
    code, _, stderr = run_cli(["run", str(pairs), "-o", str(out), "--method", "pairwise", "--no-explain", "--no-table",
                               "--calibrator",
                               str(cal_path), "--abstain", *extra], monkeypatch, capsys, sqlite_url)
    assert code == 0, stderr
    return [json.loads(line) for line in out.read_text().splitlines()], " ".join(stderr.split())


def test_abstain_on_a_shifted_batch_escalates_by_the_judges_own_confidence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    lines, stderr = _shifted_run(tmp_path, monkeypatch, capsys, sqlite_url)
    assert "SHIFT: this batch of 25 differs" in stderr and "not applicable" in stderr
    assert "25 verdicts re-decided by the judge's own confidence" in stderr
    # the calibrated verdicts (0.94, kept) come first, then the re-decided ones (0.8 < 0.9: escalated) win
    assert len(lines) == 50
    assert all(not x["escalated"] for x in lines[:25]) and all(x["escalated"] for x in lines[25:])
    assert lines[25]["probabilities"]["a"] == pytest.approx(lines[0]["probabilities"]["a"])


def test_trust_shifted_keeps_the_calibrated_abstention(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    lines, stderr = _shifted_run(tmp_path, monkeypatch, capsys, sqlite_url, "--trust-shifted")
    assert "SHIFT" in stderr and "--trust-shifted: the calibrated abstention is kept" in stderr
    assert len(lines) == 25 and not any(x["escalated"] for x in lines)
