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
from judge.judging.pairs_io import PairRecord
from judge.judging.runner import RETRYABLE_STAGES, RunReport, deadline_after, judge_one, refuse_unpriced_budget
from judge.judging.verdict import Verdict
from judge.store.claims import Claim, WorkClaims

__all__ = ["SharedRunReport", "batch_fingerprint", "batch_id_for", "run_shared"]

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
        digest.update(json.dumps(record.pair.model_dump(mode="json"), sort_keys=True,
                                 ensure_ascii=False).encode("utf-8"))
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
    refuse_unpriced_budget(judge, max_cost_usd)
    deadline = deadline_after(max_seconds)
    by_id = _by_id(records)
    fingerprint = fingerprint or batch_fingerprint(judge, list(by_id.values()))
    report = SharedRunReport(batch_id=claims.batch_id, worker_id=claims.worker_id, total=len(by_id))
    report.reopened = await asyncio.to_thread(claims.open, list(by_id), fingerprint, reopen_stages=RETRYABLE_STAGES)
    poll = poll_s if poll_s is not None else min(1.0, claims.lease_s / 10)
    slots = max(1, concurrency)
    in_flight: set[asyncio.Task[None]] = set()
    holding: set[str] = set()  # claimed by this worker, verdict not recorded yet
    budget_hit = False

    async def one(claim: Claim) -> None:
        record = by_id[claim.pair_id]
        verdict = await judge_one(judge, record.pair, exclude_for(record) if exclude_for else ())
        recorded = await asyncio.to_thread(claims.finish, claim.pair_id, verdict)
        holding.discard(claim.pair_id)
        if not recorded:
            report.lost += 1
            log.warning("pair %s: this worker's claim ran out and another worker took it over; its verdict "
                        "is the batch's", claim.pair_id)
            return
        report.add(verdict)
        report.rejudged += claim.taken_over and not verdict.cached
        if on_result is not None:
            on_result(verdict)

    heartbeat = asyncio.create_task(_heartbeat(claims, lambda: set(holding), claims.lease_s / 3))
    try:
        while True:
            budget_hit = budget_hit or report.over_budget(max_tokens, max_cost_usd, deadline)
            free = slots - len(in_flight)
            if free > 0 and not budget_hit:
                taken = await asyncio.to_thread(claims.claim, free, skip=set(holding))
                for claim in taken:
                    report.reclaimed += claim.taken_over
                    holding.add(claim.pair_id)
                    in_flight.add(asyncio.create_task(one(claim)))
                free -= len(taken)
            if in_flight:
                # With a slot free nothing was claimable: look again every poll, for leases that ran out.
                finished, _ = await asyncio.wait(in_flight, timeout=poll if free > 0 and not budget_hit else None,
                                                 return_when=asyncio.FIRST_COMPLETED)
                in_flight -= finished
                for task in finished:
                    task.result()  # a comparison that raised stops the worker (its claim is released below)
                continue
            if budget_hit:
                break
            progress = await asyncio.to_thread(claims.progress)
            if progress.done >= progress.total:
                break
            # Everything open is held by other workers: they finish it, or their leases run out.
            wait = poll
            if progress.next_expiry is not None:
                wait = min(poll, max(0.0, (progress.next_expiry - progress.now).total_seconds()) + 0.01)
            await asyncio.sleep(wait)
    finally:
        heartbeat.cancel()
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        if holding:
            try:  # hand unfinished pairs back now rather than when the lease runs out
                claims.release(holding)
            except StoreError as exc:
                log.warning("could not release the claims of worker %s (they expire instead): %s",
                            claims.worker_id, exc)
        await judge.release()
    progress = await asyncio.to_thread(claims.progress)
    report.batch_done = progress.done
    report.skipped = progress.done - report.judged
    report.stopped_by_budget = budget_hit
    if budget_hit:
        log.warning("budget reached: worker %s stopped after %d comparisons; %d of %d pairs of batch %s are "
                    "decided", claims.worker_id, report.judged, progress.done, progress.total, claims.batch_id)
    return report
