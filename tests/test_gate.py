"""The release gate: pure decisions on literal data, the Wilson bound against scipy, file inputs, the CLI's exit
codes, and the pytest plugin."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path

import pytest
from scipy.stats import binomtest

from judge.cases.coverage import EntryCoverage
from judge.errors import InputError
from judge.gate.decide import CalibrationSummary, EntryOutcomes, decide, wilson_interval
from judge.gate.inputs import (
    outcomes_from_verdicts,
    read_calibration,
    read_cases,
    read_coverage,
    read_pair_case_ids,
)
from judge.gate.policy import GatePolicy, load_policy
from judge.gate.pytest_plugin import make_runner
from judge.gate.render import decision_json, decision_text
from judge.verdicts import Distribution, Failure, JudgeConfig, Verdict

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
CONFIG = JudgeConfig(backend="fake", model="m", template_version="t")


def cov(entry: str, n: int) -> EntryCoverage:
    return EntryCoverage(entry_id=entry, distinct_accepted=n, accepted=n, draft=0, rejected=0)


GOOD = EntryOutcomes(wins=90, losses=10)  # Wilson 95% lower bound ~0.83


# ---------------------------------------------------------------- pure decisions
def test_passes_when_every_entry_is_covered_and_wins() -> None:
    d = decide([cov("spec/a", 120), cov("spec/b", 100)], {"spec/a": GOOD, "spec/b": GOOD}, GatePolicy())
    assert d.passed and [e.entry_id for e in d.entries] == ["spec/a", "spec/b"]
    assert all(e.passed and e.reasons == [] for e in d.entries)
    assert d.entries[0].win_rate == pytest.approx(0.9) and d.entries[0].lower_bound == pytest.approx(0.8256, abs=1e-3)
    assert d.calibration is None and d.reasons == []


def test_too_few_distinct_cases_fail() -> None:
    d = decide([cov("spec/a", 99), cov("spec/b", 100)], {"spec/a": GOOD, "spec/b": GOOD}, GatePolicy())
    assert not d.passed and [e.entry_id for e in d.failing] == ["spec/a"]
    assert d.failing[0].reasons == ["99 distinct accepted cases < 100"]


def test_lower_bound_below_the_bound_fails_though_the_point_estimate_is_above() -> None:
    d = decide([cov("spec/a", 100)], {"spec/a": EntryOutcomes(wins=12, losses=8)}, GatePolicy())
    (e,) = d.entries
    assert e.win_rate == pytest.approx(0.6) and e.lower_bound is not None and e.lower_bound < 0.5
    assert not d.passed and e.reasons[0].startswith("win rate 0.600 has 95% lower bound 0.387 < 0.5 (n=20)")


def test_per_entry_override_exact_id_beats_glob() -> None:
    policy = GatePolicy(per_entry={"spec/*": {"min_cases": 10}, "spec/strict": {"min_cases": 500,
                                                                                  "min_win_rate": 0.9}})
    d = decide([cov("spec/lax", 20), cov("spec/strict", 200)], {"spec/lax": GOOD, "spec/strict": GOOD}, policy)
    lax, strict = d.entries
    assert lax.passed and lax.min_cases == 10
    assert strict.min_cases == 500 and strict.bound == 0.9
    assert strict.reasons == ["200 distinct accepted cases < 500",
                              "win rate 0.900 has 95% lower bound 0.826 < 0.9 (n=100)"]


def test_ties_half_versus_exclude() -> None:
    outcomes = {"spec/a": EntryOutcomes(wins=30, losses=10, ties=60)}
    half = decide([cov("spec/a", 100)], outcomes, GatePolicy(ties="half")).entries[0]
    excl = decide([cov("spec/a", 100)], outcomes, GatePolicy(ties="exclude")).entries[0]
    assert half.n_judged == 100 and half.win_rate == pytest.approx(0.6)
    assert excl.n_judged == 40 and excl.win_rate == pytest.approx(0.75)
    only_ties = decide([cov("spec/a", 100)], {"spec/a": EntryOutcomes(ties=5)}, GatePolicy(ties="exclude"))
    assert only_ties.entries[0].reasons == ["no decided comparisons (5 ties excluded)"]


def test_failures_are_never_wins() -> None:
    outcomes = {"spec/a": EntryOutcomes(wins=90, losses=10, failures=100)}
    as_loss = decide([cov("spec/a", 100)], outcomes, GatePolicy()).entries[0]
    excluded = decide([cov("spec/a", 100)], outcomes, GatePolicy(failures="exclude")).entries[0]
    assert as_loss.win_rate == pytest.approx(0.45) and not as_loss.passed
    assert excluded.win_rate == pytest.approx(0.9) and excluded.passed  # excluded, still not a win
    only_failures = decide([cov("spec/a", 100)], {"spec/a": EntryOutcomes(failures=3)}, GatePolicy())
    assert only_failures.entries[0].reasons == ["no results (3 failed comparisons)"]


def test_entry_without_results_fails_with_no_results() -> None:
    d = decide([cov("spec/a", 150), cov("spec/b", 150)], {"spec/a": GOOD}, GatePolicy())
    assert [e.entry_id for e in d.failing] == ["spec/b"] and d.failing[0].reasons == ["no results"]
    assert d.failing[0].win_rate is None and d.failing[0].lower_bound is None


def test_scope_globs_ids_and_patterns_that_match_nothing() -> None:
    coverage = [cov("spec/a", 100), cov("spec/b", 5), cov("other/x", 0)]
    outcomes = {"spec/a": GOOD}
    d = decide(coverage, outcomes, GatePolicy(scope=["spec/a"]))
    assert d.passed and [e.entry_id for e in d.entries] == ["spec/a"]
    d = decide(coverage, outcomes, GatePolicy(scope=["spec/*"]))
    assert [e.entry_id for e in d.entries] == ["spec/a", "spec/b"] and not d.passed
    d = decide(coverage, outcomes, GatePolicy(scope=["spec/a", "spc/*", "spec/new"]))
    assert d.reasons == ["scope pattern 'spc/*' matches no entry"]
    assert d.entries[-1].entry_id == "spec/new" and d.entries[-1].cases == 0  # named outright: required
    assert not decide([], {}, GatePolicy()).passed  # nothing in scope is not a pass
    required = decide(coverage[:1], outcomes, GatePolicy(), required_entries=["spec/z"])
    assert [e.entry_id for e in required.failing] == ["spec/z"]


def test_calibration_bounds_point_versus_upper() -> None:
    cal = CalibrationSummary(ece_point=0.05, ece_high=0.12, brier_point=0.2, brier_high=0.22, n=300)
    cov_ok, out_ok = [cov("spec/a", 100)], {"spec/a": GOOD}
    upper = decide(cov_ok, out_ok, GatePolicy(max_ece=0.1, max_brier=0.25), calibration=cal)
    assert not upper.passed and upper.calibration is not None and not upper.calibration.passed
    assert upper.reasons == ["calibration: ECE upper 95% bound 0.120 > 0.1 (point 0.050, n=300, raw)"]
    point = decide(cov_ok, out_ok, GatePolicy(max_ece=0.1, calibration_uses="point"), calibration=cal)
    assert point.passed and point.calibration is not None and point.calibration.passed
    missing = decide(cov_ok, out_ok, GatePolicy(max_brier=0.2))
    assert missing.reasons == ["calibration: no calibration metrics given, but the policy bounds Brier"]
    nan = CalibrationSummary(ece_point=math.nan, ece_high=math.nan, brier_point=0.1, brier_high=0.1, n=0)
    assert decide(cov_ok, out_ok, GatePolicy(max_ece=0.1), calibration=nan).reasons == [
        "calibration: ECE upper 95% bound is unavailable (n=0)"]
    ungated = decide(cov_ok, out_ok, GatePolicy(), calibration=cal)
    assert ungated.passed and ungated.calibration is not None  # reported, not gated


def test_an_ece_bound_below_a_calibrated_judges_floor_says_so() -> None:
    cov_ok, out_ok = [cov("spec/a", 100)], {"spec/a": GOOD}
    small = CalibrationSummary(ece_point=0.07, ece_high=0.12, brier_point=0.2, brier_high=0.22, n=200,
                               ece_floor=0.063)
    d = decide(cov_ok, out_ok, GatePolicy(max_ece=0.05, calibration_uses="point"), calibration=small)
    assert d.reasons == ["calibration: ECE 0.070 > 0.05 (point 0.070, n=200, raw; a perfectly calibrated judge "
                         "averages ECE 0.063 at this n, so the bound needs more labelled verdicts)"]
    large = dataclasses.replace(small, ece_floor=0.02)  # the floor is not the obstacle: no hint
    assert decide(cov_ok, out_ok, GatePolicy(max_ece=0.05, calibration_uses="point"),
                  calibration=large).reasons == ["calibration: ECE 0.070 > 0.05 (point 0.070, n=200, raw)"]


def test_bootstrap_interval_is_seeded_and_close_to_wilson() -> None:
    outcomes = {"spec/a": EntryOutcomes(wins=70, losses=25, ties=5)}
    policy = GatePolicy(interval="bootstrap", bootstrap_samples=2000, seed=3)
    first = decide([cov("spec/a", 100)], outcomes, policy).entries[0].lower_bound
    again = decide([cov("spec/a", 100), cov("spec/b", 1)], outcomes, policy).entries[0].lower_bound
    wilson = decide([cov("spec/a", 100)], outcomes, GatePolicy()).entries[0].lower_bound
    assert first == again and first is not None and wilson is not None and abs(first - wilson) < 0.03


def test_baseline_win_rate_is_reported_not_gated() -> None:
    d = decide([cov("spec/a", 100)], {"spec/a": GOOD}, GatePolicy(),
               baseline={"spec/a": EntryOutcomes(wins=95, losses=5)})
    assert d.passed and d.entries[0].baseline_win_rate == pytest.approx(0.95) and d.entries[0].baseline_n == 100


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (7, 10), (50, 100), (81, 100), (999, 1000), (3, 250)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(k: int, n: int, confidence: float) -> None:
    ref = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson_interval(k, n, confidence)
    assert low == pytest.approx(ref.low, abs=1e-9) and high == pytest.approx(ref.high, abs=1e-9)


def test_wilson_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        wilson_interval(1, 0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_text_and_json_rendering() -> None:
    d = decide([cov("spec/a", 99), cov("spec/b", 100)], {"spec/b": GOOD}, GatePolicy(per_entry={"x/*": {}}))
    text = decision_text(d)
    assert "FAILED" in text and "spec/a" in text and "no results" in text
    assert "spec/b" not in text.split("note:")[0] and "note: per_entry 'x/*' matches no entry in scope" in text
    assert "spec/b" in decision_text(d, all_entries=True)
    data = json.loads(json.dumps(decision_json(d)))
    assert data["passed"] is False and data["failing"] == ["spec/a"] and data["entries"][0]["win_rate"] is None


# ---------------------------------------------------------------- policy files
def test_example_policy_loads() -> None:
    policy = load_policy(REPO / "examples" / "gate.toml")
    assert policy.min_cases == 100 and policy.max_ece == 0.1 and policy.calibration_uses == "upper"
    assert policy.min_cases_for("spec/adapt-length-in-voice-mode") == 50
    assert policy.bound_for("spec/ask-clarifying-questions") == 0.55


@pytest.mark.parametrize(("text", "field"), [
    ("min_cases = -1\n", "min_cases"),
    ('interval = "normal"\n', "interval"),
    ("min_cases_typo = 3\n", "min_cases_typo"),
    ('[per_entry."spec/a"]\nmin_win_rate = 1.5\n', "per_entry.spec/a.min_win_rate"),
    ("scope = []\n", "scope"),
])
def test_bad_policy_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "gate.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_policy(path)
    assert info.value.field == field and info.value.path == str(path) and str(path) in str(info.value)


def test_policy_file_not_toml_or_missing(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("min_cases = [\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_policy(tmp_path / "bad.toml")
    with pytest.raises(InputError, match="no such gate policy file"):
        load_policy(tmp_path / "absent.toml")


# ---------------------------------------------------------------- files
def verdict(pid: str, winner: str | None) -> Verdict:
    if winner is None:
        return Verdict(pair_id=pid, winner=None, probabilities=None, config=CONFIG, cache_key=pid,
                       failure=Failure(stage="verdict", reason="no answer token"))
    probs = {"A": Distribution(a=0.9, tie=0.0, b=0.1), "B": Distribution(a=0.1, tie=0.0, b=0.9),
             "tie": Distribution(a=0.2, tie=0.6, b=0.2)}[winner]
    return Verdict(pair_id=pid, winner=winner, probabilities=probs, config=CONFIG, cache_key=pid)  # type: ignore[arg-type]


def write_world(tmp: Path, *, n: int = 100, wins: int = 90, entries: tuple[str, ...] = ("spec/a", "spec/b"),
                ) -> dict[str, Path]:
    """n accepted cases per entry, the candidate winning `wins` of them; plus a draft case and an unknown result."""
    cases, results = tmp / "cases.jsonl", tmp / "candidate.jsonl"
    with cases.open("w") as fc, results.open("w") as fr:
        for entry in entries:
            for i in range(n):
                cid = f"{entry}#{i}"
                fc.write(json.dumps({"id": cid, "entries": [entry], "status": "accepted"}) + "\n")
                fr.write(verdict(cid, "A" if i < wins else "B").model_dump_json() + "\n")
        fc.write(json.dumps({"id": "draft-1", "entries": [entries[0]], "status": "draft"}) + "\n")
        fr.write(verdict("draft-1", "B").model_dump_json() + "\n")
        fr.write(verdict("nobody", "B").model_dump_json() + "\n")
    return {"cases": cases, "candidate": results}


def test_cases_file_gives_entries_and_coverage(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in [
        {"id": "c1", "entries": ["spec/a", "spec/b"]},
        {"id": "c2", "entry": "spec/a", "status": "accepted", "duplicate_of": "c1"},
        {"id": "c3", "entries": ["spec/a"], "status": "rejected"},
    ]) + "\n")
    index = read_cases(path)
    assert index.entries_of("c1") == ("spec/a", "spec/b") and index.entries_of("c3") == ()
    assert index.coverage() == [EntryCoverage("spec/a", 1, 2, 0, 1), EntryCoverage("spec/b", 1, 1, 0, 0)]
    path.write_text('{"id": "c1", "entries": ["spec/a"]}\n{"id": "c1", "entries": ["spec/a"]}\n')
    with pytest.raises(InputError, match="duplicate case id") as info:
        read_cases(path)
    assert info.value.line == 2
    path.write_text('{"id": "c1"}\n')
    with pytest.raises(InputError) as info:
        read_cases(path)
    assert info.value.field == "entries"
    for empty in ("", "\n\n", "[]"):  # no case at all is bad input, not a gate with nothing in scope
        path.write_text(empty)
        with pytest.raises(InputError, match="no cases"):
            read_cases(path)


def test_cases_as_judge_cases_list_prints_them(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([{"id": "case-1", "prompt": "q", "entries": ["spec/a"], "status": "accepted",
                                 "references": []},
                                {"id": "case-2", "prompt": "q", "entries": ["spec/a"], "status": "draft"}], indent=2))
    index = read_cases(path)
    assert index.entries_of("case-1") == ("spec/a",) and index.entries_of("case-2") == ()
    assert index.coverage() == [EntryCoverage("spec/a", 1, 1, 1, 0)]
    path.write_text(json.dumps([{"id": "case-1", "entries": ["spec/a"]}, {"id": "case-2"}]))
    with pytest.raises(InputError, match="item 1: a case needs 'entries'"):
        read_cases(path)


def test_outcomes_follow_pair_to_case_to_entries() -> None:
    verdicts = [verdict("p1", "A"), verdict("p2", "tie"), verdict("p3", None), verdict("p4", "B"),
                verdict("zzz", "A")]
    out = outcomes_from_verdicts(verdicts, {"c1": ["spec/a", "spec/b"], "p4": ["spec/b"]},
                                 pair_case_ids={"p1": "c1", "p2": "c1", "p3": "c1"})
    assert out.by_entry["spec/a"] == EntryOutcomes(wins=1, ties=1, failures=1)
    assert out.by_entry["spec/b"] == EntryOutcomes(wins=1, losses=1, ties=1, failures=1)
    assert out.results == 5 and out.unmatched == ["zzz"]


def test_pair_files_map_pairs_to_cases(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"id": "p1", "prompt": "q", "meta": {"case_id": "c1"}}\n{"id": "p2", "prompt": "q"}\n\n')
    assert read_pair_case_ids([path]) == {"p1": "c1"}
    with pytest.raises(InputError, match="no such file"):
        read_pair_case_ids([tmp_path / "absent.jsonl"])
    for read in (read_cases, read_calibration):  # a folder is named as one
        with pytest.raises(InputError, match="a folder, not a file"):
            read(tmp_path)
    for line, field in (('{"id": "p1", "meta": {"case_id": 5}}', "meta.case_id"),
                        ('{"id": "p1", "meta": {"case_id": ""}}', "meta.case_id"),
                        ('{"id": "p1", "meta": "zz"}', "meta")):
        path.write_text('{"id": "p0", "prompt": "q"}\n' + line + "\n")
        with pytest.raises(InputError) as info:  # a wrong type is named, not read as "no case"
            read_pair_case_ids([path])
        assert (info.value.line, info.value.field) == (2, field)


def test_coverage_file(tmp_path: Path) -> None:
    path = tmp_path / "coverage.json"
    path.write_text(json.dumps({"min": 100, "thresholds": {"cos": 0.92}, "entries": [  # `judge coverage --json`
        {"entry_id": "spec/a", "distinct_accepted": 3, "accepted": 4, "draft": 1, "rejected": 0, "needs": 97}]}))
    assert read_coverage(path) == [EntryCoverage("spec/a", 3, 4, 1, 0)]
    path.write_text(json.dumps([{"entry_id": "spec/a"}]))
    with pytest.raises(InputError) as info:
        read_coverage(path)
    assert info.value.field == "[0].distinct_accepted"
    path.write_text(json.dumps([{"entry_id": 5, "distinct_accepted": 3}]))
    with pytest.raises(InputError, match="entry_id that is not a string") as info:
        read_coverage(path)
    assert info.value.field == "[0].entry_id"


def test_calibration_from_a_real_evaluation(tmp_path: Path) -> None:
    from judge.calibration.workflow import evaluate_results

    pairs, results = tmp_path / "pairs.jsonl", tmp_path / "results.jsonl"
    with pairs.open("w") as fp, results.open("w") as fr:
        for i in range(40):
            fp.write(json.dumps({"id": f"p{i}", "prompt": "q", "response_a": "a", "response_b": "b",
                                 "label": "A" if i % 3 else "B"}) + "\n")
            fr.write(verdict(f"p{i}", "A").model_dump_json() + "\n")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(evaluate_results(pairs, results, recalibrate=None, n_boot=50).model_dump_json())
    summary = read_calibration(metrics)
    assert summary.variant == "raw" and summary.n == 40 and summary.ece_point <= summary.ece_high
    assert summary.ece_floor is not None and 0 < summary.ece_floor < 0.5  # from the report's ece_if_calibrated
    with pytest.raises(InputError, match="no metric 'ece_nope'") as info:
        read_calibration(metrics, ece_metric="ece_nope")
    assert info.value.field == "raw.headline.ece_nope"



@pytest.mark.parametrize(("ece", "field"), [((-1.0, -0.5), "point"), ((0.1, 1.5), "high"), ((0.2, 0.1), "high")])
def test_impossible_calibration_figures_are_refused(tmp_path: Path, ece: tuple[float, float], field: str) -> None:
    with pytest.raises(InputError) as info:
        read_calibration(metrics_file(tmp_path, ece))
    assert info.value.field == f"recalibrated.headline.ece_uniform_15.{field}"
    data = json.loads(metrics_file(tmp_path, (0.05, 0.07)).read_text())
    data["recalibrated"]["headline"]["brier_binary"]["point"] = "abc"
    (tmp_path / "metrics.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="must be a number from 0 to 1"):
        read_calibration(tmp_path / "metrics.json")


def metrics_file(tmp: Path, ece: tuple[float, float], brier: tuple[float, float] = (0.1, 0.12)) -> Path:
    est = {"ece_uniform_15": {"point": ece[0], "low": 0.0, "high": ece[1]},
           "brier_binary": {"point": brier[0], "low": 0.0, "high": brier[1]}}
    path = tmp / "metrics.json"
    path.write_text(json.dumps({"raw": {"variant": "raw", "n_scored": 200, "headline": {**est, "ece_uniform_15": {
        "point": 0.5, "low": 0.4, "high": 0.6}}}, "recalibrated": {"variant": "recalibrated", "n_scored": 200,
                                                                    "headline": est}}))
    return path


# ---------------------------------------------------------------- CLI
def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            root: tuple[str, ...] = ()) -> tuple[int, str, str]:
    from judge.cli.common import console, err_console
    from tests.test_cli import invoke

    for con in (console, err_console):
        monkeypatch.setattr(con, "width", 200)  # one reason per line, unwrapped
    return invoke([*root, "gate", *args], monkeypatch, capsys)


def test_cli_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_world(tmp_path)
    policy = tmp_path / "gate.toml"
    policy.write_text("min_cases = 100\nmax_ece = 0.1\n")
    metrics = metrics_file(tmp_path, ece=(0.03, 0.06))  # recalibrated is used: the raw ECE would fail
    base = ["--candidate", str(files["candidate"]), "--cases", str(files["cases"]), "--policy", str(policy),
            "--calibration", str(metrics)]

    code, out, err = run_cli([*base, "--json"], monkeypatch, capsys)
    data = json.loads(out)
    assert code == 0 and data["passed"] is True and data["failing"] == []
    assert data["run"]["unmatched"] == ["draft-1", "nobody"] and data["calibration"]["summary"]["n"] == 200
    assert "2 of 202 candidate results belong to no accepted case" in err

    code, out, _ = run_cli(base, monkeypatch, capsys)
    assert code == 0 and "gate PASSED: 2/2 entries pass" in out
    assert data["run"]["escalated"] == 0 and "escalated" not in err

    lines = files["candidate"].read_text().splitlines()  # three verdicts a person should review
    lines[:3] = [Verdict.model_validate_json(line).model_copy(update={"escalated": True}).model_dump_json()
                 for line in lines[:3]]
    files["candidate"].write_text("\n".join(lines) + "\n")
    code, out, err = run_cli([*base, "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["run"]["escalated"] == 3
    assert "3 of 202 candidate verdicts are escalated" in " ".join(err.split())

    policy.write_text('min_cases = 100\n[per_entry."spec/b"]\nmin_cases = 101\nmin_win_rate = 0.95\n')
    code, out, _ = run_cli([*base, "--json"], monkeypatch, capsys)
    data = json.loads(out)
    assert code == 1 and data["failing"] == ["spec/b"]
    assert data["entries"][1]["reasons"] == ["100 distinct accepted cases < 101",
                                             "win rate 0.900 has 95% lower bound 0.826 < 0.95 (n=100)"]

    code, out, _ = run_cli(base, monkeypatch, capsys)
    assert code == 1 and "100 distinct accepted cases < 101" in out and "gate FAILED: 1/2 entries pass" in out
    assert "spec/a" not in out.split("gate FAILED")[0].split("\n", 1)[1]  # passing entries are not listed
    code, out, _ = run_cli([*base, "--all"], monkeypatch, capsys)
    assert code == 1 and "spec/a" in out

    policy.write_text("min_cases = 'many'\n")
    code, _, err = run_cli(base, monkeypatch, capsys)
    assert code == 2 and "gate.toml: field min_cases: Input should be a valid integer" in err and "Traceback" not in err
    code, _, err = run_cli(["--candidate", str(tmp_path / "absent.jsonl"), "--cases", str(files["cases"])],
                        monkeypatch, capsys)
    assert code == 2 and "no such results file" in err


def test_cli_coverage_file_and_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    files = write_world(tmp_path, n=30, wins=29, entries=("spec/a",))
    coverage = tmp_path / "coverage.json"
    coverage.write_text(json.dumps([{"entry_id": "spec/a", "distinct_accepted": 150}]))
    baseline = tmp_path / "baseline.jsonl"
    baseline.write_text("".join(verdict(f"spec/a#{i}", "A" if i % 2 else "B").model_dump_json() + "\n"
                                for i in range(30)))
    args = ["--candidate", str(files["candidate"]), "--cases", str(files["cases"]), "--coverage", str(coverage),
            "--baseline", str(baseline), "--json"]
    code, out, _ = run_cli(args, monkeypatch, capsys)
    data = json.loads(out)
    assert code == 0 and data["entries"][0]["cases"] == 150 and data["entries"][0]["baseline_win_rate"] == 0.5


def test_cli_rulebook_entries_are_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    from judge.rulebook import Rulebook

    Rulebook.open(sqlite_url, with_index=False).load(REPO / "rulebook")
    files = write_world(tmp_path, n=100, wins=95, entries=("spec/ask-clarifying-questions",))
    args = ["--candidate", str(files["candidate"]), "--cases", str(files["cases"]), "--json"]
    code, out, _ = run_cli(args, monkeypatch, capsys, root=("--db", sqlite_url))
    assert code == 0 and len(json.loads(out)["entries"]) == 1
    code, out, _ = run_cli([*args, "--rulebook-entries"], monkeypatch, capsys, root=("--db", sqlite_url))
    data = json.loads(out)
    assert code == 1 and len(data["entries"]) > 50 and "spec/ask-clarifying-questions" not in data["failing"]
    assert "spec/assume-objective-pov" in data["failing"]


def test_cli_reads_cases_and_coverage_from_the_case_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    from judge.cases.model import TestCase
    from judge.cases.store import CaseStore
    from judge.rulebook import Rulebook
    from judge.settings import Settings

    rb = Rulebook.open(settings=Settings(db_url=sqlite_url, embedding_model="hash"), with_index=False)
    rb.load(REPO / "rulebook")
    store = CaseStore(rb.store.engine)
    cases = [TestCase(prompt=f"Case number {i} about a completely different topic {i * 7919}",
                      entries=("spec/avoid-sycophancy",), provenance="test") for i in range(3)]
    store.add(cases)
    store.review({cases[0].id: ("accepted", "me"), cases[1].id: ("accepted", "me")})
    assert store.entries_of(cases[0].id) == ("spec/avoid-sycophancy",) and store.entries_of(cases[2].id) == ()
    results = tmp_path / "candidate.jsonl"
    with results.open("w") as fh:
        for case in cases:
            fh.write(json.dumps({"pair_id": case.id, "winner": "A",
                                 "probabilities": {"a": 0.9, "tie": 0.0, "b": 0.1},
                                 "config": {"backend": "fake", "model": "m", "template_version": "t"},
                                 "cache_key": case.id}) + "\n")
    policy = tmp_path / "gate.toml"
    policy.write_text('min_cases = 2\nmin_win_rate_lower_bound = 0.1\nscope = ["spec/avoid-sycophancy"]\n')
    code, out, err = run_cli(["--candidate", str(results), "--policy", str(policy), "--json"], monkeypatch, capsys,
                             root=("--db", sqlite_url, "--embedding-model", "hash"))
    data = json.loads(out)
    assert code == 0, err
    entry = data["entries"][0]
    assert entry["entry_id"] == "spec/avoid-sycophancy" and entry["n_judged"] == 2  # the draft case is not counted


# ---------------------------------------------------------------- pytest plugin
def test_plugin_runner_returns_the_decision_or_fails_with_the_table(tmp_path: Path) -> None:
    files = write_world(tmp_path)
    run = make_runner(tmp_path)
    assert run(candidate="candidate.jsonl", cases="cases.jsonl").passed
    (tmp_path / "strict.toml").write_text("min_cases = 1000\n")
    strict = make_runner(tmp_path, "strict.toml")
    with pytest.raises(pytest.fail.Exception) as info:
        strict(candidate=files["candidate"], cases=files["cases"])
    assert "100 distinct accepted cases < 1000" in str(info.value) and "spec/a" in str(info.value)
    with pytest.raises(pytest.fail.Exception, match="bad input"):
        run(candidate="absent.jsonl", cases="cases.jsonl")


def test_plugin_entry_point_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"]["judge_gate"] == "judge.gate.pytest_plugin"


def test_plugin_fixture_in_a_test_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    write_world(pytester.path)
    pytester.makeini("[pytest]\njudge_gate_policy = gate.toml\n")
    (pytester.path / "gate.toml").write_text("min_cases = 100\n")
    pytester.makepyfile(test_release="""
        def test_passes(judge_gate):
            assert judge_gate(candidate="candidate.jsonl", cases="cases.jsonl").passed

        def test_fails(judge_gate):
            judge_gate(candidate="candidate.jsonl", cases="cases.jsonl", policy=None, required_entries=["spec/z"])
    """)
    # Load the plugin by name, not through the entry point (which needs the package reinstalled).
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_inprocess("-p", "judge.gate.pytest_plugin")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*spec/z*0/100*0 distinct accepted cases < 100*", "*no results*"])


def test_entry_ids_and_reasons_with_markup_print_literally() -> None:
    import io

    from rich.console import Console

    from judge.gate.decide import EntryResult, GateDecision
    from judge.gate.render import decision_table

    entry = EntryResult(entry_id="spec/[red]evil[/x]", cases=3, min_cases=100, wins=1, losses=2, ties=0,
                        failures=0, n_judged=3, win_rate=0.33, lower_bound=0.1, bound=0.5, passed=False,
                        reasons=["[bold]too few cases[/]"])
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(decision_table(GateDecision(passed=False, entries=[entry], calibration=None)))
    text = console.export_text()
    assert "spec/[red]evil[/x]" in text and "[bold]too few cases[/]" in text
