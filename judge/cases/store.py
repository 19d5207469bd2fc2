"""`CaseStore`: test cases in the system of record, reviewed in bulk, counted per spec entry.

Cases live in the rulebook's database (tables ``test_cases``, ``test_case_entries``, ``test_case_reviews``,
``test_case_vectors``; migration ``0003_test_cases``). A case's content is written once - its id is its
content hash, so adding it again does nothing. Its review status is stored on the row *and* appended to the
review log in the same transaction; the row's status always equals the log's latest entry.

Entry ids are checked against the rulebook's current spec entries (passed in, or read from the rulebook
tables on the same engine). Embeddings are computed outside write transactions, stored per embedding model
(derived data, recomputed when missing) and used, with word 3-gram overlap, to merge near-duplicates
before counting (`judge.cases.distinct`).

`CaseStore` holds the writes; its reads are `judge.cases.queries.CaseQueries` and its embeddings,
near-duplicate groups and coverage `judge.cases.grouping.CaseGrouping` (both mixed in); the row
conversions are in `judge.cases.rows`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from judge.cases.grouping import CaseGrouping, Progress
from judge.cases.model import REVIEW_METHODS, CaseStatus, ReviewMethod, TestCase, missing_reviewer
from judge.cases.queries import ReviewEvent
from judge.cases.rows import _case_values, _chunks, _parse_status
from judge.errors import CaseReviewError, ConcurrentWriteError, InputError
from judge.retrieval.embedder import Embedder
from judge.store.engine import WRITE_OPTION
from judge.store.schema import CASE_ENTRIES, CASE_REVIEWS, CASE_VECTORS, CASES, TestCaseRow

__all__ = ["AddReport", "CaseStore", "Progress", "ReviewEvent", "ReviewReport"]

_ATTEMPTS = 3


@dataclass(frozen=True)
class AddReport:
    """What `CaseStore.add` did: ids stored now, and ids that were already there (left unchanged)."""

    added: tuple[str, ...]
    existing: tuple[str, ...]


@dataclass(frozen=True)
class ReviewReport:
    """What `CaseStore.review` did: ids whose status changed, and ids already in the requested state."""

    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


class Decision(NamedTuple):
    """One review decision: the new status, who decided, how (``person``, ``check`` or ``source``) and why."""

    status: CaseStatus | str
    reviewer: str | None
    method: ReviewMethod = "person"
    note: str | None = None


class CaseStore(CaseGrouping):
    """Test cases on the rulebook's (migrated) engine.

    Args:
        engine: the engine of the system of record (`judge.store.open_engine` + `judge.store.migrate`).
        embedder: embeds cases for near-duplicate detection; None compares word 3-grams only.
        entry_ids: the spec entry ids cases may test; None reads the rulebook's current spec entries from
            the same database on every call that needs them.
    """

    def __init__(self, engine: Engine, embedder: Embedder | None = None, *,
                 entry_ids: Iterable[str] | None = None) -> None:
        self.engine = engine
        self.embedder = embedder
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._entry_ids = tuple(sorted(set(entry_ids))) if entry_ids is not None else None
        self._accepted_entries: dict[tuple[str, ...] | None, dict[str, tuple[str, ...]]] = {}

    # ----------------------------------------------------------------- writing
    def add(self, cases: Iterable[TestCase], *, note: str | None = None,
            progress: Progress | None = None) -> AddReport:
        """Store cases in one transaction: all new ones or none. Idempotent by id.

        A case whose id is already stored is left as it is (its status changes only through `review`).
        Each new case gets its first review-log entry (its status as given, with its reviewer).

        Args:
            cases: the cases; repeated ids in the batch count once.
            note: recorded on the new cases' first review-log entry.
            progress: called while embedding the new cases.

        Raises:
            InputError: a case tests an entry id that is not a current spec entry (names every such id), or
                is accepted or rejected without a reviewer; nothing is stored.
        """
        batch: dict[str, TestCase] = {}
        for case in cases:
            batch.setdefault(case.id, case)
        unreviewed = [case.id for case in batch.values() if missing_reviewer(case)]
        if unreviewed:
            shown = ", ".join(unreviewed[:3]) + (", ..." if len(unreviewed) > 3 else "")
            raise InputError(f"{len(unreviewed)} accepted or rejected case(s) without a reviewer ({shown}): say who "
                             "or which check decided them, or add them as drafts; nothing was stored",
                             field="reviewer")
        known = set(self.entry_ids())
        unknown: dict[str, list[str]] = {}
        for case in batch.values():
            for entry in case.entries:
                if entry not in known:
                    unknown.setdefault(entry, []).append(case.id)
        if unknown:
            detail = "; ".join(f"{e} (case {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"
                               for e, ids in sorted(unknown.items()))
            raise InputError(f"unknown spec entry id(s): {detail}; cases must test current spec entries "
                             "(see `judge rulebook list --layer spec`); nothing was stored", field="entries")
        ids = list(batch)
        stored = self._existing(ids)
        fresh = [i for i in ids if i not in stored]
        vectors = self._embed([batch[i] for i in fresh], progress) if self.embedder is not None else None
        for attempt in range(_ATTEMPTS):
            try:
                return self._insert(batch, ids, vectors, fresh, note)
            except IntegrityError as exc:  # a concurrent writer stored some of the same cases first
                if attempt == _ATTEMPTS - 1:
                    raise ConcurrentWriteError(f"adding {len(fresh)} case(s) kept colliding with other "
                                               "writers") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _insert(self, batch: Mapping[str, TestCase], ids: list[str], vectors: np.ndarray | None,
                embedded: list[str], note: str | None) -> AddReport:
        now = datetime.now(UTC)
        with self._write_engine.begin() as conn:
            existing = self._existing(ids, conn)
            new = [i for i in ids if i not in existing]
            if new:
                conn.execute(insert(CASES), [_case_values(batch[i], now) for i in new])
                conn.execute(insert(CASE_ENTRIES), [{"case_id": i, "entry_id": e} for i in new
                                                    for e in batch[i].entries])
                conn.execute(insert(CASE_REVIEWS), [{"case_id": i, "status": batch[i].status.value,
                                                     "reviewer": batch[i].reviewer,
                                                     "review_method": batch[i].review_method, "at": now,
                                                     "note": batch[i].review_note or note}
                                                    for i in new])
                if vectors is not None and self.embedder is not None:
                    row = {i: n for n, i in enumerate(embedded)}
                    conn.execute(insert(CASE_VECTORS), [
                        {"case_id": i, "model": self.embedder.name, "vector": vectors[row[i]].tobytes()}
                        for i in new if i in row])
        return AddReport(added=tuple(new), existing=tuple(i for i in ids if i in existing))

    def review(self, decisions: Mapping[str, Decision | tuple[Any, ...]], *,
               note: str | None = None) -> ReviewReport:
        """Set the review status of many cases in one transaction: all of them or none.

        Args:
            decisions: ``{case id: Decision}`` (or a plain ``(status, reviewer[, method[, note]])`` tuple);
                accepting or rejecting needs a reviewer; the method defaults to ``person``.
            note: recorded on every review-log entry written that has no note of its own.

        Raises:
            InputError: an unknown case id (names every one), an invalid status or method, or no reviewer
                for an accept / reject; nothing is changed.
        """
        parsed: dict[str, tuple[CaseStatus, str | None, ReviewMethod | None]] = {}
        notes: dict[str, str | None] = {}
        for case_id, raw in decisions.items():
            decision = raw if isinstance(raw, Decision) else Decision(*raw)
            try:
                value = _parse_status(decision.status, case_id)
            except InputError as exc:
                raise CaseReviewError(str(exc), case_id=case_id, field=exc.field) from None
            reviewer = decision.reviewer
            reviewer = reviewer.strip() if isinstance(reviewer, str) and reviewer.strip() else None
            if value is not CaseStatus.DRAFT and reviewer is None:
                raise CaseReviewError(f"case {case_id}: {value.value} needs a reviewer", case_id=case_id,
                                      field="reviewer")
            if decision.method not in REVIEW_METHODS:
                raise CaseReviewError(f"case {case_id}: review method must be one of {', '.join(REVIEW_METHODS)}, "
                                      f"not {decision.method!r}", case_id=case_id, field="review_method")
            method = decision.method if value is not CaseStatus.DRAFT else None
            parsed[case_id] = (value, reviewer, method)
            notes[case_id] = decision.note or note
        ids = list(parsed)
        now = datetime.now(UTC)
        with self._write_engine.begin() as conn:
            current: dict[str, tuple[str, str | None, str | None]] = {}
            for chunk in _chunks(ids):
                rows = conn.execute(select(TestCaseRow.id, TestCaseRow.status, TestCaseRow.reviewer,
                                           TestCaseRow.review_method).where(TestCaseRow.id.in_(chunk)))
                current.update({r.id: (r.status, r.reviewer, r.review_method) for r in rows})
            missing = sorted(set(ids) - set(current))
            if missing:
                shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
                raise CaseReviewError(f"unknown case id(s): {shown}; nothing was changed", case_id=missing[0],
                                      field="id")
            changed = [i for i in ids if current[i] != (parsed[i][0].value, parsed[i][1], parsed[i][2])]
            for case_id in changed:
                status, reviewer, method = parsed[case_id]
                conn.execute(update(CASES).where(CASES.c.id == case_id)
                             .values(status=status.value, reviewer=reviewer, review_method=method, status_at=now))
            if changed:
                conn.execute(insert(CASE_REVIEWS), [{"case_id": i, "status": parsed[i][0].value,
                                                     "reviewer": parsed[i][1], "review_method": parsed[i][2],
                                                     "at": now, "note": notes[i]}
                                                    for i in changed])
        done = set(changed)
        return ReviewReport(changed=tuple(changed), unchanged=tuple(i for i in ids if i not in done))

