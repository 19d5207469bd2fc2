"""Reading stored test cases: counts, one case, filtered lists, the entries a case tests, its review log.

`CaseQueries` is the read side of `judge.cases.store.CaseStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from judge.cases.model import CaseStatus, TestCase, missing_reviewer
from judge.cases.rows import _case_from_row, _chunks, _parse_status, _utc
from judge.errors import InputError
from judge.rules.model import Layer
from judge.store.schema import CASE_ENTRIES, CASE_REVIEWS, CASES, TestCaseRow

__all__ = ["CaseQueries", "ReviewEvent"]


@dataclass(frozen=True)
class ReviewEvent:
    """One entry of a case's review log."""

    status: CaseStatus
    reviewer: str | None
    at: datetime
    note: str | None
    review_method: str | None = None


class CaseQueries:
    """Reads of stored cases (a mixin of `CaseStore`, which sets the attributes below)."""

    engine: Engine
    _entry_ids: tuple[str, ...] | None
    _accepted_entries: dict[tuple[str, ...] | None, dict[str, tuple[str, ...]]]

    # ----------------------------------------------------------------- entries
    def entry_ids(self) -> tuple[str, ...]:
        """The spec entry ids cases may test, sorted."""
        if self._entry_ids is not None:
            return self._entry_ids
        from judge.store.repository import RulebookStore

        return tuple(sorted(r.id for r in RulebookStore(self.engine).iter_current(Layer.SPEC)))

    # ----------------------------------------------------------------- reading
    def _existing(self, ids: Sequence[str], conn: Any = None) -> set[str]:
        found: set[str] = set()

        def run(c: Any) -> None:
            for chunk in _chunks(ids):
                found.update(c.execute(select(TestCaseRow.id).where(TestCaseRow.id.in_(chunk))).scalars())

        if conn is not None:
            run(conn)
        else:
            with self.engine.connect() as c:
                run(c)
        return found

    def count(self, status: CaseStatus | str | None = None) -> int:
        """How many cases are stored (optionally with one status)."""
        query = select(func.count()).select_from(CASES)
        if status is not None:
            query = query.where(CASES.c.status == CaseStatus(status).value)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def get(self, case_id: str) -> TestCase:
        """One case.

        Raises:
            InputError: no case has this id.
        """
        found = self.list_cases(ids=[case_id])
        if not found:
            raise InputError(f"no test case with id {case_id!r}", field="id")
        return found[0]

    def list_cases(self, *, entry: str | None = None, status: CaseStatus | str | None = None,
             provenance: str | None = None, ids: Sequence[str] | None = None,
             limit: int | None = None) -> list[TestCase]:
        """Cases, oldest first, filtered by entry, status, provenance prefix and/or ids."""
        query = select(CASES).order_by(CASES.c.created_at, CASES.c.id)
        if entry is not None:
            query = query.where(CASES.c.id.in_(select(CASE_ENTRIES.c.case_id).where(CASE_ENTRIES.c.entry_id == entry)))
        if status is not None:
            query = query.where(CASES.c.status == _parse_status(status, "filter").value)
        if provenance is not None:
            query = query.where(CASES.c.provenance.startswith(provenance, autoescape=True))
        if ids is not None:
            query = query.where(CASES.c.id.in_(list(ids)))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            links: dict[str, list[str]] = {}
            row_ids = [r.id for r in rows]
            for chunk in _chunks(row_ids):
                for link in conn.execute(select(CASE_ENTRIES).where(CASE_ENTRIES.c.case_id.in_(chunk))):
                    links.setdefault(link.case_id, []).append(link.entry_id)
        return [_case_from_row(r, links.get(r.id, ())) for r in rows]

    def counted_cases(self, *, status: CaseStatus | str | None = None,
                      methods: Sequence[str] | None = None) -> list[TestCase]:
        """Cases whose review counts (coverage, the release gate), oldest first.

        A case accepted or rejected without a reviewer (which only a store written before cases needed one can
        hold) does not count. With ``methods``, an accepted case counts only when one of those review methods
        accepted it (e.g. ``("person",)`` for a gate that requires a person's review); drafts and rejected
        cases are kept.
        """
        cases = [c for c in self.list_cases(status=status) if not missing_reviewer(c)]
        if methods is not None:
            allowed = set(methods)
            cases = [c for c in cases if c.status is not CaseStatus.ACCEPTED or c.review_method in allowed]
        return cases

    def entries_of(self, case_id: str, *, methods: Sequence[str] | None = None) -> tuple[str, ...]:
        """The entries an *accepted* case tests (empty for an unknown, draft or rejected case, and for one
        `counted_cases` leaves out under ``methods``).

        The release gate calls it once per judged pair; the accepted cases are read once and kept.
        """
        key = tuple(methods) if methods is not None else None
        if key not in self._accepted_entries:
            self._accepted_entries[key] = {c.id: tuple(c.entries)
                                           for c in self.counted_cases(status=CaseStatus.ACCEPTED, methods=methods)}
        return self._accepted_entries[key].get(case_id, ())

    def history(self, case_id: str) -> list[ReviewEvent]:
        """A case's review log, oldest first (its creation is the first entry)."""
        query = select(CASE_REVIEWS).where(CASE_REVIEWS.c.case_id == case_id).order_by(CASE_REVIEWS.c.seq)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ReviewEvent(CaseStatus(r.status), r.reviewer, _utc(r.at), r.note, r.review_method) for r in rows]

    def latest_notes(self, ids: Sequence[str]) -> dict[str, str]:
        """The note of each case's latest review-log entry, for the cases that have one."""
        notes: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(ids)):
                rows = conn.execute(select(CASE_REVIEWS.c.case_id, CASE_REVIEWS.c.note)
                                    .where(CASE_REVIEWS.c.case_id.in_(chunk)).order_by(CASE_REVIEWS.c.seq))
                for r in rows:
                    if r.note:
                        notes[r.case_id] = r.note
                    else:
                        notes.pop(r.case_id, None)
        return notes

