"""The rulebook's change log: its head and version, each rule's history, changes since a point, and a
check of the whole hash chain.

`RulebookHistory` is the change-log side of `judge.store.repository.RulebookStore`.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from judge.errors import RulebookError, RuleNotFoundError
from judge.rules.model import EMPTY_RULEBOOK_VERSION, Change, Rule, next_rulebook_version
from judge.store.paging import keyset_pages
from judge.store.schema import CHANGES, RULE_VERSIONS, ChangeRow, RuleVersionRow, change_from_row, rule_from_row

__all__ = ["RulebookHistory"]


class RulebookHistory:
    """Reads of the hash-chained change log (a mixin of `RulebookStore`, which sets ``engine``)."""

    engine: Engine

    def _read_head(self, session: Session) -> ChangeRow | None:
        return session.scalars(select(ChangeRow).order_by(ChangeRow.seq.desc()).limit(1)).first()

    @staticmethod
    def _version_of(head: ChangeRow | None) -> str:
        return head.rulebook_version if head is not None else EMPTY_RULEBOOK_VERSION


    @property
    def version(self) -> str:
        """The current rulebook version: the head of the hash chain (``EMPTY_RULEBOOK_VERSION`` if empty)."""
        # One column of one row, without an ORM session: every retrieval asks (is the index still current?).
        with self.engine.connect() as conn:
            version = conn.scalar(select(ChangeRow.rulebook_version).order_by(ChangeRow.seq.desc()).limit(1))
        return version if version is not None else EMPTY_RULEBOOK_VERSION

    def seq_of(self, rulebook_version: str) -> int:
        """The change-log ``seq`` that wrote ``rulebook_version`` (0 for the empty rulebook).

        Raises:
            RulebookError: no change wrote that version.
        """
        if rulebook_version == EMPTY_RULEBOOK_VERSION:
            return 0
        with Session(self.engine) as session:
            seq = session.scalar(select(ChangeRow.seq).where(ChangeRow.rulebook_version == rulebook_version))
        if seq is None:
            raise RulebookError(f"no rulebook version {rulebook_version!r} in the change log (see `judge "
                                "rulebook history RULE_ID` or `judge index status` for versions)")
        return int(seq)

    def head(self) -> Change | None:
        """The newest change-log entry, or None for an empty rulebook."""
        with Session(self.engine) as session:
            row = self._read_head(session)
            return change_from_row(row) if row is not None else None


    def history(self, rule_id: str) -> list[tuple[Rule, Change]]:
        """Every version of a rule with the change that wrote it, oldest first.

        Raises:
            RuleNotFoundError: no rule with that id.
        """
        stmt = (select(RuleVersionRow, ChangeRow)
                .join(ChangeRow, (ChangeRow.rule_id == RuleVersionRow.rule_id)
                      & (ChangeRow.version == RuleVersionRow.version))
                .where(RuleVersionRow.rule_id == rule_id)
                .order_by(RuleVersionRow.version))
        with Session(self.engine) as session:
            out = [(rule_from_row(rule), change_from_row(change)) for rule, change in session.execute(stmt)]
        if not out:
            raise RuleNotFoundError(rule_id)
        return out


    def changes_since(self, seq: int, *, batch_size: int = 1000) -> Iterator[Change]:
        """Stream change-log entries with ``seq`` greater than ``seq``, oldest first (0 = all)."""
        return keyset_pages(self.engine, select(CHANGES), CHANGES.c.seq, change_from_row, lambda c: c.seq,
                            batch_size=batch_size, after=seq)


    def verify_chain(self) -> bool:
        """Recompute the hash chain over every change (and every stored rule's content hash).

        True when each change follows the previous one, its rulebook version is the hash of what it
        wrote, and every rule version has exactly one change.
        """
        stmt = (select(RULE_VERSIONS, CHANGES.c.previous_rulebook_version, CHANGES.c.rulebook_version)
                .join(CHANGES, (CHANGES.c.rule_id == RULE_VERSIONS.c.rule_id)
                      & (CHANGES.c.version == RULE_VERSIONS.c.version))
                .order_by(CHANGES.c.seq)
                .execution_options(yield_per=1000))  # one pass, constant memory
        previous = EMPTY_RULEBOOK_VERSION
        seen = 0
        with Session(self.engine) as session:
            for row in session.execute(stmt):
                rule_hash = rule_from_row(row).content_hash()
                expected = next_rulebook_version(previous, row.rule_id, row.version, rule_hash)
                if (rule_hash != row.content_hash or row.previous_rulebook_version != previous
                        or row.rulebook_version != expected):
                    return False
                previous = row.rulebook_version
                seen += 1
            versions = session.scalar(select(func.count()).select_from(RuleVersionRow)) or 0
            changes = session.scalar(select(func.count()).select_from(ChangeRow)) or 0
        return seen == versions == changes

