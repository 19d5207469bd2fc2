"""The run loop: schedule pairs onto the judge, over a sink that says where they come from and go.

Every batch run - a results file (`judge.judging.runner.run_pairs`) or one worker of a shared batch
(`judge.judging.shared.run_shared`) - is `run_loop` over a `RunSink`. The loop owns what all runs share:
``concurrency`` comparisons in flight, the budgets (tokens, cost, time; sticky once reached), the exclusions
(leave-one-out), the callbacks and the report. A fault of one pair (its text, an unexpected error inside
it) is a recorded failure and the other pairs go on; a fault of the whole run (configuration, store,
index) stops it, with the comparisons in flight cancelled and the sink closed.

A sink only moves records and verdicts:

* `RunSink.take` hands out up to ``n`` records to start now (fewer, or none, when nothing is ready);
* `RunSink.record` stores one verdict (False: it was not recorded, e.g. a lost claim);
* `RunSink.settle` is asked when nothing is in flight and nothing was taken: wait for work, or say the run
  is over;
* `RunSink.poll_s`: with a slot free and comparisons in flight, how long to wait before asking again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from judge.errors import ConfigError, InputError, JudgeError
from judge.jsonl import text_problem
from judge.judging.engine import Judge
from judge.records import PairRecord
from judge.rules.model import Pair
from judge.verdicts import Failure, Verdict

__all__ = ["RunControl", "RunReport", "RunSink", "deadline_after", "judge_one", "refuse_unpriced_budget",
           "run_loop"]

log = logging.getLogger(__name__)

#: Monotonic seconds for time budgets (a name of its own so tests can move time without touching asyncio's).
_clock = time.monotonic


def pair_problem(pair: Pair) -> str | None:
    """What makes a pair impossible to judge before any model is asked (text that is not valid), or None."""
    fields = [("prompt", pair.prompt)]
    for slot, response in (("response_a", pair.response_a), ("response_b", pair.response_b)):
        fields.append((slot, response.text))
        if response.process is not None:
            fields.append((f"{slot}.process", response.process.model_dump_json()))
    for name, text in fields:
        problem = text_problem(text)
        if problem is not None:
            return f"{name} {problem}"
    return None


def input_failure(judge: Judge, pair: Pair, reason: str) -> Verdict:
    """A recorded failure (stage ``input``) for a pair that could not be judged; never a score."""
    digest = hashlib.sha256(repr(pair.model_dump()).encode("utf-8", "backslashreplace")).hexdigest()
    return Verdict(pair_id=pair.id, winner=None, probabilities=None, config=judge.config,
                   cache_key=f"input-{digest}", failure=Failure(stage="input", reason=reason))


async def judge_one(judge: Judge, pair: Pair, exclude: Sequence[str] = ()) -> Verdict:
    """`Judge.acompare`, with a fault of this one pair (its text, an unexpected error) a recorded failure.

    Faults of the whole run (configuration, store, index) still raise: they would fail every pair.
    """
    problem = pair_problem(pair)
    if problem is not None:
        return input_failure(judge, pair, problem)
    try:
        return await judge.acompare(pair, exclude=exclude)
    except InputError as exc:
        return input_failure(judge, pair, str(exc))
    except JudgeError:
        raise
    except (UnicodeError, ValueError, TypeError, RecursionError) as exc:
        # one pair's content broke something deeper (encoding, a parser); the other pairs are unaffected
        log.warning("pair %s could not be judged: %s: %s", pair.id, type(exc).__name__, exc)
        return input_failure(judge, pair, f"{type(exc).__name__}: {exc}")


def deadline_after(max_seconds: float | None) -> float | None:
    """The `_clock` reading at which a time budget of ``max_seconds`` (None: none) runs out."""
    if max_seconds is not None and max_seconds < 0:
        raise ValueError(f"a time budget cannot be negative, got {max_seconds} s")
    return None if max_seconds is None else _clock() + max_seconds


@dataclass
class RunReport:
    """What a run did."""

    total: int = 0
    judged: int = 0
    skipped: int = 0
    failed: int = 0
    position_inconsistent: int = 0
    bound_by_precedent: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    cached: int = 0
    cached_tokens: int = 0
    stopped_by_budget: bool = False
    checks_asked: int = 0
    checks_cached: int = 0

    def add(self, verdict: Verdict) -> None:
        """Count one verdict this run produced.

        A verdict answered from the judgment store spent nothing now: its tokens count as ``cached_tokens``,
        never against a budget. The cost is None (unknown) once any verdict that used tokens had no price.
        """
        self.judged += 1
        self.failed += verdict.failure is not None
        self.position_inconsistent += verdict.failure is None and bool(verdict.position_inconsistent)
        self.bound_by_precedent += verdict.precedent is not None
        if verdict.cached:  # asked nothing now, and took no check from cache
            self.cached += 1
            self.cached_tokens += verdict.prompt_tokens + verdict.completion_tokens
            return
        self.prompt_tokens += verdict.prompt_tokens
        self.completion_tokens += verdict.completion_tokens
        if verdict.cost_usd is None and verdict.prompt_tokens + verdict.completion_tokens > 0:
            self.cost_usd = None
        elif self.cost_usd is not None:
            self.cost_usd += verdict.cost_usd or 0.0
        self.checks_asked += verdict.checks_asked
        self.checks_cached += verdict.checks_cached

    def over_budget(self, max_tokens: int | None, max_cost_usd: float | None,
                    deadline: float | None = None) -> bool:
        """Whether the tokens or the estimated cost used so far reached a budget, or the time budget
        (a `deadline_after` reading) ran out."""
        used = self.prompt_tokens + self.completion_tokens
        return ((max_tokens is not None and used >= max_tokens)
                or (max_cost_usd is not None and self.cost_usd is not None and self.cost_usd >= max_cost_usd)
                or (deadline is not None and _clock() >= deadline))

    def room(self, max_tokens: int | None, max_cost_usd: float | None, *, in_flight: int = 0) -> int | None:
        """How many more comparisons may start under the token and cost budgets, with ``in_flight`` ones
        running: each counted at the mean spend of the comparisons this run asked so far (None: no token or cost
        budget). Starting only that many keeps a run with several comparisons
        in flight from overshooting its budget by one comparison per slot. Under a budget, before anything was
        asked, one comparison runs alone to give the mean."""
        asked = self.judged - self.cached
        if max_tokens is None and max_cost_usd is None:
            return None
        if not asked:
            return max(0, 1 - in_flight)
        limits = []
        used = self.prompt_tokens + self.completion_tokens
        if max_tokens is not None and used > 0:
            limits.append(math.ceil((max_tokens - used) / (used / asked)))
        if max_cost_usd is not None and self.cost_usd:
            limits.append(math.ceil((max_cost_usd - self.cost_usd) / (self.cost_usd / asked)))
        return max(0, min(limits) - in_flight) if limits else None

    @property
    def inconsistency_rate(self) -> float | None:
        """Share of judged pairs whose two orders disagreed (precedent-bound pairs asked no model)."""
        ok = self.judged - self.failed - self.bound_by_precedent
        return self.position_inconsistent / ok if ok else None


def refuse_unpriced_budget(judge: Judge, max_cost_usd: float | None) -> None:
    """A cost budget needs a price: without one every cost is unknown and the budget could never stop a run.

    Raises:
        ConfigError: ``max_cost_usd`` is set and the judge has no price.
    """
    if max_cost_usd is not None and judge.price_per_mtok is None:
        raise ConfigError(f"--max-cost needs a price for {judge.config.model!r}, and none is known: set one in "
                          f"judge.toml ([prices.\"{judge.config.model}\"] input = ..., output = ..., USD per 1M "
                          "tokens) or leave out --max-cost")


class RunControl:
    """What every run shares: the budget (sticky once reached), the exclusions and the callbacks.

    Args:
        judge: the configured judge.
        report: the run's report (counted into by `finish`).
        max_tokens: stop starting comparisons once this many tokens were used.
        max_cost_usd: stop starting comparisons once the estimated cost reaches this.
        max_seconds: stop starting comparisons once this many seconds have passed.
        exclude_for: rule ids a record must not retrieve (leave-one-out evaluation).
        on_result: called with every verdict the run records.

    Raises:
        ConfigError: a cost budget for a judge without a price.
        ValueError: a negative time budget.
    """

    def __init__(self, judge: Judge, report: RunReport, *, max_tokens: int | None = None,
                 max_cost_usd: float | None = None, max_seconds: float | None = None,
                 exclude_for: Callable[[PairRecord], Sequence[str]] | None = None,
                 on_result: Callable[[Verdict], None] | None = None) -> None:
        refuse_unpriced_budget(judge, max_cost_usd)
        self.judge = judge
        self.report = report
        if judge.price_per_mtok is None:  # unknown, even for a run that spends nothing (all cached or done)
            report.cost_usd = None
        self.max_tokens = max_tokens
        self.max_cost_usd = max_cost_usd
        self.deadline = deadline_after(max_seconds)
        self.exclude_for = exclude_for
        self.on_result = on_result
        self.budget_hit = False

    def over_budget(self) -> bool:
        """Whether a budget was reached (once reached, it stays reached for this run)."""
        self.budget_hit = self.budget_hit or self.report.over_budget(self.max_tokens, self.max_cost_usd,
                                                                     self.deadline)
        return self.budget_hit

    def room(self, in_flight: int) -> int | None:
        """How many more comparisons may start under the budgets (`RunReport.room`; None: no limit)."""
        return self.report.room(self.max_tokens, self.max_cost_usd, in_flight=in_flight)

    async def judge_record(self, record: PairRecord) -> Verdict:
        """`judge_one` for a record, with its exclusions."""
        return await judge_one(self.judge, record.pair, self.exclude_for(record) if self.exclude_for else ())

    def finish(self, verdict: Verdict) -> None:
        """Count a recorded verdict, then tell ``on_result``."""
        self.report.add(verdict)
        if self.on_result is not None:
            self.on_result(verdict)

    async def close(self) -> None:
        """Stop the run: the report says whether a budget stopped it; the judge's connections are released."""
        self.report.stopped_by_budget = self.budget_hit
        await self.judge.release()


class RunSink(Protocol):
    """Where a run's records come from and where their verdicts go (a results file, a shared batch).

    Attributes:
        poll_s: with a slot free and comparisons in flight but nothing taken, ask `take` again after this
            many seconds (None: only when a comparison finishes).
    """

    poll_s: float | None

    async def take(self, n: int) -> Sequence[PairRecord]:
        """Up to ``n`` records to judge now (fewer, or none, when nothing more is ready now)."""
        ...

    async def record(self, record: PairRecord, verdict: Verdict) -> bool:
        """Store ``record``'s verdict; False when it was not recorded (the run does not count it)."""
        ...

    async def settle(self) -> bool:
        """Nothing in flight and nothing to take: wait for work (True: take again) or end the run (False)."""
        ...

    async def close(self) -> None:
        """The run ended (finished, stopped by a budget or by an error): give back what it still holds."""
        ...


async def run_loop(control: RunControl, sink: RunSink, concurrency: int) -> None:
    """Judge what ``sink`` hands out, ``concurrency`` at a time, until it has nothing more or a budget stops it.

    Each verdict is recorded by the sink as soon as its comparison ends, then counted and passed to
    ``on_result``; comparisons in flight when a budget is reached finish and are recorded. The sink and the
    control are closed however the loop ends.

    Raises:
        JudgeError: a fault of the whole run (the comparisons in flight are cancelled).
    """
    slots = max(1, concurrency)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(record: PairRecord) -> None:
        verdict = await control.judge_record(record)
        if await sink.record(record, verdict):
            control.finish(verdict)

    try:
        while True:
            budget_hit = control.over_budget()
            free = slots - len(in_flight)
            room = control.room(len(in_flight))
            if room is not None:
                free = min(free, room)
            if free > 0 and not budget_hit:
                taken = await sink.take(free)
                in_flight.update(asyncio.create_task(one(record)) for record in taken)
                free -= len(taken)
            if in_flight:
                # a slot is free but nothing was ready: look again after the sink's poll interval
                timeout = sink.poll_s if free > 0 and not budget_hit else None
                finished, _ = await asyncio.wait(in_flight, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                in_flight -= finished
                for task in finished:
                    task.result()  # a fault of the whole run stops it (the others are cancelled below)
                continue
            if budget_hit or not await sink.settle():
                break
    finally:
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        try:
            await sink.close()
        finally:
            await control.close()
