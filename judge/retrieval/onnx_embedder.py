"""An ONNX Runtime embedder for sentence-transformers models: the same vectors without importing torch.

A sentence-transformers model of a transformer, a pooling layer and (optionally) a normalisation - such as the
default all-MiniLM-L6-v2 - is exported once to ONNX with torch (``torch.onnx.export``, which needs the ``onnx``
package) and then run with ``onnxruntime`` and ``tokenizers`` alone: tokenise with the model's
``tokenizer.json`` truncated at the ``max_seq_length`` of its ``sentence_bert_config.json``, run the
transformer, pool over the attention mask as its pooling config says, L2-normalise. Starting that takes a
fraction of a second where importing torch and sentence-transformers takes several.

The export is a derived file, rebuilt on demand: it lives under ``<cache_dir>/onnx/<fingerprint>/``, where the
fingerprint hashes the model's weights, tokenizer and configuration, so another model (or changed files)
never reuses it. Beside it sits the graph onnxruntime optimised, per onnxruntime version, which loads faster.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from judge.errors import EmbedderError

__all__ = ["OnnxExportError", "OnnxModel", "OnnxRunner", "OnnxUnsupported", "export_onnx", "onnx_model_for"]

log = logging.getLogger(__name__)

#: Files whose content decides the vectors; a change in any of them gives a new fingerprint.
_FINGERPRINTED = ("modules.json", "config.json", "sentence_bert_config.json", "tokenizer.json",
                  "tokenizer_config.json", "special_tokens_map.json")
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                  "pooling_mode_max_tokens": "max"}
#: Bumped when the export's inputs, outputs or the way it is made change, so older exports are not reused.
_EXPORT_FORMAT = "1"
_OPSET = 17
#: How closely the export must reproduce torch on a padded probe batch before it is kept.
_EXPORT_TOLERANCE = 1e-4


class OnnxUnsupported(EmbedderError):
    """The model's files do not describe something this runtime reproduces (the reason says what)."""


class OnnxExportError(EmbedderError):
    """The model could not be exported to ONNX (the exporter is missing, or its output was not faithful)."""


@dataclass(frozen=True)
class OnnxModel:
    """What running a sentence-transformers model with onnxruntime needs, read from its files.

    Attributes:
        model_dir: the sentence-transformers model directory.
        fingerprint: a hash of the files the vectors depend on (the export's cache key).
        max_seq_length: word pieces kept per text (``sentence_bert_config.json``).
        do_lower_case: whether texts are lower-cased before tokenising.
        pooling: ``mean``, ``cls`` or ``max``.
        dim: vector length.
        export_dir: where the export and its optimised graphs live.
    """

    model_dir: Path
    fingerprint: str
    max_seq_length: int
    do_lower_case: bool
    pooling: str
    dim: int
    export_dir: Path

    @property
    def onnx_path(self) -> Path:
        """The exported transformer (inputs as the tokenizer names them, output ``last_hidden_state``)."""
        return self.export_dir / "model.onnx"

    @property
    def optimised_path(self) -> Path:
        """The graph onnxruntime optimised from `onnx_path`, for the installed onnxruntime version."""
        import onnxruntime

        return self.export_dir / f"model.ort-{onnxruntime.__version__}.onnx"

    @property
    def exported(self) -> bool:
        """Whether the export exists."""
        return self.onnx_path.is_file()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OnnxUnsupported(f"cannot read {path}: {exc}") from exc


def _file_digest(path: Path, memo_dir: Path) -> str:
    """The sha256 of a file, remembered per (path, size, mtime) so a large file is hashed once."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = memo_dir / f"{key}.sha256"
    with contextlib.suppress(OSError):
        cached = memo.read_text(encoding="ascii").strip()
        if len(cached) == 64:
            return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with contextlib.suppress(OSError):
        _write_atomic(memo, value.encode("ascii"))
    return value


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def onnx_model_for(model_dir: Path, cache_dir: Path) -> OnnxModel:
    """Describe how to run a sentence-transformers model directory with onnxruntime.

    Reads only small config files (and hashes the weights once per file version); imports neither torch nor
    onnxruntime.

    Raises:
        OnnxUnsupported: the model has modules other than a transformer, one pooling mode and a normalisation,
            no ``tokenizer.json``, or unreadable configuration.
    """
    modules = _read_json(model_dir / "modules.json")
    try:
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        pooling_dir = next(str(m["path"]) for m in modules if str(m["type"]).endswith("Pooling"))
    except (KeyError, TypeError, StopIteration) as exc:
        raise OnnxUnsupported(f"{model_dir / 'modules.json'} names no pooling module") from exc
    if kinds[:1] != ["Transformer"] or not set(kinds) <= {"Transformer", "Pooling", "Normalize"}:
        raise OnnxUnsupported(f"modules {kinds} (only Transformer, Pooling and Normalize are reproduced)")
    if not (model_dir / "tokenizer.json").is_file():
        raise OnnxUnsupported(f"{model_dir} has no tokenizer.json")
    pooling_config = _read_json(model_dir / pooling_dir / "config.json")
    modes = [k for k, v in pooling_config.items() if k.startswith("pooling_mode_") and v is True]
    if len(modes) != 1 or modes[0] not in _POOLING_MODES:
        raise OnnxUnsupported(f"pooling modes {modes} (one of mean, cls or max tokens is reproduced)")
    st_config = _read_json(model_dir / "sentence_bert_config.json")
    try:
        max_seq_length = int(st_config["max_seq_length"])
        dim = int(pooling_config["word_embedding_dimension"])
    except (KeyError, TypeError, ValueError) as exc:
        raise OnnxUnsupported(f"{model_dir}: no max_seq_length or word_embedding_dimension ({exc})") from exc
    weights = next((model_dir / w for w in _WEIGHTS if (model_dir / w).is_file()), None)
    if weights is None:
        raise OnnxUnsupported(f"{model_dir} has none of {', '.join(_WEIGHTS)}")

    onnx_root = cache_dir / "onnx"
    digest = hashlib.sha256(f"judge-onnx-export:{_EXPORT_FORMAT}:opset{_OPSET}\n".encode())
    for name in (*_FINGERPRINTED, f"{pooling_dir}/config.json"):
        path = model_dir / name
        digest.update(f"{name}\n".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    digest.update(f"{weights.name}\n{_file_digest(weights, onnx_root / 'digests')}\n".encode())
    fingerprint = digest.hexdigest()[:24]
    return OnnxModel(model_dir=model_dir, fingerprint=fingerprint, max_seq_length=max_seq_length,
                     do_lower_case=bool(st_config.get("do_lower_case", False)),
                     pooling=_POOLING_MODES[modes[0]], dim=dim, export_dir=onnx_root / fingerprint)


@contextlib.contextmanager
def _export_lock(model: OnnxModel) -> Iterator[None]:
    from filelock import FileLock

    model.export_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(model.export_dir / ".export.lock")):
        yield


def export_onnx(model: OnnxModel, st_model: Any) -> None:
    """Export the transformer of a loaded sentence-transformers model to `model.onnx_path`, checked against torch.

    One process exports at a time; a finished export found under the lock is kept. The file appears only
    complete (written beside, then renamed), and only when the ONNX graph reproduces torch's token vectors on a
    padded probe batch.

    Args:
        model: where to write, from `onnx_model_for`.
        st_model: the ``SentenceTransformer`` loaded from ``model.model_dir``.

    Raises:
        OnnxExportError: torch cannot export (e.g. the ``onnx`` package is missing), or the export disagrees
            with torch.
    """
    import torch

    try:
        import onnx  # noqa: F401  (torch.onnx.export writes the model through it)
    except ImportError as exc:
        raise OnnxExportError("the onnx package is not installed (pip install onnx); "
                              "torch.onnx.export needs it") from exc
    with _export_lock(model):
        if model.exported:
            return
        transformer = st_model[0].auto_model.eval()
        tokenizer = st_model.tokenizer
        probe = tokenizer(["Which response follows the rules better?", "A short one.", ""], padding=True,
                          truncation=True, max_length=model.max_seq_length, return_tensors="pt")
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in probe]

        class _Hidden(torch.nn.Module):  # positional inputs in tokenizer order; the token vectors out
            def __init__(self) -> None:
                super().__init__()
                self.transformer = transformer

            def forward(self, *inputs: Any) -> Any:
                return self.transformer(**dict(zip(names, inputs, strict=True))).last_hidden_state

        # A new module starts in training mode, and the exporter restores the mode it found afterwards: without
        # .eval() here the shared model would be left with dropout on.
        wrapper = _Hidden().eval()
        axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
        fd, tmp_name = tempfile.mkstemp(dir=model.export_dir, prefix=".model.", suffix=".onnx.tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                expected = transformer(**{n: probe[n] for n in names}).last_hidden_state.numpy()
                # The tracer's warnings (legacy exporter, Python booleans from tensors) concern graphs that
                # might not generalise; the probe check below is what decides whether this one does.
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, tuple(probe[n] for n in names), str(tmp), input_names=names,
                                  output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=_OPSET,
                                  dynamo=False)
            got = _session(tmp, optimised=None).run(None, {n: probe[n].numpy() for n in names})[0]
            mask = probe["attention_mask"].numpy().astype(bool)
            error = float(np.abs(got[mask] - expected[mask]).max())
            if not error <= _EXPORT_TOLERANCE:
                raise OnnxExportError(f"the ONNX export differs from torch by {error:.2g} on a probe batch")
            os.replace(tmp, model.onnx_path)
        except OnnxExportError:
            raise
        except Exception as exc:  # torch raises many kinds (OnnxExporterError, RuntimeError, ImportError...)
            raise OnnxExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
        finally:
            transformer.eval()
            tmp.unlink(missing_ok=True)


def _session(path: Path, *, optimised: Path | None) -> Any:
    """An onnxruntime session on ``path``; with ``optimised``, the optimised graph is saved there (or read)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's own warnings go to stderr, not to logging
    # Idle threads sleep rather than spin: on a busy machine spinning costs more than it saves (measured in
    # benchmarks/embedder.py), and a query is one short run.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimised is not None and optimised.is_file():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        with contextlib.suppress(Exception):  # a damaged optimised graph is rebuilt from the export below
            return ort.InferenceSession(str(optimised), options, providers=["CPUExecutionProvider"])
    # EXTENDED, not ALL: the saved graph stays free of layout rewrites specific to this CPU.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    tmp: str | None = None
    if optimised is not None:
        fd, tmp = tempfile.mkstemp(dir=optimised.parent, prefix=f".{optimised.name}.", suffix=".tmp")
        os.close(fd)
        options.optimized_model_filepath = tmp
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        if tmp is not None and optimised is not None:
            os.replace(tmp, optimised)
            tmp = None
        return session
    except Exception as exc:
        raise EmbedderError(f"onnxruntime cannot load {path}: {exc}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class OnnxRunner:
    """Embeds texts with an exported model: tokenizers, onnxruntime, pooling and normalisation in numpy.

    Args:
        model: an exported model (`OnnxModel.exported`).
    """

    def __init__(self, model: OnnxModel) -> None:
        from tokenizers import Tokenizer

        self._model = model
        self._session = _session(model.onnx_path, optimised=model.optimised_path)
        self._inputs = [i.name for i in self._session.get_inputs()]
        tokenizer = Tokenizer.from_file(str(model.model_dir / "tokenizer.json"))
        # tokenizer.json may carry its own truncation and fixed padding; sentence-transformers truncates at
        # max_seq_length and pads each batch to its longest text.
        tokenizer.enable_truncation(model.max_seq_length)
        pad_id, pad_token = 0, "[PAD]"
        if tokenizer.padding is not None:
            pad_id, pad_token = tokenizer.padding["pad_id"], tokenizer.padding["pad_token"]
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._tokenizer = tokenizer

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit vectors of ``texts`` (float32, ``[len(texts), dim]``), ``batch_size`` texts per run."""
        out = np.zeros((len(texts), self._model.dim), dtype=np.float32)
        # Like sentence-transformers: strip, optionally lower-case, and batch texts of similar length together
        # so little padding is computed.
        prepared = [t.strip().lower() if self._model.do_lower_case else t.strip() for t in texts]
        order = np.argsort([-len(t) for t in prepared], kind="stable")
        for start in range(0, len(prepared), max(1, batch_size)):
            rows = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([prepared[i] for i in rows])
            feeds = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            hidden = self._session.run(None, {n: feeds[n] for n in self._inputs})[0]
            out[rows] = _pool(hidden, feeds["attention_mask"], self._model.pooling)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(out / norms, dtype=np.float32)


def _pool(hidden: np.ndarray, attention_mask: np.ndarray, mode: str) -> np.ndarray:
    """Pool token vectors ``[batch, tokens, dim]`` into ``[batch, dim]`` the way sentence-transformers does."""
    pooled: np.ndarray
    if mode == "cls":
        pooled = hidden[:, 0]
        return pooled
    mask = attention_mask[..., None].astype(hidden.dtype)
    if mode == "max":
        pooled = np.where(mask > 0, hidden, np.finfo(hidden.dtype).min).max(axis=1)
    else:
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    return pooled
