"""The work queue of a batch that several workers divide (`judge run --shared`).

A batch is one row in ``work_batches`` (its id, the fingerprint of its pairs and judge, its size) and one
row per pair in ``work_claims``. A worker takes a pair with a conditional UPDATE: it succeeds only while the
pair is open (no verdict yet) and nobody holds an unexpired lease on it, and its row count says whether this
worker won. On PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``, so workers never wait on each
other's pairs; SQLite serialises the whole claim under its write lock (``BEGIN IMMEDIATE``). The worker
renews its leases while it judges (`WorkClaims.renew`), and records the verdict with ``done_at`` in one
statement that again checks it still holds the claim (`WorkClaims.finish`). A worker that dies stops
renewing: once its leases run out, another worker takes the pairs over.

So the batch holds exactly one verdict per pair. The model is asked about a pair again only when a claim
expired before its verdict was recorded (a worker killed or stalled past its lease mid-comparison); such a
pair shows ``claims > 1``. Lease times come from the database server's clock on PostgreSQL (workers on
different machines need not agree on the time) and from the local clock on SQLite (one machine).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from judge._iter import batched
from judge.errors import InputError, StoreError
from judge.store.engine import WRITE_OPTION
from judge.store.schema import WorkBatchRow, WorkClaimRow, _utc
from judge.verdicts import Verdict

__all__ = ["DEFAULT_LEASE_S", "BatchProgress", "Claim", "WorkClaims", "default_worker_id"]

log = logging.getLogger(__name__)

#: How long a claim lasts without renewal. Workers renew every third of it, so it only bounds how long the
#: pairs of a killed worker wait before another worker takes them over.
DEFAULT_LEASE_S = 120.0

_C = WorkClaimRow
_T = TypeVar("_T")
_INSERT_CHUNK = 1000


def default_worker_id() -> str:
    """``host:pid:random``: unique per process, and readable in ``judge batch status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Claim:
    """A pair this worker now holds.

    Attributes:
        pair_id: the pair's id.
        taken_over: another worker held it before and its lease ran out (it died or stalled).
    """

    pair_id: str
    taken_over: bool = False


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands, read in one query.

    Attributes:
        total: pairs in the batch.
        done: pairs with a recorded verdict (or failure).
        held: open pairs under an unexpired lease (being judged).
        reclaimed: pairs claimed more than once (a lease ran out before the verdict was recorded).
        next_expiry: when the first of the held leases runs out (None when nothing is held).
        now: the database's time when this was read (the clock leases are measured on).
    """

    total: int
    done: int
    held: int
    reclaimed: int
    next_expiry: datetime | None
    now: datetime

    @property
    def open(self) -> int:
        """Pairs without a verdict yet."""
        return self.total - self.done

    @property
    def complete(self) -> bool:
        """Every pair of the batch has its verdict."""
        return self.total > 0 and self.done >= self.total


class WorkClaims:
    """One worker's view of a shared batch on the system of record.

    Args:
        engine: the (migrated) engine; the same database for every worker of the batch.
        batch_id: the batch's name (see `judge.judging.shared.batch_id_for`).
        worker_id: this worker's id (default: `default_worker_id`). Two live workers must not share one.
        lease_s: how long a claim lasts unless renewed.
        write_attempts: tries for a write the database refuses for a moment (locked, restarting).
        write_wait_s: first wait between those tries (doubling).
    """

    def __init__(self, engine: Engine, batch_id: str, *, worker_id: str | None = None,
                 lease_s: float = DEFAULT_LEASE_S, write_attempts: int = 4, write_wait_s: float = 0.5) -> None:
        if not batch_id.strip():
            raise InputError("a batch needs a non-empty name", field="batch")
        if lease_s <= 0:
            raise InputError(f"the lease must be positive, got {lease_s} s", field="lease")
        self.engine = engine
        self.batch_id = batch_id
        self.worker_id = worker_id or default_worker_id()
        self.lease_s = lease_s
        self.write_attempts = write_attempts
        self.write_wait_s = write_wait_s

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _now(conn: Connection) -> datetime:
        """The time leases are measured on: the server's on PostgreSQL, this machine's on SQLite."""
        if conn.dialect.name == "postgresql":
            return _utc(conn.execute(select(func.now())).scalar_one())
        return datetime.now(UTC)

    def _write(self, fn: Callable[[Connection], _T]) -> _T:
        """Run ``fn`` in one write transaction, retrying a database that is locked or briefly away."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        for attempt in Retrying(stop=stop_after_attempt(max(1, self.write_attempts)), reraise=True,
                                wait=wait_exponential(multiplier=self.write_wait_s, max=8.0),
                                retry=retry_if_exception_type(StoreError)):
            with attempt, self.engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
                return fn(conn)
        raise AssertionError("unreachable")  # pragma: no cover - Retrying re-raises the last error

    def _mine(self) -> Any:
        return (_C.batch_id == self.batch_id) & (_C.worker_id == self.worker_id) & _C.done_at.is_(None)

    # ------------------------------------------------------------------ the protocol
    def open(self, pair_ids: Sequence[str], fingerprint: str, *, reopen_stages: Collection[str] = ()) -> int:
        """Join the batch, creating it (one open row per pair, in this order) if no worker has yet.

        Args:
            pair_ids: the batch's pair ids in input order (unique).
            fingerprint: hash of the pairs and the judge; every worker of a batch must bring the same.
            reopen_stages: failure stages to try again: recorded failures at these stages become open pairs
                (as a resumed `judge run` retries transient failures).

        Returns:
            How many recorded failures were reopened.

        Raises:
            InputError: duplicate pair ids, or the batch exists with other pairs or another judge.
        """
        if len(set(pair_ids)) != len(pair_ids):
            raise InputError("a shared batch needs unique pair ids", field="id")

        def join(conn: Connection) -> int:
            found = conn.execute(select(WorkBatchRow.fingerprint, WorkBatchRow.total)
                                 .where(WorkBatchRow.batch_id == self.batch_id)).first()
            if found is None:
                conn.execute(insert(WorkBatchRow).values(batch_id=self.batch_id, fingerprint=fingerprint,
                                                         total=len(pair_ids), created_at=self._now(conn)))
                for chunk in batched(list(enumerate(pair_ids)), _INSERT_CHUNK):
                    conn.execute(insert(WorkClaimRow), [{"batch_id": self.batch_id, "pair_id": pid, "seq": seq,
                                                         "claims": 0} for seq, pid in chunk])
                return 0
            if found.fingerprint != fingerprint:
                raise InputError(f"batch {self.batch_id!r} was started with other pairs or another judge "
                                 f"configuration ({found.total} pairs, fingerprint {found.fingerprint[:12]}); "
                                 "give it the same input and options, or another --batch name", field="batch")
            # Claims left under this worker id by an earlier process (killed, restarted with the same
            # --worker-id) are nobody's now: end their leases so they are taken over, counted as such.
            conn.execute(update(WorkClaimRow).where(self._mine()).values(lease_expires_at=self._now(conn)))
            if not reopen_stages:
                return 0
            return conn.execute(
                update(WorkClaimRow)
                .where(_C.batch_id == self.batch_id, _C.done_at.is_not(None),
                       _C.failure_stage.in_(sorted(reopen_stages)))
                .values(done_at=None, result=None, cache_key=None, failure_stage=None, worker_id=None,
                        lease_expires_at=None)).rowcount

        try:
            return self._write(join)
        except IntegrityError:
            # Another worker created the batch at the same moment (on PostgreSQL our INSERT waited for its
            # commit, then hit the primary key): the batch exists now, so join it.
            return self._write(join)

    def claim(self, limit: int, *, skip: Collection[str] = ()) -> list[Claim]:
        """Take up to ``limit`` open pairs nobody holds (never claimed, released, or lease expired).

        Args:
            limit: most pairs to take.
            skip: pair ids not to take (the ones this worker is judging: its own lease may lapse while the
                event loop is busy, and it must not start the same pair twice).
        """
        if limit <= 0:
            return []

        def take(conn: Connection) -> list[Claim]:
            now = self._now(conn)
            free = _C.lease_expires_at.is_(None) | (_C.lease_expires_at < now)
            query = select(_C.pair_id, _C.worker_id).where(_C.batch_id == self.batch_id, _C.done_at.is_(None), free)
            if skip:
                query = query.where(_C.pair_id.not_in(list(skip)))
            # PostgreSQL: rows another worker is claiming right now are skipped, not waited for. SQLite
            # renders no FOR UPDATE; its write lock already makes this transaction the only writer.
            rows = conn.execute(query.order_by(_C.seq).limit(limit).with_for_update(skip_locked=True)).all()
            taken: list[Claim] = []
            for row in rows:
                # The row count decides, so the claim is safe even where the select above locks nothing.
                won = conn.execute(
                    update(WorkClaimRow)
                    .where(_C.batch_id == self.batch_id, _C.pair_id == row.pair_id, _C.done_at.is_(None), free)
                    .values(worker_id=self.worker_id, claims=_C.claims + 1, claimed_at=now,
                            lease_expires_at=now + timedelta(seconds=self.lease_s))).rowcount
                if won == 1:
                    taken.append(Claim(row.pair_id, taken_over=row.worker_id is not None))
            return taken

        return self._write(take)

    def renew(self, pair_ids: Collection[str]) -> int:
        """Extend this worker's leases on ``pair_ids`` (the pairs it is judging); returns how many it still
        holds (fewer: a lease ran out and another worker took the pair)."""
        if not pair_ids:
            return 0

        def extend(conn: Connection) -> int:
            until = self._now(conn) + timedelta(seconds=self.lease_s)
            return conn.execute(update(WorkClaimRow).where(self._mine(), _C.pair_id.in_(list(pair_ids)))
                                .values(lease_expires_at=until)).rowcount

        return self._write(extend)

    def finish(self, pair_id: str, verdict: Verdict) -> bool:
        """Record the verdict (or failure) of a pair this worker holds, closing it.

        Returns:
            False when the claim was lost meanwhile (its lease ran out and another worker took the pair):
            the verdict is then not the batch's. A retry of a write that did commit still returns True.
        """
        def record(conn: Connection) -> bool:
            mine = self._mine() & (_C.pair_id == pair_id)
            stored = conn.execute(update(WorkClaimRow).where(mine).values(
                done_at=self._now(conn), result=verdict.model_dump(mode="json"), cache_key=verdict.cache_key,
                failure_stage=verdict.failure.stage if verdict.failure else None)).rowcount
            if stored == 1:
                return True
            row = conn.execute(select(_C.worker_id, _C.done_at, _C.cache_key)
                               .where(_C.batch_id == self.batch_id, _C.pair_id == pair_id)).first()
            return (row is not None and row.worker_id == self.worker_id and row.done_at is not None
                    and row.cache_key == verdict.cache_key)

        return self._write(record)

    def release(self, pair_ids: Collection[str]) -> int:
        """Give back pairs this worker holds without a verdict (it is stopping), for others to take at once."""
        if not pair_ids:
            return 0

        def give_back(conn: Connection) -> int:
            return conn.execute(update(WorkClaimRow).where(self._mine(), _C.pair_id.in_(list(pair_ids)))
                                .values(worker_id=None, lease_expires_at=None)).rowcount

        return self._write(give_back)

    # ------------------------------------------------------------------ reading
    def progress(self) -> BatchProgress:
        """Counts of the batch's pairs (all zero for a batch no worker has opened)."""
        with self.engine.connect() as conn:
            now = self._now(conn)
            held = _C.done_at.is_(None) & (_C.lease_expires_at >= now)
            row = conn.execute(select(
                func.count(),
                func.count(_C.done_at),
                func.coalesce(func.sum(case((held, 1), else_=0)), 0),
                func.coalesce(func.sum(case((_C.claims > 1, 1), else_=0)), 0),
                func.min(case((held, _C.lease_expires_at), else_=None)),
            ).where(_C.batch_id == self.batch_id)).one()
        expiry = row[4]
        if isinstance(expiry, str):  # SQLite returns an aggregate over a CASE as the stored text
            expiry = datetime.fromisoformat(expiry)
        return BatchProgress(total=int(row[0]), done=int(row[1]), held=int(row[2]), reclaimed=int(row[3]),
                             next_expiry=_utc(expiry) if expiry is not None else None, now=now)

    def exists(self) -> bool:
        """Whether some worker has opened this batch."""
        with self.engine.connect() as conn:
            return conn.execute(select(WorkBatchRow.batch_id)
                                .where(WorkBatchRow.batch_id == self.batch_id)).first() is not None

    def results(self, *, page: int = 500) -> Iterator[Verdict]:
        """The batch's recorded verdicts in input order, one per pair (streamed)."""
        last = -1
        while True:
            query = (select(_C.seq, _C.result).where(_C.batch_id == self.batch_id, _C.seq > last,
                                                     _C.done_at.is_not(None))
                     .order_by(_C.seq).limit(page))
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                yield Verdict.model_validate(row.result)
            if len(rows) < page:
                return
            last = rows[-1].seq
