"""The retrieval index: rule vectors in Chroma, derived from the SQL system of record.

The index is never the truth: it can be dropped and rebuilt from SQL at any time (`RuleIndex.rebuild`).
We compute vectors ourselves (collections have no embedding function) so the index is reproducible.

Layout, under one base name (default ``rules``):

* a *manifest* collection named ``rules``, holding no vectors; its metadata is the index state:
  ``judge_schema`` (`INDEX_SCHEMA_VERSION`), ``judge_embedder`` / ``judge_dim`` (the model that made every
  vector), ``judge_generation``, ``judge_rulebook_version`` / ``judge_seq`` (what the index reflects);
* one cosine collection per layer and generation, ``rules-g<generation>-<layer>``, holding each rule's
  whole text (`Rule.embedding_text`); the rule id is the Chroma id, so upserting a new version of a rule
  replaces the old one. Its metadata ``passages`` says how many passages the rule has;
* one cosine collection of *passages* per layer and generation, ``rules-g<generation>-<layer>-p``: the
  paragraphs, bullet groups and examples of each rule (`judge.retrieval.passages`), ids ``<rule id>#<n>``
  (n from 1), metadata ``rule`` naming the rule. A rule scores by the best of its whole text and its
  passages, so a query can find what an entry says past the first ~256 word pieces the embedder reads.

Why a collection per layer rather than one collection with a ``layer`` filter: Chroma's local metadata
filters cost ~50-200 ms at 100k rules, an unfiltered HNSW query ~2 ms. Overruled rulings are dropped
after the search by over-fetching (they are few). Why generations: `RuleIndex.rebuild` fills a new
generation, then switches the manifest to it in one metadata write, so readers never see a half-built
index and a crash part-way leaves the old index whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from judge.errors import IndexStaleError, RetrievalIndexError
from judge.retrieval.index_layout import (
    _K_DIM,
    _K_EMBEDDER,
    _K_GEN,
    _K_SCHEMA,
    _K_SEQ,
    _K_VERSION,
    _server_errors,
)
from judge.retrieval.index_layout import INDEX_SCHEMA_VERSION as INDEX_SCHEMA_VERSION
from judge.retrieval.index_layout import WRITE_LOCK_NAME as WRITE_LOCK_NAME
from judge.retrieval.index_layout import DeferredClient as DeferredClient
from judge.retrieval.index_layout import make_client as make_client
from judge.retrieval.index_layout import make_ephemeral_client as make_ephemeral_client
from judge.retrieval.index_reads import PASSAGE_FANOUT as PASSAGE_FANOUT
from judge.retrieval.index_reads import Hit as Hit
from judge.retrieval.index_reads import IndexReads
from judge.retrieval.index_reads import LayerTable as LayerTable
from judge.retrieval.index_writes import VERIFY_NEIGHBOURS as VERIFY_NEIGHBOURS
from judge.retrieval.index_writes import WRITE_REPAIRS as WRITE_REPAIRS
from judge.retrieval.index_writes import IndexWrites

__all__ = ["INDEX_SCHEMA_VERSION", "Hit", "IndexState", "LayerTable", "RuleIndex", "make_client",
           "make_ephemeral_client"]

#: Seconds a writer waits for another process writing the same local index before giving up.
WRITE_LOCK_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class IndexState:
    """What the index reflects. Every field is None for an index that was never created or built."""

    rulebook_version: str | None
    seq: int | None
    embedder: str | None
    dim: int | None
    schema_version: int | None
    count: int

    @property
    def built(self) -> bool:
        """True once a rulebook version has been marked."""
        return self.rulebook_version is not None


class RuleIndex(IndexReads, IndexWrites):
    """Rules embedded into Chroma: a manifest plus one collection per layer (see the module docstring).

    Args:
        client: a Chroma API client (`make_client`, `make_ephemeral_client`).
        embedder: embeds rule texts and queries; the index remembers its ``name`` and ``dim``.
        collection: base name of the collections (3-50 characters of ``[a-zA-Z0-9._-]``).

    Not safe for two concurrent `rebuild` calls on the same index; reads during a rebuild are fine.
    With a Chroma server, every public method raises `RetrievalIndexError` when the server stops answering.
    """


    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the index for this writer alone, across processes, for the ``with`` block (re-entrant).

        A local Chroma directory is not safe for two processes writing at once (one reads a vector index
        the other is changing: "Error finding id"), so writers take a file lock in the directory, and a
        reader that must see every earlier write (a new ruling's conflict check) reads under it too. A
        Chroma server orders its own writes and an in-memory index has one process: nothing is held there.

        Raises:
            IndexError_: another process held the lock for more than `WRITE_LOCK_TIMEOUT_S` seconds.
        """
        if self._lock is None:
            yield
            return
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=WRITE_LOCK_TIMEOUT_S)
        except Timeout:
            raise RetrievalIndexError(f"another process has been writing the retrieval index for over "
                                      f"{WRITE_LOCK_TIMEOUT_S:.0f} s (lock {self._lock.lock_file}); try again "
                                      "when it is done") from None
        try:
            self._cached = None  # another process may have switched generations while we waited
            yield
        finally:
            self._lock.release()

    # -- state -----------------------------------------------------------------------------------------

    @_server_errors
    def state(self) -> IndexState:
        """What the index reflects, read from the manifest."""
        layout = self._layout(create=False, refresh=True)
        if layout is None:
            return IndexState(None, None, None, None, None, 0)
        meta = layout.meta
        return IndexState(meta.get(_K_VERSION), meta.get(_K_SEQ), meta.get(_K_EMBEDDER), meta.get(_K_DIM),
                          meta.get(_K_SCHEMA), count=sum(col.count() for col in layout.layers.values()))

    @_server_errors
    def check_model(self) -> None:
        """Refuse an index built with another embedding model or dimension than the configured one, before
        anything is written for it (an index never built, or of another layout, passes: it is built anew).

        Raises:
            IndexMismatchError: built with another embedding model or dimension.
        """
        layout = self._layout(create=False, refresh=True)
        if layout is not None and layout.meta.get(_K_SCHEMA) == INDEX_SCHEMA_VERSION:
            self._check_embedder(layout.meta)

    @_server_errors
    def check(self, rulebook_version: str) -> IndexState:
        """Make sure the index can serve queries for ``rulebook_version``; return its state.

        Raises:
            IndexMismatchError: built with another embedding model or dimension.
            IndexSchemaError: built by a judge with another index layout.
            IndexStaleError: built from another rulebook version, or never built (``index_version`` None).
        """
        state = self.state()
        if self._cached is None:
            raise IndexStaleError(None, rulebook_version)
        self._check_embedder(self._cached.meta)
        if state.rulebook_version != rulebook_version:
            raise IndexStaleError(state.rulebook_version, rulebook_version)
        return state

    @_server_errors
    def mark(self, rulebook_version: str, seq: int) -> None:
        """Record that the index now reflects ``rulebook_version`` (after change ``seq``)."""
        layout = self._writable()
        # modify() replaces the whole metadata, so write the full stamp every time.
        layout.manifest.modify(metadata=self._stamp(layout.meta[_K_GEN], rulebook_version, seq))
        self._cached = None
