"""The query path of the retrieval index: whole texts and passages searched in Chroma, or a layer in memory.

`LayerTable` holds one layer's vectors for exact scoring in memory; `IndexReads` is the reading half of
`judge.retrieval.index.RuleIndex`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from judge.errors import IndexMismatchError
from judge.retrieval.index_layout import IndexLayout, _layer_of, _server_errors, passage_owner
from judge.rules.model import Layer, RuleStatus

__all__ = ["PASSAGE_FANOUT", "Binding", "Hit", "IndexReads", "LayerTable"]

#: A search of the passage collection fetches this many passages per rule wanted (several may be one rule's).
PASSAGE_FANOUT = 3

#: Which of the given rule ids bind (e.g. `judge.store.RulebookStore.binding`): asked of the system of record
#: instead of reading each hit's status from the index's metadata, the slower part of an index query.
Binding = Callable[[Collection[str]], Collection[str]]

class Hit(NamedTuple):
    """One retrieved rule: cosine similarity ``score`` (higher is closer) and Chroma's cosine ``distance``."""

    rule_id: str
    score: float
    distance: float


@dataclass(frozen=True)
class LayerTable:
    """One layer held in memory: ids (sorted), their whole-text vectors (one row each), the flags retrieval
    filters on, and the passage vectors with the row of the rule each belongs to (``owners``)."""

    ids: list[str]
    matrix: np.ndarray
    active: np.ndarray
    process: np.ndarray
    passages: np.ndarray | None = None
    owners: np.ndarray | None = None

    def scores(self, vector: np.ndarray, *, use_passages: bool = True) -> np.ndarray:
        """Each rule's cosine to ``vector`` (vectors are unit length): the best of its whole text and, with
        ``use_passages``, its passages."""
        query = np.asarray(vector, dtype=np.float32)
        scores = self.matrix @ query
        if use_passages and self.passages is not None and self.owners is not None and len(self.owners):
            np.maximum.at(scores, self.owners, self.passages @ query)
        return scores

    def search(self, vector: np.ndarray, k: int, *, exclude: Collection[str] = (), active_only: bool = True,
               process_only: bool = False, use_passages: bool = True) -> list[Hit]:
        """The ``k`` rules closest to ``vector`` (`scores`), best first; exact, so the same rules an index
        search returns at its best, and ties broken by id."""
        if k <= 0 or not self.ids:
            return []
        scores = self.scores(vector, use_passages=use_passages)
        keep = np.ones(len(self.ids), dtype=bool)
        if active_only:
            keep &= self.active
        if process_only:
            keep &= self.process
        if exclude:
            keep &= np.asarray([rule_id not in exclude for rule_id in self.ids], dtype=bool)
        rows = np.flatnonzero(keep)
        ranked = rows[np.argsort(-scores[rows], kind="stable")[:k]]  # rows are in id order: ties go by id
        return [Hit(self.ids[row], float(scores[row]), 1.0 - float(scores[row])) for row in ranked]


class IndexReads(IndexLayout):
    """Reads from the index: counts, metadata, and the ``k`` rules nearest a text or vector."""

    @_server_errors
    def count(self, layer: Layer | None = None) -> int:
        """Number of indexed rules, optionally in one layer."""
        layers = list(Layer) if layer is None else [Layer(layer)]
        return sum(self._call(each, "count", checked=False) or 0 for each in layers)

    @_server_errors
    def get_metadata(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored metadata (layer, status, authority, version, process) of the given indexed rules."""
        found: dict[str, dict[str, Any]] = {}
        for layer in Layer:
            layer_ids = [i for i in dict.fromkeys(ids) if _layer_of(i) is layer]
            if layer_ids:
                got = self._call(layer, "get", checked=False, ids=layer_ids, include=["metadatas"])
                if got is not None:
                    found.update(zip(got["ids"], got["metadatas"], strict=True))
        return found

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query text (e.g. ``pair.query_text()``) for `query_vector`."""
        vector: np.ndarray = self.embedder.encode([text])[0]
        return vector

    def query(self, text: str, *, layer: Layer | None, k: int, exclude: Collection[str] = (),
              active_only: bool = True, where_extra: dict[str, Any] | None = None,
              use_passages: bool = True) -> list[Hit]:
        """The ``k`` rules of ``layer`` closest to ``text``, best first. See `query_vector`."""
        return self.query_vector(self.embed_query(text), layer=layer, k=k, exclude=exclude,
                                 active_only=active_only, where_extra=where_extra, use_passages=use_passages)

    @_server_errors
    def layer_table(self, layer: Layer) -> LayerTable:
        """Every id and vector of one layer with the flags retrieval filters on, for exact scoring in memory.

        Returns an empty table for an index never built.
        """
        result = self._call(layer, "get", checked=True, include=["embeddings", "metadatas"])
        if result is None or not result["ids"]:
            return LayerTable([], np.zeros((0, self.embedder.dim), dtype=np.float32), np.zeros(0, dtype=bool),
                              np.zeros(0, dtype=bool))
        order = sorted(range(len(result["ids"])), key=lambda i: result["ids"][i])
        metas = [result["metadatas"][i] for i in order]
        ids = [result["ids"][i] for i in order]
        row_of = {rule_id: row for row, rule_id in enumerate(ids)}
        found = self._call(layer, "get", checked=True, passages=True, include=["embeddings", "metadatas"])
        keep = [i for i, meta in enumerate(found["metadatas"]) if (meta or {}).get("rule") in row_of]
        passages = (np.asarray(found["embeddings"], dtype=np.float32)[keep] if keep
                    else np.zeros((0, self.embedder.dim), dtype=np.float32))
        owners = np.asarray([row_of[found["metadatas"][i]["rule"]] for i in keep], dtype=np.int64)
        return LayerTable(ids, np.asarray(result["embeddings"], dtype=np.float32)[order],
                          np.asarray([m.get("status") == RuleStatus.ACTIVE for m in metas], dtype=bool),
                          np.asarray([bool(m.get("process")) for m in metas], dtype=bool), passages, owners)

    @_server_errors
    def query_vector(self, vector: Sequence[float] | np.ndarray, *, layer: Layer | None, k: int,
                     exclude: Collection[str] = (), active_only: bool = True,
                     where_extra: dict[str, Any] | None = None, use_passages: bool = True,
                     binding: Binding | None = None) -> list[Hit]:
        """The ``k`` rules closest to a precomputed query vector, best first.

        Args:
            vector: a query vector from this index's embedder (`embed_query`).
            layer: only rules of this layer; None searches every layer and merges by score.
            k: how many hits to return at most (fewer only when fewer rules qualify).
            exclude: rule ids never to return (e.g. a ruling being re-judged); still returns ``k`` hits.
            active_only: skip overruled and superseded rulings.
            where_extra: a Chroma ``where`` clause on the metadata (e.g. ``{"process": True}``); note that
                Chroma metadata filters are slow on large indexes.
            use_passages: score a rule by the best of its whole text and its passages (the default), not by
                its whole text alone.
            binding: ask it which rulings bind instead of reading their status from the index (see
                `query_vectors`).

        The facade embeds a pair once and calls this per layer. An index that was never created returns
        no hits: call `check` first to tell "nothing relevant" from "not built".
        """
        if k <= 0:
            return []
        query = self._query_matrix(vector)
        layers = list(Layer) if layer is None else [Layer(layer)]
        hits = [hit for each in layers
                for hit in self._query_layer(query, each, k, set(exclude), active_only, where_extra, use_passages,
                                             binding)[0]]
        return sorted(hits, key=lambda hit: hit.distance)[:k] if len(layers) > 1 else hits

    @_server_errors
    def query_vectors(self, vectors: Sequence[Sequence[float]] | np.ndarray, *, layer: Layer, k: int,
                      exclude: Collection[str] = (), active_only: bool = True,
                      where_extra: dict[str, Any] | None = None, use_passages: bool = True,
                      binding: Binding | None = None) -> list[list[Hit]]:
        """`query_vector` for several query vectors at once, against one layer: one list of hits per vector,
        each exactly what `query_vector` returns for that vector alone.

        One index query per collection answers every vector (Chroma takes a batch of query embeddings), so
        a pair searched with several texts costs one round trip per collection rather than one per text.
        With ``binding``, whether a ruling binds is asked of it (one call per collection searched) rather
        than read from the index's metadata, and no metadata is read: the same hits when the index is in
        step with the store ``binding`` reads, in about half the time (`python benchmarks/scale.py`).
        """
        if len(vectors) == 0:
            return []
        query = self._query_matrix(vectors)
        if k <= 0:
            return [[] for _ in range(len(query))]
        return self._query_layer(query, Layer(layer), k, set(exclude), active_only, where_extra, use_passages,
                                 binding)

    def _query_matrix(self, vectors: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Query vectors as a float32 matrix, one row each, checked against the embedder's dimension."""
        query = np.asarray(vectors, dtype=np.float32)
        query = query.reshape(1, -1) if query.ndim == 1 else query
        if query.shape[1] != self.embedder.dim:
            raise IndexMismatchError(f"a query vector of dim {query.shape[1]}",
                                     f"{self.embedder.name} (dim {self.embedder.dim})")
        return query

    def _query_layer(self, queries: np.ndarray, layer: Layer, k: int, excluded: set[str], active_only: bool,
                     where_extra: dict[str, Any] | None, use_passages: bool,
                     binding: Binding | None) -> list[list[Hit]]:
        """The ``k`` best rules of ``layer`` for each row of ``queries``: by whole text, and with
        ``use_passages`` by the best of the whole text and the rule's passages. Only rulings can be inactive,
        so only they are filtered by status (from the metadata, or from ``binding``)."""
        wholes = self._query_whole(queries, layer, k, excluded, active_only, where_extra, binding)
        if not use_passages:
            return wholes
        by_metadata = binding is None
        result = self._call(layer, "query", checked=True, passages=True, query_embeddings=queries,
                            n_results=PASSAGE_FANOUT * (k + len(excluded)), where=where_extra or None,
                            include=["distances", "metadatas"] if by_metadata else ["distances"])
        inactive: Collection[str] = ()
        if result is not None and binding is not None and active_only and layer is Layer.RULING:
            owners = {passage_owner(pid) for ids in result["ids"] for pid in ids}
            inactive = owners - set(binding(owners))
        out = []
        for row, whole in enumerate(wholes):
            best = {hit.rule_id: hit.score for hit in whole}
            if result is not None:
                metas = result["metadatas"][row] if by_metadata else [None] * len(result["ids"][row])
                for pid, dist, meta in zip(result["ids"][row], result["distances"][row], metas, strict=True):
                    if by_metadata:
                        rule_id = (meta or {}).get("rule")
                        if rule_id is None or (active_only and meta.get("status") != RuleStatus.ACTIVE):
                            continue
                    else:
                        rule_id = passage_owner(pid)
                        if rule_id in inactive:
                            continue
                    if rule_id in excluded:
                        continue
                    best[rule_id] = max(best.get(rule_id, -1.0), 1.0 - float(dist))
            ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
            out.append([Hit(rule_id, score, 1.0 - score) for rule_id, score in ranked])
        return out

    def _query_whole(self, queries: np.ndarray, layer: Layer, k: int, excluded: set[str], active_only: bool,
                     where_extra: dict[str, Any] | None, binding: Binding | None) -> list[list[Hit]]:
        # Only rulings can be inactive; they are dropped after the search, fetching more until k remain. A
        # query that needs more is asked again alone with the larger fetch, as if it had been asked alone.
        post_filter = active_only and layer is Layer.RULING
        by_metadata = post_filter and binding is None
        fetch = k + len(excluded) + (max(4, k // 2) if post_filter else 0)
        out: list[list[Hit]] = [[] for _ in range(len(queries))]
        todo = list(range(len(queries)))
        while todo:
            result = self._call(layer, "query", checked=True, query_embeddings=queries[todo], n_results=fetch,
                                where=where_extra or None,
                                include=["distances", "metadatas"] if by_metadata else ["distances"])
            if result is None:
                return out
            inactive: Collection[str] = ()
            if post_filter and binding is not None:
                found = {rule_id for ids in result["ids"] for rule_id in ids}
                inactive = found - set(binding(found))
            again = []
            for j, row in enumerate(todo):
                ids, distances = result["ids"][j], result["distances"][j]
                metas = result["metadatas"][j] if by_metadata else [None] * len(ids)
                hits = [Hit(rule_id, 1.0 - float(dist), float(dist))
                        for rule_id, dist, meta in zip(ids, distances, metas, strict=True)
                        if rule_id not in excluded and rule_id not in inactive
                        and (meta is None or meta.get("status") == RuleStatus.ACTIVE)]
                if len(hits) >= k or len(ids) < fetch:
                    out[row] = hits[:k]
                else:
                    again.append(row)
            todo = again
            fetch *= 2
        return out
