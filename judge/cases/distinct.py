"""Near-duplicate grouping: paraphrases with small edits count once.

Pure functions over texts and their embeddings. Two cases are near-duplicates when the cosine of their
embeddings is at least ``cos`` **or** the Jaccard similarity of their word 3-gram sets is at least ``ngram``;
groups are the connected components of that relation (union-find), so A~B and B~C put A, B and C in one
group even when A and C differ more. The distinct count is the number of groups.

The two signals catch different duplicates: embeddings catch rewordings that share few words, 3-gram
overlap catches edits (a changed name, a typo, an added sentence) that an embedding may place slightly apart.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from judge.errors import ConfigError

__all__ = ["DEFAULT_COS_THRESHOLD", "DEFAULT_NGRAM_THRESHOLD", "Thresholds", "jaccard", "near_duplicate_groups",
           "shingles", "words"]

DEFAULT_COS_THRESHOLD = 0.92
DEFAULT_NGRAM_THRESHOLD = 0.6

_WORD_RE = re.compile(r"\w+")


@dataclass(frozen=True)
class Thresholds:
    """When two cases are near-duplicates.

    Attributes:
        cos: embedding cosine at or above which two cases are near-duplicates (above 1: signal off).
        ngram: word 3-gram Jaccard at or above which two cases are near-duplicates (above 1: signal off).
    """

    cos: float = DEFAULT_COS_THRESHOLD
    ngram: float = DEFAULT_NGRAM_THRESHOLD

    def __post_init__(self) -> None:
        for name, value in (("cos", self.cos), ("ngram", self.ngram)):
            if not 0.0 <= value < float("inf"):
                raise ConfigError(f"near-duplicate threshold {name}={value} must be >= 0 (above 1 turns it off)")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``), the unit of every n-gram here."""
    return _WORD_RE.findall(text.lower())


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    """The set of word ``n``-grams of ``text``; a text shorter than ``n`` words is one shingle of all its
    words (so two identical short texts still match)."""
    tokens = words(text)
    if len(tokens) < n:
        return frozenset([tuple(tokens)]) if tokens else frozenset()
    return frozenset(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    """|a ∩ b| / |a ∪ b|; 0.0 when both are empty."""
    if not a and not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            # The smaller index becomes the root, so groups are labelled by their first member.
            self.parent[max(ri, rj)] = min(ri, rj)


def _ngram_pairs(sets: Sequence[frozenset[tuple[str, ...]]], threshold: float) -> list[tuple[int, int]]:
    """Pairs with Jaccard >= threshold, comparing only texts that share a shingle (an inverted index)."""
    if threshold > 1.0:
        return []
    postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for shingle in s:
            postings[shingle].append(i)
    candidates: set[tuple[int, int]] = set()
    if threshold <= 0.0:
        candidates = set(combinations(range(len(sets)), 2))
    else:
        # Exact: a pair with a positive Jaccard shares at least one shingle, so it is nominated here.
        for ids in postings.values():
            candidates.update(combinations(ids, 2))
    return [(i, j) for i, j in sorted(candidates) if jaccard(sets[i], sets[j]) >= threshold]


def near_duplicate_groups(texts: Sequence[str], vectors: np.ndarray | None = None,
                          thresholds: Thresholds = Thresholds()) -> list[list[int]]:
    """Group texts into near-duplicate groups.

    Args:
        texts: the cases' texts.
        vectors: their L2-normalised embeddings, one row per text (None: compare 3-grams only).
        thresholds: when two texts are near-duplicates.

    Returns:
        Groups of indices into ``texts``, each sorted, ordered by their first member; every index appears
        in exactly one group. ``len(groups)`` is the distinct count.

    Raises:
        ConfigError: ``vectors`` does not have one row per text.
    """
    n = len(texts)
    if n == 0:
        return []
    uf = _UnionFind(n)
    if vectors is not None:
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise ConfigError(f"expected {n} embedding rows, got shape {vectors.shape}")
        if thresholds.cos <= 1.0 and n > 1:
            sims = np.asarray(vectors, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
            # Float error can put an identical pair a hair under 1.0; compare with a tiny tolerance.
            rows, cols = np.nonzero(np.triu(sims >= thresholds.cos - 1e-6, k=1))
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                uf.union(i, j)
    for i, j in _ngram_pairs([shingles(t) for t in texts], thresholds.ngram):
        uf.union(i, j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[uf.find(i)].append(i)
    return sorted(groups.values(), key=lambda g: g[0])
