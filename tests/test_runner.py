"""Batch runs: concurrency, one JSONL line per pair, resume, repair of a killed run, budget, progress."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from judge.backends.fake import FakeBackend, FakeReply
from judge.errors import ConfigError, InputError
from judge.judging.engine import Judge, bare_config
from judge.judging.runner import RunReport, run_pairs
from judge.records import PairRecord, completed_ids, read_results
from judge.rules.model import Pair
from judge.verdicts import Verdict, pair_hash

N = 10
SLOT_BIASED = {"p0", "p1", "p2"}  # the fake judge always picks slot A for these: the orders disagree


def records(n: int = N) -> list[PairRecord]:
    return [PairRecord(pair=Pair(id=f"p{i}", prompt=f"question {i}", response_a=f"good answer {i}",
                                 response_b=f"bad answer {i}"), label="A", source="test", line=i + 1)
            for i in range(n)]


def _slot_a(body: dict[str, Any]) -> str:
    user = body["messages"][1]["content"]
    return user.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]


def pair_of(body: dict[str, Any]) -> str:
    """The pair id a request is about (from its prompt text)."""
    user = body["messages"][1]["content"]
    return "p" + user.split("<prompt>\nquestion ", 1)[1].split("\n", 1)[0]


def letter(slot: str) -> FakeReply:
    other = "B" if slot == "A" else "A"
    return FakeReply(text=slot, top_logprobs=[(slot, math.log(0.9)), (other, math.log(0.1))])


def judge_script(failing: dict[str, FakeReply] | None = None) -> Callable[[dict[str, Any]], FakeReply]:
    """Pick the slot holding the good answer (slot A for the slot-biased pairs); `failing` overrides by id."""
    failing = failing or {}

    def script(body: dict[str, Any]) -> FakeReply:
        pid = pair_of(body)
        if pid in failing:
            return failing[pid]
        if pid in SLOT_BIASED:
            return letter("A")
        return letter("A" if _slot_a(body).startswith("good") else "B")

    return script


def make_judge(script: Callable[[dict[str, Any]], FakeReply]) -> tuple[Judge, FakeBackend]:
    fb = FakeBackend(script)
    return Judge(fb, None, config=bare_config(fb)), fb


def run(judge: Judge, recs: Iterable[PairRecord], **kw: Any) -> RunReport:
    return asyncio.run(run_pairs(judge, recs, **kw))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_concurrent_run_writes_one_line_per_pair_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judge, fb = make_judge(judge_script())
    seen: list[Verdict] = []
    report = run(judge, records(), out=out, concurrency=4, on_result=seen.append)
    rows = lines(out)
    assert len(rows) == N and sorted(r["pair_id"] for r in rows) == sorted(f"p{i}" for i in range(N))
    assert len(fb.history) == 2 * N
    assert sorted(v.pair_id or "" for v in seen) == sorted(r["pair_id"] for r in rows)
    assert (report.total, report.judged, report.skipped, report.failed) == (N, N, 0, 0)
    assert report.position_inconsistent == len(SLOT_BIASED)
    assert report.inconsistency_rate == pytest.approx(0.3)
    assert report.prompt_tokens == 2 * N * 50 and report.completion_tokens == 2 * N
    assert not report.stopped_by_budget
    winners = {v.pair_id: v.winner for v in read_results(out)}
    assert all(winners[f"p{i}"] == "A" for i in range(3, N))


def test_run_without_output_file_still_reports(tmp_path: Path) -> None:
    judge, _ = make_judge(judge_script())
    seen: list[Verdict] = []
    report = run(judge, records(3), concurrency=2, on_result=seen.append)
    assert report.judged == 3 and len(seen) == 3
    assert not list(tmp_path.rglob("*.jsonl"))


def test_resume_skips_done_pairs(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judge, fb = make_judge(judge_script())
    run(judge, records(), out=out, concurrency=3)
    sent = len(fb.history)
    report = run(judge, records(), out=out, concurrency=3)
    assert len(fb.history) == sent
    assert (report.total, report.skipped, report.judged) == (N, N, 0)
    assert report.inconsistency_rate is None  # nothing judged in this run
    assert len(lines(out)) == N


def test_resume_retries_backend_failures_but_not_deterministic_ones(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    garbage = FakeReply(text="Sure", top_logprobs=[("Sure", math.log(0.95)), ("A", math.log(0.05))])
    judge, _ = make_judge(judge_script({"p3": FakeReply(status=500), "p7": FakeReply(status=503),
                                        "p5": garbage}))
    first = run(judge, records(), out=out, concurrency=4)
    assert first.failed == 3
    stages = {v.pair_id: v.failure.stage for v in read_results(out) if v.failure}
    assert stages == {"p3": "backend", "p7": "backend", "p5": "verdict"}
    assert completed_ids(out) == {f"p{i}" for i in range(N)} - {"p3", "p7"}

    healthy, fb = make_judge(judge_script())
    second = run(healthy, records(), out=out, concurrency=4)
    assert sorted({pair_of(b) for b in fb.history}) == ["p3", "p7"]
    assert (second.judged, second.skipped, second.failed) == (2, N - 2, 0)
    assert len(lines(out)) == N + 2
    final = {v.pair_id: v for v in read_results(out)}  # the last line per id wins
    assert len(final) == N
    assert final["p3"].failure is None and final["p7"].winner == "A"
    assert final["p5"].failure is not None and final["p5"].failure.stage == "verdict"


def test_half_written_last_line_is_repaired_and_the_run_continues(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judge, fb = make_judge(judge_script())
    run(judge, records(5), out=out, concurrency=2)
    with out.open("a", encoding="utf-8") as fh:  # a kill mid-write
        fh.write('{"pair_id": "p5", "winner": "A", "probabil')
    with pytest.raises(InputError, match=":6"):
        read_results(out)  # before the repair the fragment is reported by line
    sent = len(fb.history)
    skipped: list[str] = []
    report = run(judge, records(), out=out, concurrency=2, on_skip=lambda r: skipped.append(r.pair.id))
    assert (report.skipped, report.judged) == (5, 5)
    assert sorted(skipped) == [f"p{i}" for i in range(5)]  # a progress bar counts them as done
    assert len(fb.history) == sent + 2 * 5
    rows = lines(out)
    assert len(rows) == N and sorted(r["pair_id"] for r in rows) == sorted(f"p{i}" for i in range(N))


def test_budget_stops_cleanly_and_a_rerun_finishes(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judge, _ = make_judge(judge_script())
    per_pair = 2 * (50 + 1)
    report = run(judge, records(), out=out, concurrency=1, max_tokens=int(2.5 * per_pair))
    assert report.stopped_by_budget
    assert report.judged == 3 and len(lines(out)) == 3
    assert report.prompt_tokens + report.completion_tokens == 3 * per_pair
    rest = run(judge, records(), out=out, concurrency=4)
    assert not rest.stopped_by_budget
    assert (rest.skipped, rest.judged) == (3, N - 3)
    assert len(read_results(out)) == N == len(lines(out))


@pytest.mark.parametrize("concurrency", [1, 4, 8])
def test_comparisons_in_flight_do_not_overshoot_the_budget(tmp_path: Path, concurrency: int) -> None:
    """With several comparisons in flight, no more start than the budget left allows at the mean spend so far:
    the run stops where a one-at-a-time run stops, not one comparison per slot later."""
    judge, _ = make_judge(judge_script())
    per_pair = 2 * (50 + 1)
    report = run(judge, records(40), out=tmp_path / "r.jsonl", concurrency=concurrency,
                 max_tokens=int(10.5 * per_pair))
    assert report.stopped_by_budget and report.judged == 11
    small = run(judge, records(40), out=tmp_path / "small.jsonl", concurrency=concurrency,
                max_tokens=int(0.5 * per_pair))
    assert small.judged == 1  # a budget below one comparison: the first runs alone, not a wave of them


def test_room_counts_what_is_running_at_the_mean_spend() -> None:
    report = RunReport(judged=4, prompt_tokens=300, completion_tokens=100, cost_usd=0.4)
    assert report.room(None, None) is None  # no budget
    assert RunReport().room(1000, 1.0) == 1 and RunReport().room(1000, None, in_flight=1) == 0  # one runs alone
    assert RunReport(judged=2, cached=2).room(1000, None) == 1  # answered from the cache: still no mean
    assert report.room(1000, None) == 6 and report.room(1000, None, in_flight=2) == 4
    assert report.room(950, None) == 6  # part of a comparison left: one more may start, as one at a time would
    assert report.room(None, 0.5, in_flight=0) == 1 and report.room(1000, 0.5, in_flight=3) == 0
    assert report.room(300, None) == 0  # already over


def test_cost_budget_stops_too(tmp_path: Path) -> None:
    fb = FakeBackend(judge_script())
    judge = Judge(fb, None, config=bare_config(fb), price_per_mtok=(1_000.0, 1_000.0))  # 0.102 USD a pair
    report = run(judge, records(), out=tmp_path / "r.jsonl", concurrency=1, max_cost_usd=0.25)
    assert report.stopped_by_budget and report.judged == 3
    assert report.cost_usd == pytest.approx(3 * 0.102)


def test_exclude_for_is_passed_per_record(tmp_path: Path) -> None:
    judge, _ = make_judge(judge_script())
    asked: list[str] = []

    async def spy(pair: Pair, *, exclude: Any = ()) -> Verdict:
        asked.append(f"{pair.id}:{','.join(exclude)}")
        return await Judge.acompare(judge, pair, exclude=exclude)

    judge.acompare = spy  # type: ignore[method-assign]
    run(judge, records(2), concurrency=1, exclude_for=lambda r: [f"ruling/{r.pair.id}"])
    assert sorted(asked) == ["p0:ruling/p0", "p1:ruling/p1"]


def test_read_results_keeps_the_last_line_per_id_and_names_bad_lines(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judge, _ = make_judge(judge_script())
    run(judge, records(2), out=out)
    rows = out.read_text(encoding="utf-8").splitlines()
    p0 = next(json.loads(r) for r in rows if json.loads(r)["pair_id"] == "p0")
    failed = {**p0, "winner": None, "probabilities": None,
              "failure": {"stage": "backend", "reason": "429", "raw": None}}
    out.write_text("\n".join([*rows, json.dumps(failed), ""]), encoding="utf-8")
    latest = {v.pair_id: v for v in read_results(out)}
    assert len(latest) == 2 and latest["p0"].failure is not None and latest["p1"].failure is None
    assert completed_ids(out) == {"p1"}
    out.write_text(rows[0] + "\n{\"pair_id\": 3}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.jsonl:2"):
        read_results(out)


def test_inconsistency_rate_counts_only_successful_judgments() -> None:
    assert RunReport().inconsistency_rate is None
    assert RunReport(judged=5, failed=1, position_inconsistent=1).inconsistency_rate == pytest.approx(0.25)
    assert RunReport(judged=2, failed=2).inconsistency_rate is None


def test_at_most_concurrency_in_flight_and_records_pulled_as_workers_free_up(tmp_path: Path) -> None:
    judge, _ = make_judge(judge_script())
    real = judge.acompare
    in_flight = peak = 0
    pulled: list[str] = []
    pulled_at_first_result: list[int] = []

    async def slow(pair: Pair, *, exclude: Any = ()) -> Verdict:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        try:
            return await real(pair, exclude=exclude)
        finally:
            in_flight -= 1

    def stream() -> Iterable[PairRecord]:
        for record in records(12):
            pulled.append(record.pair.id)
            yield record

    judge.acompare = slow  # type: ignore[method-assign]
    report = run(judge, stream(), out=tmp_path / "r.jsonl", concurrency=3,
                 on_result=lambda _v: pulled_at_first_result.append(len(pulled)))
    assert report.judged == 12 and peak == 3
    assert pulled_at_first_result[0] == 3  # lazily streamed: no record is taken before a worker is free


def test_resuming_a_file_of_a_differently_configured_judge_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judge, _ = make_judge(judge_script())
    run(judge, records(3), out=out)
    before = out.read_bytes()
    fb = FakeBackend(judge_script())
    other = Judge(fb, None, config=bare_config(fb).model_copy(update={"top_logprobs": 5, "explain": True}))
    with pytest.raises(ConfigError, match=r"results\.jsonl:1: .*differently configured judge.*"
                                          r"explain False \(this run: True\); top_logprobs 10 \(this run: 5\)"):
        run(other, records(), out=out)
    assert out.read_bytes() == before
    again = run(judge, records(), out=out)  # the same judge resumes
    assert (again.skipped, again.judged) == (3, N - 3)
    # a `judge rerun` file holds each pair under its own configuration: allowed when asked for
    mixed = run(other, [PairRecord(pair=Pair(id="x", prompt="question 1", response_a="good answer 1",
                                             response_b="bad answer 1"), label=None, source=None, line=1)],
                out=out, mixed_configs=True)
    assert mixed.judged == 1 and {v.config.explain for v in read_results(out)} == {False, True}


def test_resuming_with_another_escalation_threshold_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judge, _ = make_judge(judge_script())
    judge.escalate_below = 0.6
    run(judge, records(3), out=out)
    before = out.read_bytes()
    assert {v.escalate_below for v in read_results(out)} == {0.6}
    for other in (0.9, None):
        judge.escalate_below = other
        with pytest.raises(ConfigError, match=r"escalated below 0\.6 \(this run: (0\.9|none)\)"):
            run(judge, records(), out=out)
        assert out.read_bytes() == before
    judge.escalate_below = 0.6  # the same threshold resumes
    assert run(judge, records(), out=out).skipped == 3
    legacy = tmp_path / "legacy.jsonl"  # verdicts written before they recorded their threshold: not compared
    legacy.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "escalate_below"}) + "\n"
                              for line in before.decode().splitlines()))
    judge.escalate_below = 0.9
    assert run(judge, records(), out=legacy).skipped == 3


def test_resuming_judges_again_a_pair_whose_text_changed_under_the_same_id(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judge, _ = make_judge(judge_script())
    run(judge, records(3), out=out)
    edited = records(3)
    edited[1] = PairRecord(pair=edited[1].pair.model_copy(update={"prompt": "question 1, reworded"}), label="A",
                           source="test", line=2)
    again = run(judge, edited, out=out)
    assert (again.skipped, again.judged) == (2, 1)
    latest = {v.pair_id: v for v in read_results(out)}
    assert latest["p1"].pair_hash == pair_hash(edited[1].pair) != pair_hash(records(3)[1].pair)
    assert run(judge, edited, out=out).skipped == 3  # now current: nothing to do
    legacy = tmp_path / "legacy.jsonl"  # verdicts written before results recorded the pair's hash: by id
    legacy.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "pair_hash"}) + "\n"
                              for line in out.read_text().splitlines()))
    assert run(judge, records(3), out=legacy).skipped == 3


def test_resuming_uncalibrated_verdicts_with_a_calibrator_is_refused(tmp_path: Path) -> None:
    from judge.calibration.recalibrate import Calibrator, calibration_key

    out = tmp_path / "results.jsonl"
    judge, fb = make_judge(judge_script())
    run(judge, records(2), out=out)
    cal = Calibrator(method="temperature", params={"temperature": 2.0}, judge=calibration_key(judge.config),
                     rulebook_version=None, n_fitted=100)
    calibrated = Judge(fb, None, config=judge.config, calibrator=cal)
    with pytest.raises(ConfigError, match=rf"calibrator None \(this run: '{cal.id}'\)"):
        run(calibrated, records(), out=out)


def test_time_budget_stops_starting_comparisons_and_a_rerun_goes_on(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from judge.judging import runloop

    now = [100.0]
    monkeypatch.setattr(runloop, "_clock", lambda: now[0])
    out = tmp_path / "results.jsonl"
    judge, _ = make_judge(judge_script())

    def four_seconds_each(_v: Verdict) -> None:
        now[0] += 4.0

    report = run(judge, records(), out=out, concurrency=1, max_seconds=10, on_result=four_seconds_each)
    assert report.stopped_by_budget and report.judged == 3  # started at 0, 4 and 8 s; at 12 s none
    assert len(lines(out)) == 3
    assert run(judge, records(), out=out, concurrency=1, max_seconds=0).judged == 0
    rest = run(judge, records(), out=out, concurrency=4)
    assert (rest.skipped, rest.judged, rest.stopped_by_budget) == (3, N - 3, False)
    with pytest.raises(ValueError, match="negative"):
        run(judge, records(), out=out, max_seconds=-1)


def test_duration_option_reads_seconds_minutes_and_hours() -> None:
    import typer

    from judge.cli.common import duration_s

    assert [duration_s(t, "--max-time") for t in ("3600", "90m", "2h", "1h30m", "45s", " 1.5H ")] == \
        [3600, 5400, 7200, 5400, 45, 5400]
    for bad in ("", "soon", "2d", "h", "-5"):
        with pytest.raises(typer.BadParameter, match="not a duration"):
            duration_s(bad, "--max-time")
