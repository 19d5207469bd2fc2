"""The one small interface every judge backend implements, and the values it exchanges.

Every backend speaks the OpenAI chat protocol underneath: a hosted or self-hosted OpenAI-compatible
endpoint, the embedded llama.cpp server, or the fake (an in-process HTTP transport). So request building,
logprob reading and instructor's structured output run through the same code in tests and in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

__all__ = ["Backend", "ChatReply", "ChatRequest", "StructuredReply", "release_connections"]

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request.

    Attributes:
        messages: OpenAI-style messages (role, content).
        max_tokens: generation cap.
        temperature: 0 for judging.
        top_logprobs: ask for this many alternatives per generated token (None: no logprobs).
        seed: passed through where the endpoint supports it.
    """

    messages: tuple[dict[str, str], ...]
    max_tokens: int = 1
    temperature: float = 0.0
    top_logprobs: int | None = None
    seed: int | None = 0


@dataclass(frozen=True)
class ChatReply:
    """What came back: text, the first token's alternatives (if asked and given), usage and timing.

    ``prefilled_tokens`` is how many prompt tokens the endpoint processed rather than took from its prompt
    cache, when it says (llama.cpp's ``timings.prompt_n`` or ``usage.prompt_tokens_details.cached_tokens``).
    """

    text: str
    first_token_logprobs: tuple[tuple[str, float], ...] | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    latency_s: float
    finish_reason: str | None = None
    prefilled_tokens: int | None = None


@dataclass(frozen=True)
class StructuredReply(Generic[T]):
    """A validated structured output, the raw text of the last completion, and usage over all attempts."""

    value: T
    raw: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    latency_s: float
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A judge backend: plain chat (with logprobs) and validated structured output, sync and async."""

    name: str
    model: str

    def chat(self, request: ChatRequest) -> ChatReply:
        """One chat completion."""
        ...

    async def achat(self, request: ChatRequest) -> ChatReply:
        """One chat completion, async."""
        ...

    async def astructured(self, messages: Sequence[dict[str, str]], response_model: type[T], *,
                          context: dict[str, Any], max_retries: int, max_tokens: int) -> StructuredReply[T]:
        """A structured output validated (with `context`) and re-asked on validation errors."""
        ...

    def close(self) -> None:
        """Release clients / stop servers."""
        ...


def close_if_started(backend: Backend, given: object) -> None:
    """Close ``backend`` when the call started it from a name (``given``: a backend string, or None for the
    configured one); a backend object the caller passed in stays open: it is theirs."""
    if given is None or isinstance(given, str):
        backend.close()


async def release_connections(backend: object) -> None:
    """Close a backend's pooled connections before the event loop that opened them ends.

    Backends that pool connections per event loop have an async ``release()``; others need nothing. Every
    ``asyncio.run`` that judges through a backend calls this last (the next call reconnects).
    """
    release = getattr(backend, "release", None)
    if release is not None:
        await release()
