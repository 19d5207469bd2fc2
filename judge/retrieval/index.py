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
import functools
import logging
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar
from urllib.parse import urlsplit

import numpy as np

from judge._iter import batched
from judge.errors import ConfigError, IndexMismatchError, IndexSchemaError, IndexStaleError, RetrievalIndexError
from judge.retrieval.embedder import Embedder
from judge.retrieval.passages import passages as rule_passages
from judge.rules.model import Layer, Rule, RuleStatus
from judge.settings import Settings

__all__ = ["INDEX_SCHEMA_VERSION", "Hit", "IndexState", "LayerTable", "RuleIndex", "make_client",
           "make_ephemeral_client"]

#: Bump when the layout of ids, metadata or documents changes; older indexes must then be rebuilt
#: (`judge.rulebook.Rulebook` rebuilds one it finds, rather than mixing layouts). 2: passages.
INDEX_SCHEMA_VERSION = 2
#: Documents are kept for inspection only (retrieval uses the vectors), so long ones are truncated.
MAX_DOCUMENT_CHARS = 2000
#: After a write, each written vector is searched for and must be among its own nearest this many.
VERIFY_NEIGHBOURS = 4
#: How often rules that a search cannot find right after a write are written again before giving up.
WRITE_REPAIRS = 2
#: A search of the passage collection fetches this many passages per rule wanted (several may be one rule's).
PASSAGE_FANOUT = 3
#: Seconds a writer waits for another process writing the same local index before giving up.
WRITE_LOCK_TIMEOUT_S = 600.0
#: The lock file in a local index directory (see `RuleIndex.writing`).
WRITE_LOCK_NAME = "judge-write.lock"

_K_SCHEMA = "judge_schema"
_K_EMBEDDER = "judge_embedder"
_K_DIM = "judge_dim"
_K_VERSION = "judge_rulebook_version"
_K_SEQ = "judge_seq"
_K_GEN = "judge_generation"

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


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


def _telemetry_off() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False)


def make_client(settings: Settings) -> Any:
    """A Chroma client for ``settings``: an HTTP client when ``chroma_url`` is set, else a persistent one.

    Raises:
        ConfigError: ``chroma_url`` is not an ``http(s)://host[:port]`` URL.
        RetrievalIndexError: the Chroma server or directory cannot be opened.
    """
    import chromadb

    chroma_settings = _telemetry_off()
    if settings.chroma_url:
        url = urlsplit(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"chroma_url {settings.chroma_url!r} must look like http://host:port")
        ssl = url.scheme == "https"
        port = url.port or (443 if ssl else 8000)
        try:
            return chromadb.HttpClient(host=url.hostname, port=port, ssl=ssl, settings=chroma_settings)
        except Exception as exc:  # connection errors come in many types depending on the transport
            raise RetrievalIndexError(f"cannot reach the Chroma server at {settings.chroma_url}: {exc}") from exc
    path = Path(settings.resolved_index_path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:
        raise RetrievalIndexError(f"cannot open the retrieval index at {path}: {exc}") from exc


def make_ephemeral_client() -> Any:
    """An in-memory Chroma client, for tests.

    Chroma shares one in-memory store between every ephemeral client of a process, so give each test its
    own base collection name.
    """
    import chromadb

    return chromadb.EphemeralClient(settings=_telemetry_off())


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
    texts: list[str]
    vectors: np.ndarray
    ptexts: list[str]
    pvectors: np.ndarray
    powners: list[int]
    pnumbers: list[int]


def _upsert_rows(col: Any, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]],
                 documents: list[str]) -> None:
    col.upsert(ids=ids, embeddings=vectors, metadatas=metadatas,
               documents=[doc[:MAX_DOCUMENT_CHARS] for doc in documents])


def _metadata(rule: Rule, n_passages: int | None = None) -> dict[str, str | int | bool]:
    authority = rule.authority.value if rule.authority is not None else ""
    meta: dict[str, str | int | bool] = {"layer": rule.layer.value, "status": rule.status.value,
                                         "authority": authority, "version": rule.version,
                                         "process": rule.process_rule}
    if n_passages is not None:
        meta["passages"] = n_passages
    return meta


def _passage_id(rule_id: str, number: int) -> str:
    return f"{rule_id}#{number}"


def _write_verified(col: Any, layer: Layer, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]],
                    documents: list[str]) -> None:
    """Upsert records, then check each is found by a search with its own vector, writing lost ones again."""
    _upsert_rows(col, ids, vectors, metadatas, documents)
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
        _upsert_rows(col, [ids[i] for i in again], vectors[again], [metadatas[i] for i in again],
                     [documents[i] for i in again])


def _layer_of(rule_id: str) -> Layer | None:
    prefix = rule_id.split("/", 1)[0]
    return Layer(prefix) if prefix in Layer.__members__.values() else None


def _server_errors(method: Callable[Concatenate[RuleIndex, _P], _R]) -> Callable[Concatenate[RuleIndex, _P], _R]:
    """Report a Chroma server that stops answering as an `RetrievalIndexError` rather than an httpx traceback.

    `make_client` checks the server once; one stopped or restarted afterwards would otherwise surface as a
    transport error from deep inside chromadb (the embedded client has no such failure).
    """

    @functools.wraps(method)
    def wrapper(self: RuleIndex, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            import httpx  # chromadb's HTTP transport

            if not isinstance(exc, httpx.TransportError):
                raise
            chroma = self._client.get_settings()
            where = f"{chroma.chroma_server_host}:{chroma.chroma_server_http_port}"
            raise RetrievalIndexError(
                f"the Chroma server at {where} stopped answering ({exc}); is it running?") from exc

    return wrapper


@dataclass(frozen=True)
class _Layout:
    manifest: Any
    meta: dict[str, Any]
    layers: dict[Layer, Any]
    passages: dict[Layer, Any]


class RuleIndex:
    """Rules embedded into Chroma: a manifest plus one collection per layer (see the module docstring).

    Args:
        client: a Chroma API client (`make_client`, `make_ephemeral_client`).
        embedder: embeds rule texts and queries; the index remembers its ``name`` and ``dim``.
        collection: base name of the collections (3-50 characters of ``[a-zA-Z0-9._-]``).

    Not safe for two concurrent `rebuild` calls on the same index; reads during a rebuild are fine.
    With a Chroma server, every public method raises `RetrievalIndexError` when the server stops answering.
    """

    def __init__(self, client: Any, embedder: Embedder, collection: str = "rules") -> None:
        self._client = client
        self.embedder = embedder
        self.collection_name = collection
        self._cached: _Layout | None = None
        self._lock: Any = None
        chroma = client.get_settings()
        if getattr(chroma, "is_persistent", False) and getattr(chroma, "persist_directory", None):
            from filelock import FileLock

            self._lock = FileLock(Path(chroma.persist_directory) / WRITE_LOCK_NAME)

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

    # -- layout ----------------------------------------------------------------------------------------

    def _stamp(self, generation: int, rulebook_version: str | None = None, seq: int | None = None
               ) -> dict[str, Any]:
        meta = {_K_SCHEMA: INDEX_SCHEMA_VERSION, _K_EMBEDDER: self.embedder.name, _K_DIM: self.embedder.dim,
                _K_GEN: generation, _K_VERSION: rulebook_version, _K_SEQ: seq}
        return {key: value for key, value in meta.items() if value is not None}  # Chroma stores no None

    def _layer_name(self, generation: int, layer: Layer, *, passages: bool = False) -> str:
        return f"{self.collection_name}-g{generation}-{layer.value}{'-p' if passages else ''}"

    def _create_layers(self, generation: int) -> tuple[dict[Layer, Any], dict[Layer, Any]]:
        """The whole-text and the passage collection of every layer of ``generation``."""

        def create(layer: Layer, passages: bool) -> Any:
            return self._client.get_or_create_collection(
                self._layer_name(generation, layer, passages=passages), embedding_function=None,
                configuration={"hnsw": {"space": "cosine", "ef_search": 100, "ef_construction": 200}})

        return {layer: create(layer, False) for layer in Layer}, {layer: create(layer, True) for layer in Layer}

    def _layout(self, *, create: bool, refresh: bool = False) -> _Layout | None:
        """The manifest and layer collections (cached); None if never created and ``create`` is false."""
        from chromadb.errors import NotFoundError

        if self._cached is not None and not refresh:
            return self._cached
        try:
            manifest = self._client.get_collection(self.collection_name, embedding_function=None)
        except (NotFoundError, ValueError):
            if not create:
                self._cached = None
                return None
            self._create_layers(1)  # before the manifest, so whoever sees the manifest finds the layers
            manifest = self._client.get_or_create_collection(self.collection_name, embedding_function=None,
                                                             metadata=self._stamp(1))
        meta = dict(manifest.metadata or {})
        layers: dict[Layer, Any] = {}
        passages: dict[Layer, Any] = {}
        if meta.get(_K_SCHEMA) == INDEX_SCHEMA_VERSION and isinstance(meta.get(_K_GEN), int):
            try:
                for layer in Layer:
                    layers[layer] = self._client.get_collection(self._layer_name(meta[_K_GEN], layer),
                                                                embedding_function=None)
                    passages[layer] = self._client.get_collection(
                        self._layer_name(meta[_K_GEN], layer, passages=True), embedding_function=None)
            except (NotFoundError, ValueError) as exc:
                raise RetrievalIndexError(f"retrieval index {self.collection_name!r} is incomplete ({exc}); "
                                  "run `judge index rebuild`") from exc
        self._cached = _Layout(manifest, meta, layers, passages)
        return self._cached

    def _check_embedder(self, meta: dict[str, Any]) -> None:
        if meta.get(_K_SCHEMA) != INDEX_SCHEMA_VERSION:
            raise IndexSchemaError(meta.get(_K_SCHEMA), INDEX_SCHEMA_VERSION)
        if meta.get(_K_EMBEDDER) != self.embedder.name or meta.get(_K_DIM) != self.embedder.dim:
            built = f"{meta.get(_K_EMBEDDER)} (dim {meta.get(_K_DIM)})"
            raise IndexMismatchError(built, f"{self.embedder.name} (dim {self.embedder.dim})")

    def _writable(self) -> _Layout:
        layout = self._layout(create=True, refresh=True)
        assert layout is not None  # create=True always yields a layout
        self._check_embedder(layout.meta)
        return layout

    def _call(self, layer: Layer, method: str, *, checked: bool, passages: bool = False, **kwargs: Any) -> Any:
        """Call a method of ``layer``'s collection (its passage collection with ``passages``); None if the
        index was never created.

        Refetches the layout once when another process's rebuild replaced the collection. With
        ``checked``, refuses an index built with another embedder (free: the metadata is cached).
        """
        from chromadb.errors import NotFoundError

        for refresh in (False, True):
            layout = self._layout(create=False, refresh=refresh)
            if layout is None:
                return None
            if checked or not layout.layers:
                self._check_embedder(layout.meta)
            try:
                cols = layout.passages if passages else layout.layers
                return getattr(cols[layer], method)(**kwargs)
            except NotFoundError:
                if refresh:
                    raise
        raise AssertionError("unreachable")

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

    # -- writes ----------------------------------------------------------------------------------------

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
        return _Batch(rules, texts, vectors[: len(texts)], ptexts, vectors[len(texts):], owners, numbers)

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
                            [_metadata(rules[i], counts[i]) for i in rows], [batch.texts[i] for i in rows])
            prows = [j for j, owner in enumerate(batch.powners) if rules[owner].layer is layer]
            if prows:
                _write_verified(pcols[layer], layer,
                                [_passage_id(rules[batch.powners[j]].id, batch.pnumbers[j]) for j in prows],
                                batch.pvectors[prows],
                                [{"rule": rules[batch.powners[j]].id, "status": rules[batch.powners[j]].status.value,
                                  "process": rules[batch.powners[j]].process_rule} for j in prows],
                                [batch.ptexts[j] for j in prows])

    @staticmethod
    def _drop_surplus_passages(col: Any, pcol: Any, ids: list[str], counts: list[int]) -> None:
        """Delete the passages an earlier version of a rule had beyond the ones it has now."""
        old = col.get(ids=ids, include=["metadatas"])
        before = {rule_id: int((meta or {}).get("passages", 0)) for rule_id, meta in
                  zip(old["ids"], old["metadatas"], strict=True)}
        surplus = [_passage_id(rule_id, number) for rule_id, now in zip(ids, counts, strict=True)
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
                passage_ids = [_passage_id(rule_id, n)
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

    # -- reads -----------------------------------------------------------------------------------------

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
                     where_extra: dict[str, Any] | None = None, use_passages: bool = True) -> list[Hit]:
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

        The facade embeds a pair once and calls this per layer. An index that was never created returns
        no hits: call `check` first to tell "nothing relevant" from "not built".
        """
        if k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.embedder.dim:
            raise IndexMismatchError(f"a query vector of dim {query.shape[1]}",
                                     f"{self.embedder.name} (dim {self.embedder.dim})")
        layers = list(Layer) if layer is None else [Layer(layer)]
        hits = [hit for each in layers
                for hit in self._query_layer(query, each, k, set(exclude), active_only, where_extra, use_passages)]
        return sorted(hits, key=lambda hit: hit.distance)[:k] if len(layers) > 1 else hits

    def _query_layer(self, query: np.ndarray, layer: Layer, k: int, excluded: set[str], active_only: bool,
                     where_extra: dict[str, Any] | None, use_passages: bool) -> list[Hit]:
        whole = self._query_whole(query, layer, k, excluded, active_only, where_extra)
        if not use_passages:
            return whole
        best = {hit.rule_id: hit.score for hit in whole}
        result = self._call(layer, "query", checked=True, passages=True, query_embeddings=query,
                            n_results=PASSAGE_FANOUT * (k + len(excluded)), where=where_extra or None,
                            include=["distances", "metadatas"])
        if result is not None:
            for dist, meta in zip(result["distances"][0], result["metadatas"][0], strict=True):
                rule_id = (meta or {}).get("rule")
                if rule_id is None or rule_id in excluded:
                    continue
                if active_only and meta.get("status") != RuleStatus.ACTIVE:
                    continue
                best[rule_id] = max(best.get(rule_id, -1.0), 1.0 - float(dist))
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
        return [Hit(rule_id, score, 1.0 - score) for rule_id, score in ranked]

    def _query_whole(self, query: np.ndarray, layer: Layer, k: int, excluded: set[str], active_only: bool,
                     where_extra: dict[str, Any] | None) -> list[Hit]:
        # Only rulings can be inactive; they are dropped after the search, fetching more until k remain.
        post_filter = active_only and layer is Layer.RULING
        fetch = k + len(excluded) + (max(4, k // 2) if post_filter else 0)
        while True:
            result = self._call(layer, "query", checked=True, query_embeddings=query, n_results=fetch,
                                where=where_extra or None,
                                include=["distances", "metadatas"] if post_filter else ["distances"])
            if result is None:
                return []
            ids, distances = result["ids"][0], result["distances"][0]
            metas = result["metadatas"][0] if post_filter else [None] * len(ids)
            hits = [Hit(rule_id, 1.0 - float(dist), float(dist))
                    for rule_id, dist, meta in zip(ids, distances, metas, strict=True)
                    if rule_id not in excluded and (meta is None or meta.get("status") == RuleStatus.ACTIVE)]
            if len(hits) >= k or len(ids) < fetch:
                return hits[:k]
            fetch *= 2
