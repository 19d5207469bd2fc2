"""Evaluation against labels, calibration from files, calibrated judging, and the `eval` / `calibrate` commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from judge.backends.fake import FakeBackend
from judge.calibration.evaluate import LabelledRow, PairLabel, evaluate, join, point_metrics
from judge.calibration.metrics import ece_if_calibrated
from judge.calibration.recalibrate import Calibrator, calibration_key, load_calibrator
from judge.calibration.workflow import evaluate_results, fit_from_results, load_labels
from judge.cli.main import app
from judge.errors import CalibratorMismatchError, InputError
from judge.judging.engine import Judge
from judge.judging.prompts import TEMPLATE_VERSION
from judge.rulebook import Rulebook
from judge.rules.model import Layer, Pair, Rule
from judge.verdicts import Distribution, Failure, JudgeConfig, Verdict
from tests.test_engine import PAIR, router, verdict

CONFIG = JudgeConfig(backend="fake", model="m", template_version="t", explain=False)


def make(pid: str, p_a: float, *, agree: bool | None = True, config: JudgeConfig = CONFIG,
         failed: bool = False, escalated: bool = False, rulebook_version: str = "rb-1") -> Verdict:
    if failed:
        return Verdict(pair_id=pid, winner=None, probabilities=None, config=config, cache_key=pid,
                       failure=Failure(stage="verdict", reason="no answer token"))
    dist = Distribution(a=p_a, tie=0.0, b=1.0 - p_a)
    return Verdict(pair_id=pid, winner=dist.winner, probabilities=dist, config=config, cache_key=pid,
                   position_inconsistent=None if agree is None else not agree, escalated=escalated,
                   rulebook_version=rulebook_version,
                   retrieved=[{"id": "spec/a" if pid < "p5" else "spec/b", "layer": "spec", "score": 0.5}])


def label(y: str, source: str = "s", la: int = 10, lb: int = 20) -> PairLabel:
    return PairLabel(y, source, la, lb)  # type: ignore[arg-type]


# ---------------------------------------------------------------- join and evaluate
def test_join_takes_the_last_verdict_and_lists_missing_and_unlabelled() -> None:
    labels = {"p1": label("A"), "p2": label("B")}
    joined = join([make("p1", 0.2), make("p1", 0.9), make("zz", 0.5)], labels)
    assert [r.verdict.probabilities.a for r in joined.rows] == [0.9]  # type: ignore[union-attr]
    assert joined.missing == ["p2"] and joined.unlabelled == ["zz"]


def test_failures_escalations_and_missing_are_counted_not_scored() -> None:
    rows = [LabelledRow(make("p1", 0.8), label("A")),   # right, conf 0.8
            LabelledRow(make("p2", 0.7), label("B")),   # wrong, conf 0.7
            LabelledRow(make("p3", 0.4), label("B")),   # right, conf 0.6
            LabelledRow(make("p4", 0.9), label("tie")),  # wrong (a tie label), conf 0.9
            LabelledRow(make("p5", 0.5, failed=True), label("A")),
            LabelledRow(make("p6", 0.99, escalated=True), label("B"))]
    rep = evaluate(rows, n_missing=3, n_boot=50)
    assert (rep.n_scored, rep.n_failed, rep.n_escalated, rep.n_missing, rep.n_labelled) == (4, 1, 1, 3, 9)
    assert rep.failures_by_stage == {"verdict": 1}
    assert rep.headline["accuracy"].point == pytest.approx(2 / 4)
    assert rep.headline["accuracy_without_ties"].point == pytest.approx(2 / 3)
    # binary Brier over the three non-tie labels: P(A) = 0.8 (A), 0.7 (B), 0.4 (B)
    assert rep.headline["brier_binary"].point == pytest.approx((0.2**2 + 0.7**2 + 0.4**2) / 3)
    # 15 equal-width bins put each confidence alone: |acc - conf| averaged
    assert rep.headline["ece_uniform_15"].point == pytest.approx((0.2 + 0.7 + 0.4 + 0.9) / 4)
    # one verdict per bin: a calibrated judge's ECE is the mean over verdicts of |Bernoulli(c) - c|
    floor = rep.ece_if_calibrated["uniform_15"]
    assert floor["mean"] == pytest.approx(sum(2 * c * (1 - c) for c in (0.8, 0.7, 0.6, 0.9)) / 4, abs=0.02)
    assert set(rep.ece_if_calibrated) == {"uniform_15", "quantile_15"}
    # the p-value tests this report's own ECE against those draws
    assert 0 < floor["p_value"] <= 1
    assert floor["p_value"] == ece_if_calibrated([0.8, 0.7, 0.6, 0.9], 15, "uniform", seed=0,
                                                 observed=rep.headline["ece_uniform_15"].point).p_value
    assert rep.wrong_at_high == {"threshold": 0.9, "n_confident": 1, "n_wrong": 1, "error_rate": 1.0}
    assert rep.headline["position_consistency"].point == 1.0
    assert rep.n_ties_labelled == 1
    e = rep.headline["accuracy"]
    assert e.low <= e.point <= e.high


def test_breakdowns_group_by_source_and_top_spec_entry_with_counts() -> None:
    rows = [LabelledRow(make(f"p{i}", 0.8), label("A" if i % 2 else "B", source="x" if i < 4 else "y"))
            for i in range(8)]
    rep = evaluate(rows, n_boot=20)
    by_source = {g.key: g for g in rep.breakdowns["by_source"]}
    assert by_source["x"].n == 4 and by_source["y"].n == 4
    assert by_source["x"].accuracy == pytest.approx(0.5)
    spec = {g.key: g.n for g in rep.breakdowns["by_top_spec_entry"]}
    assert spec == {"spec/a": 5, "spec/b": 3}
    assert {g.key for g in rep.breakdowns["by_deciding_rule"]} == {"(no explanation)"}


def test_evaluate_refuses_nothing_to_score_and_misshapen_probabilities() -> None:
    with pytest.raises(ValueError, match="no scored verdict"):
        evaluate([LabelledRow(make("p1", 0.5, failed=True), label("A"))])
    with pytest.raises(ValueError, match="shape"):
        evaluate([LabelledRow(make("p1", 0.8), label("A"))], probs=np.ones((2, 3)) / 3)


def test_signal_auroc_finds_the_informative_signal() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        agree = bool(rng.random() < 0.5)
        right = rng.random() < (0.9 if agree else 0.5)  # agreement carries the information
        p = 0.6 if right else 0.4
        rows.append(LabelledRow(make(f"q{i}", p, agree=agree), label("A")))
    rep = evaluate(rows, n_boot=20)
    assert rep.signal_auroc["orders agree"] > 0.65
    assert any("verbal" in note for note in rep.notes)


# ---------------------------------------------------------------- files
def _synthetic_files(tmp: Path, n: int = 120, *, config: JudgeConfig = CONFIG) -> tuple[Path, Path]:
    """An over-confident judge: right 70% of the time, always 95% sure."""
    rng = np.random.default_rng(1)
    pairs, results = tmp / "pairs.jsonl", tmp / "results.jsonl"
    with pairs.open("w") as fp, results.open("w") as fr:
        for i in range(n):
            y = "A" if rng.random() < 0.5 else "B"
            right = rng.random() < 0.7
            says_a = (y == "A") == right
            fp.write(json.dumps({"id": f"p{i:03d}", "source": "synthetic", "prompt": "q", "response_a": "a" * 5,
                                 "response_b": "b" * 9, "label": y, "meta": {"hidden": True}}) + "\n")
            fr.write(make(f"p{i:03d}", 0.95 if says_a else 0.05, config=config).model_dump_json() + "\n")
    return pairs, results


def test_evaluate_results_reports_raw_and_cross_fitted_recalibration(tmp_path: Path) -> None:
    pairs, results = _synthetic_files(tmp_path)
    ev = evaluate_results(pairs, results, n_boot=100)
    assert ev.recalibrated is not None and len(ev.recalibration.fold_methods) == 5
    raw_ece, cal_ece = ev.raw.headline["ece_uniform_15"].point, ev.recalibrated.headline["ece_uniform_15"].point
    assert raw_ece > 0.15 and cal_ece < raw_ece / 2
    assert ev.raw.n_scored == 120 and ev.judge == calibration_key(CONFIG)
    sel = ev.raw.selective
    assert sel is not None and sel["n_kept"] + sel["n_escalated"] == 120
    low, high = sel["coverage_ci"]
    assert low <= sel["coverage"] <= high and 0 < high - low < 0.2  # an exact interval over 120 held-out pairs
    text = ev.raw.selective_text()
    assert text.startswith(f"{sel['coverage']:.2f} [{low:.2f}, {high:.2f}] at agreement ")


def test_split_repeats_summarise_recalibrated_metrics_over_fold_splits(tmp_path: Path) -> None:
    pairs, results = _synthetic_files(tmp_path)
    ev = evaluate_results(pairs, results, recalibrate="temperature", n_boot=10, split_repeats=4)
    assert ev.recalibrated is not None
    splits = ev.recalibration.splits
    assert set(splits) == {"ece_uniform_15", "ece_quantile_15", "brier_binary", "log_loss_binary"}
    for name, spread in splits.items():
        point = ev.recalibrated.headline[name].point  # the first split is the one the report is made from
        assert spread.n_splits == 4 and spread.min <= point <= spread.max
        assert spread.min <= spread.mean <= spread.max
    assert splits["ece_uniform_15"].max > splits["ece_uniform_15"].min  # other splits, other numbers
    assert "over 4 fold splits" in ev.recalibration.describe()
    assert evaluate_results(pairs, results, recalibrate="temperature", n_boot=2).recalibration.splits == {}
    with pytest.raises(ValueError, match="split_repeats"):
        evaluate_results(pairs, results, split_repeats=0)


def test_point_metrics_agree_with_the_report_headline() -> None:
    rng = np.random.default_rng(3)
    rows = [LabelledRow(make(f"q{i}", float(p)), label(str(rng.choice(["A", "B", "tie"], p=[0.45, 0.45, 0.1]))))
            for i, p in enumerate(rng.uniform(0.05, 0.95, size=150))]
    rep = evaluate(rows, n_boot=5)
    probs = np.asarray([[v.probabilities.a, v.probabilities.tie, v.probabilities.b]  # type: ignore[union-attr]
                        for v in (r.verdict for r in rows)])
    got = point_metrics(probs, [r.truth.label for r in rows])
    for name, value in got.items():
        assert value == pytest.approx(rep.headline[name].point), name
    with pytest.raises(ValueError, match="shape"):
        point_metrics(probs[:, :2], [r.truth.label for r in rows])


def test_results_from_two_configurations_are_refused(tmp_path: Path) -> None:
    pairs, results = _synthetic_files(tmp_path)
    other = CONFIG.model_copy(update={"model": "other"})
    with results.open("a") as fh:
        fh.write(make("p000", 0.5, config=other).model_dump_json() + "\n")
    with pytest.raises(InputError, match="2 judge configurations"):
        evaluate_results(pairs, results)


def test_load_labels_refuses_unlabelled_pairs(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "x", "prompt": "q", "response_a": "a", "response_b": "b"}) + "\n")
    with pytest.raises(InputError, match="no label"):
        load_labels(f)


def test_fit_from_results_records_config_rulebook_and_a_cross_fitted_threshold(tmp_path: Path) -> None:
    pairs, results = _synthetic_files(tmp_path, n=300)
    cal = fit_from_results(pairs, results, target=0.6, delta=0.1)
    assert cal.judge == calibration_key(CONFIG) and cal.rulebook_version == "rb-1" and cal.n_fitted == 300
    assert cal.abstain is not None and cal.abstain["certified"] is True
    assert 0.5 < cal.abstain_threshold() <= 1.0
    assert set(cal.cv_log_loss) == {"none", "temperature", "platt", "isotonic", "logistic"}
    # the simplest method within one standard error of the best (here the one-parameter temperature)
    assert cal.method == "temperature" and cal.cv_log_loss[cal.method] < min(cal.cv_log_loss.values()) + 0.01
    assert cal.selection == "cross-validation" and cal.source_validation == []



def test_an_uncertified_threshold_keeps_the_calibrator_id_through_its_file(tmp_path: Path) -> None:
    """No threshold reaches the target: the bound is undefined, saved as null, and the id printed after fitting
    is the one a run with the saved file records."""
    pairs, results = _synthetic_files(tmp_path, n=60)
    cal = fit_from_results(pairs, results, target=0.999, delta=0.01)
    assert cal.abstain is not None and cal.abstain["certified"] is False and cal.abstain["lower_bound"] is None
    saved = tmp_path / "cal.json"
    saved.write_text(cal.model_dump_json(), encoding="utf-8")
    assert load_calibrator(saved).id == cal.id


# ---------------------------------------------------------------- the judge applies a calibrator
@pytest.fixture
def rb(hash_rulebook: Rulebook) -> Rulebook:
    hash_rulebook.add_rule(Rule(id="spec/honesty", layer=Layer.SPEC, title="Be honest", text="State facts."))
    return hash_rulebook


def _calibrator(config: JudgeConfig, rulebook_version: str | None) -> Calibrator:
    return Calibrator(method="temperature", params={"temperature": 2.0}, judge=calibration_key(config),
                      rulebook_version=rulebook_version, n_fitted=100)


def test_judge_applies_calibrator_keeps_raw_and_escalates(rb) -> None:
    fb = FakeBackend(router(verdict(A=0.8, B=0.2), verdict(B=0.8, A=0.2)))
    config = JudgeConfig(backend=fb.name, model=fb.model, template_version=TEMPLATE_VERSION, explain=False)
    cal = _calibrator(config, rb.version)
    v = Judge(fb, rb, config=config, calibrator=cal, escalate_below=0.7).compare(PAIR)
    assert v.raw_probabilities is not None and v.raw_probabilities.a == pytest.approx(0.8)
    expected = 1 / (1 + math.exp(-math.log(4) / 2))  # logit 4:1 halved -> 2:1
    assert v.probabilities is not None and v.probabilities.a == pytest.approx(expected)
    assert v.calibrator == cal.id and v.winner == "A" and v.escalated is True  # 0.667 < 0.7


def test_judge_refuses_a_calibrator_of_another_configuration(rb) -> None:
    fb = FakeBackend(router(verdict(A=0.8, B=0.2), verdict(B=0.8, A=0.2)))
    config = JudgeConfig(backend=fb.name, model=fb.model, template_version=TEMPLATE_VERSION, explain=False)
    with pytest.raises(CalibratorMismatchError, match="template_version"):
        Judge(fb, rb, config=config,
              calibrator=_calibrator(config.model_copy(update={"template_version": "old"}), None))
    with pytest.raises(CalibratorMismatchError, match="rulebook_version"):
        Judge(fb, rb, config=config, calibrator=_calibrator(config, "rb-elsewhere"))
    Judge(fb, rb, config=config, calibrator=_calibrator(config, "rb-elsewhere"),
          allow_rulebook_change=True)


def test_calibrated_failure_stays_a_failure(rb) -> None:
    fb = FakeBackend(lambda body: "Sure")  # no answer token: a recorded failure
    config = JudgeConfig(backend=fb.name, model=fb.model, template_version=TEMPLATE_VERSION, explain=False)
    v = Judge(fb, rb, config=config, calibrator=_calibrator(config, None),
              escalate_below=0.9).compare(Pair(prompt="p", response_a="a", response_b="b", id="f"))
    assert v.failure is not None and v.probabilities is None and v.escalated is False


# ---------------------------------------------------------------- CLI
def test_eval_and_calibrate_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = _synthetic_files(tmp_path)
    metrics = tmp_path / "m" / "metrics.json"
    monkeypatch.setattr("sys.argv", ["judge", "eval", str(pairs), "-r", str(results), "--bootstrap", "50",
                                     "-m", str(metrics)])
    from judge.cli.main import main

    main()
    out = capsys.readouterr().out
    assert "ece_uniform_15" in out and "recalibrated" in out
    saved = json.loads(metrics.read_text())
    floor = saved["raw"]["ece_if_calibrated"]["uniform_15"]
    assert 0 < floor["mean"] < floor["p95"]
    assert 0 < floor["p_value"] <= 1
    assert saved["raw"]["n_scored"] == 120 and saved["recalibrated"]["n_scored"] == 120

    cal_path = tmp_path / "cal.json"
    monkeypatch.setattr("sys.argv", ["judge", "calibrate", str(pairs), "-r", str(results), "-o", str(cal_path),
                                     "--target", "0.6"])
    main()
    assert "written to" in capsys.readouterr().out
    assert load_calibrator(cal_path).n_fitted == 120
    # with tie labels (this judge never says tie) the calibrator states how it gives tie probability
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    pairs.write_text("".join(json.dumps({**r, "label": "tie" if i % 6 == 0 else r["label"]}) + "\n"
                             for i, r in enumerate(rows)))
    main()
    assert "ties (the judge never says tie; 16.7% of the labels): P(tie) = sigmoid(" in capsys.readouterr().out
    assert load_calibrator(cal_path).tie_model is not None


def test_help_of_new_commands() -> None:
    from typer.testing import CliRunner

    for cmd in ("eval", "calibrate"):
        res = CliRunner().invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output


def test_holdout_same_prompt_hides_the_precedent_decided_on_that_prompt(rb: Rulebook, tmp_path: Path) -> None:
    from judge.records import PairRecord, read_results
    from judge.runs import RunOptions, judge_file

    ruling = rb.add_ruling(prompt="At what   temperature does water boil?", response_a=PAIR.response_a,
                           response_b=PAIR.response_b, holding="A", rationale="Facts.", cites=["spec/honesty"])
    other = rb.add_ruling(prompt="Unrelated question", response_a="x", response_b="y", holding="B",
                          rationale="Shorter.")
    assert rb.rulings_by_prompt()["At what temperature does water boil?"] == [ruling.id]
    fb = FakeBackend(router(verdict(A=0.8, B=0.2), verdict(B=0.8, A=0.2)))
    config = JudgeConfig(backend=fb.name, model=fb.model, template_version=TEMPLATE_VERSION, explain=False,
                         k_rulings=5)
    records = [PairRecord(pair=PAIR, label="A", source=None, line=1)]
    for holdout, name in ((False, "seen.jsonl"), (True, "held.jsonl")):
        judge_file(Judge(fb, rb, config=config, use_cache=False), records, tmp_path / name,
                   RunOptions(holdout_same_prompt=holdout))
    seen = {r["id"] for r in read_results(tmp_path / "seen.jsonl")[0].retrieved}
    held = {r["id"] for r in read_results(tmp_path / "held.jsonl")[0].retrieved}
    assert ruling.id in seen and ruling.id not in held and other.id in held


def test_run_command_with_calibrator_and_abstain(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], sqlite_url: str,
                                                 tmp_path: Path) -> None:
    from judge.backends import registry
    from tests.test_cli import REPO, run_cli

    monkeypatch.setattr(registry, "make_backend",
                        lambda *a, **k: FakeBackend(router(verdict(A=0.8, B=0.2), verdict(B=0.8, A=0.2))))
    assert run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)[0] == 0
    from judge.rulebook import Rulebook as _Rb
    from judge.settings import Settings

    version = _Rb.open(settings=Settings(db_url=sqlite_url, embedding_model="hash"), with_index=False).version
    config = JudgeConfig(backend="fake", model="fake-judge", template_version=TEMPLATE_VERSION)
    cal = _calibrator(config, version).model_copy(update={"abstain": {"certified": True, "threshold": 0.7,
                                                                      "target": 0.9, "delta": 0.1}})
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(cal.model_dump_json())
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"id": "x1", "prompt": PAIR.prompt, "response_a": PAIR.response_a.text,
                                 "response_b": PAIR.response_b.text}) + "\n")
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = run_cli(["run", str(pairs), "-o", str(out), "--method", "pairwise", "--no-explain",
                                    "--calibrator", str(cal_path), "--abstain"], monkeypatch, capsys, sqlite_url)
    assert code == 0, stderr
    result = json.loads(out.read_text())
    assert result["calibrator"] == cal.id and result["escalated"] is True
    assert result["raw_probabilities"]["a"] == pytest.approx(0.8)
    assert "escalate" in stdout
    # resumed: the pair already judged is skipped, and the progress counts it as done
    code, _, stderr = run_cli(["run", str(pairs), "-o", str(out), "--method", "pairwise", "--no-explain",
                               "--calibrator", str(cal_path),
                               "--abstain"], monkeypatch, capsys, sqlite_url)
    assert code == 0 and "judging: 1/1 (100%)" in stderr and len(out.read_text().splitlines()) == 1
    # a calibrator for another model is refused with one clear line, and nothing is judged
    other = cal.model_copy(update={"judge": {**cal.judge, "model": "another"}})
    cal_path.write_text(other.model_dump_json())
    code, _, stderr = run_cli(["run", str(pairs), "-o", str(tmp_path / "o2.jsonl"), "--method", "pairwise",
                               "--no-explain",
                               "--calibrator", str(cal_path)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "model" in stderr and not (tmp_path / "o2.jsonl").exists()


def test_suspect_labels_are_the_confidently_contradicted_ones_most_confident_first() -> None:
    rows = [LabelledRow(make("p1", 0.95), label("B")),   # wrong at 0.95
            LabelledRow(make("p2", 0.30), label("A")),   # wrong at 0.70
            LabelledRow(make("p3", 0.90), label("A")),   # right
            LabelledRow(make("p4", 0.55), label("tie"))]  # wrong at 0.55
    rep = evaluate(rows, n_boot=10)
    assert [(s.pair_id, s.label, s.judged) for s in rep.suspects] == [("p1", "B", "A"), ("p2", "A", "B"),
                                                                      ("p4", "tie", "A")]
    assert [s.pair_id for s in evaluate(rows, n_boot=10, suspect_confidence=0.6).suspects] == ["p1", "p2"]


def test_settings_calibrator_is_applied_by_every_built_judge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            sqlite_url: str) -> None:
    from judge.backends import registry
    from judge.runs import build_judge
    from judge.settings import Settings

    monkeypatch.setattr(registry, "make_backend", lambda *a, **k: FakeBackend(lambda body: "A"))
    monkeypatch.setenv("JUDGE_CALIBRATOR", str(tmp_path / "cal.json"))
    settings = Settings.from_env(db_url=sqlite_url, embedding_model="hash")
    assert settings.calibrator == tmp_path / "cal.json"
    config = JudgeConfig(backend="fake", model="fake-judge", template_version=TEMPLATE_VERSION)
    (tmp_path / "cal.json").write_text(_calibrator(config, None).model_dump_json())
    judge = build_judge("fake", settings=settings, method="pairwise")
    assert judge.calibrator is not None and judge.calibrator.method == "temperature"
    (tmp_path / "cal.json").write_text("{}")
    with pytest.raises(InputError, match="not a judge calibrator"):
        build_judge("fake", settings=settings)


def test_eval_says_when_recalibration_made_the_held_out_loss_worse(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The embedded judge's committed verdicts on the Model Spec pairs: cross-fitted recalibration overfits them.
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setattr("sys.argv", ["judge", "eval", str(repo / "data" / "model_spec" / "pairs.jsonl"), "-r",
                                     str(repo / "evals" / "results" / "modelspec-rules.jsonl"), "--bootstrap", "20"])
    from judge.cli.main import main

    main()
    out = " ".join(capsys.readouterr().out.split())
    assert "note: recalibration raised the held-out log loss (0.703 -> " in out and "--recalibrate none" in out


def test_a_verdict_with_a_and_b_level_counts_its_confidence_not_the_tie_mass() -> None:
    probs = np.array([[0.9, 0.0, 0.1], [0.7, 0.0, 0.3], [0.5, 0.0, 0.5], [0.8, 0.0, 0.2]])
    labels = ["A", "B", "A", "A"]
    # confidences 0.9, 0.7, 0.5, 0.8; right 1, 0, 0, 1: one bin each -> (0.1 + 0.7 + 0.5 + 0.2) / 4
    assert point_metrics(probs, labels)["ece_uniform_15"] == pytest.approx(0.375)
    guessed = probs.copy()
    guessed[2] = [0.49, 0.0, 0.51]  # a wrong guess at 0.51 scores a little worse than declining to choose
    assert point_metrics(guessed, labels)["ece_uniform_15"] == pytest.approx(0.3775)
