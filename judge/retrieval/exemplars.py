"""Rules ranked by the prompts known to test them: the nearest accepted test cases vote for their entries.

A spec entry's text says what it asks; the reviewed test cases written for it show the prompts it applies to
("What's the probability of rolling at least one six in four rolls?" tests "avoid errors", whose text never
mentions dice). Similarity search over rule texts ranks what a prompt is *about*; the nearest cases rank which
rules prompts *like this one* were filed under. `vote` turns the ``k`` cases nearest a query into a ranking of
the rules they test, each scored by the summed cosine of its cases among those ``k``; `tally` does the same
for any neighbours, such as the rulings nearest a pair and the rules they cite.
`judge.retrieval.retriever.Retriever` fuses those rankings with the others (reciprocal rank fusion).

Pure: vectors and labels in, rankings out. The cases are read from the SQL store by
`judge.retrieval.case_exemplars.read_exemplars`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EXEMPLAR_K", "Exemplars", "tally", "vote"]

#: How many nearest cases vote: enough that one stray neighbour does not decide, few enough that the votes
#: stay local to the prompt.
EXEMPLAR_K = 20


@dataclass(frozen=True)
class Exemplars:
    """Prompts with the rules they test, embedded.

    Attributes:
        ids: one id per exemplar (a test case's id).
        vectors: one unit-norm embedding per exemplar, shape ``(len(ids), dim)``.
        rules: the rule ids each exemplar tests.
        fingerprint: identifies the stored state the exemplars were read at (reloaded when it changes).
    """

    ids: tuple[str, ...]
    vectors: np.ndarray
    rules: tuple[tuple[str, ...], ...]
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.rules) == self.vectors.shape[0]:
            raise ValueError(f"{len(self.ids)} ids, {len(self.rules)} rule lists, {self.vectors.shape[0]} vectors")

    def __len__(self) -> int:
        return len(self.ids)


def vote(exemplars: Exemplars, queries: np.ndarray, *, k: int = EXEMPLAR_K,
         exclude: Sequence[str] = ()) -> list[list[str]]:
    """One ranking of rule ids per row of ``queries`` (unit vectors): the rules tested by the ``k`` exemplars
    nearest that row, by the summed cosine of those exemplars (ties by id). Rules in ``exclude`` and
    exemplars whose id is in ``exclude`` take no part; non-positive similarities cast no vote."""
    if len(exemplars) == 0 or k <= 0:
        return [[] for _ in range(len(queries))]
    excluded = frozenset(exclude)
    # (n, dim) @ (dim, m): a matrix-vector product over the exemplars' rows, the fast way round
    similarities = np.ascontiguousarray((exemplars.vectors @ np.asarray(queries, dtype=np.float32).T).T)
    if excluded:
        skip = [i for i, case_id in enumerate(exemplars.ids) if case_id in excluded]
        similarities[:, skip] = -np.inf
    n = min(k, similarities.shape[1])
    rankings = []
    for row in similarities:
        nearest = np.argpartition(-row, n - 1)[:n] if n < row.shape[0] else np.arange(row.shape[0])
        rankings.append(tally(((float(row[i]), exemplars.rules[i]) for i in nearest), exclude=excluded))
    return rankings


def tally(neighbours: Iterable[tuple[float, Sequence[str]]], *, exclude: Collection[str] = ()) -> list[str]:
    """Rule ids best first by the summed similarity of the neighbours that name them (ties by id).

    ``neighbours`` are (similarity, rule ids) pairs - the cases nearest a prompt and the entries they test, or
    the rulings nearest a pair and the rules they cite. Non-positive similarities cast no vote; rules in
    ``exclude`` are left out.
    """
    scores: dict[str, float] = {}
    for similarity, rule_ids in neighbours:
        if not similarity > 0.0:
            continue
        for rule_id in rule_ids:
            if rule_id not in exclude:
                scores[rule_id] = scores.get(rule_id, 0.0) + similarity
    return [rule_id for rule_id, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]
