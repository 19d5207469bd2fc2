"""A lean HTTP path for the verdict call: one aiohttp session posting chat requests as JSON.

The verdict call is a plain POST whose reply is parsed straight from JSON (first-token logprobs). Going through
the openai SDK costs ~4.5 ms of client CPU per comparison (request building, httpx's connection pool scanning
every pooled connection per request); this path costs ~1.3 ms (`python benchmarks/throughput.py`), which is
what keeps a single event loop from becoming the bottleneck against a fast endpoint at high concurrency.

It sends what the openai client would send (its default headers, the bearer key, the same JSON body) to the
client's base URL - through the proxy the environment names, verifying TLS against the same CA bundle - and
reports failures as :class:`~judge.backends.openai_compat` retries them: an HTTP error
status as :class:`EndpointStatusError`, a connection failure or timeout as :class:`EndpointTransportError`.
Structured output (instructor) keeps using the openai client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

__all__ = ["DirectPoster", "EndpointStatusError", "EndpointTransportError"]

log = logging.getLogger(__name__)
_MAX_ERROR_BODY = 2000


class EndpointStatusError(Exception):
    """The endpoint answered with an HTTP error status.

    Attributes:
        status_code: The HTTP status.
        headers: The reply's headers (``Retry-After`` is honoured by the retry policy).
        body: The start of the reply's body.
    """

    def __init__(self, status_code: int, headers: Mapping[str, str], body: str) -> None:
        super().__init__(f"Error code: {status_code} - {body}")
        self.status_code = status_code
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body


class EndpointTransportError(Exception):
    """The request did not get an answer: connection refused or dropped, or the timeout ran out."""


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY`` / ``ALL_PROXY``, unless ``NO_PROXY``
    covers its host), as httpx and urllib read them; None for a direct connection."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def _ssl_context() -> ssl.SSLContext:
    """Verify servers as httpx does: SSL_CERT_FILE / SSL_CERT_DIR when set, else certifi's CA bundle."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class DirectPoster:
    """POSTs JSON bodies to an OpenAI-compatible base URL with one pooled aiohttp session per event loop.

    Call `aclose` before the event loop that used it ends (`Judge.release` does). A session found from an
    earlier, ended loop is detached and replaced; its sockets close when it is garbage-collected.

    Args:
        base_url: The endpoint's base URL (``.../v1``).
        headers: Headers sent with every request (authorization included; never logged).
        timeout_s: Total time allowed per request.
        max_connections: Connection pool size.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout_s: float,
                 max_connections: int = 256) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            if self._session is not None and not self._session.closed:
                # its connections belong to a loop that has ended; they cannot be reused or closed from here
                log.debug("direct HTTP: previous event loop ended without release(); opening a new session")
                self._session.detach()
            # the proxy is resolved here, once: aiohttp's trust_env re-reads the environment on every request
            # (~0.6 ms of CPU each)
            self._proxy = _proxy_for(self.base_url)
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=_ssl_context()))
            self._loop = loop
        return self._session

    async def post_json(self, path: str, body: Mapping[str, Any]) -> bytes:
        """POST ``body`` as JSON to ``base_url + path`` and return the reply's body.

        Raises:
            EndpointStatusError: on an HTTP status >= 400.
            EndpointTransportError: when no reply arrived (connection error, timeout, truncated body).
        """
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            session = self._current_session()
            async with session.post(self.base_url + path, data=data, proxy=self._proxy) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    text = raw[:_MAX_ERROR_BODY].decode("utf-8", "replace")
                    raise EndpointStatusError(resp.status, resp.headers, text)
                return raw
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise EndpointTransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the pooled connections (the next request opens a new session)."""
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()
