"""The OpenAI-protocol backend: OpenAI, vLLM, Ollama, llama.cpp server, the embedded server and the fake.

Plain chat asks for token logprobs and keeps the first token's alternatives (the verdict's probability
comes from them). Structured output goes through instructor with the validation context, so a cited rule
id that was not retrieved is re-asked with the error; when the re-asks run out the error keeps the raw
reply. Transient failures (429, 5xx, timeouts, connection errors) are retried with exponential backoff and
jitter, honouring Retry-After; API keys are never logged, and are blanked out of error messages (some
endpoints echo the Authorization header back), so they never reach results or the judgment store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from openai._base_client import make_request_options
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from judge.backends.base import ChatReply, ChatRequest, StructuredReply
from judge.backends.secrets import blank, protect
from judge.errors import BackendReplyError, BackendUnavailableError, StructuredOutputError

__all__ = ["OpenAIProtocolBackend", "RetryPolicy"]

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient endpoint failures are retried."""

    attempts: int = 6
    initial_wait_s: float = 1.0
    max_wait_s: float = 60.0
    jitter_s: float = 1.0
    timeout_s: float = 300.0


def _request_options(timeout_s: float) -> Any:
    """Per-request options as ``chat.completions.create`` builds them (bearer auth, timeout)."""
    try:
        return make_request_options(timeout=timeout_s, security={"bearer_auth": True})
    except TypeError:  # openai < 3 has no per-request security option: the key is always sent
        return make_request_options(timeout=timeout_s)


#: Failures of a request, as the openai client reports them (httpx's errors mapped by the client).
_STATUS_ERRORS = (openai.APIStatusError,)
_TRANSPORT_ERRORS = (openai.APITimeoutError, openai.APIConnectionError)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, _STATUS_ERRORS):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, _TRANSPORT_ERRORS)


def _retry_after(exc: BaseException | None) -> float | None:
    headers = exc.response.headers if isinstance(exc, openai.APIStatusError) else None
    if headers is not None:
        value = headers.get("retry-after")
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def _waiter(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    # Computed here rather than with tenacity's wait_exponential_jitter, whose `initial` argument is
    # deprecated (a DeprecationWarning on every request) and whose replacement does not exist in tenacity 8.
    def backoff(state: RetryCallState) -> float:
        exp = policy.initial_wait_s * 2.0 ** min(state.attempt_number - 1, 60)
        return min(exp + random.uniform(0, policy.jitter_s), policy.max_wait_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = _retry_after(exc)
        return min(hinted, policy.max_wait_s) if hinted is not None else backoff(state)

    return wait


def _unavailable(exc: BaseException, attempts: int) -> BackendUnavailableError:
    status = exc.status_code if isinstance(exc, _STATUS_ERRORS) else None
    kind = type(exc).__name__
    cause = exc.__cause__ if isinstance(exc, _TRANSPORT_ERRORS) else None  # httpx's error, e.g. the refused address
    why = f" ({type(cause).__name__}: {_short(cause, 200)})" if cause is not None else ""
    return BackendUnavailableError(f"model endpoint failed: {kind}" + (f" {status}" if status else "") + why,
                                   status=status, attempts=attempts)


def failure_text(exc: BaseException | None) -> str:
    """A transient failure as logged before a retry: its kind and, for an HTTP error, the status
    (``EndpointStatusError HTTP 503``)."""
    if exc is None:
        return "?"
    status = getattr(exc, "status_code", None)
    return type(exc).__name__ + (f" HTTP {status}" if isinstance(status, int) else "")


class OpenAIProtocolBackend:
    """A backend over any OpenAI-compatible chat endpoint.

    Args:
        name: the backend string it was made from (e.g. ``openai/gpt-4o-mini``, ``local``, ``fake``).
        model: the model name sent in requests.
        client: an async OpenAI client (its own retries are disabled: ours honour Retry-After and log).
        instructor_mode: instructor mode for structured output (JSON schema works on llama.cpp's server).
        retry: retry policy for transient failures.
        on_close: called by `close()` (e.g. stop an embedded server).
        client_factory: makes a fresh client (used when called from a new event loop, and by `release`).
        direct_http: deprecated and ignored (every call goes through ``client``); passing it warns.
    """

    def __init__(self, *, name: str, model: str, client: openai.AsyncOpenAI, instructor_mode: str = "JSON_SCHEMA",
                 retry: RetryPolicy | None = None, on_close: Callable[[], None] | None = None,
                 client_factory: Callable[[], openai.AsyncOpenAI] | None = None,
                 direct_http: bool | None = None) -> None:
        if direct_http is not None:
            warnings.warn("OpenAIProtocolBackend(direct_http=...) is deprecated and has no effect: every request "
                          "goes through the openai client (its httpx connection pool, proxy and TLS settings); "
                          "leave the argument out", DeprecationWarning, stacklevel=2)
        self.name = name
        self.model = model
        self.client = client.with_options(max_retries=0)
        self._client_factory = client_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api_key: str | None = getattr(client, "api_key", None)
        protect(self._api_key)  # what the client libraries log themselves is scrubbed too
        self.instructor_mode = instructor_mode
        self.retry = retry or RetryPolicy()
        self._on_close = on_close
        self._instructor: Any = None

    def _bind_loop(self) -> None:
        """Use a fresh client when called from another event loop than before.

        An async HTTP client's pooled connections belong to the loop that opened them; the sync wrappers
        (`chat`, `Judge.compare`) run every call in a new loop, where those connections are dead and every
        first request would fail and be retried. With a ``client_factory`` the client is remade instead.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop and self._client_factory is not None:
            self.client = self._client_factory().with_options(max_retries=0)
            self._instructor = None
        self._loop = loop

    def _scrub(self, text: object) -> str:
        """``text`` with this client's API key blanked out, for error messages and raw replies."""
        return blank(str(text), [self._api_key] if self._api_key else [])

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(stop=stop_after_attempt(self.retry.attempts), wait=_waiter(self.retry),
                             retry=retry_if_exception(_retryable), reraise=True,
                             before_sleep=lambda s: log.warning(
                                 "%s: transient failure (%s); retry %d", self.name,
                                 failure_text(s.outcome.exception()) if s.outcome else "?", s.attempt_number))

    async def achat(self, request: ChatRequest) -> ChatReply:
        """One chat completion with retries; raises `BackendUnavailableError` / `BackendReplyError`."""
        self._bind_loop()
        body: dict[str, Any] = {"model": self.model, "messages": list(request.messages),
                                "max_tokens": request.max_tokens, "temperature": request.temperature}
        if request.seed is not None:
            body["seed"] = request.seed
        if request.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = request.top_logprobs
        # The body is plain JSON already: post it as `chat.completions.create` does, minus the SDK's
        # recursive TypedDict transform of every message (most of the client's CPU per request).
        start = time.perf_counter()
        attempts = 1
        try:
            try:  # the first attempt outside tenacity, whose per-attempt bookkeeping costs ~0.1 ms of CPU
                raw_body = await self._post(body)
            except Exception as exc:
                if not _retryable(exc) or self.retry.attempts < 2:
                    raise
                first_failure: Exception | None = exc
                async for attempt in self._retrying():
                    with attempt:
                        if first_failure is not None:  # attempt 1, already made: tenacity waits and logs
                            failure, first_failure = first_failure, None
                            raise failure from None
                        attempts += 1
                        raw_body = await self._post(body)
        except openai.APIResponseValidationError as exc:
            raise BackendReplyError(f"endpoint reply is not a chat completion: {self._scrub(exc)}") from exc
        except json.JSONDecodeError as exc:  # a JSON content-type with a body that is not JSON
            raise BackendReplyError(f"endpoint reply is not JSON: {self._scrub(exc)}") from exc
        except _STATUS_ERRORS + _TRANSPORT_ERRORS as exc:
            if _retryable(exc):
                raise _unavailable(exc, attempts) from exc
            raise BackendReplyError(f"endpoint refused the request: {self._scrub(exc)}") from exc
        try:
            # parsed here, not into the SDK's ChatCompletion model: a fifth of the client's CPU per request
            reply = _reply_from_json(raw_body, time.perf_counter() - start)
        except BackendReplyError as exc:
            raise BackendReplyError(self._scrub(exc), raw=self._scrub(exc.raw) if exc.raw else None) from None
        return self._scrub_reply(reply)

    def _scrub_reply(self, reply: ChatReply) -> ChatReply:
        """A reply that echoes the API key (as text or as a logprob token) with the key blanked out: whatever
        the engine keeps of it (a failure's reason and raw reply, the logprobs) is stored and printed."""
        key = self._api_key
        if not key:
            return reply
        tokens = reply.first_token_logprobs
        if key not in reply.text and not any(key in t for t, _ in tokens or ()):
            return reply
        log.warning("%s: the endpoint's reply echoed the API key; blanked out", self.name)
        scrubbed = tuple((self._scrub(t), p) for t, p in tokens) if tokens is not None else None
        return dataclasses.replace(reply, text=self._scrub(reply.text), first_token_logprobs=scrubbed)

    async def _post(self, body: dict[str, Any]) -> Any:
        """POST a chat completion body once: the raw reply (bytes or parsed JSON) or the transport's error."""
        return await self.client.post("/chat/completions", body=body, cast_to=bytes,
                                      options=_request_options(self.retry.timeout_s))

    def chat(self, request: ChatRequest) -> ChatReply:
        """Synchronous wrapper of `achat` (its connections are released before its event loop ends)."""

        async def once() -> ChatReply:
            try:
                return await self.achat(request)
            finally:
                await self.release()

        return asyncio.run(once())

    async def release(self) -> None:
        """Close the client's pooled connections (call before the event loop ends); the next call reconnects.

        Only with a ``client_factory``: a client handed in without one (e.g. the fake's in-process transport)
        is the caller's to close.
        """
        if self._client_factory is None:
            return
        old, self.client = self.client, self._client_factory().with_options(max_retries=0)
        used_here = self._loop is None or self._loop is asyncio.get_running_loop()
        self._instructor = None
        self._loop = None
        if used_here:
            await old.close()
        else:  # its connections belong to an event loop that has ended: they cannot be closed from this one
            log.debug("%s: the previous event loop ended without release(); its connections are dropped", self.name)

    def _instructor_client(self) -> Any:
        if self._instructor is None:
            import instructor

            self._instructor = instructor.from_openai(self.client, mode=instructor.Mode[self.instructor_mode])
            protect(self._api_key)  # instructor's loggers exist once it is imported
        return self._instructor

    async def astructured(self, messages: Sequence[dict[str, str]], response_model: type[T], *,
                          context: dict[str, Any], max_retries: int = 2,
                          max_tokens: int = 512) -> StructuredReply[T]:
        """Structured output via instructor, validated with `context`, re-asked up to `max_retries` times."""
        from instructor.core.exceptions import InstructorError, InstructorRetryException

        self._bind_loop()

        client = self._instructor_client()
        start = time.perf_counter()
        try:
            async for attempt in self._retrying():
                with attempt:
                    try:
                        value, completion = await client.chat.completions.create_with_completion(
                            model=self.model, messages=list(messages), response_model=response_model,
                            context=context, max_retries=max_retries, max_tokens=max_tokens,
                            temperature=0.0, timeout=self.retry.timeout_s)
                    except InstructorRetryException as exc:
                        # instructor wraps endpoint errors too; unwrap them so 429/5xx are retried here
                        # (honouring Retry-After) and reported as backend failures, not as bad output.
                        if isinstance(exc.__cause__, openai.APIStatusError | openai.APITimeoutError
                                      | openai.APIConnectionError):
                            raise exc.__cause__ from None
                        raise
        except InstructorRetryException as exc:
            raw = _completion_text(exc.last_completion)
            raise StructuredOutputError(f"structured reply never validated: {_short(self._scrub(exc))}",
                                        raw=self._scrub(raw) if raw is not None else None,
                                        attempts=int(getattr(exc, "n_attempts", max_retries + 1))) from exc
        except InstructorError as exc:  # e.g. IncompleteOutputException: cut off by max_tokens
            raw = _completion_text(getattr(exc, "last_completion", None))
            raise StructuredOutputError(f"structured reply unusable: {type(exc).__name__}: "
                                        f"{_short(self._scrub(exc))}",
                                        raw=self._scrub(raw) if raw is not None else None, attempts=1) from exc
        except (openai.APIStatusError, openai.APITimeoutError, openai.APIConnectionError) as exc:
            if _retryable(exc):
                raise _unavailable(exc, self.retry.attempts) from exc
            raise BackendReplyError(f"endpoint refused the request: {self._scrub(exc)}") from exc
        usage = getattr(completion, "usage", None)
        raw_text = _completion_text(completion)
        if self._api_key and (self._api_key in (raw_text or "") or self._api_key in value.model_dump_json()):
            raise StructuredOutputError("structured reply echoed the endpoint's API key; not used",
                                        raw=self._scrub(raw_text) if raw_text is not None else None, attempts=1)
        return StructuredReply(value=value, raw=raw_text,
                               prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                               completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                               attempts=1, latency_s=time.perf_counter() - start)

    def close(self) -> None:
        """Stop whatever this backend started."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def _short(exc: object, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _completion_text(completion: Any) -> str | None:
    try:
        content = completion.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _prefilled(data: dict[str, Any], usage: dict[str, Any], prompt_tokens: int) -> int | None:
    """Prompt tokens processed, not served from the endpoint's prompt cache, if the reply says."""
    timings = data.get("timings")
    if isinstance(timings, dict) and isinstance(timings.get("prompt_n"), int):
        return int(timings["prompt_n"])
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        return max(0, prompt_tokens - int(details["cached_tokens"]))
    return None


def _reply_from_json(raw: bytes, latency: float) -> ChatReply:
    """A chat completion's JSON body as a `ChatReply` (first-token logprobs kept)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendReplyError(f"endpoint reply is not JSON: {exc}", raw=raw[:500].decode("utf-8", "replace")
                                ) from exc
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        first: tuple[tuple[str, float], ...] | None = None
        content = (choice.get("logprobs") or {}).get("content")
        if content:
            tops = content[0].get("top_logprobs") or []
            first = (tuple((str(t["token"]), float(t["logprob"])) for t in tops)
                     or ((str(content[0]["token"]), float(content[0]["logprob"])),))
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        return ChatReply(text=str(text), first_token_logprobs=first, prompt_tokens=prompt_tokens,
                         completion_tokens=int(usage.get("completion_tokens") or 0),
                         model=str(data.get("model") or ""), latency_s=latency,
                         finish_reason=choice.get("finish_reason"),
                         prefilled_tokens=_prefilled(data, usage, prompt_tokens))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        what = "has no choices" if not (isinstance(data, dict) and data.get("choices")) else \
            f"is not a chat completion ({type(exc).__name__}: {exc})"
        raise BackendReplyError(f"endpoint reply {what}", raw=str(data)[:500]) from exc
