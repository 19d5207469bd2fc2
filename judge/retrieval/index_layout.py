"""The Chroma side of the retrieval index: clients, collection names, the manifest and its schema checks.

`IndexLayout` finds (or creates) the manifest and the layer collections of one index and refuses an index
built with another layout or embedder; `judge.retrieval.index.RuleIndex` builds its reads and writes on it.
See `judge.retrieval.index` for the layout itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import SplitResult, urlsplit

from judge.errors import ConfigError, IndexMismatchError, IndexSchemaError, RetrievalIndexError
from judge.retrieval.embedder import Embedder
from judge.rules.model import Layer
from judge.settings import Settings

__all__ = ["INDEX_SCHEMA_VERSION", "WRITE_LOCK_NAME", "DeferredClient", "IndexLayout", "forget_local_client",
           "make_client", "make_ephemeral_client", "passage_id", "passage_owner"]

#: Bump when the layout of ids, metadata or documents changes; older indexes must then be rebuilt
#: (`judge.rulebook.Rulebook` rebuilds one it finds, rather than mixing layouts). 2: passages.
INDEX_SCHEMA_VERSION = 2
#: The lock file in a local index directory (see `RuleIndex.writing`).
WRITE_LOCK_NAME = "judge-write.lock"

_K_SCHEMA = "judge_schema"
_K_EMBEDDER = "judge_embedder"
_K_DIM = "judge_dim"
_K_VERSION = "judge_rulebook_version"
_K_SEQ = "judge_seq"
_K_GEN = "judge_generation"


def passage_id(rule_id: str, number: int) -> str:
    """The record id of passage ``number`` of rule ``rule_id`` in a passage collection."""
    return f"{rule_id}#{number}"


def passage_owner(record_id: str) -> str:
    """The rule a passage record belongs to (the inverse of `passage_id`): read from the id, no metadata."""
    return record_id.rpartition("#")[0]


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="IndexLayout")


def _telemetry_off() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False)


def _check_chroma_url(settings: Settings) -> SplitResult:
    url = urlsplit(settings.chroma_url or "")
    if settings.chroma_url and (url.scheme not in ("http", "https") or not url.hostname):
        raise ConfigError(f"chroma_url {settings.chroma_url!r} must look like http://host:port")
    return url


def make_client(settings: Settings) -> Any:
    """A Chroma client for ``settings``: an HTTP client when ``chroma_url`` is set, else a persistent one.

    Raises:
        ConfigError: ``chroma_url`` is not an ``http(s)://host[:port]`` URL.
        RetrievalIndexError: the Chroma server or directory cannot be opened.
    """
    import chromadb

    chroma_settings = _telemetry_off()
    if settings.chroma_url:
        url = _check_chroma_url(settings)
        assert url.hostname is not None  # checked just above
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


def forget_local_client(path: Path) -> None:
    """Drop the embedded Chroma client this process keeps for the index folder ``path``, so the next
    `make_client` opens the folder anew (Chroma keeps one per folder for the process, also one that failed to
    open); clients of other folders are left alone."""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)


class DeferredClient:
    """The Chroma client of ``settings`` (`make_client`), opened on first use.

    A command that never reads the index (a request answered from the judgment store, a rulebook listing)
    then never imports chromadb. A malformed ``chroma_url`` is still refused at once.

    Raises:
        ConfigError: ``chroma_url`` is not an ``http(s)://host[:port]`` URL.
    """

    def __init__(self, settings: Settings) -> None:
        _check_chroma_url(settings)
        self._settings = settings
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = make_client(self._settings)
        return getattr(self._client, name)


def make_ephemeral_client() -> Any:
    """An in-memory Chroma client, for tests.

    Chroma shares one in-memory store between every ephemeral client of a process, so give each test its
    own base collection name.
    """
    import chromadb

    return chromadb.EphemeralClient(settings=_telemetry_off())


def _layer_of(rule_id: str) -> Layer | None:
    prefix = rule_id.split("/", 1)[0]
    return Layer(prefix) if prefix in Layer.__members__.values() else None


def _server_errors(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Report a Chroma server that stops answering as an `RetrievalIndexError` rather than an httpx traceback.

    `make_client` checks the server once; one stopped or restarted afterwards would otherwise surface as a
    transport error from deep inside chromadb (the embedded client has no such failure).
    """

    @functools.wraps(method)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
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


class IndexLayout:
    """The manifest and layer collections of one index (see `judge.retrieval.index`), found or created.

    Args:
        client: a Chroma API client (`make_client`, `make_ephemeral_client`).
        embedder: embeds rule texts and queries; the index remembers its ``name`` and ``dim``.
        collection: base name of the collections (3-50 characters of ``[a-zA-Z0-9._-]``).
    """

    def __init__(self, client: Any, embedder: Embedder, collection: str = "rules") -> None:
        self._client = client
        self.embedder = embedder
        self.collection_name = collection
        self._cached: _Layout | None = None

    @functools.cached_property
    def _lock(self) -> Any:
        """The write lock of a local index directory; None for a Chroma server or an in-memory index."""
        chroma = self._client.get_settings()
        if getattr(chroma, "is_persistent", False) and getattr(chroma, "persist_directory", None):
            from filelock import FileLock

            return FileLock(Path(chroma.persist_directory) / WRITE_LOCK_NAME)
        return None

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

