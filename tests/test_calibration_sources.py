"""Leave-one-source-out validation, method choice by the worst left-out source, and signals admitted only when
they help on every source (pure tests on simulated sources), and the files / CLI around them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from judge.calibration.recalibrate import (
    distributions,
    fit,
    fit_calibrator,
    left_out_losses,
    predict,
    select_features,
    select_method,
)
from judge.calibration.signals import SignalTable
from judge.calibration.sources import leave_one_source_out, source_metrics
from judge.calibration.workflow import evaluate_results, fit_from_results, load_labels, parse_signals
from judge.errors import InputError
from tests.test_calibration_evaluate import CONFIG, make
from tests.test_calibration_recalibrate import _config, _sigmoid, _table


def _sources(length_sign: tuple[float, float, float] = (1.0, 1.0, -1.0), n: int = 300,
             seed: int = 0) -> tuple[SignalTable, list[str], list[str]]:
    """Three sources; the judge's log-odds carry the truth everywhere, agreement of the two orders makes it
    surer everywhere, and the longer answer wins with the given sign per source (a shortcut where it is +)."""
    rng = np.random.default_rng(seed)
    parts, labels, sources = [], [], []
    for k, sign in enumerate(length_sign):
        z = rng.normal(0.0, 1.0, n)
        agree = (rng.random(n) < 0.5).astype(float)
        length = rng.normal(0.0, 1.0, n)
        logit = 0.5 * z
        truth = z * (0.5 + 3.0 * agree) + 1.5 * sign * length
        parts.append((logit, agree, length))
        labels += np.where(rng.random(n) < _sigmoid(truth), "A", "B").tolist()
        sources += [f"s{k}"] * n
    logit, agree, length = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return _table(logit, agree=agree, length=length), labels, sources


def test_a_signal_that_helps_on_every_source_enters_and_a_shortcut_does_not() -> None:
    t, labels, sources = _sources()
    features, tried = select_features(t, labels, sources, candidates=("logit*agree", "length"))
    assert features == ("logit", "logit*agree")
    base, with_agree = tried["logit"], tried["logit+logit*agree"]
    assert all(with_agree[s] < base[s] for s in ("s0", "s1", "s2"))
    shortcut = tried["logit+logit*agree+length"]
    assert shortcut["s0"] < with_agree["s0"] and shortcut["s2"] > with_agree["s2"]  # helps two, hurts one
    # where length points the same way on every source it is no shortcut and enters when offered
    t2, labels2, sources2 = _sources((1.0, 1.0, 1.0))
    assert select_features(t2, labels2, sources2, candidates=("logit*agree", "length"))[0] == (
        "logit", "logit*agree", "length")


def test_unknown_candidate_features_are_refused() -> None:
    t, labels, sources = _sources(n=50)
    with pytest.raises(ValueError, match="unknown calibration feature"):
        select_features(t, labels, sources, candidates=("shoe size",))


def test_left_out_losses_fit_each_source_on_the_others() -> None:
    t, labels, sources = _sources(n=100)
    losses = left_out_losses("temperature", t, labels, sources)
    others = [i for i, s in enumerate(sources) if s != "s1"]
    held = [i for i, s in enumerate(sources) if s == "s1"]
    p = predict("temperature", fit("temperature", t.subset(others), [labels[i] for i in others]), t.subset(held))
    y = np.asarray([labels[i] == "A" for i in held], dtype=float)
    assert losses["s1"] == pytest.approx(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))


def test_auto_chooses_by_the_worst_left_out_source() -> None:
    t, labels, sources = _sources(n=200)
    chosen, losses = select_method(t, labels, groups=sources, features=("logit", "logit*agree"))
    for method, loss in losses.items():
        per_source = left_out_losses(method, t, labels, sources, features=("logit", "logit*agree"))
        assert loss == pytest.approx(max(per_source.values()))
    assert losses[chosen] <= min(losses.values()) + 0.05
    cal = fit_calibrator(t, labels, _config(), groups=sources)
    assert cal.selection == "worst left-out source" and cal.sources == {"s0": 200, "s1": 200, "s2": 200}
    assert cal.method != "logistic" or "length" not in cal.params["features"]


def test_leave_one_source_out_scores_each_source_with_a_calibrator_fitted_without_it() -> None:
    t, labels, sources = _sources(n=150)
    val = leave_one_source_out(t, labels, sources, method="temperature", target=0.7, delta=0.2)
    assert [r.source for r in val.rows] == ["s0", "s1", "s2"]
    assert all(r.n == 150 and r.n_fitted == 300 and r.method == "temperature" for r in val.rows)
    held = [i for i, s in enumerate(sources) if s == "s2"]
    others = [i for i, s in enumerate(sources) if s != "s2"]
    sub = t.subset(others)
    params = fit("temperature", sub, [labels[i] for i in others])
    probs = distributions(predict("temperature", params, t.subset(held)), np.zeros(150), 0.0)
    row = val.rows[2]
    assert row.recalibrated == pytest.approx(source_metrics(probs, [labels[i] for i in held]))
    raw = np.column_stack([t.raw_p_a[held], np.zeros(150), 1 - t.raw_p_a[held]])
    assert row.raw == pytest.approx(source_metrics(raw, [labels[i] for i in held]))
    assert set(row.selective) == {"threshold", "certified", "coverage", "n_kept", "agreement"}
    assert val.worst("ece_uniform_15") == max(r.recalibrated["ece_uniform_15"] for r in val.rows)


def test_leave_one_source_out_needs_two_sources() -> None:
    t, labels, _ = _sources(n=50)
    with pytest.raises(ValueError, match="at least two sources"):
        leave_one_source_out(t, labels, ["only"] * len(labels))


def test_source_metrics_by_hand() -> None:
    probs = np.asarray([[0.7, 0.0, 0.3], [0.4, 0.0, 0.6], [0.9, 0.0, 0.1], [0.2, 0.1, 0.7]])
    out = source_metrics(probs, ["A", "A", "A", "tie"])
    assert out["accuracy"] == pytest.approx(0.5) and out["accuracy_without_ties"] == pytest.approx(2 / 3)
    assert out["brier_binary"] == pytest.approx((0.09 + 0.36 + 0.01) / 3)


def test_parse_signals() -> None:
    assert parse_signals(None) is None and parse_signals("auto") is None
    assert parse_signals("length") == ["logit", "length"]
    assert parse_signals("logit, logit*agree") == ["logit", "logit*agree"]
    with pytest.raises(InputError, match="unknown signal"):
        parse_signals("logit,shoe")


# ---------------------------------------------------------------- files
def _two_sources(tmp: Path, n: int = 80) -> tuple[list[Path], list[Path]]:
    rng = np.random.default_rng(3)
    labelled, results = [], []
    for k, (name, acc) in enumerate((("alpha", 0.8), ("beta", 0.6))):
        pairs, res = tmp / f"{name}.jsonl", tmp / f"{name}-results.jsonl"
        with pairs.open("w") as fp, res.open("w") as fr:
            for i in range(n):
                y = "A" if rng.random() < 0.5 else "B"
                says_a = (y == "A") == (rng.random() < acc)
                pid = f"{name}{i:03d}"
                fp.write(json.dumps({"id": pid, "source": f"src-{name}", "topic": f"t{i % 2}", "prompt": "q",
                                     "response_a": "a" * (5 + k), "response_b": "b" * 9, "label": y}) + "\n")
                fr.write(make(pid, 0.75 if says_a else 0.25).model_dump_json() + "\n")
        labelled.append(pairs)
        results.append(res)
    return labelled, results


def test_several_files_are_one_labelled_set_grouped_as_asked(tmp_path: Path) -> None:
    labelled, _ = _two_sources(tmp_path, n=10)
    assert {x.source for x in load_labels(labelled).values()} == {"src-alpha", "src-beta"}
    assert {x.source for x in load_labels(labelled, group_by="file").values()} == {"alpha", "beta"}
    assert {x.source for x in load_labels(labelled, group_by="topic").values()} == {"t0", "t1"}
    with pytest.raises(InputError, match="no labelled pair has a field 'nothing'"):  # a misspelt field
        load_labels(labelled[:1], group_by="nothing")
    with pytest.raises(InputError, match="more than one labelled file"):
        load_labels([labelled[0], labelled[0]])


def test_evaluate_and_fit_report_left_out_sources(tmp_path: Path) -> None:
    labelled, results = _two_sources(tmp_path)
    ev = evaluate_results(labelled, results, n_boot=50)
    assert ev.source_validation is not None
    assert [(r.source, r.n, r.n_fitted) for r in ev.source_validation.rows] == [("src-alpha", 80, 80),
                                                                                ("src-beta", 80, 80)]
    assert ev.raw.n_scored == 160
    one = evaluate_results(labelled[:1], results[:1], n_boot=50)
    assert one.source_validation is None
    cal = fit_from_results(labelled, results, target=0.7)
    assert cal.selection == "worst left-out source" and len(cal.source_validation) == 2
    assert cal.reference is not None and cal.reference.n == 160
    # the calibrator scored on one source: its figures and the shift alarm's finding
    ev2 = evaluate_results(labelled[1:], results[1:], n_boot=50, calibrator=cal)
    assert ev2.applied is not None and ev2.shift is not None and ev2.shift.status in ("shifted", "not_detected")
    assert ev2.applied.selective is not None and "guarantee" in ev2.applied.selective
    assert ev2.shift.describe() in ev2.applied.notes


def test_calibrate_command_prints_the_left_out_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    from tests.test_cli import run_cli

    monkeypatch.setenv("COLUMNS", "200")
    labelled, results = _two_sources(tmp_path)
    out = tmp_path / "cal.json"
    code, stdout, stderr = run_cli(["calibrate", *map(str, labelled), "-r", str(results[0]), "-r", str(results[1]),
                                    "-o", str(out), "--signals", "logit,length"], monkeypatch, capsys, sqlite_url)
    assert code == 0, stderr
    assert "worst left-out source's log loss" in stdout and "leave one source out" in stdout
    assert "src-alpha" in stdout and "src-beta" in stdout
    saved = json.loads(out.read_text())
    assert saved["reference"]["n"] == 160 and len(saved["source_validation"]) == 2
    if saved["method"] == "logistic":
        assert "uses response length" in stdout
    code, _, stderr = run_cli(["calibrate", str(labelled[0]), "-r", str(results[0]), "-o", str(out), "--signals",
                               "shoe"], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "unknown signal" in stderr
    code, stdout, stderr = run_cli(["eval", *map(str, labelled), "-r", str(results[0]), "-r", str(results[1]),
                                    "--bootstrap", "20", "--calibrator", str(tmp_path / "cal.json")],
                                   monkeypatch, capsys, sqlite_url)
    assert code == 0, stderr
    assert "leave one source out" in stdout and "the calibrator's abstention here" in stdout


def test_config_of_make_is_the_one_evaluated() -> None:
    assert make("p1", 0.6).config == CONFIG
