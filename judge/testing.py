"""Helpers for testing code that uses `judge`: a deterministic rulebook without any model, and a stub endpoint.

`hash_rulebook` loads rulebook text into a SQLite file with the deterministic hash embedder and an
in-memory Chroma index, so retrieval - and therefore every prompt - is identical on every machine. The
cassette tests and the script that records them both build their rulebook with it. `stub_endpoint` serves an
OpenAI-compatible chat endpoint on the loopback interface that always answers ``A``: enough to judge a pair
through ``openai/<model>`` without a model.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from judge.retrieval.embedder import HashEmbedder
from judge.retrieval.index import RuleIndex, make_ephemeral_client
from judge.rulebook import Rulebook
from judge.store import RulebookStore

__all__ = ["hash_rulebook", "stub_endpoint"]


def hash_rulebook(db_url: str, rulebook_dir: str | Path | None = None, *, dim: int = 128) -> Rulebook:
    """A Rulebook on `db_url` indexed with `HashEmbedder(dim)` in memory, loaded from `rulebook_dir` if given."""
    index = RuleIndex(make_ephemeral_client(), HashEmbedder(dim=dim), collection=f"t{uuid.uuid4().hex[:12]}")
    rulebook = Rulebook(RulebookStore.open(db_url), index)
    if rulebook_dir is not None:
        rulebook.load(rulebook_dir)
    return rulebook


class _AlwaysA(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that always answers ``A`` with token logprobs."""

    def do_POST(self) -> None:  # the http.server protocol names it
        self.rfile.read(int(self.headers.get("content-length", 0)))
        top = [{"token": "A", "logprob": math.log(0.8), "bytes": None},
               {"token": "B", "logprob": math.log(0.2), "bytes": None}]
        body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "stub",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "A"},
                                        "logprobs": {"content": [{**top[0], "top_logprobs": top}]}}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def stub_endpoint() -> Iterator[str]:
    """Serve the always-``A`` chat endpoint on 127.0.0.1 (a free port) for the ``with`` block; yields its base
    URL (``http://127.0.0.1:PORT/v1``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysA)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
