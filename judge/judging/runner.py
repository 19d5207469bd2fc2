"""Many comparisons: bounded concurrency, streamed results, resume, budget, progress.

Results are appended to a JSONL file as they finish (one `Verdict` per line), so a run that is killed
loses at most the comparisons in flight; re-running with the same output skips every pair already
decided. Pairs whose last result was a transient failure (backend, budget) are tried again. A results file
written by a differently configured judge (backend, model, prompt template, options, calibrator) is refused
rather than resumed, so one file never mixes two judges' verdicts.
Several processes dividing one batch through the database: `judge.judging.shared`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from judge.errors import ConfigError
from judge.judging.engine import Judge

# RunControl and RunReport are part of this module's API as well (defined with the loop).
from judge.judging.runloop import RunControl, RunReport, run_loop

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
from judge.verdicts import Verdict, pair_hash

__all__ = ["RETRYABLE_STAGES", "ResultsFileSink", "RunControl", "RunReport", "completed_ids", "read_results",
           "run_pairs", "write_results"]

log = logging.getLogger(__name__)


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


def _check_same_threshold(path: Path, judge: Judge, thresholds: set[float | None]) -> None:
    """Refuse to resume ``path`` when its verdicts were escalated below another threshold than this run's."""
    others = thresholds - {judge.escalate_below}
    if others:
        shown = ", ".join("none" if t is None else f"{t:g}"
                          for t in sorted(others, key=lambda t: -1.0 if t is None else t))
        mine = "none" if judge.escalate_below is None else f"{judge.escalate_below:g}"
        raise ConfigError(f"{path}: its verdicts were escalated below {shown} (this run: {mine}); resuming would "
                          "mix two abstention thresholds in one file - write to a new file, or re-run with the same "
                          "--escalate-below / --abstain")


class ResultsFileSink:
    """A `judge.judging.runloop.RunSink` over a stream of records and a JSONL results file.

    Records come from an iterator, lazily; those whose pair ``out`` already decided are skipped (resume).
    Each verdict is appended to ``out`` and flushed as it finishes.

    Args:
        records: the pairs to judge (streamed).
        report: the run's report (``total`` and ``skipped`` are counted here).
        out: the results file (None: verdicts are only counted and passed to ``on_result``).
        done: pair ids whose verdicts ``out`` already holds.
        on_skip: called with every record skipped because ``out`` holds its verdict.
        pair_hashes: the content hash (`judge.verdicts.pair_hash`) of each done pair's verdict in ``out``: a
            pair whose text changed under the same id is judged again (its new line is the one read back).
    """

    poll_s: float | None = None  # an iterator has a record ready, or has none left

    def __init__(self, records: Iterable[PairRecord], report: RunReport, *, out: Path | None = None,
                 done: set[str] | None = None, on_skip: Callable[[PairRecord], None] | None = None,
                 pair_hashes: Mapping[str, str] | None = None) -> None:
        self._pending: Iterator[PairRecord] = iter(records)
        self._report = report
        self._done = done or set()
        self._hashes = pair_hashes or {}
        self._on_skip = on_skip
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)  # as `judge run -o new/folder/results.jsonl`
        self._out: IO[str] | None = out.open("a", encoding="utf-8") if out is not None else None

    async def take(self, n: int) -> Sequence[PairRecord]:
        """The next ``n`` records whose pairs are not decided yet (fewer once the records run out)."""
        taken: list[PairRecord] = []
        while len(taken) < n:
            record = next(self._pending, None)
            if record is None:
                break
            self._report.total += 1
            known = self._hashes.get(record.pair.id or "")
            if known is not None and known != pair_hash(record.pair):
                log.info("pair %s changed since its verdict in the results file: judged again", record.pair.id)
            elif record.pair.id in self._done:
                self._report.skipped += 1
                if self._on_skip is not None:
                    self._on_skip(record)
                continue
            taken.append(record)
        return taken

    async def record(self, record: PairRecord, verdict: Verdict) -> bool:
        """Append the verdict to the results file (flushed: a killed run keeps it)."""
        if self._out is not None:
            verdict = verdict.model_copy(update={"pair_hash": pair_hash(record.pair)})
            self._out.write(verdict.model_dump_json() + "\n")
            self._out.flush()
        return True

    async def settle(self) -> bool:
        """Nothing in flight and nothing taken: the records ran out."""
        return False

    async def close(self) -> None:
        """Close the results file."""
        if self._out is not None:
            self._out.close()


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
    hashes: dict[str, str] = {}
    if out is not None:
        scan = scan_results(out)
        done, hashes = scan.done, scan.pair_hashes
        if not mixed_configs:
            _check_same_judge(out, judge, scan.setups)
            _check_same_threshold(out, judge, scan.thresholds)
    await run_loop(control, ResultsFileSink(records, report, out=out, done=done, on_skip=on_skip,
                                            pair_hashes=hashes), concurrency)
    if report.stopped_by_budget:
        log.warning("budget reached: stopped after %d comparisons; re-run to continue", report.judged)
    return report
