"""Backends chosen by a string.

* ``local`` - the embedded default: Qwen2.5-Coder-1.5B-Instruct Q4_K_M assembled from pinned PyPI data
  packages, sha256-verified, served on 127.0.0.1 by llama.cpp (xllamacpp). No network, no key.
* ``local/<path.gguf>`` - any GGUF file you have, same runtime. ``local/<path.gguf>@sha256:<hex>`` also
  checks the file's sha256 before serving it (a mismatch is a `ModelIntegrityError`).
* ``openai/<model>`` - any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp server. The base URL
  comes from ``--base-url`` / ``JUDGE_BASE_URL`` / ``OPENAI_BASE_URL``, the key from ``JUDGE_API_KEY`` /
  ``OPENAI_API_KEY`` (a local server needs none).
* ``fake`` - the scripted test backend (`judge.backends.fake.FakeBackend`); only useful from Python.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from judge.backends.base import Backend
from judge.backends.openai_compat import OpenAIProtocolBackend, RetryPolicy
from judge.errors import ConfigError
from judge.settings import Settings

__all__ = ["make_backend"]

log = logging.getLogger(__name__)

#: ``local/<path.gguf>@sha256:<64 hex digits>``: the file must have this sha256.
_PINNED = re.compile(r"^(?P<path>.+)@sha256[:=](?P<sha>[0-9a-fA-F]{64})\Z")


def _openai(model: str, base_url: str | None, api_key: str | None, retry: RetryPolicy | None) -> Backend:
    import openai

    env = Settings.from_env()
    base_url = base_url or env.base_url
    key = api_key or (env.api_key.get_secret_value() if env.api_key else None)
    if not key:
        if base_url is None:
            raise ConfigError("openai/<model> needs an API key (JUDGE_API_KEY or OPENAI_API_KEY) or a local "
                              "--base-url")
        key = "sk-no-key"  # local servers accept any key
    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=base_url, api_key=key)

    return OpenAIProtocolBackend(name=f"openai/{model}", model=model, client=factory(), retry=retry,
                                 client_factory=factory, direct_http=True)


def _local(model_path: Path | None, data_dir: Path, retry: RetryPolicy | None, n_ctx: int,
           sha256: str | None = None) -> Backend:
    import openai

    from judge.backends.local_model import ensure_default_model, verify_gguf
    from judge.backends.local_server import LocalServer

    if model_path is None:
        path = ensure_default_model(data_dir)
        name = "local"
    else:
        path = verify_gguf(model_path, sha256)
        name = f"local/{model_path}"
    server = LocalServer(path, n_ctx=n_ctx).start()
    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=server.base_url, api_key=server.api_key)

    return OpenAIProtocolBackend(name=name, model=server.model_name, client=factory(), retry=retry,
                                 on_close=server.stop, client_factory=factory, direct_http=True)


def make_backend(spec: str, *, data_dir: Path, base_url: str | None = None, api_key: str | None = None,
                 retry: RetryPolicy | None = None, n_ctx: int = 8192) -> Backend:
    """Make the backend a string names (see the module docstring). Call `close()` when done."""
    if spec == "local":
        return _local(None, data_dir, retry, n_ctx)
    if spec.startswith("local/"):
        pinned = _PINNED.match(spec.removeprefix("local/"))
        path, sha = (pinned["path"], pinned["sha"]) if pinned else (spec.removeprefix("local/"), None)
        return _local(Path(path).expanduser(), data_dir, retry, n_ctx, sha)
    if spec.startswith("openai/") and len(spec) > len("openai/"):
        return _openai(spec.removeprefix("openai/"), base_url, api_key, retry)
    if spec == "fake":
        raise ConfigError("the fake backend is scripted from Python: judge.backends.fake.FakeBackend(replies)")
    raise ConfigError(f"unknown backend {spec!r}: use local, local/<path.gguf> or openai/<model>")
