"""A backend made on first use.

Its name, model and endpoint are known before the backend is made, so a judge can be configured and a request
answered from the judgment store without loading the HTTP client library (the ``openai`` package alone takes
about a second to import). The first request, or any attribute of the made backend, makes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel

from judge.backends.base import Backend, ChatReply, ChatRequest, StructuredReply, release_connections

__all__ = ["DeferredBackend", "endpoint_from_url"]

T = TypeVar("T", bound=BaseModel)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_from_url(url: str) -> str | None:
    """An endpoint as verdicts record it: scheme, host, port (unless the scheme's default) and path without a
    trailing slash; never a user, password or query. None for an empty URL."""
    if not url:
        return None
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port and parts.port != _DEFAULT_PORTS.get(parts.scheme) else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path.rstrip('/')}"


class DeferredBackend:
    """A `Backend` whose real backend ``make`` builds on first use.

    Args:
        name: the backend's name (as the made backend reports it).
        model: the model it asks.
        endpoint: where it sends (`endpoint_from_url`), part of every cache key.
        make: builds the real backend.
    """

    def __init__(self, name: str, model: str, endpoint: str | None, make: Callable[[], Backend]) -> None:
        self.name = name
        self.model = model
        self.endpoint = endpoint
        self._make = make
        self._made: Backend | None = None
        self._lock = threading.Lock()

    def made(self) -> Backend:
        """The real backend (made now if it was not yet)."""
        with self._lock:
            if self._made is None:
                self._made = self._make()
            return self._made

    def chat(self, request: ChatRequest) -> ChatReply:
        """One chat completion."""
        return self.made().chat(request)

    async def achat(self, request: ChatRequest) -> ChatReply:
        """One chat completion, async."""
        return await self.made().achat(request)

    async def astructured(self, messages: Sequence[dict[str, str]], response_model: type[T], *,
                          context: dict[str, Any], max_retries: int, max_tokens: int) -> StructuredReply[T]:
        """A structured output (see `Backend.astructured`)."""
        return await self.made().astructured(messages, response_model, context=context, max_retries=max_retries,
                                             max_tokens=max_tokens)

    async def release(self) -> None:
        """Close the made backend's pooled connections; nothing to do when it was never made."""
        if self._made is not None:
            await release_connections(self._made)

    def close(self) -> None:
        """Close the made backend, if any."""
        if self._made is not None:
            self._made.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.made(), name)
