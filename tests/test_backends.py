"""Backends: choosing one by string, retries (Retry-After), error mapping, structured output, no leaked keys."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tenacity import RetryCallState

from judge.backends import secrets
from judge.backends.base import Backend, ChatRequest
from judge.backends.deferred import DeferredBackend
from judge.backends.fake import FakeBackend, FakeReply
from judge.backends.openai_compat import OpenAIProtocolBackend, RetryPolicy, _waiter
from judge.backends.registry import make_backend
from judge.errors import (
    BackendReplyError,
    BackendUnavailableError,
    ConfigError,
    StructuredOutputError,
)
from judge.judging.verdict import Explanation

REQUEST = ChatRequest(messages=({"role": "user", "content": "Which is better? A or B."},), top_logprobs=5)
OK = FakeReply(text="A", top_logprobs=[("A", math.log(0.7)), ("B", math.log(0.3))])
PATIENT = RetryPolicy(attempts=3, initial_wait_s=0, max_wait_s=5, jitter_s=0)
EXPLANATION = {"rules_applied": [{"rule_id": "spec/honesty", "favours": "A", "note": "honest"}],
               "deciding_rule": "spec/honesty", "confidence": 0.7, "rationale": "A is honest."}
ENV = ("JUDGE_API_KEY", "OPENAI_API_KEY", "JUDGE_BASE_URL", "OPENAI_BASE_URL")


@pytest.fixture
def no_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV:
        monkeypatch.delenv(var, raising=False)


# ---------------------------------------------------------------- registry
@pytest.mark.parametrize(("spec", "match"), [
    ("gpt-4o", "unknown backend"),
    ("openai/", "unknown backend"),
    ("anthropic/claude", "unknown backend"),
    ("fake", "scripted from Python"),
    ("openai/gpt-4o-mini", "API key"),
])
def test_make_backend_refuses_what_it_cannot_build(spec: str, match: str, tmp_path: Path,
                                                   no_endpoint_env: None) -> None:
    with pytest.raises(ConfigError, match=match):
        make_backend(spec, data_dir=tmp_path)


@pytest.mark.parametrize(("kwargs", "env"), [
    ({"base_url": "http://127.0.0.1:9/v1"}, {}),
    ({}, {"JUDGE_BASE_URL": "http://127.0.0.1:9/v1"}),
    ({"api_key": "sk-test"}, {}),
    ({}, {"OPENAI_API_KEY": "sk-test"}),
])
def test_openai_backend_builds_without_network(kwargs: dict[str, str], env: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, no_endpoint_env: None) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    backend = make_backend("openai/my-model", data_dir=tmp_path, retry=PATIENT, **kwargs)
    assert isinstance(backend, DeferredBackend) and isinstance(backend, Backend)
    assert isinstance(backend.made(), OpenAIProtocolBackend)
    assert (backend.name, backend.model, backend.retry) == ("openai/my-model", "my-model", PATIENT)
    if "127.0.0.1" in json.dumps([kwargs, env]):
        assert str(backend.client.base_url).startswith("http://127.0.0.1:9/v1")
    backend.close()


# ---------------------------------------------------------------- plain chat
def test_chat_reads_text_usage_and_first_token_logprobs() -> None:
    fb = FakeBackend([OK], model="judge-x")
    reply = fb.chat(REQUEST)
    assert reply.text == "A" and reply.model == "judge-x" and reply.finish_reason == "stop"
    assert reply.first_token_logprobs is not None
    assert [t for t, _ in reply.first_token_logprobs] == ["A", "B"]
    assert [lp for _, lp in reply.first_token_logprobs] == pytest.approx([math.log(0.7), math.log(0.3)])
    assert (reply.prompt_tokens, reply.completion_tokens) == (50, 1)
    body = fb.history[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1
    assert body["temperature"] == 0.0 and body["seed"] == 0


def test_chat_without_logprobs_asks_for_none() -> None:
    fb = FakeBackend(["B"])
    reply = fb.chat(ChatRequest(messages=REQUEST.messages, seed=None))
    assert reply.first_token_logprobs is None and reply.text == "B"
    assert "logprobs" not in fb.history[0] and "seed" not in fb.history[0]


def test_retry_after_is_honoured_instead_of_backoff() -> None:
    # The backoff alone would wait 30 s; Retry-After: 0 makes the retry immediate.
    slow = RetryPolicy(attempts=3, initial_wait_s=30, max_wait_s=60, jitter_s=0)
    fb = FakeBackend([FakeReply(status=429, headers={"retry-after": "0"}), OK], retry=slow)
    start = time.perf_counter()
    assert fb.chat(REQUEST).text == "A"
    assert time.perf_counter() - start < 5 and len(fb.history) == 2


def test_rate_limit_then_success_with_the_brief_policy() -> None:
    fb = FakeBackend([FakeReply(status=429, headers={"retry-after": "0"}), OK], retry=PATIENT)
    assert fb.chat(REQUEST).text == "A" and len(fb.history) == 2


def _state(attempt: int, exc: BaseException | None) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    if exc is not None:
        state.set_exception((type(exc), exc, None))
    return state


def _status_error(status: int, headers: dict[str, str]) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://fake.invalid/v1/chat/completions")
    return openai.APIStatusError("boom", response=httpx.Response(status, headers=headers, request=request),
                                 body=None)


@pytest.mark.parametrize(("attempt", "headers", "expected"), [
    (1, {"retry-after": "2"}, 2.0),
    (1, {"retry-after": "120"}, 10.0),  # capped at max_wait_s
    (1, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.5),  # a date: fall back to backoff
    (1, {}, 0.5),
    (2, {}, 1.0),
    (3, {}, 2.0),
    (9, {}, 10.0),  # backoff capped too
])
def test_wait_prefers_retry_after_and_caps(attempt: int, headers: dict[str, str], expected: float) -> None:
    wait = _waiter(RetryPolicy(initial_wait_s=0.5, max_wait_s=10, jitter_s=0))
    assert wait(_state(attempt, _status_error(429, headers))) == pytest.approx(expected)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_unavailable_after_attempts_run_out(status: int) -> None:
    fb = FakeBackend(lambda _body: FakeReply(status=status), retry=PATIENT)
    with pytest.raises(BackendUnavailableError) as info:
        fb.chat(REQUEST)
    assert info.value.attempts == 3 and info.value.status == status
    assert len(fb.history) == 3 and str(status) in str(info.value)


@pytest.mark.parametrize(("reply", "match", "requests"), [
    (FakeReply(status=400), "refused", 1),  # not transient: no retry
    (FakeReply(body="<html>oops</html>"), "not JSON", 1),
    (FakeReply(body='{"id": "x"}', headers={"content-type": "application/json"}), "no choices", 1),
    (FakeReply(body='{"choices": [{"message": null}]}', headers={"content-type": "application/json"}),
     "not a chat completion", 1),
    (FakeReply(body='{"id": "x", "choi', headers={"content-type": "application/json"}), "not JSON", 1),
])
def test_unusable_replies_are_reply_errors(reply: FakeReply, match: str, requests: int) -> None:
    fb = FakeBackend([reply], retry=PATIENT)
    with pytest.raises(BackendReplyError, match=match):
        fb.chat(REQUEST)
    assert len(fb.history) == requests


# ---------------------------------------------------------------- structured output
def _structured(fb: FakeBackend, **kw: Any) -> Any:
    return asyncio.run(fb.astructured([{"role": "user", "content": "explain"}], Explanation,
                                      context={"retrieved_ids": ["spec/honesty"]}, **kw))


def test_structured_output_validates_against_the_context() -> None:
    bad = {**EXPLANATION, "deciding_rule": "spec/other"}
    fb = FakeBackend([json.dumps(bad), json.dumps(EXPLANATION)])
    reply = _structured(fb, max_retries=1, max_tokens=300)
    assert reply.value.model_dump() == EXPLANATION and reply.raw == json.dumps(EXPLANATION)
    assert len(fb.history) == 2 and fb.history[0]["max_tokens"] == 300
    assert "spec/other" in json.dumps(fb.history[1]["messages"][-1])


def test_structured_output_that_never_validates_keeps_the_raw_reply() -> None:
    bad = json.dumps({**EXPLANATION, "confidence": 7})
    fb = FakeBackend([bad, bad])
    with pytest.raises(StructuredOutputError) as info:
        _structured(fb, max_retries=1)
    assert info.value.raw == bad and info.value.attempts == 2


def test_structured_output_retries_transient_endpoint_errors() -> None:
    fb = FakeBackend([FakeReply(status=429, headers={"retry-after": "0"}), json.dumps(EXPLANATION)], retry=PATIENT)
    assert _structured(fb, max_retries=0).value.deciding_rule == "spec/honesty"
    assert len(fb.history) == 2
    down = FakeBackend(lambda _body: FakeReply(status=502), retry=PATIENT)
    with pytest.raises(BackendUnavailableError) as info:
        _structured(down, max_retries=2)
    assert info.value.status == 502 and len(down.history) == 3


# ---------------------------------------------------------------- secrets
def test_fake_key_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fb = FakeBackend([FakeReply(status=500), OK])
    assert fb.chat(REQUEST).text == "A"
    assert "transient failure" in caplog.text  # something was logged...
    assert "fake-key" not in caplog.text  # ...but never the key


def test_real_client_key_is_sent_but_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-test-SECRET"
    seen: list[str] = []
    replies = iter([httpx.Response(503, json={"error": {"message": "busy"}}),
                    httpx.Response(200, json={
                        "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                     "message": {"role": "assistant", "content": "B"}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})])

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return next(replies)

    client = openai.AsyncOpenAI(base_url="http://endpoint.invalid/v1", api_key=secret,
                                http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)))
    backend = OpenAIProtocolBackend(name="openai/m", model="m", client=client, retry=PATIENT)
    caplog.set_level(logging.DEBUG)
    assert backend.chat(REQUEST).text == "B"
    assert seen == [f"Bearer {secret}"] * 2
    assert "Request options" in caplog.text  # the client logged its request at DEBUG...
    assert secret not in caplog.text  # ...without the key


def test_protected_secrets_are_blanked_until_the_set_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("judge.backends.test")
    secrets.protect("tok-12345")
    assert "tok-12345" in secrets.protected()
    with caplog.at_level(logging.INFO, logger="judge.backends.test"):
        log.info("calling with tok-12345")
        secrets.protect_only(set())
        log.info("calling again with tok-12345")
    assert caplog.messages == ["calling with ***", "calling again with tok-12345"]
    assert secrets.protected() == frozenset()


def test_a_placeholder_key_is_blanked_as_a_token_not_inside_words() -> None:
    text = "ValueError: expected x, got x in exception; Bearer x, ?api_key=x&y=1"
    assert secrets.blank(text, ["x"]) == "ValueError: expected ***, got *** in exception; Bearer ***, ?api_key=***&y=1"
    assert secrets.blank("Bearer sk-a1b2c3. and sk-a1b2c3d", ["sk-a1b2c3"]) == "Bearer ***. and sk-a1b2c3d"


def test_sync_calls_in_new_event_loops_do_not_reuse_dead_connections(caplog: pytest.LogCaptureFixture) -> None:
    """`chat` / `Judge.compare` run each call in a new event loop: the client must not retry a dead keep-alive
    connection from the previous loop (found against the embedded server: every call's first try failed)."""
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import openai

    from judge.backends.base import ChatRequest
    from judge.backends.openai_compat import OpenAIProtocolBackend

    body = _json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "finish_reason": "length",
                                     "message": {"role": "assistant", "content": "A"},
                                     "logprobs": {"content": [{"token": "A", "logprob": -0.1, "bytes": None,
                                                               "top_logprobs": [{"token": "A", "logprob": -0.1,
                                                                                 "bytes": None}]}]}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: connections outlive a request

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    made: list[openai.AsyncOpenAI] = []

    def factory() -> openai.AsyncOpenAI:
        made.append(openai.AsyncOpenAI(base_url=url, api_key="sk-test"))
        return made[-1]

    backend = OpenAIProtocolBackend(name="openai/m", model="m", client=factory(), client_factory=factory)
    try:
        with caplog.at_level("WARNING"):
            replies = [backend.chat(ChatRequest(messages=({"role": "user", "content": "hi"},), top_logprobs=1))
                       for _ in range(3)]
    finally:
        server.shutdown()
        server.server_close()
    assert [r.text for r in replies] == ["A", "A", "A"]
    assert "transient failure" not in caplog.text  # no dead connection was tried first
    assert len(made) == 4  # each sync call closes its client before its loop ends; the next call gets a new one
