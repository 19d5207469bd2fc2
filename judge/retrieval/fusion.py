"""How rankings are combined: the retrieval configuration and reciprocal rank fusion.

A pair is searched several ways - dense (embedding) search with the prompt, with each response and with all
three together; lexical (full-text) search with the prompt and with each response; the accepted test cases
nearest the prompt, voting for the entries they test - and each search ranks rules.
`reciprocal_rank_fusion` combines the rankings: a rule scores ``sum(1 / (k + rank))`` over the rankings it
appears in, so a rule near the top of several rankings beats one at the top of one. RRF needs no score
calibration between dense cosines and bm25, which live on unrelated scales.

Pure: rankings in, scores out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from judge.retrieval.exemplars import EXEMPLAR_K
from judge.store.lexical import COMMON_FRACTION

__all__ = ["RRF_K", "RetrievalConfig", "reciprocal_rank_fusion"]

#: The constant of reciprocal rank fusion (Cormack et al., 2009): damps the weight of the very top ranks.
RRF_K = 60


@dataclass(frozen=True)
class RetrievalConfig:
    """How `judge.rulebook.Rulebook.retrieve` searches.

    Attributes:
        passages: score a rule by the best of its whole text and its passages, not its whole text alone.
        lexical: add full-text rankings from the SQL store (FTS5 bm25 / PostgreSQL ts_rank).
        split_queries: search with the prompt and with each response on their own as well as together.
        fused: rank by reciprocal rank fusion of every ranking, constitution and spec entries in one pool
            (``RetrievedRule.score`` is then the fused score); False ranks by cosine of the joint query only,
            as a dense-only retriever does.
        cases: add a ranking of spec entries by the ``case_k`` accepted test cases nearest the prompt, each
            voting for the entries it tests (see `judge.retrieval.exemplars`).
        ruling_votes: add a ranking by the ``case_k`` active rulings nearest the pair, each voting for the
            rules it cites (off by default: on the Model Spec sets it raised the constitution's recall but
            lowered the whole pool's; see docs/benchmarks.md).
        depth: how many rules each ranking contributes to the fusion.
        rrf_k: the RRF constant.
        case_k: how many nearest test cases, and how many nearest rulings, vote.
        common_fraction: full-text search drops a word found in more than this fraction of the binding rules
            (of a rulebook over `judge.store.lexical.COMMON_FLOOR` rules): lower is faster on a large
            rulebook and changes the full-text ranking more (``python benchmarks/full_text_bound.py``).
        overview: retrieve overview and grouping entries (tagged ``overview``: "Overview", "Definitions",
            "Levels of authority", "Do the best work" ...) like any rule. Off, they are context, never
            retrieved: the entries under a heading are the rules a pair is judged by, and a heading's
            general words otherwise match pairs of every topic (see docs/benchmarks.md).
    """

    passages: bool = True
    lexical: bool = True
    split_queries: bool = True
    fused: bool = True
    cases: bool = True
    ruling_votes: bool = False
    depth: int = 30
    rrf_k: int = RRF_K
    case_k: int = EXEMPLAR_K
    common_fraction: float = COMMON_FRACTION
    overview: bool = False

    @classmethod
    def dense_whole(cls) -> RetrievalConfig:
        """One dense search with prompt + responses against each rule's whole text (the first ~256 word
        pieces the embedder reads), ranked by cosine, overview entries included: the configuration before
        passages and fusion."""
        return cls(passages=False, lexical=False, split_queries=False, fused=False, cases=False,
                   ruling_votes=False, overview=True)

    @classmethod
    def named(cls, name: str, *, common_fraction: float = COMMON_FRACTION) -> RetrievalConfig:
        """The configuration a setting names: ``fused`` (the default), ``no-cases`` (fused, without the test
        cases' votes) or ``dense`` (`dense_whole`); ``common_fraction`` for the fused ones."""
        if name == "fused":
            return cls(common_fraction=common_fraction)
        if name == "no-cases":
            return cls(cases=False, common_fraction=common_fraction)
        if name == "dense":
            return cls.dense_whole()
        raise ValueError(f"unknown retrieval {name!r} (fused, no-cases or dense)")

    @property
    def label(self) -> str:
        """A short description, for reports."""
        if not self.fused:
            return "dense, " + ("passages" if self.passages else "whole texts") + ", joint query, by cosine"
        parts = ["passages" if self.passages else "whole texts",
                 "+ lexical" if self.lexical else "dense only",
                 "split queries" if self.split_queries else "joint query"]
        if self.cases:
            parts.append("+ test cases")
        if self.ruling_votes:
            parts.append("+ rulings' citations")
        if self.overview:
            parts.append("+ overview entries")
        return "RRF: " + ", ".join(parts)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], *, k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> dict[str, float]:
    """Fuse rankings (ids best first) into one score per id: ``sum(weight / (k + rank))``, rank from 1.

    An id repeated within one ranking counts at its best rank. Empty input gives an empty dict.
    """
    if weights is not None and len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[i]
        seen: set[str] = set()
        for rank, item in enumerate(ranking, 1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores
