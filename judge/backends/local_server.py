"""An in-process llama.cpp server (via ``xllamacpp``) that serves a GGUF model over the OpenAI protocol.

``xllamacpp.Server(params)`` runs llama.cpp's own HTTP server on threads inside this process; its
constructor returns once the model is loaded. There is no ``stop()`` in its API: dropping the last
reference runs the C++ destructor, which terminates the task loop, stops the HTTP listener and joins the
server thread. `LocalServer.stop` does exactly that and then checks the port is closed.

Safety: the server only ever binds 127.0.0.1, and every request except ``/health`` needs a random API key
generated per server (``LocalServer.api_key``), so neither other machines nor web pages in a local browser
(llama.cpp allows any CORS origin) can use the model.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from judge.errors import BackendError, ConfigError

__all__ = ["LOOPBACK", "LocalServer", "LocalServerError"]

logger = logging.getLogger(__name__)

#: The only address the embedded server may bind.
LOOPBACK = "127.0.0.1"

# llama.cpp log thresholds: 1 = errors only, 2 = + warnings, 3 = + info (the library default).
_QUIET, _VERBOSE = 1, 3


class LocalServerError(BackendError):
    """The embedded llama.cpp server could not start, answer or stop."""


class LocalServer:
    """A llama.cpp server for one GGUF model on 127.0.0.1; use as a context manager or start()/stop().

    Example:
        >>> with LocalServer(ensure_default_model(settings.data_dir)) as server:  # doctest: +SKIP
        ...     client = OpenAI(base_url=server.base_url, api_key=server.api_key)

    Args:
        model_path: the ``.gguf`` file.
        n_ctx: context size in tokens *per slot* (the server's total KV pool is ``n_ctx * n_parallel``).
        threads: CPU threads for generation and prompt processing; default: all cores.
        port: TCP port; default: one the OS picks free at bind time (no race).
        n_parallel: concurrent request slots. 1 is the default because on a 2-core CPU two concurrent
            requests in two slots are not faster in total than the same two served one after the other
            (see the measurements in the module's report); raise it on bigger machines.
        model_name: the name the server reports and accepts as ``model``; default: the file's stem.
        host: must be ``127.0.0.1``; anything else is refused.
        api_key: bearer key the server requires; default: a fresh random key.
        startup_timeout: seconds to wait for ``/health`` to answer after the model is loaded.
        verbose: let llama.cpp log at info level to stderr (default: errors only).
        cache_ram_mib: RAM for llama.cpp's cross-request prompt cache (its default is 8192 MiB).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 8192,
        threads: int | None = None,
        port: int | None = None,
        n_parallel: int = 1,
        model_name: str | None = None,
        host: str = LOOPBACK,
        api_key: str | None = None,
        startup_timeout: float = 120.0,
        verbose: bool = False,
        cache_ram_mib: int = 1024,
    ) -> None:
        if host != LOOPBACK:
            raise ConfigError(f"the embedded model server only binds {LOOPBACK}, not {host!r}")
        if n_ctx < 256:
            raise ConfigError(f"n_ctx must be at least 256, got {n_ctx}")
        if n_parallel < 1:
            raise ConfigError(f"n_parallel must be at least 1, got {n_parallel}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        if port is not None and not 0 <= port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {port}")
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.threads = threads or os.cpu_count() or 1
        self.port = port or 0
        self.n_parallel = n_parallel
        self.model_name = model_name or self.model_path.stem
        self.host = host
        self.api_key = api_key or "sk-local-" + secrets.token_urlsafe(24)
        self.startup_timeout = startup_timeout
        self.verbose = verbose
        self.cache_ram_mib = cache_ram_mib
        self._server: Any = None
        self._address: str | None = None
        self._lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Load the model and serve it; returns once ``/health`` answers. Idempotent."""
        with self._lock:
            if self._server is not None:
                return self
            if not self.model_path.is_file():
                raise ConfigError(f"model file {self.model_path} does not exist")
            try:
                import xllamacpp
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ConfigError(
                    "the local backend needs the xllamacpp package: pip install xllamacpp"
                ) from exc
            params = self._params(xllamacpp.CommonParams())
            started = time.perf_counter()
            try:
                server = xllamacpp.Server(params)  # blocks until the model is loaded
            except (RuntimeError, ValueError) as exc:
                raise LocalServerError(
                    f"llama.cpp server failed to start for {self.model_path}: {exc} "
                    "(is the port free and the file a valid GGUF model? pass verbose=True for its log)"
                ) from exc
            self._server = server
            self._address = str(server.listening_address).rstrip("/")
            try:
                self._wait_healthy()
            except BaseException:
                self._stop_locked()
                raise
            logger.info("serving %s at %s (%d thread(s), %d slot(s), n_ctx %d) after %.1f s",
                        self.model_name, self._address, self.threads, self.n_parallel, self.n_ctx,
                        time.perf_counter() - started)
            return self

    def stop(self) -> None:
        """Stop the server and free the model; safe to call twice."""
        with self._lock:
            self._stop_locked()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort only; callers should use `with` or stop().
        if getattr(self, "_server", None) is not None:
            self._server = None

    # --- addresses -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is started."""
        return self._server is not None

    @property
    def address(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._address is None:
            raise LocalServerError("the local model server is not running; call start() first")
        return self._address

    @property
    def bound_port(self) -> int:
        """The TCP port the running server listens on."""
        return int(self.address.rsplit(":", 1)[1])

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.address + "/v1"

    # --- internals -------------------------------------------------------------------------------

    def _params(self, params: Any) -> Any:
        params.model.path = str(self.model_path)
        params.model_alias = {self.model_name}
        params.hostnames = [LOOPBACK]
        params.port = self.port
        params.n_parallel = self.n_parallel
        # llama.cpp splits n_ctx across slots; keep n_ctx per request as the caller asked.
        params.n_ctx = self.n_ctx * self.n_parallel
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.api_keys = [self.api_key]
        params.offline = True  # never let llama.cpp reach a model hub
        params.ui = False
        params.cache_ram_mib = self.cache_ram_mib
        params.verbosity = _VERBOSE if self.verbose else _QUIET
        return params

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: str = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.address + "/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:  # 503 while loading
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise LocalServerError(
            f"llama.cpp server at {self.address} did not become healthy within "
            f"{self.startup_timeout:.0f} s (last: {last})"
        )

    def _stop_locked(self) -> None:
        server, self._server = self._server, None
        address, self._address = self._address, None
        if server is None:
            return
        started = time.perf_counter()
        # xllamacpp has no stop(): the C++ destructor, run when the last reference goes, terminates the
        # task loop, closes the listener and joins the server thread.
        del server
        if address is not None and _port_open(int(address.rsplit(":", 1)[1])):
            logger.warning("llama.cpp server at %s still accepts connections after stop", address)
        logger.info("stopped local model server %s in %.2f s", address, time.perf_counter() - started)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0
