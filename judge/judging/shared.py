"""Several workers, one batch: `judge run --shared` divides the pairs through the database.

Every worker runs `run_shared` on the same pairs with the same judge and the same database. Each claims
open pairs (`judge.store.claims.WorkClaims`), judges them with bounded concurrency, renews its leases while
it judges, and records each verdict in the batch as it finishes. When nothing is left to claim it waits for
the pairs other workers hold: they finish them, or die and their leases run out, and it takes those over.
So every worker returns only when the whole batch is decided (or its budget ran out), and a killed worker
loses nothing: its recorded verdicts stay, and the pairs it held are judged by the others.

"Exactly once" means exactly one recorded verdict per pair in the batch. The model is asked about a pair a
second time only when its claim ran out before the verdict was recorded (the worker was killed or stalled
mid-comparison); a verdict stored in the judgment store but not yet in the batch is answered from that
cache, not asked again. The report counts both (``reclaimed``, ``rejudged``).

The batch's verdicts are read back in input order with `WorkClaims.results`; `judge run --shared` writes
them to its ``--out`` at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from judge.errors import InputError, StoreError
from judge.judging.engine import Judge
from judge.judging.runloop import RunControl, RunReport, run_loop
from judge.records import RETRYABLE_STAGES, PairRecord
from judge.store.claims import Claim, WorkClaims
from judge.verdicts import Verdict

__all__ = ["SharedBatchSink", "SharedRunReport", "batch_fingerprint", "batch_id_for", "run_shared"]

log = logging.getLogger(__name__)


@dataclass
class SharedRunReport(RunReport):
    """What one worker did, and where the batch stands.

    ``judged`` counts the verdicts this worker recorded; ``skipped`` the pairs decided by other workers
    (or earlier runs).

    Attributes:
        batch_id: the batch.
        worker_id: this worker.
        reclaimed: pairs this worker took over after another worker's lease ran out.
        rejudged: of those, pairs the model was asked about again (no verdict had been stored).
        lost: verdicts this worker produced after its claim had run out and been taken over (not recorded
            in the batch; the other worker's verdict is).
        reopened: recorded transient failures (backend, budget) this worker's start reopened for a retry.
        batch_done: pairs of the batch with a verdict when this worker stopped.
    """

    batch_id: str = ""
    worker_id: str = ""
    reclaimed: int = 0
    rejudged: int = 0
    lost: int = 0
    reopened: int = 0
    batch_done: int = 0

    @property
    def complete(self) -> bool:
        """Every pair of the batch has its verdict."""
        return self.total > 0 and self.batch_done >= self.total


def batch_fingerprint(judge: Judge, records: Sequence[PairRecord], *,
                      options: Mapping[str, object] | None = None) -> str:
    """A hash of everything that decides a batch's verdicts: the pairs (in order, with their ids), the judge
    configuration, the rulebook version, the calibrator, the abstention threshold and ``options`` (e.g.
    leave-one-out exclusion). Workers that agree on it may share a batch."""
    head = {
        "config": judge.config.model_dump(mode="json"),
        "rulebook": judge.rulebook.version if judge.rulebook is not None and judge.config.use_rules else None,
        "calibrator": judge.calibrator.id if judge.calibrator is not None else None,
        "escalate_below": judge.escalate_below,
        "options": dict(options or {}),
    }
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode("utf-8"))
    for record in records:
        digest.update(b"\n")
        # surrogatepass: a pair whose text is not valid is still part of the batch (judged as a recorded failure)
        digest.update(json.dumps(record.pair.model_dump(mode="json"), sort_keys=True,
                                 ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def batch_id_for(fingerprint: str) -> str:
    """The batch name workers derive when none is given: the same input and judge give the same name."""
    return "batch-" + fingerprint[:16]


def _by_id(records: Iterable[PairRecord]) -> dict[str, PairRecord]:
    by_id: dict[str, PairRecord] = {}
    for record in records:
        pid = record.pair.id
        if not pid:
            raise InputError("a shared batch needs an id on every pair", line=record.line, field="id")
        if pid in by_id:
            raise InputError(f"duplicate pair id {pid!r} in a shared batch", line=record.line, field="id")
        by_id[pid] = record
    return by_id


async def _heartbeat(claims: WorkClaims, judging: Callable[[], set[str]], every_s: float) -> None:
    """Renew the leases of the pairs being judged while the event loop runs (a stuck loop stops renewing,
    as it should: its pairs then go to a worker that makes progress)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(claims.renew, judging())
        except StoreError as exc:  # the next beat tries again; the lease outlasts two missed beats
            log.warning("could not renew the leases of worker %s: %s", claims.worker_id, exc)


class SharedBatchSink:
    """A `judge.judging.runloop.RunSink` over this worker's claims on a shared batch.

    `take` claims open pairs (including those whose lease ran out); `record` records a verdict in the batch
    unless this worker's claim was taken over meanwhile; `settle` waits while other workers hold every open
    pair, until the batch is complete. A heartbeat renews the leases of the pairs this worker holds, from
    `start` until `close`, which hands unfinished pairs back.

    Args:
        claims: this worker's handle on the batch.
        by_id: the batch's records by pair id.
        report: this worker's report (``reclaimed``, ``rejudged`` and ``lost`` are counted here).
        poll_s: how often to look for pairs to take over, or for the batch to be complete.
    """

    def __init__(self, claims: WorkClaims, by_id: Mapping[str, PairRecord], report: SharedRunReport, *,
                 poll_s: float) -> None:
        self.claims = claims
        self.poll_s: float | None = poll_s
        self._by_id = by_id
        self._report = report
        self._holding: dict[str, Claim] = {}  # claimed by this worker, verdict not recorded yet
        self._heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start renewing the leases this worker holds (call from the run's event loop)."""
        self._heartbeat = asyncio.create_task(_heartbeat(self.claims, lambda: set(self._holding),
                                                         self.claims.lease_s / 3))

    async def take(self, n: int) -> Sequence[PairRecord]:
        """Claim up to ``n`` open pairs (none while other workers hold every open pair)."""
        taken = await asyncio.to_thread(self.claims.claim, n, skip=set(self._holding))
        for claim in taken:
            self._report.reclaimed += claim.taken_over
            self._holding[claim.pair_id] = claim
        return [self._by_id[claim.pair_id] for claim in taken]

    async def record(self, record: PairRecord, verdict: Verdict) -> bool:
        """Record the verdict in the batch; False when this worker's claim ran out and was taken over."""
        pair_id = str(record.pair.id)  # every pair of a shared batch has an id (checked when it opens)
        recorded = await asyncio.to_thread(self.claims.finish, pair_id, verdict)
        claim = self._holding.pop(pair_id)
        if not recorded:
            self._report.lost += 1
            log.warning("pair %s: this worker's claim ran out and another worker took it over; its verdict "
                        "is the batch's", pair_id)
            return False
        self._report.rejudged += claim.taken_over and not verdict.cached
        return True

    async def settle(self) -> bool:
        """Wait while other workers hold every open pair (they finish, or their leases run out); False once
        the batch is complete."""
        progress = await asyncio.to_thread(self.claims.progress)
        if progress.done >= progress.total:
            return False
        wait = self.poll_s or 0.0
        if progress.next_expiry is not None:
            wait = min(wait, max(0.0, (progress.next_expiry - progress.now).total_seconds()) + 0.01)
        await asyncio.sleep(wait)
        return True

    async def close(self) -> None:
        """Stop the heartbeat and hand unfinished pairs back now rather than when their leases run out."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._holding:
            try:
                self.claims.release(set(self._holding))
            except StoreError as exc:
                log.warning("could not release the claims of worker %s (they expire instead): %s",
                            self.claims.worker_id, exc)


async def run_shared(judge: Judge, records: Iterable[PairRecord], claims: WorkClaims, *,
                     fingerprint: str | None = None, concurrency: int = 4, max_tokens: int | None = None,
                     max_cost_usd: float | None = None, max_seconds: float | None = None,
                     exclude_for: Callable[[PairRecord], Sequence[str]] | None = None,
                     on_result: Callable[[Verdict], None] | None = None,
                     poll_s: float | None = None) -> SharedRunReport:
    """Judge a batch together with every other worker on the same `WorkClaims` batch.

    Args:
        judge: the configured judge (the same configuration in every worker).
        records: the batch's pairs (unique ids), the same in every worker.
        claims: this worker's handle on the batch.
        fingerprint: the batch's fingerprint (default: `batch_fingerprint` of ``judge`` and ``records``).
        concurrency: comparisons in flight at once in this worker.
        max_tokens: this worker stops claiming once it used this many tokens.
        max_cost_usd: this worker stops claiming once its estimated cost reaches this.
        max_seconds: this worker stops claiming once this many seconds have passed.
        exclude_for: rule ids a record must not retrieve (leave-one-out evaluation).
        on_result: called with every verdict this worker records.
        poll_s: how often to look for pairs to take over, or for the batch to be complete, while waiting
            on other workers (default: a tenth of the lease, at most 1 s).

    Returns:
        This worker's report; ``complete`` unless a budget stopped it.
    """
    report = SharedRunReport(batch_id=claims.batch_id, worker_id=claims.worker_id)
    control = RunControl(judge, report, max_tokens=max_tokens, max_cost_usd=max_cost_usd, max_seconds=max_seconds,
                         exclude_for=exclude_for, on_result=on_result)
    by_id = _by_id(records)
    fingerprint = fingerprint or batch_fingerprint(judge, list(by_id.values()))
    report.total = len(by_id)
    report.reopened = await asyncio.to_thread(claims.open, list(by_id), fingerprint, reopen_stages=RETRYABLE_STAGES)
    sink = SharedBatchSink(claims, by_id, report,
                           poll_s=poll_s if poll_s is not None else min(1.0, claims.lease_s / 10))
    sink.start()
    await run_loop(control, sink, concurrency)
    progress = await asyncio.to_thread(claims.progress)
    report.batch_done = progress.done
    report.skipped = progress.done - report.judged
    if report.stopped_by_budget:
        log.warning("budget reached: worker %s stopped after %d comparisons; %d of %d pairs of batch %s are "
                    "decided", claims.worker_id, report.judged, progress.done, progress.total, claims.batch_id)
    return report
