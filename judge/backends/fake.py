"""A deterministic fake backend for tests: a queue (or callable) of replies and a history of requests.

It is a real `OpenAIProtocolBackend` whose HTTP transport is an in-process `httpx2.MockTransport` (openai 3 is
built on httpx2), so logprob parsing, retries and instructor's structured output run exactly the code production runs.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx  # the HTTP client openai 3 is built on
import openai

from judge.backends.openai_compat import OpenAIProtocolBackend, RetryPolicy

__all__ = ["FakeBackend", "FakeReply"]


@dataclass(frozen=True)
class FakeReply:
    """One scripted reply.

    Attributes:
        text: the assistant message content.
        top_logprobs: alternatives for the first generated token as (token, logprob) pairs.
        status: HTTP status to answer with (429, 500... to inject faults).
        headers: extra response headers (e.g. ``{"retry-after": "0"}``).
        body: a raw body to send instead of a completion (garbage injection).
    """

    text: str = ""
    top_logprobs: Sequence[tuple[str, float]] | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    prompt_tokens: int = 50
    completion_tokens: int = 1


Script = Iterable[FakeReply | str] | Callable[[dict[str, Any]], FakeReply | str]


def _completion_json(reply: FakeReply, model: str, n: int) -> dict[str, Any]:
    logprobs = None
    if reply.top_logprobs:
        first_token, first_lp = reply.top_logprobs[0]
        logprobs = {"content": [{
            "token": first_token, "logprob": first_lp, "bytes": None,
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in reply.top_logprobs],
        }]}
    return {
        "id": f"fake-{n}", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                     "finish_reason": "stop", "logprobs": logprobs}],
        "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                  "total_tokens": reply.prompt_tokens + reply.completion_tokens},
    }


class FakeBackend(OpenAIProtocolBackend):
    """Scripted replies over the OpenAI protocol, in process.

    Args:
        replies: a sequence consumed in order, or a callable receiving the request body (a dict) and
            returning the reply; a str is shorthand for ``FakeReply(text=...)``.
        model: model name reported in replies.
        retry: retry policy; defaults to three attempts with no waiting.
    """

    def __init__(self, replies: Script = (), *, model: str = "fake-judge", retry: RetryPolicy | None = None) -> None:
        self.history: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._script: Callable[[dict[str, Any]], FakeReply | str]
        if callable(replies):
            self._script = replies
        else:
            queue: deque[FakeReply | str] = deque(replies)

            def pop(_request: dict[str, Any]) -> FakeReply | str:
                if not queue:
                    raise RuntimeError(f"FakeBackend: no reply scripted for request #{len(self.history)}")
                return queue.popleft()

            self._script = pop
        transport = httpx.MockTransport(self._handle)
        client = openai.AsyncOpenAI(base_url="http://fake.judge.invalid/v1", api_key="fake-key",
                                    http_client=httpx.AsyncClient(transport=transport))
        super().__init__(name="fake", model=model, client=client,
                         retry=retry or RetryPolicy(attempts=3, initial_wait_s=0, max_wait_s=0, jitter_s=0))

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        with self._lock:
            self.history.append(body)
            n = len(self.history)
            reply = self._script(body)
        if isinstance(reply, str):
            reply = FakeReply(text=reply)
        if reply.body is not None:
            return httpx.Response(reply.status, headers=reply.headers, content=reply.body.encode())
        if reply.status != 200:
            return httpx.Response(reply.status, headers=reply.headers,
                                  json={"error": {"message": f"fake error {reply.status}", "type": "fake"}})
        return httpx.Response(200, headers=reply.headers, json=_completion_json(reply, self.model, n))
