"""`RulebookStore`: the append-only rulebook in SQL, read and written through one object.

Writes go through exactly one path, `RulebookStore.commit` (`sync` builds a batch and uses the same
machinery). A write transaction reads the chain's head *first*, then the latest versions it needs, plans
the batch (`judge.store.plan`) and inserts it. If another writer committed after our head read, our first
change-log insert collides with theirs on the UNIQUE ``previous_rulebook_version``; the whole transaction
is rolled back and retried from the top, a bounded number of times, then `ConcurrentWriteError`.

Reads that may touch millions of rows (`iter_current`, `changes_since`, `rules_changed_since`) page by
keyset in short transactions, so memory stays flat and no read holds the database for long.

The reads live in `judge.store.reads` (`RulebookReads`) and the change log in `judge.store.history`
(`RulebookHistory`); `RulebookStore` mixes both into the writer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, insert, select
from sqlalchemy import text as sa_text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_random

from judge._iter import batched
from judge.errors import ConcurrentWriteError, RulebookError
from judge.rules.model import Change, ChangeKind, Layer, Rule, RuleStatus
from judge.store import lexical
from judge.store.engine import WRITE_OPTION, migrate, open_engine
from judge.store.history import RulebookHistory
from judge.store.plan import (
    Existing,
    PendingChange,
    overrule_change,
    overrules_to_apply,
    plan_batch,
    referenced_ids,
)
from judge.store.reads import RulebookReads, _chunks, _is_latest, latest_versions
from judge.store.schema import CHANGES, RULE_VERSIONS, ChangeRow, RuleVersionRow, rule_values

__all__ = ["RulebookStore", "SyncReport"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: SQLSTATEs of PostgreSQL serialization failures and deadlocks: retry the transaction.
_RETRY_SQLSTATES = {"40001", "40P01"}


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What `RulebookStore.sync` did."""

    added: int
    amended: int
    unchanged: int
    rulebook_version: str
    changes: tuple[Change, ...] = ()
    kept: tuple[str, ...] = ()  # rules whose text differs from the stored version, left as stored (amend=False)
    overruled: int = 0  # rulings overruled by the ``overrules`` of rulings loaded
    #: rulings the load holds as active that the rulebook holds as overruled or superseded: they keep that status
    not_reinstated: tuple[str, ...] = ()


def _is_write_conflict(exc: BaseException) -> bool:
    """Errors that mean "another writer got there first": worth re-running the whole transaction."""
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, OperationalError):
        # Not SQLite's "database is locked": that comes after the 30 s busy timeout, so retrying would
        # multiply the wait; `_write` reports it at once instead.
        code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
        return code in _RETRY_SQLSTATES
    return False


class RulebookStore(RulebookReads, RulebookHistory):
    """The rulebook's system of record: versioned rules and the hash-chained change log.

    Args:
        engine: an engine from `judge.store.open_engine` whose schema is migrated (`judge.store.migrate`).
        max_attempts: how often a write transaction is tried when it loses a race.
        retry_wait: upper bound, in seconds, of the random wait between attempts.
    """

    def __init__(self, engine: Engine, *, max_attempts: int = 20, retry_wait: float = 0.05) -> None:
        self.engine = engine
        self._has_lexical = False
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._max_attempts = max_attempts
        self._retry_wait = retry_wait

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> RulebookStore:
        """Open (and create or migrate) the database at ``url`` and return a store on it.

        Raises:
            SchemaVersionError: the database was written by a newer schema.
        """
        engine = open_engine(url)
        migrate(engine)
        return cls(engine, **kwargs)

    def commit(self, items: Sequence[PendingChange], *, author: str | None = None) -> list[Change]:
        """Write a batch of changes in one transaction: all of them or none.

        Versions are assigned here: 1 for ``ADD``, latest + 1 otherwise. Every change extends the hash
        chain. Rulings' ``cites`` must name rules that exist (stored, or earlier in the batch) and their
        ``overrules`` must name existing rulings.

        Args:
            items: ``(rule, kind, reason)`` triples, applied in order.
            author: recorded on every change and rule version (default: each rule's own ``author``).

        Returns:
            The change-log entries written, in order.

        Raises:
            DuplicateRuleError, RuleNotFoundError, UnknownCitationError, OverruleError, RulebookError:
                the batch is invalid; nothing was written.
            ConcurrentWriteError: other writers kept winning the race.
        """
        batch = [PendingChange(*item) for item in items]
        if not batch:
            return []
        return self._write(lambda session: self._apply(session, batch, author=author))

    def sync(self, rules: Sequence[Rule], *, author: str | None = None, reason: str | None = None,
             allow_constitution: bool = True, amend: bool = True) -> SyncReport:
        """Load rules idempotently: add new ids, amend changed ones, skip unchanged ones.

        "Changed" compares content hashes, so version, time and author never cause an amendment. All in one
        transaction; rulings may cite rules anywhere in ``rules``.

        Args:
            rules: the rules to load.
            author: recorded on every change.
            reason: recorded on every change.
            allow_constitution: False refuses a load that would amend an existing constitution rule.
            amend: False adds new ids only: a rule whose text differs from its stored version is left as
                stored and listed in the report's ``kept``.

        A ruling that names others in ``overrules`` overrules them in the same transaction (as
        `judge.Rulebook.add_ruling` does), unless they are already overruled or superseded. A ruling that no
        longer binds is never made active again: given as active (a stale dump, or a file that also holds the
        ruling that overrules it), it keeps its stored status (listed in ``not_reinstated``).

        Raises:
            RulebookError: ``rules`` holds the same id twice, a ruling cites an unknown id, or the load amends
                the constitution without ``allow_constitution``; nothing is written.
        """
        twice = sorted(rule_id for rule_id, n in Counter(rule.id for rule in rules).items() if n > 1)
        if twice:
            raise RulebookError(f"rule id(s) appear more than once in the rules to sync: {', '.join(twice)}")

        def run(session: Session) -> SyncReport:
            head = self._read_head(session)  # before anything else: see the module docstring
            existing = self._existing(session, referenced_ids(PendingChange(r, ChangeKind.ADD) for r in rules))
            batch: list[PendingChange] = []
            unchanged = 0
            kept: list[str] = []
            not_reinstated: list[str] = []
            for rule in rules:
                current = existing.get(rule.id)
                if current is not None and current.status is not RuleStatus.ACTIVE and rule.binds:
                    # a ruling that no longer binds stays so: a stale dump, or a file that also holds the ruling
                    # that overrules it, lists it as active; it keeps its stored status
                    not_reinstated.append(rule.id)
                    rule = rule.model_copy(update={"status": current.status})
                if current is None:
                    batch.append(PendingChange(rule, ChangeKind.ADD, reason))
                elif current.content_hash == rule.content_hash():
                    unchanged += 1
                elif amend:
                    batch.append(PendingChange(rule, ChangeKind.AMEND, reason))
                else:
                    kept.append(rule.id)
            overrules = self._overrules(session, batch, existing)
            if overrules:  # the rulings overruled are checked like any change: what they cite must exist
                existing.update(self._existing(session, referenced_ids(overrules) - existing.keys()))
                batch.extend(overrules)
            amended = sorted(p.rule.id for p in batch
                             if p.kind is ChangeKind.AMEND and p.rule.layer is Layer.CONSTITUTION)
            if amended and not allow_constitution:
                raise RulebookError(f"this load amends the constitution ({', '.join(amended)}); amending it "
                                    "requires an explicit flag (allow_constitution=True / --constitution)")
            changes = self._insert(session, batch, head=head, existing=existing, author=author,
                                   forward_refs=True)
            added = sum(change.kind is ChangeKind.ADD for change in changes)
            version = changes[-1].rulebook_version if changes else self._version_of(head)
            overruled = sum(change.kind is ChangeKind.OVERRULE for change in changes)
            return SyncReport(added=added, amended=len(changes) - added - overruled, overruled=overruled,
                              unchanged=unchanged,
                              rulebook_version=version, changes=tuple(changes), kept=tuple(kept),
                              not_reinstated=tuple(not_reinstated))

        return self._write(run)

    @staticmethod
    def _overrules(session: Session, batch: list[PendingChange], existing: dict[str, Existing]
                   ) -> list[PendingChange]:
        """The overrule changes that follow from the batch's rulings' ``overrules`` (see `overrules_to_apply`)."""
        targets = overrules_to_apply(batch, existing)
        if not targets:
            return []
        in_batch = {p.rule.id: p.rule for p in batch}
        stored = latest_versions(session, [t for t in targets if t not in in_batch])
        return [overrule_change(in_batch.get(target) or stored[target], in_batch[by])
                for target, by in targets.items()]

    def _write(self, fn: Callable[[Session], T]) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_random(0, self._retry_wait),
            retry=retry_if_exception(_is_write_conflict),
        )

        def attempt() -> T:
            with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                return fn(session)

        try:
            return retrying(attempt)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            detail = str(getattr(last, "orig", last)).splitlines()[0][:200] if last is not None else ""
            raise ConcurrentWriteError(
                f"gave up writing to the rulebook after {self._max_attempts} attempts: other writers kept "
                f"committing first (last error: {type(last).__name__}: {detail})"
            ) from last
        # A lock held beyond the busy timeout is already a ConcurrentWriteError here: the engine's error hook
        # (judge.store.engine) translates it for every statement.

    def _apply(self, session: Session, batch: list[PendingChange], *, author: str | None) -> list[Change]:
        head = self._read_head(session)  # before anything else: see the module docstring
        existing = self._existing(session, referenced_ids(batch))
        return self._insert(session, batch, head=head, existing=existing, author=author, forward_refs=False)

    def _insert(self, session: Session, batch: list[PendingChange], *, head: ChangeRow | None,
                existing: dict[str, Existing], author: str | None, forward_refs: bool) -> list[Change]:
        if not batch:
            return []
        planned = plan_batch(
            batch, head=self._version_of(head), existing=existing, at=datetime.now(UTC), author=author,
            forward_refs=forward_refs,
        )
        # Core executemany, rule versions first (the change log references them).
        session.execute(insert(RULE_VERSIONS), [rule_values(p.rule, p.content_hash) for p in planned])
        # The lexical index of binding rules moves in the same transaction (latest version of each rule).
        conn = session.connection()
        if self._has_lexical or lexical.table_exists(conn):
            self._has_lexical = True
            lexical.replace_rows(conn, list({p.rule.id: p.rule for p in planned}.values()))
        else:  # a database not yet migrated to 0006: that migration fills the table from the rule versions
            log.warning("rule_fts is missing (schema before 0007_rule_fts); the migration will index these rules")
        values = [
            {"rule_id": p.rule.id, "version": p.rule.version, "kind": p.kind.value, "reason": p.reason,
             "author": p.author, "at": p.at, "rulebook_version": p.rulebook_version,
             "previous_rulebook_version": p.previous_rulebook_version}
            for p in planned
        ]
        # RETURNING order is not guaranteed (and asking SQLAlchemy to sort makes SQLite insert row by row),
        # so match the generated seqs back through the unique previous_rulebook_version.
        returning = insert(CHANGES).returning(CHANGES.c.previous_rulebook_version, CHANGES.c.seq)
        seq_of: dict[str, int] = {prev: seq for prev, seq in session.execute(returning, values)}
        return [Change.model_validate({"seq": seq_of[p.previous_rulebook_version], **v})
                for p, v in zip(planned, values, strict=True)]

    def _existing(self, session: Session, ids: Iterable[str]) -> dict[str, Existing]:
        found: dict[str, Existing] = {}
        for chunk in _chunks(ids):
            stmt = (select(RuleVersionRow.rule_id, RuleVersionRow.version, RuleVersionRow.layer,
                           RuleVersionRow.content_hash, RuleVersionRow.status)
                    .where(RuleVersionRow.rule_id.in_(chunk), _is_latest()))
            for rule_id, version, layer, rule_hash, status in session.execute(stmt):
                found[rule_id] = Existing(version=version, layer=Layer(layer), content_hash=rule_hash,
                                          status=RuleStatus(status))
        return found


    def rebuild_lexical(self) -> int:
        """Recreate the lexical index from the current rule versions; returns the binding rules indexed."""
        with self.engine.begin() as conn:
            conn.execute(sa_text("DELETE FROM rule_fts"))
        total = 0
        for page in batched(self.iter_current(), 1000):
            with self.engine.begin() as conn:
                lexical.replace_rows(conn, page)
            total += sum(1 for rule in page if rule.binds)
        return total


    def __repr__(self) -> str:
        return f"RulebookStore({self.engine.url.render_as_string(hide_password=True)!r})"
