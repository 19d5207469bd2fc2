"""`CaseStore`: test cases in the system of record, reviewed in bulk, counted per spec entry.

Cases live in the rulebook's database (tables ``test_cases``, ``test_case_entries``, ``test_case_reviews``,
``test_case_vectors``; migration ``0003_test_cases``). A case's content is written once - its id is its
content hash, so adding it again does nothing. Its review status is stored on the row *and* appended to the
review log in the same transaction; the row's status always equals the log's latest entry.

Entry ids are checked against the rulebook's current spec entries (passed in, or read from the rulebook
tables on the same engine). Embeddings are computed outside write transactions, stored per embedding model
(derived data, recomputed when missing) and used, with word 3-gram overlap, to merge near-duplicates
before counting (`judge.cases.distinct`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Engine, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from judge.cases.coverage import EntryCoverage
from judge.cases.distinct import Thresholds, near_duplicate_groups
from judge.cases.model import REVIEW_METHODS, CaseStatus, ReviewMethod, TestCase
from judge.errors import ConcurrentWriteError, InputError
from judge.retrieval.embedder import Embedder
from judge.rules.model import Layer
from judge.store.engine import WRITE_OPTION
from judge.store.schema import TestCaseEntryRow, TestCaseReviewRow, TestCaseRow, TestCaseVectorRow

__all__ = ["AddReport", "CaseStore", "Progress", "ReviewEvent", "ReviewReport"]

#: ``progress(done, total)``, called while embedding.
Progress = Callable[[int, int], None]

_CASES: Table = TestCaseRow.__table__  # type: ignore[assignment]
_ENTRIES: Table = TestCaseEntryRow.__table__  # type: ignore[assignment]
_REVIEWS: Table = TestCaseReviewRow.__table__  # type: ignore[assignment]
_VECTORS: Table = TestCaseVectorRow.__table__  # type: ignore[assignment]
_CHUNK = 500
_EMBED_BATCH = 64
_ATTEMPTS = 3
_DEFAULT_THRESHOLDS = Thresholds()


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


@dataclass(frozen=True)
class ReviewEvent:
    """One entry of a case's review log."""

    status: CaseStatus
    reviewer: str | None
    at: datetime
    note: str | None
    review_method: str | None = None


class Decision(NamedTuple):
    """One review decision: the new status, who decided, how (``person``, ``check`` or ``source``) and why."""

    status: CaseStatus | str
    reviewer: str | None
    method: ReviewMethod = "person"
    note: str | None = None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _case_values(case: TestCase, now: datetime) -> dict[str, Any]:
    return {
        "id": case.id, "prompt": case.prompt, "prompt_role": case.prompt_role,
        "conversation": [t.model_dump(mode="json") for t in case.conversation],
        "process": case.process.model_dump(mode="json") if case.process is not None else None,
        "expected": case.expected, "reference_answers": list(case.references), "provenance": case.provenance,
        "tags": dict(case.tags), "status": case.status.value, "reviewer": case.reviewer,
        "review_method": case.review_method, "created_at": _utc(case.created_at), "status_at": now,
    }


def _case_from_row(row: Any, entries: Sequence[str]) -> TestCase:
    """The `TestCase` a row stores; validated again (the id is re-hashed), so a corrupt row fails loudly."""
    return TestCase.model_validate({
        "id": row.id, "prompt": row.prompt, "prompt_role": row.prompt_role, "conversation": row.conversation,
        "process": row.process, "entries": tuple(entries), "expected": row.expected,
        "references": tuple(row.reference_answers or ()), "provenance": row.provenance, "tags": row.tags or {},
        "status": row.status, "reviewer": row.reviewer, "review_method": row.review_method,
        "created_at": _utc(row.created_at),
    })


def _parse_status(value: CaseStatus | str, case_id: str) -> CaseStatus:
    try:
        return CaseStatus(value)
    except ValueError:
        raise InputError(f"case {case_id}: status must be one of "
                         f"{', '.join(s.value for s in CaseStatus)}, not {value!r}", field="status") from None


class CaseStore:
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
        self._accepted_entries: dict[str, tuple[str, ...]] | None = None

    # ----------------------------------------------------------------- entries
    def entry_ids(self) -> tuple[str, ...]:
        """The spec entry ids cases may test, sorted."""
        if self._entry_ids is not None:
            return self._entry_ids
        from judge.store.repository import RulebookStore

        return tuple(sorted(r.id for r in RulebookStore(self.engine).iter_current(Layer.SPEC)))

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
            InputError: a case tests an entry id that is not a current spec entry (names every such id);
                nothing is stored.
        """
        batch: dict[str, TestCase] = {}
        for case in cases:
            batch.setdefault(case.id, case)
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
                conn.execute(insert(_CASES), [_case_values(batch[i], now) for i in new])
                conn.execute(insert(_ENTRIES), [{"case_id": i, "entry_id": e} for i in new
                                                for e in batch[i].entries])
                conn.execute(insert(_REVIEWS), [{"case_id": i, "status": batch[i].status.value,
                                                 "reviewer": batch[i].reviewer,
                                                 "review_method": batch[i].review_method, "at": now,
                                                 "note": batch[i].review_note or note}
                                                for i in new])
                if vectors is not None and self.embedder is not None:
                    row = {i: n for n, i in enumerate(embedded)}
                    conn.execute(insert(_VECTORS), [
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
            value = _parse_status(decision.status, case_id)
            reviewer = decision.reviewer
            reviewer = reviewer.strip() if isinstance(reviewer, str) and reviewer.strip() else None
            if value is not CaseStatus.DRAFT and reviewer is None:
                raise InputError(f"case {case_id}: {value.value} needs a reviewer", field="reviewer")
            if decision.method not in REVIEW_METHODS:
                raise InputError(f"case {case_id}: review method must be one of {', '.join(REVIEW_METHODS)}, "
                                 f"not {decision.method!r}", field="review_method")
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
                raise InputError(f"unknown case id(s): {shown}; nothing was changed", field="id")
            changed = [i for i in ids if current[i] != (parsed[i][0].value, parsed[i][1], parsed[i][2])]
            for case_id in changed:
                status, reviewer, method = parsed[case_id]
                conn.execute(update(_CASES).where(_CASES.c.id == case_id)
                             .values(status=status.value, reviewer=reviewer, review_method=method, status_at=now))
            if changed:
                conn.execute(insert(_REVIEWS), [{"case_id": i, "status": parsed[i][0].value,
                                                 "reviewer": parsed[i][1], "review_method": parsed[i][2],
                                                 "at": now, "note": notes[i]}
                                                for i in changed])
        done = set(changed)
        return ReviewReport(changed=tuple(changed), unchanged=tuple(i for i in ids if i not in done))

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
        query = select(func.count()).select_from(_CASES)
        if status is not None:
            query = query.where(_CASES.c.status == CaseStatus(status).value)
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
        query = select(_CASES).order_by(_CASES.c.created_at, _CASES.c.id)
        if entry is not None:
            query = query.where(_CASES.c.id.in_(select(_ENTRIES.c.case_id).where(_ENTRIES.c.entry_id == entry)))
        if status is not None:
            query = query.where(_CASES.c.status == _parse_status(status, "filter").value)
        if provenance is not None:
            query = query.where(_CASES.c.provenance.startswith(provenance, autoescape=True))
        if ids is not None:
            query = query.where(_CASES.c.id.in_(list(ids)))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            links: dict[str, list[str]] = {}
            row_ids = [r.id for r in rows]
            for chunk in _chunks(row_ids):
                for link in conn.execute(select(_ENTRIES).where(_ENTRIES.c.case_id.in_(chunk))):
                    links.setdefault(link.case_id, []).append(link.entry_id)
        return [_case_from_row(r, links.get(r.id, ())) for r in rows]

    def entries_of(self, case_id: str) -> tuple[str, ...]:
        """The entries an *accepted* case tests (empty for an unknown, draft or rejected case).

        The release gate calls it once per judged pair; the accepted cases are read once and kept.
        """
        if self._accepted_entries is None:
            self._accepted_entries = {c.id: tuple(c.entries)
                                      for c in self.list_cases(status=CaseStatus.ACCEPTED)}
        return self._accepted_entries.get(case_id, ())

    def history(self, case_id: str) -> list[ReviewEvent]:
        """A case's review log, oldest first (its creation is the first entry)."""
        query = select(_REVIEWS).where(_REVIEWS.c.case_id == case_id).order_by(_REVIEWS.c.seq)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ReviewEvent(CaseStatus(r.status), r.reviewer, _utc(r.at), r.note, r.review_method) for r in rows]

    def latest_notes(self, ids: Sequence[str]) -> dict[str, str]:
        """The note of each case's latest review-log entry, for the cases that have one."""
        notes: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(ids)):
                rows = conn.execute(select(_REVIEWS.c.case_id, _REVIEWS.c.note)
                                    .where(_REVIEWS.c.case_id.in_(chunk)).order_by(_REVIEWS.c.seq))
                for r in rows:
                    if r.note:
                        notes[r.case_id] = r.note
                    else:
                        notes.pop(r.case_id, None)
        return notes

    # ----------------------------------------------------------------- embeddings
    def _embed(self, cases: Sequence[TestCase], progress: Progress | None) -> np.ndarray:
        assert self.embedder is not None  # callers check; a programming error otherwise
        texts = [c.text() for c in cases]
        parts = []
        for start in range(0, len(texts), _EMBED_BATCH):
            parts.append(self.embedder.encode(texts[start:start + _EMBED_BATCH], batch_size=_EMBED_BATCH))
            if progress is not None:
                progress(min(start + _EMBED_BATCH, len(texts)), len(texts))
        if not parts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def vectors(self, cases: Sequence[TestCase], *, progress: Progress | None = None) -> np.ndarray | None:
        """The cases' embeddings under this store's embedder, one row per case (None without an embedder).

        Stored vectors are reused; missing ones (new model, cases added without an embedder) are computed
        and stored.
        """
        if self.embedder is None:
            return None
        name, dim = self.embedder.name, self.embedder.dim
        stored: dict[str, np.ndarray] = {}
        ids = [c.id for c in cases]
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                rows = conn.execute(select(_VECTORS.c.case_id, _VECTORS.c.vector)
                                    .where(_VECTORS.c.model == name, _VECTORS.c.case_id.in_(chunk)))
                for row in rows:
                    vector = np.frombuffer(row.vector, dtype=np.float32)
                    if vector.shape == (dim,):
                        stored[row.case_id] = vector
        missing = [c for c in cases if c.id not in stored]
        if missing:
            computed = self._embed(missing, progress)
            with self._write_engine.begin() as conn:
                conn.execute(_VECTORS.delete().where(_VECTORS.c.model == name,
                                                     _VECTORS.c.case_id.in_([c.id for c in missing])))
                conn.execute(insert(_VECTORS), [{"case_id": c.id, "model": name, "vector": computed[n].tobytes()}
                                                for n, c in enumerate(missing)])
            stored.update({c.id: computed[n] for n, c in enumerate(missing)})
        if not ids:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([stored[i] for i in ids])

    # ----------------------------------------------------------------- coverage
    def groups(self, entry: str, *, statuses: Sequence[CaseStatus] = (CaseStatus.ACCEPTED,),
               thresholds: Thresholds = _DEFAULT_THRESHOLDS, progress: Progress | None = None) -> list[list[str]]:
        """Near-duplicate groups of one entry's cases with the given statuses (case ids per group)."""
        cases = [c for c in self.list_cases(entry=entry) if c.status in statuses]
        vectors = self.vectors(cases, progress=progress)
        return [[cases[i].id for i in g] for g in near_duplicate_groups([c.text() for c in cases], vectors,
                                                                         thresholds)]

    def coverage(self, thresholds: Thresholds = _DEFAULT_THRESHOLDS, *,
                 progress: Progress | None = None,
                 methods: Sequence[ReviewMethod] | None = None) -> list[EntryCoverage]:
        """Cases per spec entry - every current spec entry, those with no case included - sorted by id.

        ``distinct_accepted`` counts the entry's accepted cases after merging near-duplicates (groups are
        formed within each entry). Links to entry ids that are no longer spec entries are not counted.
        With ``methods``, only cases accepted by one of those review methods count as accepted (e.g.
        ``("person",)`` for a gate that requires a person's review).
        """
        entries = self.entry_ids()
        cases = self.list_cases()
        if methods is not None:
            allowed = set(methods)
            cases = [c for c in cases
                     if c.status is not CaseStatus.ACCEPTED or c.review_method in allowed]
        vectors = self.vectors([c for c in cases if c.status is CaseStatus.ACCEPTED], progress=progress)
        accepted_row = {c.id: n for n, c in enumerate(c for c in cases if c.status is CaseStatus.ACCEPTED)}
        by_entry: dict[str, list[TestCase]] = {e: [] for e in entries}
        for case in cases:
            for entry in case.entries:
                if entry in by_entry:
                    by_entry[entry].append(case)
        result = []
        for entry in entries:
            members = by_entry[entry]
            accepted = [c for c in members if c.status is CaseStatus.ACCEPTED]
            sub = vectors[[accepted_row[c.id] for c in accepted]] if vectors is not None and accepted else None
            groups = near_duplicate_groups([c.text() for c in accepted], sub, thresholds)
            result.append(EntryCoverage(
                entry_id=entry, distinct_accepted=len(groups), accepted=len(accepted),
                draft=sum(c.status is CaseStatus.DRAFT for c in members),
                rejected=sum(c.status is CaseStatus.REJECTED for c in members)))
        return result
