"""The run loop over its sinks: scheduling on an in-memory sink (no I/O), and the same budget stop and the
same failing pair through both real sinks (a results file, a shared batch's claims)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from judge.backends.fake import FakeBackend, FakeReply
from judge.errors import StoreError
from judge.judging.engine import Judge, bare_config
from judge.judging.runloop import RunControl, RunReport, run_loop
from judge.judging.runner import run_pairs
from judge.judging.shared import run_shared
from judge.records import PairRecord
from judge.rules.model import Pair
from judge.store import migrate, open_engine
from judge.store.claims import WorkClaims
from judge.verdicts import Verdict


def records(n: int, bad: str | None = None) -> list[PairRecord]:
    """``n`` pairs; the one with id ``bad`` holds text no model can be asked about (a lone surrogate)."""
    return [PairRecord(pair=Pair(id=f"p{i}", prompt=f"question {i}" + ("\ud800" if f"p{i}" == bad else ""),
                                 response_a=f"good {i}", response_b=f"bad {i}"), label=None, source="t", line=i + 1)
            for i in range(n)]


def make_judge() -> tuple[Judge, FakeBackend]:
    def script(_body: dict[str, Any]) -> FakeReply:
        return FakeReply(text="A", top_logprobs=[("A", math.log(0.8)), ("B", math.log(0.2))], prompt_tokens=40,
                         completion_tokens=1)

    fb = FakeBackend(script)
    return Judge(fb, None, config=bare_config(fb)), fb


class ListSink:
    """An in-memory sink: hands out records from a list, keeps verdicts in a dict, notes what the loop asks."""

    poll_s: float | None = None

    def __init__(self, recs: Sequence[PairRecord], *, refuse: set[str] | None = None) -> None:
        self.pending = list(recs)
        self.verdicts: dict[str | None, Verdict] = {}
        self.refuse = refuse or set()
        self.asked: list[int] = []
        self.closed = False

    async def take(self, n: int) -> Sequence[PairRecord]:
        self.asked.append(n)
        taken, self.pending = self.pending[:n], self.pending[n:]
        return taken

    async def record(self, record: PairRecord, verdict: Verdict) -> bool:
        if record.pair.id in self.refuse:
            return False
        self.verdicts[record.pair.id] = verdict
        return True

    async def settle(self) -> bool:
        return False

    async def close(self) -> None:
        self.closed = True


def loop(judge: Judge, sink: ListSink, concurrency: int, **budget: Any) -> RunReport:
    report = RunReport()
    asyncio.run(run_loop(RunControl(judge, report, **budget), sink, concurrency))
    return report


# --------------------------------------------------------------------------------- scheduling, no I/O
def test_never_more_than_concurrency_in_flight_and_every_record_recorded() -> None:
    judge, fb = make_judge()
    in_flight, peak = [0], [0]
    original = fb.achat

    async def counting(request: Any) -> Any:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        try:
            await asyncio.sleep(0.01)  # long enough for every free slot to fill
            return await original(request)
        finally:
            in_flight[0] -= 1

    fb.achat = counting  # type: ignore[method-assign]
    sink = ListSink(records(7))
    report = loop(judge, sink, concurrency=3)
    assert (report.judged, report.failed) == (7, 0) and set(sink.verdicts) == {f"p{i}" for i in range(7)}
    assert peak[0] == 2 * 3  # 3 comparisons, both orders each
    assert max(sink.asked) == 3 and sink.closed


def test_a_verdict_the_sink_did_not_record_is_not_counted() -> None:
    judge, _ = make_judge()
    seen: list[Verdict] = []
    sink = ListSink(records(4), refuse={"p1"})
    report = RunReport()
    asyncio.run(run_loop(RunControl(judge, report, on_result=seen.append), sink, 2))
    assert report.judged == 3 and sorted(v.pair_id or "" for v in seen) == ["p0", "p2", "p3"]


def test_a_fault_of_the_whole_run_stops_it_and_closes_the_sink() -> None:
    judge, _ = make_judge()

    class Broken(ListSink):
        async def record(self, record: PairRecord, verdict: Verdict) -> bool:
            if record.pair.id == "p0":
                raise StoreError("the database went away")
            return await super().record(record, verdict)

    sink = Broken(records(6))
    with pytest.raises(StoreError, match="went away"):
        loop(judge, sink, concurrency=2)
    assert sink.closed and len(sink.verdicts) < 6


# ------------------------------------------------------------------------ the same through both sinks
def run_file(judge: Judge, recs: list[PairRecord], tmp_path: Path, **kw: Any) -> RunReport:
    return asyncio.run(run_pairs(judge, recs, out=tmp_path / "results.jsonl", **kw))


def run_batch(judge: Judge, recs: list[PairRecord], tmp_path: Path, **kw: Any) -> RunReport:
    engine = open_engine(f"sqlite:///{tmp_path / 'batch.db'}")
    migrate(engine)
    try:
        return asyncio.run(run_shared(judge, recs, WorkClaims(engine, "b", worker_id="w"), **kw))
    finally:
        engine.dispose()


SINKS = pytest.mark.parametrize("run", [run_file, run_batch], ids=["results-file", "shared-batch"])


@SINKS
def test_a_token_budget_stops_both_sinks_alike(run: Any, tmp_path: Path) -> None:
    judge, fb = make_judge()
    per_pair = 2 * (40 + 1)
    report = run(judge, records(6), tmp_path, concurrency=1, max_tokens=int(2.5 * per_pair))
    assert report.stopped_by_budget and report.judged == 3  # started below the budget: 0, 82 and 164 tokens
    assert len(fb.history) == 6


@SINKS
def test_a_failing_pair_is_recorded_and_the_others_go_on_in_both_sinks(run: Any, tmp_path: Path) -> None:
    judge, fb = make_judge()
    report = run(judge, records(5, bad="p2"), tmp_path, concurrency=2)
    assert (report.judged, report.failed, report.stopped_by_budget) == (5, 1, False)
    assert len(fb.history) == 2 * 4  # the bad pair asked no model
