"""The write path of the retrieval index: embed rules in batches, write them, and check each write by a search.

Every write is followed by a search for each written vector (`_unreachable`); records the search cannot
find are written again (`WRITE_REPAIRS`). `IndexWrites` is the writing half of
`judge.retrieval.index.RuleIndex`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from judge._iter import batched
from judge.errors import IndexMismatchError
from judge.retrieval.index_layout import _K_GEN, IndexLayout, _layer_of, _server_errors, passage_id
from judge.retrieval.passages import passages as rule_passages
from judge.rules.model import Layer, Rule

__all__ = ["VERIFY_NEIGHBOURS", "WRITE_REPAIRS", "IndexWrites"]

#: After a write, each written vector is searched for and must be among its own nearest this many.
VERIFY_NEIGHBOURS = 4
#: How often rules that a search cannot find right after a write are written again before giving up.
WRITE_REPAIRS = 2

# Records keep the index's logger name, which logging configurations and the benchmarks listen on.
log = logging.getLogger("judge.retrieval.index")


def _unreachable(col: Any, ids: list[str], vectors: np.ndarray) -> set[str]:
    """The ``ids`` that a search with their own vector does not return (each should be its own nearest).

    Only a rule with more than `VERIFY_NEIGHBOURS` exact duplicates could hide behind them; those are
    counted as found when the search returns nothing but vectors at distance ~0.
    """
    n = min(VERIFY_NEIGHBOURS, col.count())
    if n == 0:
        return set(ids)
    found = col.query(query_embeddings=vectors, n_results=n, include=["distances"])
    lost = set()
    for rule_id, got, dist in zip(ids, found["ids"], found["distances"], strict=True):
        if rule_id not in got and not (len(got) == n and max(dist) < 1e-6):
            lost.add(rule_id)
    return lost


@dataclass(frozen=True)
class _Batch:
    """One batch of rules to write: whole texts and vectors, and their passages with the rule each is of."""

    rules: list[Rule]
    vectors: np.ndarray
    pvectors: np.ndarray
    powners: list[int]
    pnumbers: list[int]


def _upsert_rows(col: Any, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
    # Vectors and metadata only: the texts live in the SQL store, and a document would be stored again by
    # the index with a full-text index of its own (about half of an index's size, and of its write time).
    col.upsert(ids=ids, embeddings=vectors, metadatas=metadatas)


def _metadata(rule: Rule, n_passages: int | None = None) -> dict[str, str | int | bool]:
    authority = rule.authority.value if rule.authority is not None else ""
    meta: dict[str, str | int | bool] = {"layer": rule.layer.value, "status": rule.status.value,
                                         "authority": authority, "version": rule.version,
                                         "process": rule.process_rule}
    if n_passages is not None:
        meta["passages"] = n_passages
    return meta


def _write_verified(col: Any, layer: Layer, ids: list[str], vectors: np.ndarray,
                    metadatas: list[dict[str, Any]]) -> None:
    """Upsert records, then check each is found by a search with its own vector, writing lost ones again."""
    _upsert_rows(col, ids, vectors, metadatas)
    for attempt in range(1, WRITE_REPAIRS + 2):
        lost = _unreachable(col, ids, vectors)
        if not lost:
            break
        if attempt > WRITE_REPAIRS:  # stored all the same: a new process or `judge index rebuild` finds them
            log.error("index: %d record(s) written to %s are still not found by search in this process "
                      "(e.g. %s); `judge index rebuild` rewrites the index", len(lost), layer.value, sorted(lost)[0])
            break
        # chromadb 1.5.9 (embedded) now and then stores a record (get() returns it) that its in-process
        # vector search never returns, though a new process finds it; writing it again repairs that.
        log.warning("index: %d of %d record(s) written to %s are not found by search; writing them "
                    "again (attempt %d)", len(lost), len(ids), layer.value, attempt)
        again = [i for i, record_id in enumerate(ids) if record_id in lost]
        _upsert_rows(col, [ids[i] for i in again], vectors[again], [metadatas[i] for i in again])


class IndexWrites(IndexLayout):
    """Writes to the index: `upsert`, `delete` and `rebuild` (into a new generation)."""

    @_server_errors
    def upsert(self, rules: Iterable[Rule], *, batch_size: int = 512) -> int:
        """Embed and store ``rules`` batch by batch, replacing any indexed version; return how many.

        Raises:
            IndexMismatchError: the index was built with another embedder.
        """
        layout = self._writable()
        return self._upsert_into(layout.layers, layout.passages, rules, batch_size=batch_size)

    def _embed_batch(self, rules: list[Rule]) -> _Batch:
        """Whole texts and passages of ``rules``, embedded in one call."""
        texts = [rule.embedding_text() for rule in rules]
        ptexts: list[str] = []
        owners: list[int] = []
        numbers: list[int] = []
        for row, rule in enumerate(rules):
            for number, text in enumerate(rule_passages(rule), 1):
                ptexts.append(text)
                owners.append(row)
                numbers.append(number)
        vectors = self.embedder.encode([*texts, *ptexts])
        if vectors.shape != (len(texts) + len(ptexts), self.embedder.dim):
            raise IndexMismatchError(f"vectors of shape {vectors.shape}", self.embedder.name)
        return _Batch(rules, vectors[: len(texts)], vectors[len(texts):], owners, numbers)

    def _upsert_into(self, cols: dict[Layer, Any], pcols: dict[Layer, Any], rules: Iterable[Rule], *,
                     batch_size: int) -> int:
        # Writing batch i overlaps embedding batch i+1: at most two batches are held in memory.
        size = max(1, min(batch_size, self._client.get_max_batch_size() // 8))
        total = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-index") as pool:
            pending: Future[None] | None = None
            for batch in batched(rules, size):
                latest = list({rule.id: rule for rule in batch}.values())  # Chroma rejects duplicate ids
                embedded = self._embed_batch(latest)
                if pending is not None:
                    pending.result()
                pending = pool.submit(self._write, cols, pcols, embedded)
                total += len(latest)
            if pending is not None:
                pending.result()
        return total

    def _write(self, cols: dict[Layer, Any], pcols: dict[Layer, Any], batch: _Batch) -> None:
        rules = batch.rules
        counts = [0] * len(rules)
        for owner in batch.powners:
            counts[owner] += 1
        for layer in Layer:
            rows = [i for i, rule in enumerate(rules) if rule.layer is layer]
            if not rows:
                continue
            ids = [rules[i].id for i in rows]
            self._drop_surplus_passages(cols[layer], pcols[layer], ids, [counts[i] for i in rows])
            _write_verified(cols[layer], layer, ids, batch.vectors[rows],
                            [_metadata(rules[i], counts[i]) for i in rows])
            prows = [j for j, owner in enumerate(batch.powners) if rules[owner].layer is layer]
            if prows:
                _write_verified(pcols[layer], layer,
                                [passage_id(rules[batch.powners[j]].id, batch.pnumbers[j]) for j in prows],
                                batch.pvectors[prows],
                                [{"rule": rules[batch.powners[j]].id, "status": rules[batch.powners[j]].status.value,
                                  "process": rules[batch.powners[j]].process_rule} for j in prows])

    @staticmethod
    def _drop_surplus_passages(col: Any, pcol: Any, ids: list[str], counts: list[int]) -> None:
        """Delete the passages an earlier version of a rule had beyond the ones it has now."""
        old = col.get(ids=ids, include=["metadatas"])
        before = {rule_id: int((meta or {}).get("passages", 0)) for rule_id, meta in
                  zip(old["ids"], old["metadatas"], strict=True)}
        surplus = [passage_id(rule_id, number) for rule_id, now in zip(ids, counts, strict=True)
                   for number in range(now + 1, before.get(rule_id, 0) + 1)]
        if surplus:
            pcol.delete(ids=surplus)

    @_server_errors
    def delete(self, ids: Iterable[str]) -> None:
        """Remove rules from the index (unknown ids are ignored)."""
        by_layer: dict[Layer, list[str]] = {}
        for rule_id in dict.fromkeys(ids):
            layer = _layer_of(rule_id)
            if layer is not None:
                by_layer.setdefault(layer, []).append(rule_id)
        step = self._client.get_max_batch_size() // 8
        for layer, layer_ids in by_layer.items():
            for start in range(0, len(layer_ids), step):
                chunk = layer_ids[start : start + step]
                got = self._call(layer, "get", checked=False, ids=chunk, include=["metadatas"])
                if got is None:
                    return
                passage_ids = [passage_id(rule_id, n)
                               for rule_id, meta in zip(got["ids"], got["metadatas"], strict=True)
                               for n in range(1, int((meta or {}).get("passages", 0)) + 1)]
                if passage_ids:
                    self._call(layer, "delete", checked=False, passages=True, ids=passage_ids)
                self._call(layer, "delete", checked=False, ids=chunk)

    @_server_errors
    def rebuild(self, rules: Iterable[Rule], rulebook_version: str, seq: int, *, batch_size: int = 512) -> int:
        """Re-embed every rule with the current embedder into a new generation, then switch to it.

        Returns the number of rules indexed. Old generations are deleted after the switch.
        """
        from chromadb.errors import NotFoundError

        try:  # read the manifest directly: rebuild must also repair an incomplete or foreign index
            manifest = self._client.get_collection(self.collection_name, embedding_function=None)
        except (NotFoundError, ValueError):
            manifest = None
        old_gen = (manifest.metadata or {}).get(_K_GEN) if manifest is not None else None
        generation = old_gen + 1 if isinstance(old_gen, int) else 1
        self._drop_generations(keep=None, only=generation)  # left over from a crashed rebuild
        total = self._upsert_into(*self._create_layers(generation), rules, batch_size=batch_size)
        stamp = self._stamp(generation, rulebook_version, seq)
        if manifest is None:
            self._client.get_or_create_collection(self.collection_name, embedding_function=None, metadata=stamp)
        else:
            manifest.modify(metadata=stamp)
        self._drop_generations(keep=generation)
        self._cached = None
        return total

    def _drop_generations(self, *, keep: int | None, only: int | None = None) -> None:
        pattern = re.compile(rf"^{re.escape(self.collection_name)}-g(\d+)-(?:constitution|spec|ruling)(?:-p)?$")
        for col in self._client.list_collections():
            name = col if isinstance(col, str) else col.name
            match = pattern.match(name)
            if match and int(match[1]) != keep and (only is None or int(match[1]) == only):
                self._client.delete_collection(name)
