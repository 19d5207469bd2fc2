"""`judge eval`, `judge calibrate` and `judge report` on bad input: a missing file, an output that cannot be
written, an option out of its range or an unknown method name is exit code 2 and one message naming the file or
the option, never a traceback, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge.calibration.workflow import evaluate_results
from judge.errors import InputError
from tests.test_calibration_evaluate import make
from tests.test_cli import flat, run_cli


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A small labelled set and its results: 40 pairs from two sources, the judge right on about 3 in 4."""
    pairs, results = tmp_path / "pairs.jsonl", tmp_path / "results.jsonl"
    with pairs.open("w") as fp, results.open("w") as fr:
        for i in range(40):
            label = "A" if i % 2 else "B"
            p_a = 0.8 if (label == "A") == (i % 4 != 0) else 0.2
            fp.write(json.dumps({"id": f"p{i}", "source": "one" if i % 3 else "two", "prompt": "q",
                                 "response_a": "a" * (i + 1), "response_b": "b" * 7, "label": label}) + "\n")
            fr.write(make(f"p{i}", p_a).model_dump_json() + "\n")
    return pairs, results


def _assert_usage(code: int, err: str, *needles: str) -> None:
    text = flat(err)
    assert code == 2, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in text, (needle, err)


def test_the_good_input_still_works(files: tuple[Path, Path], tmp_path: Path, sqlite_url: str,
                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = files
    code, out, err = run_cli(["eval", str(pairs), "-r", str(results), "--folds", "2", "--bootstrap", "20",
                              "--recalibrate", "temperature", "--target", "0.8", "--delta", "0.2", "--json"],
                             monkeypatch, capsys, sqlite_url)
    assert code == 0, err
    assert json.loads(out)["recalibration"]["method"] == "temperature"
    code, _, err = run_cli(["report", str(results), "--labels", str(pairs), "-o", str(tmp_path / "rep"),
                            "--recalibrate", "none", "--bootstrap", "20"], monkeypatch, capsys, sqlite_url)
    assert code == 0, err
    assert (tmp_path / "rep" / "index.html").is_file()


@pytest.mark.parametrize("missing", ["results", "labels"])
@pytest.mark.parametrize("command", ["eval", "calibrate", "report"])
def test_a_missing_input_file_is_named(command: str, missing: str, files: tuple[Path, Path], tmp_path: Path,
                                       sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = files
    nope = tmp_path / "nope.jsonl"
    if missing == "results":
        results = nope
    else:
        pairs = nope
    out = tmp_path / "out"
    argv = {"eval": ["eval", str(pairs), "-r", str(results), "-m", str(out)],
            "calibrate": ["calibrate", str(pairs), "-r", str(results), "-o", str(out)],
            "report": ["report", str(results), "--labels", str(pairs), "-o", str(out)]}[command]
    code, _, err = run_cli(argv, monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, f"{nope}: no such file")
    assert not out.exists()


def test_a_report_onto_a_file_says_the_output_is_a_directory(files: tuple[Path, Path], tmp_path: Path,
                                                             sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = files
    page = tmp_path / "ex.html"
    page.write_text("mine")
    code, _, err = run_cli(["report", str(results), "--labels", str(pairs), "-o", str(page)],
                           monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, "--out", str(page), "must be a directory")
    assert page.read_text() == "mine"
    code, _, err = run_cli(["report", str(results), "--labels", str(pairs), "-o", str(page / "sub")],
                           monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, "--out", f"{str(page)!r} is a file, not a folder")


@pytest.mark.parametrize(("option", "value"), [("--target", "1.5"), ("--target", "0"), ("--delta", "0"),
                                               ("--delta", "1"), ("--target", "nan")])
@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_a_target_or_delta_outside_0_1_is_refused(command: str, option: str, value: str, files: tuple[Path, Path],
                                                  tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = files
    out = tmp_path / "c.json"
    flag = "-m" if command == "eval" else "-o"
    code, _, err = run_cli([command, str(pairs), "-r", str(results), flag, str(out), option, value],
                           monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, option, "not between 0 and 1")
    assert not out.exists()


@pytest.mark.parametrize(("argv", "option", "bound"), [
    (["eval", "{pairs}", "-r", "{results}", "--bootstrap", "0"], "--bootstrap", "1"),
    (["report", "{results}", "--labels", "{pairs}", "-o", "{out}", "--bootstrap", "0"], "--bootstrap", "1"),
    (["eval", "{pairs}", "-r", "{results}", "--folds", "0"], "--folds", "2"),
    (["eval", "{pairs}", "-r", "{results}", "--folds", "1"], "--folds", "2"),
    (["calibrate", "{pairs}", "-r", "{results}", "-o", "{out}", "--folds", "0"], "--folds", "2"),
    (["eval", "{pairs}", "-r", "{results}", "--suspects", "-3"], "--suspects", "0"),
    (["coverage", "--min", "-5"], "--min", "0"),
    (["cases", "list", "--limit", "-1"], "--limit", "0"),
    (["rulebook", "list", "--limit", "-1"], "--limit", "0"),
])
def test_a_count_below_its_minimum_is_refused(argv: list[str], option: str, bound: str, files: tuple[Path, Path],
                                              tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = files
    out = tmp_path / "out"
    args = [a.format(pairs=pairs, results=results, out=out) for a in argv]
    code, _, err = run_cli(args, monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, option, f"greater than or equal to {bound}")
    assert not out.exists()


@pytest.mark.parametrize(("argv", "option"), [
    (["eval", "{pairs}", "-r", "{results}", "--recalibrate", "bogus"], "--recalibrate"),
    (["report", "{results}", "--labels", "{pairs}", "-o", "{out}", "--recalibrate", "bogus"], "--recalibrate"),
    (["calibrate", "{pairs}", "-r", "{results}", "-o", "{out}", "--method", "bogus"], "--method"),
])
def test_an_unknown_method_is_refused(argv: list[str], option: str, files: tuple[Path, Path], tmp_path: Path,
                                      sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = files
    out = tmp_path / "out"
    args = [a.format(pairs=pairs, results=results, out=out) for a in argv]
    code, _, err = run_cli(args, monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, option, "unknown calibration method 'bogus'", "auto, none, temperature")
    assert "skipped" not in err
    assert not out.exists()


def test_evaluate_results_refuses_what_it_cannot_use(files: tuple[Path, Path], tmp_path: Path) -> None:
    pairs, results = files
    with pytest.raises(ValueError, match="unknown calibration method 'bogus'"):
        evaluate_results(pairs, results, recalibrate="bogus")
    with pytest.raises(ValueError, match="n_folds must be at least 2"):
        evaluate_results(pairs, results, n_folds=1)
    with pytest.raises(ValueError, match="n_boot must be at least 1"):
        evaluate_results(pairs, results, n_boot=0)
    with pytest.raises(InputError, match="no such file"):
        evaluate_results(pairs, [results, tmp_path / "nope.jsonl"])


@pytest.mark.parametrize("extra", [["-o", "{out}"], ["--backend", "openai/m"], ["--base-url", "http://127.0.0.1:9/v1"]])
def test_eval_refuses_options_of_a_run_it_does_not_make(extra: list[str], files: tuple[Path, Path], tmp_path: Path,
                                                      sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = files
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(["eval", str(pairs), "-r", str(results), *(a.format(out=out) for a in extra)],
                           monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, extra[0], "only apply when the judge runs")
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["calibrate", "{pairs}", "-r", "{results}", "-o", "{results}"],
    ["eval", "{pairs}", "-r", "{results}", "-m", "{pairs}"],
    ["eval", "{pairs}", "-o", "{pairs}"],
    ["view", "{results}", "-o", "{results}"],
    ["view", "{results}", "-l", "{pairs}", "-o", "{link}"],
    ["run", "{pairs}", "-o", "{pairs}"],
])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
        args: list[str], files: tuple[Path, Path], tmp_path: Path, sqlite_url: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = files
    link = tmp_path / "link.jsonl"
    link.symlink_to(pairs)
    before = {p: p.read_bytes() for p in (pairs, results)}
    argv = [a.format(pairs=pairs, results=results, link=link) for a in args]
    code, _, err = run_cli(argv, monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, "is also an input of this command")
    assert {p: p.read_bytes() for p in (pairs, results)} == before


@pytest.mark.parametrize(("argv", "option", "reason"), [
    (["run", "{pairs}", "-o", "{out}", "--no-rules", "--method", "checks"], "--method", "--no-rules"),
    (["run", "{pairs}", "-o", "{out}", "--no-rules", "--holistic", "none"], "--holistic", "--no-rules"),
    (["run", "{pairs}", "-o", "{out}", "--no-rules", "--prior-weights"], "--prior-weights", "--no-rules"),
    (["run", "{pairs}", "-o", "{out}", "--method", "pairwise", "--holistic", "pairwise"], "--holistic", "checks only"),
    (["run", "{pairs}", "-o", "{out}", "--method", "pairwise", "--prior-weights"], "--prior-weights", "checks only"),
    (["compare", "--prompt", "p", "--a", "x", "--b", "y", "--method", "pairwise", "--holistic", "none"],
     "--holistic", "checks only"),
])
def test_an_option_the_method_would_ignore_is_refused(argv: list[str], option: str, reason: str,
                                                      files: tuple[Path, Path], tmp_path: Path, sqlite_url: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A run that silently does something other than what its flags say is worse than one that does not start."""
    pairs, _ = files
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli([a.format(pairs=pairs, out=out) for a in argv], monkeypatch, capsys, sqlite_url)
    _assert_usage(code, err, option, reason)
    assert not out.exists()


def test_judge_options_refuse_what_the_method_would_ignore() -> None:
    from judge.runs import JudgeOptions

    with pytest.raises(InputError, match="prior_weights applies to method='checks' only"):
        JudgeOptions(method="pairwise", prior_weights=True)
    with pytest.raises(InputError, match="holistic applies to method='checks' only, not with no_rules"):
        JudgeOptions(no_rules=True, holistic="none")
    assert JudgeOptions(no_rules=True).config_fields()["method"] == "pairwise"


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_an_escalation_threshold_outside_0_1_names_the_flag(value: str, files: tuple[Path, Path], tmp_path: Path,
                                                            sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    pairs, _ = files
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(["run", str(pairs), "-o", str(out), "--escalate-below", value], monkeypatch, capsys,
                           sqlite_url)
    _assert_usage(code, err, "--escalate-below", "Input should be")
    assert not out.exists()


@pytest.mark.parametrize("command", ["eval", "report"])
def test_results_where_every_pair_failed_exit_1_in_eval_and_report_alike(
        command: str, files: tuple[Path, Path], tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Failed comparisons are the run's failures (exit 1, as `judge run` gives), not bad input (2)."""
    from judge.verdicts import Failure

    pairs, _ = files
    failed = tmp_path / "failed.jsonl"
    failed.write_text("".join(
        make(f"p{i}", 0.5).model_copy(update={"failure": Failure(stage="verdict", reason="no answer token"),
                                              "winner": None, "probabilities": None}).model_dump_json() + "\n"
        for i in range(40)))
    argv = {"eval": ["eval", str(pairs), "-r", str(failed)],
            "report": ["report", str(failed), "--labels", str(pairs), "-o", str(tmp_path / "page")]}[command]
    code, _, err = run_cli(argv, monkeypatch, capsys, sqlite_url)
    assert code == 1 and "no labelled pair has a verdict to score (40 failed" in flat(err) and "Traceback" not in err
