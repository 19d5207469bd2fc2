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
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from judge.errors import ConfigError, InputError, JudgeError, first_validation_error
from judge.jsonl import iter_lines, text_problem
from judge.judging.engine import Judge
from judge.judging.pairs_io import PairRecord
from judge.judging.verdict import Failure, JudgeConfig, Verdict
from judge.rules.model import Pair

__all__ = ["RETRYABLE_STAGES", "RunReport", "completed_ids", "read_results", "run_pairs", "write_results"]

log = logging.getLogger(__name__)

#: Failure stages worth retrying on resume (the others are deterministic for the same inputs).
RETRYABLE_STAGES = frozenset({"backend", "budget"})

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
    cost_usd: float = 0.0
    stopped_by_budget: bool = False

    def add(self, verdict: Verdict) -> None:
        """Count one verdict this run produced."""
        self.judged += 1
        self.failed += verdict.failure is not None
        self.position_inconsistent += verdict.failure is None and bool(verdict.position_inconsistent)
        self.bound_by_precedent += verdict.precedent is not None
        self.prompt_tokens += verdict.prompt_tokens
        self.completion_tokens += verdict.completion_tokens
        self.cost_usd += verdict.cost_usd or 0.0

    def over_budget(self, max_tokens: int | None, max_cost_usd: float | None,
                    deadline: float | None = None) -> bool:
        """Whether the tokens or the estimated cost used so far reached a budget, or the time budget
        (a `deadline_after` reading) ran out."""
        used = self.prompt_tokens + self.completion_tokens
        return ((max_tokens is not None and used >= max_tokens)
                or (max_cost_usd is not None and self.cost_usd >= max_cost_usd)
                or (deadline is not None and _clock() >= deadline))

    @property
    def inconsistency_rate(self) -> float | None:
        """Share of judged pairs whose two orders disagreed (precedent-bound pairs asked no model)."""
        ok = self.judged - self.failed - self.bound_by_precedent
        return self.position_inconsistent / ok if ok else None


def _repair_tail(path: Path) -> None:
    """Cut a half-written last line (a run killed mid-write) so appending stays valid JSONL."""
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        log.warning("%s: dropping a half-written last line (%d bytes)", path, size - cut)
        fh.truncate(cut)


def _iter_results(path: Path) -> Iterator[tuple[int, Verdict]]:
    """Stream (line number, verdict) from a results file; a bad line raises `InputError` naming it."""
    for line_no, line in iter_lines(path):
        try:
            verdict = Verdict.model_validate_json(line)
        except ValidationError as exc:
            loc, msg = first_validation_error(exc, "(record)")
            raise InputError(f"not a judge result: field {loc}: {msg}", path=path, line=line_no,
                             field=loc) from None
        yield line_no, verdict


def read_results(path: str | Path) -> list[Verdict]:
    """All verdicts in a results file, last line per pair id winning."""
    latest: dict[str, Verdict] = {}
    for line_no, verdict in _iter_results(Path(path)):
        latest[verdict.pair_id or f"line-{line_no}"] = verdict
    return list(latest.values())


def write_results(path: str | Path, verdicts: Iterable[Verdict]) -> int:
    """Replace ``path`` with these verdicts, one JSONL line each; returns how many.

    Written to a temporary file beside it and renamed into place, so a reader (or another worker writing
    the same file) never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for verdict in verdicts:
                fh.write(verdict.model_dump_json() + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def completed_ids(path: Path) -> set[str]:
    """Pair ids in an existing results file whose result need not be redone."""
    return _scan(path)[0]


def _scan(path: Path) -> tuple[set[str], list[tuple[int, Verdict]]]:
    """The ids ``completed_ids`` gives, and the first line and verdict of each judge setup (configuration and
    calibrator) in the file."""
    if not path.exists():
        return set(), []
    _repair_tail(path)
    done: set[str] = set()
    setups: list[tuple[int, Verdict]] = []  # one in a file written by one judge: a comparison per line
    # Streamed, keeping only ids: resuming a large run must not hold every earlier verdict in memory.
    # Lines are applied in file order, so the last line per pair id wins, as in `read_results`.
    for line_no, verdict in _iter_results(path):
        if not any(_same_setup(v, verdict.config, verdict.calibrator) for _, v in setups):
            setups.append((line_no, verdict))
        if verdict.pair_id is None:
            continue
        if verdict.failure is None or verdict.failure.stage not in RETRYABLE_STAGES:
            done.add(verdict.pair_id)
        else:
            done.discard(verdict.pair_id)
    return done, setups


def _same_setup(verdict: Verdict, config: JudgeConfig, calibrator: str | None) -> bool:
    return verdict.config == config and verdict.calibrator == calibrator


def _check_same_judge(path: Path, judge: Judge, setups: list[tuple[int, Verdict]]) -> None:
    """Refuse to resume ``path`` when a verdict in it came from a differently configured judge."""
    calibrator = judge.calibrator.id if judge.calibrator is not None else None
    mine = judge.config.model_dump()
    for line_no, verdict in setups:
        if _same_setup(verdict, judge.config, calibrator):
            continue
        theirs = verdict.config.model_dump()
        diff = [f"{k} {theirs.get(k)!r} (this run: {mine.get(k)!r})"
                for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        if verdict.calibrator != calibrator:
            diff.append(f"calibrator {verdict.calibrator!r} (this run: {calibrator!r})")
        raise ConfigError(f"{path}:{line_no}: this results file holds verdicts of a differently configured judge "
                          f"({'; '.join(diff)}); resuming would mix two judges' verdicts in one file - "
                          "write to a new file, or re-run with the same settings")


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
    deadline = deadline_after(max_seconds)
    done: set[str] = set()
    if out is not None:
        done, setups = _scan(out)
        if not mixed_configs:
            _check_same_judge(out, judge, setups)
    sink = out.open("a", encoding="utf-8") if out is not None else None
    pending = iter(records)
    budget_hit = False

    async def worker() -> None:
        # `concurrency` workers take the next record from one shared iterator as they become free: no task
        # per pair, no waiting set to scan on every completion (records stay lazily streamed).
        nonlocal budget_hit
        for record in pending:
            report.total += 1
            if record.pair.id in done:
                report.skipped += 1
                if on_skip is not None:
                    on_skip(record)
                continue
            if budget_hit or report.over_budget(max_tokens, max_cost_usd, deadline):
                budget_hit = True
                return
            exclude = exclude_for(record) if exclude_for else ()
            verdict = await judge_one(judge, record.pair, exclude)
            report.add(verdict)
            if sink is not None:
                sink.write(verdict.model_dump_json() + "\n")
                sink.flush()
            if on_result is not None:
                on_result(verdict)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        if sink is not None:
            sink.close()
        await judge.release()
    report.stopped_by_budget = budget_hit
    if report.stopped_by_budget:
        log.warning("budget reached: stopped after %d comparisons; re-run to continue", report.judged)
    return report
