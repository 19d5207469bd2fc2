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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from judge.backends.base import Backend
from judge.backends.deferred import DeferredBackend, endpoint_from_url
from judge.errors import ConfigError
from judge.settings import Settings

if TYPE_CHECKING:
    import openai

    from judge.backends.openai_compat import RetryPolicy

__all__ = ["make_backend"]

log = logging.getLogger(__name__)

#: ``local/<path.gguf>@sha256:<64 hex digits>``: the file must have this sha256.
_PINNED = re.compile(r"^(?P<path>.+)@sha256[:=](?P<sha>[0-9a-fA-F]{64})\Z")

#: Connections the client keeps: every connection a run opens stays alive between requests (the openai
#: client's default keeps 100 idle, fewer than a run at ``--concurrency 64`` holds with both orders in flight,
#: and a connection closed after each request costs a new TCP/TLS handshake).
POOL_CONNECTIONS = 1000

#: Where the openai client sends without a base URL (``OPENAI_BASE_URL`` is read into the settings' ``base_url``).
OPENAI_BASE_URL = "https://api.openai.com/v1"


def _client(base_url: str | None, api_key: str) -> openai.AsyncOpenAI:
    """An async openai client with the pool above; proxy, NO_PROXY and the CA bundle come from the environment
    as httpx reads them."""
    import httpx2
    import openai

    limits = httpx2.Limits(max_connections=POOL_CONNECTIONS, max_keepalive_connections=POOL_CONNECTIONS)
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key,
                              http_client=openai.DefaultAsyncHttpxClient(limits=limits))


def _openai(model: str, base_url: str | None, api_key: str | None, retry: RetryPolicy | None) -> Backend:
    env = Settings.from_env()
    base_url = base_url or env.base_url
    key = api_key or (env.api_key.get_secret_value() if env.api_key else None)
    if not key:
        if base_url is None:
            raise ConfigError("openai/<model> needs an API key (JUDGE_API_KEY or OPENAI_API_KEY) or a local "
                              "--base-url")
        key = "sk-no-key"  # local servers accept any key
    def factory() -> openai.AsyncOpenAI:
        return _client(base_url, key)

    name = f"openai/{model}"
    # Made on first use: a request answered from the judgment store never imports the openai package.
    return DeferredBackend(name, model, endpoint_from_url(base_url or OPENAI_BASE_URL),
                           lambda: _protocol_backend(name, model, factory, retry))


def _protocol_backend(name: str, model: str, factory: Callable[[], openai.AsyncOpenAI], retry: RetryPolicy | None,
                      on_close: Callable[[], None] | None = None) -> Backend:
    from judge.backends.openai_compat import OpenAIProtocolBackend

    return OpenAIProtocolBackend(name=name, model=model, client=factory(), retry=retry, on_close=on_close,
                                 client_factory=factory)


def _local(model_path: Path | None, data_dir: Path, retry: RetryPolicy | None, n_ctx: int,
           sha256: str | None = None) -> Backend:
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
        return _client(server.base_url, server.api_key)

    return _protocol_backend(name, server.model_name, factory, retry, on_close=server.stop)


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
