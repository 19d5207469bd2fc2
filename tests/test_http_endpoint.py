"""The verdict call over HTTP, against a real loopback HTTP server (no network, no model).

Backends as the registry builds them: the request the openai client sends, the reply parsed, retries on
429 / 5xx / timeouts / refused connections honouring Retry-After, clear errors, no leaked key, the proxy
settings of the environment, and connections that never outlive their event loop.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from judge.backends.base import ChatRequest
from judge.backends.deferred import DeferredBackend
from judge.backends.openai_compat import OpenAIProtocolBackend, RetryPolicy
from judge.backends.registry import make_backend
from judge.errors import BackendReplyError, BackendUnavailableError
from judge.judging.engine import Judge, bare_config
from judge.judging.runner import run_pairs
from judge.records import PairRecord
from judge.rules.model import Pair

REQUEST = ChatRequest(messages=({"role": "user", "content": "Which is better? A or B."},), top_logprobs=2)
PATIENT = RetryPolicy(attempts=3, initial_wait_s=0, max_wait_s=5, jitter_s=0, timeout_s=5)
SECRET = "sk-endpoint-SECRET"


def completion(text: str = "A", lp_a: float = -0.1, lp_b: float = -2.4) -> bytes:
    return json.dumps({
        "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": text},
                     "logprobs": {"content": [{"token": text, "logprob": lp_a, "bytes": None, "top_logprobs": [
                         {"token": "A", "logprob": lp_a, "bytes": None},
                         {"token": "B", "logprob": lp_b, "bytes": None}]}]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}}).encode()


@dataclass
class Reply:
    status: int = 200
    body: bytes = field(default_factory=completion)
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay_s: float = 0.0


@dataclass
class Endpoint:
    base_url: str
    script: list[Reply]
    seen: list[tuple[str, dict[str, str], dict[str, object]]] = field(default_factory=list)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 answering POSTs from a script (the last reply repeats)."""
    state = Endpoint(base_url="", script=[])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            reply = state.script.pop(0) if len(state.script) > 1 else state.script[0]
            if reply.delay_s:
                time.sleep(reply.delay_s)
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def backend_for(base_url: str, retry: RetryPolicy = PATIENT) -> OpenAIProtocolBackend:
    """A backend as the registry builds it (data_dir is only read by local backends)."""
    deferred = make_backend("openai/m", data_dir=Path("."), base_url=base_url, api_key=SECRET, retry=retry)
    assert isinstance(deferred, DeferredBackend)
    made = deferred.made()
    assert isinstance(made, OpenAIProtocolBackend)
    return made


def test_sends_what_the_openai_client_sends_and_parses_the_reply(endpoint: Endpoint) -> None:
    endpoint.script = [Reply()]
    reply = backend_for(endpoint.base_url).chat(REQUEST)
    assert reply.text == "A" and reply.prompt_tokens == 12 and reply.finish_reason == "length"
    assert reply.first_token_logprobs == (("A", -0.1), ("B", -2.4))
    (path, headers, body), = endpoint.seen
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {SECRET}" and headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("AsyncOpenAI/")  # the openai client's default headers
    assert body == {"model": "m", "messages": [dict(REQUEST.messages[0])], "max_tokens": REQUEST.max_tokens,
                    "temperature": REQUEST.temperature, "seed": REQUEST.seed, "logprobs": True, "top_logprobs": 2}


def test_rate_limit_honours_retry_after_then_succeeds(endpoint: Endpoint) -> None:
    endpoint.script = [Reply(429, b'{"error": "slow down"}', {"Retry-After": "0"}), Reply()]
    slow = RetryPolicy(attempts=3, initial_wait_s=30, max_wait_s=60, jitter_s=0, timeout_s=5)
    start = time.perf_counter()
    assert backend_for(endpoint.base_url, slow).chat(REQUEST).text == "A"
    assert len(endpoint.seen) == 2
    assert time.perf_counter() - start < 10  # Retry-After: 0 was used, not the 30 s backoff


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_statuses_exhaust_into_unavailable(endpoint: Endpoint, status: int) -> None:
    endpoint.script = [Reply(status, b'{"error": "busy"}')]
    with pytest.raises(BackendUnavailableError) as info:
        backend_for(endpoint.base_url).chat(REQUEST)
    assert info.value.status == status and len(endpoint.seen) == PATIENT.attempts


def test_refused_request_is_a_reply_error_without_the_key(endpoint: Endpoint) -> None:
    endpoint.script = [Reply(400, f'{{"error": "bad request from Bearer {SECRET}"}}'.encode())]
    with pytest.raises(BackendReplyError, match="endpoint refused the request: Error code: 400") as info:
        backend_for(endpoint.base_url).chat(REQUEST)
    assert SECRET not in str(info.value) and len(endpoint.seen) == 1  # not retried


@pytest.mark.parametrize(("reply", "match"), [
    (Reply(body=b"<html>gateway</html>", headers={"Content-Type": "text/html"}), "not JSON"),
    (Reply(body=b'{"object": "error"}'), "has no choices"),
])
def test_garbage_replies_are_reply_errors(endpoint: Endpoint, reply: Reply, match: str) -> None:
    endpoint.script = [reply]
    with pytest.raises(BackendReplyError, match=match):
        backend_for(endpoint.base_url).chat(REQUEST)


def test_timeout_is_retried_then_unavailable(endpoint: Endpoint) -> None:
    endpoint.script = [Reply(delay_s=3.0)]
    quick = RetryPolicy(attempts=2, initial_wait_s=0, max_wait_s=0, jitter_s=0, timeout_s=0.5)
    with pytest.raises(BackendUnavailableError, match="APITimeoutError") as info:
        backend_for(endpoint.base_url, quick).chat(REQUEST)
    assert info.value.attempts == 2


def test_refused_connection_is_retried_then_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BackendUnavailableError) as info:
        backend_for(f"http://127.0.0.1:{port}/v1").chat(REQUEST)
    assert info.value.attempts == PATIENT.attempts and SECRET not in str(info.value)


def test_each_event_loop_gets_fresh_connections(endpoint: Endpoint) -> None:
    endpoint.script = [Reply()]
    backend = backend_for(endpoint.base_url)
    assert [backend.chat(REQUEST).text for _ in range(3)] == ["A", "A", "A"]  # three loops, no dead reuse
    assert len(endpoint.seen) == 3  # each asked once: no request failed on a dead connection and was retried


def test_the_old_direct_http_option_warns_and_changes_nothing(endpoint: Endpoint) -> None:
    endpoint.script = [Reply()]
    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=SECRET)

    with pytest.warns(DeprecationWarning, match="direct_http"):
        backend = OpenAIProtocolBackend(name="openai/m", model="m", client=factory(), client_factory=factory,
                                        retry=PATIENT, direct_http=True)
    assert backend.chat(REQUEST).text == "A"
    assert endpoint.seen[0][1]["user-agent"].startswith("AsyncOpenAI/")


def test_a_batch_run_judges_both_orders_and_releases_its_connections(endpoint: Endpoint, tmp_path: Path) -> None:
    endpoint.script = [Reply()]  # always "A": the judge prefers slot A, so the orders disagree
    backend = backend_for(endpoint.base_url)
    judge = Judge(backend, config=bare_config(backend), concurrent_orders=True)
    records = [PairRecord(pair=Pair(id=f"p{i}", prompt="Say hi.", response_a="Hi!", response_b="Hello."),
                          label=None, source="t", line=i + 1) for i in range(6)]
    report = asyncio.run(run_pairs(judge, records, out=tmp_path / "out.jsonl", concurrency=3))
    assert report.judged == 6 and report.failed == 0 and len(endpoint.seen) == 12
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(v["position_inconsistent"] for v in lines)


def test_proxy_from_the_environment_is_used(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY applies as it does to the openai client: the request reaches the proxy, naming the endpoint."""
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    proxy = endpoint.base_url.removesuffix("/v1")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    endpoint.script = [Reply()]
    assert backend_for("http://judge-endpoint.invalid/v1").chat(REQUEST).text == "A"
    assert endpoint.seen[0][0] == "http://judge-endpoint.invalid/v1/chat/completions"  # absolute form: proxied


def test_no_proxy_exempts_the_endpoint(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_PROXY covers the endpoint's host: the request goes straight to it, not to the (dead) proxy."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for var in ("ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, dead)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "localhost,127.0.0.1")
    endpoint.script = [Reply()]
    assert backend_for(endpoint.base_url).chat(REQUEST).text == "A"
    assert endpoint.seen[0][0] == "/v1/chat/completions"  # origin form: not proxied


def test_async_callers_release_the_connections_explicitly(endpoint: Endpoint) -> None:
    endpoint.script = [Reply()]
    backend = backend_for(endpoint.base_url)
    judge = Judge(backend, config=bare_config(backend))
    pair = Pair(id="p", prompt="Say hi.", response_a="Hi!", response_b="Hello.")

    async def own_loop() -> None:
        assert (await judge.acompare(pair)).failure is None
        await judge.release()

    asyncio.run(own_loop())
    asyncio.run(own_loop())  # a released backend reconnects in the next loop
    assert len(endpoint.seen) == 4


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_new_event_loop_without_release_gets_a_fresh_client(endpoint: Endpoint) -> None:
    """A caller that forgets `release()` between two `asyncio.run`s: the second loop must not reuse the first
    loop's dead connections (a new client is made for it)."""
    endpoint.script = [Reply()]
    backend = backend_for(endpoint.base_url)

    async def once() -> str:
        return (await backend.achat(REQUEST)).text

    assert asyncio.run(once()) == "A"
    first = backend.client
    assert asyncio.run(once()) == "A"
    assert backend.client is not first
    asyncio.run(backend.release())  # from a third loop: the second loop's connections are dropped, not closed
    assert len(endpoint.seen) == 2
    del first
    gc.collect()  # here, where the dropped connections' ResourceWarnings are expected, not in a later test
