"""The accepted test cases as retrieval exemplars: each case's stored embedding and the spec entries it tests.

Read from the case tables (``test_cases``, ``test_case_entries``, ``test_case_vectors``; written by
`judge.cases.store.CaseStore`), for one embedding model: a case whose vector under that model is not stored
(added without an embedder) is not an exemplar until `CaseStore.vectors` (any near-duplicate or coverage
command) stores it, and `read_exemplars` says how many were left out. `exemplar_fingerprint` is one cheap
statement that changes whenever the set read would: a case added, reviewed or given a vector.
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import Engine, func, select

from judge.retrieval.exemplars import Exemplars
from judge.store.schema import CASE_ENTRIES, CASE_REVIEWS, CASE_VECTORS, CASES

__all__ = ["ACCEPTED", "exemplar_fingerprint", "read_exemplars"]

log = logging.getLogger(__name__)

#: The review status of a case that counts as an exemplar: `judge.cases.model.CaseStatus.ACCEPTED` (named, not
#: imported: judge.cases builds on judge.retrieval; a test holds the two equal).
ACCEPTED = "accepted"


def exemplar_fingerprint(engine: Engine, model: str) -> str:
    """Identifies the exemplars `read_exemplars` would read for ``model``: the review log's last entry (every
    case added or re-reviewed appends to the log, which is never rewritten) and how many vectors ``model`` has
    (counted from the index on the model, not the vector rows)."""
    last_review = select(func.coalesce(func.max(CASE_REVIEWS.c.seq), 0)).scalar_subquery()
    vectors = select(func.count()).select_from(CASE_VECTORS).where(CASE_VECTORS.c.model == model).scalar_subquery()
    with engine.connect() as conn:
        last, embedded = conn.execute(select(last_review, vectors)).one()
    return f"{model}:{last}:{embedded}"


def read_exemplars(engine: Engine, model: str, dim: int) -> Exemplars:
    """Every accepted case with a stored ``model`` vector of ``dim`` floats, with the entries it tests, in id
    order; vectors normalised to unit length."""
    fingerprint = exemplar_fingerprint(engine, model)
    statement = (select(CASES.c.id, CASE_VECTORS.c.vector, CASE_ENTRIES.c.entry_id)
                 .join(CASE_VECTORS, (CASE_VECTORS.c.case_id == CASES.c.id) & (CASE_VECTORS.c.model == model))
                 .join(CASE_ENTRIES, CASE_ENTRIES.c.case_id == CASES.c.id)
                 .where(CASES.c.status == ACCEPTED)
                 .order_by(CASES.c.id, CASE_ENTRIES.c.entry_id))
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    rules: list[list[str]] = []
    wrong_size = 0
    previous: str | None = None  # a case has one row per entry it tests, in order
    with engine.connect() as conn:
        for case_id, blob, entry_id in conn.execute(statement):
            if case_id == previous:
                if ids and ids[-1] == case_id:
                    rules[-1].append(entry_id)
                continue
            previous = case_id
            vector = np.frombuffer(blob, dtype=np.float32)
            if vector.shape != (dim,):
                wrong_size += 1
                continue
            ids.append(case_id)
            vectors.append(vector)
            rules.append([entry_id])
        accepted = conn.execute(select(func.count()).select_from(CASES)
                                .where(CASES.c.status == ACCEPTED)).scalar_one()
    if accepted > len(ids):
        log.warning("%d of %d accepted test case(s) have no %s vector and do not guide retrieval; "
                    "`judge coverage` embeds and stores them", accepted - len(ids), accepted, model)
    if wrong_size:
        log.warning("%d stored %s vector(s) are not %d floats: ignored", wrong_size, model, dim)
    matrix = np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)
    return Exemplars(tuple(ids), matrix, tuple(tuple(r) for r in rules), fingerprint)
