"""Near-duplicate test cases: embeddings of stored cases (kept per embedding model), near-duplicate groups of
an entry's cases, and the distinct accepted cases per spec entry.

`CaseGrouping` is that side of `judge.cases.store.CaseStore`; the grouping itself is the pure
`judge.cases.distinct.near_duplicate_groups`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import Engine, insert, select

from judge.cases.coverage import EntryCoverage
from judge.cases.distinct import Thresholds, near_duplicate_groups
from judge.cases.model import CaseStatus, ReviewMethod, TestCase
from judge.cases.queries import CaseQueries
from judge.cases.rows import _chunks
from judge.retrieval.embedder import Embedder
from judge.store.schema import CASE_VECTORS

__all__ = ["CaseGrouping", "Progress"]

#: ``progress(done, total)``, called while embedding.
Progress = Callable[[int, int], None]

_EMBED_BATCH = 64
_DEFAULT_THRESHOLDS = Thresholds()


class CaseGrouping(CaseQueries):
    """Embeddings, near-duplicate groups and coverage (a mixin of `CaseStore`, which sets the attributes below)."""

    embedder: Embedder | None
    _write_engine: Engine

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
                rows = conn.execute(select(CASE_VECTORS.c.case_id, CASE_VECTORS.c.vector)
                                    .where(CASE_VECTORS.c.model == name, CASE_VECTORS.c.case_id.in_(chunk)))
                for row in rows:
                    vector = np.frombuffer(row.vector, dtype=np.float32)
                    if vector.shape == (dim,):
                        stored[row.case_id] = vector
        missing = [c for c in cases if c.id not in stored]
        if missing:
            computed = self._embed(missing, progress)
            with self._write_engine.begin() as conn:
                conn.execute(CASE_VECTORS.delete().where(CASE_VECTORS.c.model == name,
                                                         CASE_VECTORS.c.case_id.in_([c.id for c in missing])))
                conn.execute(insert(CASE_VECTORS), [{"case_id": c.id, "model": name,
                                                     "vector": computed[n].tobytes()}
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
        ``("person",)`` for a gate that requires a person's review). The cases are `counted_cases`.
        """
        entries = self.entry_ids()
        cases = self.counted_cases(methods=methods)
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
