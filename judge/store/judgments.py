"""The judgment store: every verdict is kept (audit), and a successful one answers later identical
requests (cache). Keyed by `judge.judging.engine.cache_key`, which covers the pair, the rulebook version,
the rules shown, the backend, model, template and parameters. Each request's key (`judge.verdicts.request_key`:
the same without the rules shown, with the retrieval settings instead) is recorded with the cache key it
resolved to (since revision 0010), so a repeated request finds its verdict before retrieving anything.

Each row also keeps the pair that was judged and the rule ids it was kept from seeing (since schema
revision 0004), so a person can turn a stored result into a ruling (`judge rule RESULT_ID`) and a changed
rulebook can re-judge exactly the affected pairs (`judge rerun`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Select, func, insert, select

from judge.errors import InputError, StoreError
from judge.rules.model import Pair
from judge.store.repository import RulebookStore
from judge.store.schema import CHANGES, JudgmentRequestRow, JudgmentRow
from judge.verdicts import Verdict

__all__ = ["MIN_KEY_PREFIX", "JudgmentStore", "StoredJudgment"]

_TABLE = JudgmentRow.__table__
_HEX = re.compile(r"^[0-9a-f]+\Z")

#: Shortest cache-key prefix accepted as a result id.
MIN_KEY_PREFIX = 8


@dataclass(frozen=True)
class StoredJudgment:
    """One stored judgment: the verdict (or failure) and, for rows written since 0004, the pair judged.

    Attributes:
        row_id: the row's id (insertion order).
        verdict: the judge's own verdict, as recorded (before any calibration).
        pair: the pair judged; None for rows that predate stored pairs.
        exclude: rule ids the judgment was kept from retrieving (leave-one-out evaluation).
    """

    row_id: int
    verdict: Verdict
    pair: Pair | None
    exclude: tuple[str, ...] = ()

    @property
    def cache_key(self) -> str:
        """The judgment's cache key (its full result id)."""
        return self.verdict.cache_key


def _stored(row: Any) -> StoredJudgment:
    return StoredJudgment(row_id=row.id, verdict=Verdict.model_validate(row.result),
                          pair=Pair.model_validate(row.pair) if row.pair is not None else None,
                          exclude=tuple(row.exclude or ()))


_COLUMNS = (JudgmentRow.id, JudgmentRow.result, JudgmentRow.pair, JudgmentRow.exclude)


class JudgmentStore:
    """Append-only verdict storage on the rulebook's database.

    Args:
        engine: the (migrated) engine of the system of record.
    """

    def __init__(self, engine: Engine, *, write_attempts: int = 4, write_wait_s: float = 0.5) -> None:
        self.engine = engine
        self.write_attempts = write_attempts
        self.write_wait_s = write_wait_s

    @classmethod
    def beside(cls, rules: RulebookStore) -> JudgmentStore:
        """The judgment store in the same database as a rulebook store."""
        return cls(rules.engine)

    def put(self, verdict: Verdict, pair: Pair | None = None, *, exclude: Sequence[str] = (),
            request_key: str | None = None) -> None:
        """Record a verdict or failure (one transaction, one row), with the pair it judged when given, and the
        request it answers (``request_key``, see `note_request`) in the same transaction.

        A database that is locked or briefly unreachable is retried (``write_attempts`` in all, waits
        doubling from ``write_wait_s``); then the `StoreError` is raised and nothing is half-written. A long
        run stops there and resumes without losing what was stored.
        """
        self._retried(lambda: self._insert(verdict, pair, exclude, request_key))

    def _retried(self, write: Callable[[], None]) -> None:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        for attempt in Retrying(stop=stop_after_attempt(max(1, self.write_attempts)), reraise=True,
                                wait=wait_exponential(multiplier=self.write_wait_s, max=8.0),
                                retry=retry_if_exception_type(StoreError)):
            with attempt:
                write()

    def _insert(self, verdict: Verdict, pair: Pair | None, exclude: Sequence[str], request_key: str | None) -> None:
        # Read first, outside the write: a read inside it would make SQLite's lock upgrade fail at once under a
        # concurrent writer instead of waiting out the busy timeout. A request noted twice is harmless.
        if request_key is not None:
            with self.engine.connect() as conn:
                if self._requested_key(request_key, conn) == verdict.cache_key:
                    request_key = None
        with self.engine.begin() as conn:
            if request_key is not None:
                conn.execute(insert(JudgmentRequestRow).values(request_key=request_key, cache_key=verdict.cache_key,
                                                               created_at=datetime.now(UTC)))
            conn.execute(insert(JudgmentRow).values(
                cache_key=verdict.cache_key, pair_id=verdict.pair_id, rulebook_version=verdict.rulebook_version,
                backend=verdict.config.backend, model=verdict.config.model,
                template_version=verdict.config.template_version, winner=verdict.winner,
                failure_stage=verdict.failure.stage if verdict.failure else None,
                result=verdict.model_dump(mode="json"), created_at=datetime.now(UTC),
                pair=pair.model_dump(mode="json") if pair is not None else None,
                exclude=list(exclude) if pair is not None else None))

    def get(self, cache_key: str) -> Verdict | None:
        """The latest successful verdict with this cache key, if any."""
        query = (select(JudgmentRow.result).where(JudgmentRow.cache_key == cache_key,
                                                  JudgmentRow.failure_stage.is_(None))
                 .order_by(JudgmentRow.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return Verdict.model_validate(row[0]) if row else None

    def note_request(self, request_key: str, cache_key: str) -> None:
        """Record that the request ``request_key`` (`judge.verdicts.request_key`) resolved to ``cache_key``
        (retried like `put`); nothing is written when that is already the request's latest record."""
        with self.engine.connect() as conn:
            if self._requested_key(request_key, conn) == cache_key:
                return

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(insert(JudgmentRequestRow).values(request_key=request_key, cache_key=cache_key,
                                                               created_at=datetime.now(UTC)))

        self._retried(write)

    @staticmethod
    def _requested_key(request_key: str, conn: Connection) -> str | None:
        query = (select(JudgmentRequestRow.cache_key).where(JudgmentRequestRow.request_key == request_key)
                 .order_by(JudgmentRequestRow.id.desc()).limit(1))
        return conn.scalar(query)

    def get_requested(self, request_key: str) -> Verdict | None:
        """The latest successful verdict with the cache key the request ``request_key`` last resolved to, if
        any: a repeated request answered without retrieving (see `note_request`)."""
        latest = (select(JudgmentRequestRow.cache_key).where(JudgmentRequestRow.request_key == request_key)
                  .order_by(JudgmentRequestRow.id.desc()).limit(1).scalar_subquery())
        query = (select(JudgmentRow.result).where(JudgmentRow.cache_key == latest,
                                                  JudgmentRow.failure_stage.is_(None))
                 .order_by(JudgmentRow.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return Verdict.model_validate(row[0]) if row else None

    def find(self, result_id: str) -> StoredJudgment:
        """The stored judgment a person means by ``result_id``.

        A result id is a full cache key, a unique cache-key prefix of at least `MIN_KEY_PREFIX` hex
        characters, or a pair id (its latest judgment). A cache key judged more than once (a failure and
        then a success, or ``--no-cache``) resolves to its latest row.

        Raises:
            InputError: nothing matches, or several judgments do (the candidates are listed).
        """
        wanted = result_id.strip()
        key = wanted.lower()
        keys: list[str] = []
        if _HEX.match(key) and len(key) >= MIN_KEY_PREFIX:
            # A range, not LIKE: it uses the cache-key index (keys are lowercase hex, all below "g").
            prefixed = (select(JudgmentRow.cache_key).where(JudgmentRow.cache_key >= key,
                                                            JudgmentRow.cache_key < key + "g")
                        .distinct().limit(11))
            with self.engine.connect() as conn:
                keys.extend(conn.scalars(prefixed))
        by_pair = (select(JudgmentRow.cache_key).where(JudgmentRow.pair_id == wanted)
                   .order_by(JudgmentRow.id.desc()).limit(1))
        with self.engine.connect() as conn:
            keys.extend(conn.scalars(by_pair))
        candidates = list(dict.fromkeys(keys))
        if not candidates:
            hint = (f" (a cache-key prefix needs at least {MIN_KEY_PREFIX} characters)"
                    if _HEX.match(key) and len(key) < MIN_KEY_PREFIX else "")
            raise InputError(f"no stored judgment has result id {wanted!r}: give a cache key, a unique "
                             f"cache-key prefix or a pair id{hint}", field="result_id")
        if len(candidates) > 1:
            listed = ", ".join(self._describe(k) for k in candidates[:10])
            more = " and more" if len(candidates) > 10 else ""
            raise InputError(f"result id {wanted!r} is ambiguous: it matches {listed}{more}; give more "
                             "characters of the cache key", field="result_id")
        found = self._latest(candidates[0])
        assert found is not None  # the key was just read from the table, and rows are never deleted
        return found

    def _latest(self, cache_key: str) -> StoredJudgment | None:
        query = select(*_COLUMNS).where(JudgmentRow.cache_key == cache_key).order_by(JudgmentRow.id.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _stored(row) if row is not None else None

    def _describe(self, cache_key: str) -> str:
        query = (select(JudgmentRow.pair_id, JudgmentRow.rulebook_version).where(JudgmentRow.cache_key == cache_key)
                 .order_by(JudgmentRow.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        pair_id, version = (row[0], row[1]) if row is not None else (None, None)
        return f"{cache_key[:16]} (pair {pair_id or '-'}, rulebook {version or '-'})"

    def count(self) -> int:
        """How many judgments are recorded."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())

    def iter_all(self, *, batch_size: int = 500) -> Iterator[Verdict]:
        """Every recorded judgment, oldest first (streamed)."""
        last = 0
        while True:
            query = (select(JudgmentRow.id, JudgmentRow.result).where(JudgmentRow.id > last)
                     .order_by(JudgmentRow.id).limit(batch_size))
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield Verdict.model_validate(row[1])
            last = rows[-1][0]

    def count_recorded_before(self, since_seq: int) -> int:
        """How many judgments (distinct cache keys) were recorded only at rulebook versions written before
        change ``since_seq``: those `iter_recorded_since` leaves out."""
        later = select(CHANGES.c.rulebook_version).where(CHANGES.c.seq >= since_seq)
        earlier = select(CHANGES.c.rulebook_version).where(CHANGES.c.seq < since_seq)
        query = (select(func.count(func.distinct(JudgmentRow.cache_key)))
                 .where(JudgmentRow.rulebook_version.in_(earlier), JudgmentRow.rulebook_version.not_in(later)))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def iter_recorded_since(self, since_seq: int, *, include_versions: Sequence[str] = (),
                            batch_size: int = 500) -> Iterator[StoredJudgment]:
        """The latest judgment per cache key among those recorded at a rulebook version written by change
        ``since_seq`` or later (plus ``include_versions``), newest first (streamed).

        Args:
            since_seq: the change-log ``seq`` of the oldest rulebook version to include.
            include_versions: further rulebook versions to include (e.g. the empty rulebook's).
            batch_size: rows per page.
        """
        versions = select(CHANGES.c.rulebook_version).where(CHANGES.c.seq >= since_seq)
        where: ColumnElement[bool] = JudgmentRow.rulebook_version.in_(versions)
        if include_versions:
            where = where | JudgmentRow.rulebook_version.in_(list(include_versions))
        base: Select[Any] = select(*_COLUMNS, JudgmentRow.cache_key).where(where)
        seen: set[str] = set()
        last: int | None = None
        while True:
            query = base if last is None else base.where(JudgmentRow.id < last)
            with self.engine.connect() as conn:
                rows = conn.execute(query.order_by(JudgmentRow.id.desc()).limit(batch_size)).all()
            for row in rows:
                if row.cache_key not in seen:
                    seen.add(row.cache_key)
                    yield _stored(row)
            if len(rows) < batch_size:
                return
            last = rows[-1].id
