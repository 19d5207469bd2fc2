"""Many comparisons: bounded concurrency, streamed results, resume, budget, progress.

Results are appended to a JSONL file as they finish (one `Verdict` per line), so a run that is killed
loses at most the comparisons in flight; re-running with the same output skips every pair already
decided. Pairs whose last result was a transient failure (backend, budget) are tried again. A results file
written by a differently configured judge (backend, model, prompt template, options, calibrator) is refused
rather than resumed, so one file never mixes two judges' verdicts.
Several processes dividing one batch through the database: `judge.judging.shared`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from judge.errors import ConfigError, InputError, JudgeError
from judge.jsonl import text_problem
from judge.judging.engine import Judge

# read_results, write_results and completed_ids are re-exported: they lived here before `judge.records`.
from judge.records import (
    RETRYABLE_STAGES,
    PairRecord,
    completed_ids,
    read_results,
    same_setup,
    scan_results,
    write_results,
)
from judge.rules.model import Pair
from judge.verdicts import Failure, Verdict

__all__ = ["RETRYABLE_STAGES", "RunControl", "RunReport", "completed_ids", "read_results", "run_pairs", "write_results"]

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
        if verdict.cached:
            self.cached += 1
            self.cached_tokens += verdict.prompt_tokens + verdict.completion_tokens
            return
        self.prompt_tokens += verdict.prompt_tokens
        self.completion_tokens += verdict.completion_tokens
        if verdict.cost_usd is None and verdict.prompt_tokens + verdict.completion_tokens > 0:
            self.cost_usd = None
        elif self.cost_usd is not None:
            self.cost_usd += verdict.cost_usd or 0.0
        if not verdict.cached:  # a verdict from the judgment store asked nothing, and took no check from cache
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

    @property
    def inconsistency_rate(self) -> float | None:
        """Share of judged pairs whose two orders disagreed (precedent-bound pairs asked no model)."""
        ok = self.judged - self.failed - self.bound_by_precedent
        return self.position_inconsistent / ok if ok else None


def _check_same_judge(path: Path, judge: Judge, setups: list[tuple[int, Verdict]]) -> None:
    """Refuse to resume ``path`` when a verdict in it came from a differently configured judge."""
    calibrator = judge.calibrator.id if judge.calibrator is not None else None
    mine = judge.config.model_dump()
    for line_no, verdict in setups:
        if same_setup(verdict, judge.config, calibrator):
            continue
        theirs = verdict.config.model_dump()
        diff = [f"{k} {theirs.get(k)!r} (this run: {mine.get(k)!r})"
                for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        if verdict.calibrator != calibrator:
            diff.append(f"calibrator {verdict.calibrator!r} (this run: {calibrator!r})")
        raise ConfigError(f"{path}:{line_no}: this results file holds verdicts of a differently configured judge "
                          f"({'; '.join(diff)}); resuming would mix two judges' verdicts in one file - "
                          "write to a new file, or re-run with the same settings")


class RunControl:
    """What every run loop shares: the budget (sticky once reached), the exclusions and the callbacks.

    `run_pairs` (records from an iterator into a results file) and `judge.judging.shared.run_shared` (records
    claimed from a shared batch) differ only in where the next record comes from and where its verdict goes.

    Args:
        judge: the configured judge.
        report: the run's report (counted into by `finish`).
        max_tokens: stop starting comparisons once this many tokens were used.
        max_cost_usd: stop starting comparisons once the estimated cost reaches this.
        max_seconds: stop starting comparisons once this many seconds have passed.
        exclude_for: rule ids a record must not retrieve (leave-one-out evaluation).
        on_result: called with every verdict the run records.
    """

    def __init__(self, judge: Judge, report: RunReport, *, max_tokens: int | None = None,
                 max_cost_usd: float | None = None, max_seconds: float | None = None,
                 exclude_for: Callable[[PairRecord], Sequence[str]] | None = None,
                 on_result: Callable[[Verdict], None] | None = None) -> None:
        refuse_unpriced_budget(judge, max_cost_usd)
        self.judge = judge
        self.report = report
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

    async def judge_record(self, record: PairRecord) -> Verdict:
        """`judge_one` for a record, with its exclusions."""
        return await judge_one(self.judge, record.pair, self.exclude_for(record) if self.exclude_for else ())

    def finish(self, verdict: Verdict, write: Callable[[Verdict], None] | None = None) -> None:
        """Count a recorded verdict, ``write`` it, then tell ``on_result``."""
        self.report.add(verdict)
        if write is not None:
            write(verdict)
        if self.on_result is not None:
            self.on_result(verdict)

    async def close(self) -> None:
        """Stop the run: the report says whether a budget stopped it; the judge's connections are released."""
        self.report.stopped_by_budget = self.budget_hit
        await self.judge.release()


def refuse_unpriced_budget(judge: Judge, max_cost_usd: float | None) -> None:
    """A cost budget needs a price: without one every cost is unknown and the budget could never stop a run.

    Raises:
        ConfigError: ``max_cost_usd`` is set and the judge has no price.
    """
    if max_cost_usd is not None and judge.price_per_mtok is None:
        raise ConfigError(f"--max-cost needs a price for {judge.config.model!r}, and none is known: set one in "
                          f"judge.toml ([prices.\"{judge.config.model}\"] input = ..., output = ..., USD per 1M "
                          "tokens) or leave out --max-cost")


async def run_pairs(judge: Judge, records: Iterable[PairRecord], *, out: Path | None = None,
                    concurrency: int = 4, max_tokens: int | None = None, max_cost_usd: float | None = None,
                    max_seconds: float | None = None,
                    exclude_for: Callable[[PairRecord], Sequence[str]] | None = None,
                    on_result: Callable[[Verdict], None] | None = None,
                    on_skip: Callable[[PairRecord], None] | None = None, mixed_configs: bool = False) -> RunReport:
    """Judge every record, `concurrency` at a time, appending each verdict to `out` as it finishes.

    Args:
        judge: the configured judge.
        records: pairs to judge (streamed).
        out: JSONL results file; existing decided pair ids are skipped (resume).
        concurrency: comparisons in flight at once.
        max_tokens: stop starting new comparisons once this many tokens were used.
        max_cost_usd: stop starting new comparisons once the estimated cost reaches this.
        max_seconds: stop starting new comparisons once this many seconds have passed (those in flight
            finish and are written; a re-run goes on from there).
        exclude_for: rule ids a record must not retrieve (leave-one-out evaluation).
        on_result: called with every verdict (progress bars, logging).
        on_skip: called with every record skipped because ``out`` already holds its verdict (progress bars).
        mixed_configs: ``out`` may hold verdicts of other judge configurations (a `judge rerun` file: each
            pair under its own stored configuration); otherwise such a file is refused.

    Raises:
        ConfigError: ``out`` holds verdicts of a differently configured judge and ``mixed_configs`` is False
            (nothing is judged or written).
    """
    report = RunReport()
    control = RunControl(judge, report, max_tokens=max_tokens, max_cost_usd=max_cost_usd, max_seconds=max_seconds,
                         exclude_for=exclude_for, on_result=on_result)
    done: set[str] = set()
    if out is not None:
        done, setups = scan_results(out)
        if not mixed_configs:
            _check_same_judge(out, judge, setups)
    sink = out.open("a", encoding="utf-8") if out is not None else None
    pending = iter(records)

    def write(verdict: Verdict) -> None:
        if sink is not None:
            sink.write(verdict.model_dump_json() + "\n")
            sink.flush()

    async def worker() -> None:
        # `concurrency` workers take the next record from one shared iterator as they become free: no task
        # per pair, no waiting set to scan on every completion (records stay lazily streamed).
        for record in pending:
            report.total += 1
            if record.pair.id in done:
                report.skipped += 1
                if on_skip is not None:
                    on_skip(record)
                continue
            if control.over_budget():
                return
            control.finish(await control.judge_record(record), write)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        if sink is not None:
            sink.close()
        await control.close()
    if report.stopped_by_budget:
        log.warning("budget reached: stopped after %d comparisons; re-run to continue", report.judged)
    return report
