"""`SyncedIndex`: a rulebook's derived index kept in step with the SQL store, and the caches a batch shares.

It brings the index up to date from the change log (`sync_index`), rebuilds it (`rebuild_index`), checks it
against the rulebook version before a search (`_fresh_index`), and remembers recent embeddings and the rules
read at one rulebook version. `judge.retrieval.retriever.Retriever` searches through it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from judge._iter import batched
from judge.errors import (
    IndexMismatchError,
    IndexSchemaError,
    IndexStaleError,
    RetrievalIndexError,
    RulebookError,
)
from judge.retrieval.case_exemplars import exemplar_fingerprint, read_exemplars
from judge.retrieval.exemplars import Exemplars
from judge.retrieval.fusion import RetrievalConfig
from judge.retrieval.index import LayerTable, RuleIndex
from judge.retrieval.index_reads import Binding
from judge.rules.model import EMPTY_RULEBOOK_VERSION, OVERVIEW_TAG, Layer, Rule
from judge.store import RulebookStore
from judge.store.lexical import TermCounts

__all__ = ["EMBED_MEMO", "RULE_MEMO", "SyncedIndex", "VersionMemo"]

# Records keep the retriever's logger name, which logging configurations listen on.
log = logging.getLogger("judge.retrieval.retriever")

#: Embeddings remembered per Retriever (queries and the cases of nearby rulings), least recently used dropped.
EMBED_MEMO = 2048
#: Rules remembered per rulebook version by `Retriever.retrieve` (cleared when the version moves or it fills).
RULE_MEMO = 20_000


@dataclass
class VersionMemo:
    """What a retriever read at one rulebook version; a rule's contents, whether a ruling binds, the overview
    entries and the small layers cannot change without the version moving, so all of it is dropped together
    when it does (and after an index rebuild).

    Attributes:
        version: the rulebook version it was read at.
        rules: rules read by id (cleared when it passes `RULE_MEMO`).
        binding: whether each ruling a search met binds (cleared when it passes five times `RULE_MEMO`).
        term_counts: words' document counts in the full-text index.
        overview: the binding overview and grouping entries (None until read).
        tables: small layers held in memory (None: the layer is searched in the index).
    """

    version: str
    rules: dict[str, Rule] = field(default_factory=dict)
    binding: dict[str, bool] = field(default_factory=dict)
    term_counts: TermCounts = field(default_factory=TermCounts)
    overview: frozenset[str] | None = None
    tables: dict[Layer, LayerTable | None] = field(default_factory=dict)


class SyncedIndex:
    """The SQL store a rulebook reads and the derived index kept in step with it (see `Retriever`).

    Args:
        store: the SQL system of record.
        index: the derived retrieval index, or None for a rulebook that is never retrieved from.
        auto_sync: bring a stale (but built) index up to date before retrieving instead of raising.
        config: how `Retriever.retrieve` searches (default: passages, dense + lexical, split queries, fused).
    """

    def __init__(self, store: RulebookStore, index: RuleIndex | None = None, *, auto_sync: bool = True,
                 config: RetrievalConfig | None = None) -> None:
        self.store = store
        self.index = index
        self.auto_sync = auto_sync
        self.config = config or RetrievalConfig()
        # The rulebook version the index was last verified against, and its binding constitution size:
        # re-checked only when the version in SQL moves (any writer, any process, changes it).
        self._verified: tuple[str, int] | None = None
        # Recent embeddings by text: a pair's query is embedded once for retrieval and the precedent check,
        # and the rulings nearest many pairs of a batch have their cases embedded once.
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        # What was read at the current rulebook version (see `VersionMemo`).
        self._memo = VersionMemo("")
        # The accepted test cases as exemplars, read again when their fingerprint in SQL moves.
        self._exemplars: Exemplars | None = None

    def get(self, rule_id: str, version: int | None = None) -> Rule:
        """A rule's latest (or given) version, from the store."""
        return self.store.get(rule_id, version)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` with the index's embedder, answering recently embedded ones from memory."""
        return self._embed_memo(self._require_index(), texts)

    def _require_index(self) -> RuleIndex:
        if self.index is None:
            raise RulebookError("this Rulebook was opened without a retrieval index")
        return self.index

    def sync_index(self, *, page_size: int = 1000) -> int:
        """Apply every change the index has not seen yet; returns how many rules were re-indexed.

        Streams the change log a page at a time (memory bounded by ``page_size``, whatever the rulebook's
        size); a rule changed in two pages is re-indexed twice and counted twice.
        """
        if self.index is None:
            return 0
        with self.index.writing():  # one writer at a time on a local index, across processes
            return self._sync_index(self.index, page_size)

    def check_index_model(self) -> None:
        """Refuse (`IndexMismatchError`) to write rules the index could not take: it was built with another
        embedding model than the configured one. Writers call it before the SQL write, so a refused write
        stores nothing."""
        if self.index is None:
            return
        try:
            self.index.check_model()
        except IndexMismatchError:
            raise
        except RetrievalIndexError:  # an index that cannot be reached now catches up later: SQL is the record
            log.debug("index not reachable before a write; it is synced when it is back", exc_info=True)

    def _sync_index(self, index: RuleIndex, page_size: int) -> int:
        index.check_model()  # an index a change cannot reach is not "in sync"
        state = index.state()
        head = self.store.head()
        if head is None:
            return 0
        if state.seq is not None and state.seq >= head.seq:
            return 0
        done = 0
        for changes in batched(self.store.changes_since(state.seq or 0, batch_size=page_size), page_size):
            ids = sorted({c.rule_id for c in changes})
            done += index.upsert(self.store.get_many(ids).values())
        index.mark(head.rulebook_version, head.seq)
        log.info("index synced: %d rule(s) re-indexed up to %s", done, head.rulebook_version)
        return done

    def rebuild_index(self) -> int:
        """Drop the index and rebuild it (and the lexical index) from SQL; returns the number of rules indexed."""
        index = self._require_index()
        with index.writing():
            head = self.store.head()
            version = head.rulebook_version if head else self.store.version
            index.rebuild(self.store.iter_current(), version, head.seq if head else 0)
        self.store.rebuild_lexical()
        self._memo = VersionMemo("")
        self._verified = None
        return index.count()

    def _fresh_index(self) -> RuleIndex:
        """The index, checked (or synced) against the current rulebook version."""
        index = self._require_index()
        version = self.store.version
        if self._verified is None or self._verified[0] != version:
            try:
                index.check(version)
            except IndexSchemaError:
                # Built by a judge with another layout (e.g. before passages): rebuilt whole, never mixed.
                if not self.auto_sync:
                    raise
                log.warning("the retrieval index has an older layout; rebuilding it from the rulebook")
                self.rebuild_index()
            except IndexStaleError:
                never_built = index.state().seq is None
                if never_built and version == EMPTY_RULEBOOK_VERSION:
                    self.rebuild_index()  # nothing to index: an empty index is current (judging with no rules)
                elif not self.auto_sync or never_built:
                    raise
                else:
                    self.sync_index()
            self._verified = (version, self.store.count(Layer.CONSTITUTION, active_only=True))
        return index

    def _case_exemplars(self, index: RuleIndex) -> Exemplars:
        """The accepted test cases with their vectors under the index's embedder, read from SQL once and again
        only when a case is added, reviewed or embedded (one fingerprint statement a call)."""
        embedder = index.embedder
        cached = self._exemplars
        if cached is not None and cached.fingerprint == exemplar_fingerprint(self.store.engine, embedder.name):
            return cached
        self._exemplars = read_exemplars(self.store.engine, embedder.name, embedder.dim)
        log.info("%d accepted test case(s) read as retrieval exemplars", len(self._exemplars))
        return self._exemplars

    def _at(self, version: str) -> VersionMemo:
        """The memo of what was read at ``version``, new when the version moved."""
        if self._memo.version != version:
            self._memo = VersionMemo(version)
        return self._memo

    def _rules_at(self, version: str, ids: Sequence[str]) -> dict[str, Rule]:
        """`RulebookStore.get_many`, remembering what was read at ``version`` (every retrieval fetches the
        same constitution; a batch keeps meeting the same entries)."""
        memo = self._at(version)
        if len(memo.rules) > RULE_MEMO:
            memo.rules = {}
        seen = memo.rules
        missing = [rule_id for rule_id in ids if rule_id not in seen]
        if missing:
            seen.update(self.store.get_many(missing))
        return {rule_id: seen[rule_id] for rule_id in ids if rule_id in seen}

    def _binding_at(self, version: str) -> Binding:
        """`RulebookStore.binding`, remembering at ``version`` what it answered (a batch meets the same rulings
        again; only rulings can stop binding, and only by a change, which moves the version)."""
        memo = self._at(version)
        if len(memo.binding) > RULE_MEMO * 5:
            memo.binding = {}
        seen = memo.binding

        def binding(ids: Collection[str]) -> set[str]:
            missing = [rule_id for rule_id in ids if rule_id not in seen]
            if missing:
                bound = self.store.binding(missing)
                seen.update((rule_id, rule_id in bound) for rule_id in missing)
            return {rule_id for rule_id in ids if seen[rule_id]}

        return binding

    def _overview_at(self, version: str) -> frozenset[str]:
        """The binding overview and grouping entries at ``version`` (`Rule.overview`), read once per version."""
        memo = self._at(version)
        if memo.overview is None:
            memo.overview = frozenset(self.store.tagged(OVERVIEW_TAG, (Layer.CONSTITUTION, Layer.SPEC)))
        return memo.overview

    def _term_counts_at(self, version: str) -> TermCounts:
        """The words' full-text document counts read so far at ``version``."""
        return self._at(version).term_counts

    def _query_vector(self, index: RuleIndex, text: str) -> np.ndarray:
        vector: np.ndarray = self._embed_memo(index, [text])[0]
        return vector

    def _embed_memo(self, index: RuleIndex, texts: list[str]) -> np.ndarray:
        """Embed ``texts``, answering the recently embedded ones from the memo (exact text match)."""
        memo = self._vectors
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            for text, vector in zip(missing, index.embedder.encode(missing), strict=True):
                memo[text] = vector
        out = np.stack([memo[t] for t in texts])
        for text in texts:
            memo.move_to_end(text)
        while len(memo) > EMBED_MEMO:
            memo.popitem(last=False)
        return out
