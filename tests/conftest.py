"""Shared fixtures: every test gets its own data dir, and nothing reaches a model hub."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "data"


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every JUDGE_* location at a per-test temporary directory."""
    data_dir = tmp_path / "judge-data"
    monkeypatch.setenv("JUDGE_DATA_DIR", str(data_dir))
    for var in ("JUDGE_DB", "JUDGE_INDEX_PATH", "JUDGE_CHROMA_URL", "JUDGE_EMBEDDING_MODEL", "JUDGE_BACKEND",
                "JUDGE_EMBEDDER_RUNTIME", "JUDGE_CONFIG", "JUDGE_CALIBRATOR", "JUDGE_RETRIEVAL", "JUDGE_BASE_URL",
                "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return data_dir


@pytest.fixture
def shared_data() -> Path:
    """The checkout's data/ folder: the Model Spec extraction (model_spec/) and the labelled dev sets (dev/)."""
    return DATA


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file URL."""
    return f"sqlite:///{tmp_path / 'rulebook.db'}"


@pytest.fixture
def empty_db_url(sqlite_url: str) -> str:
    """`sqlite_url` with the database created and migrated, holding nothing (commands that only read refuse a
    database that does not exist)."""
    from judge.store import open_database

    open_database(sqlite_url).dispose()
    return sqlite_url


@pytest.fixture
def hash_rulebook(sqlite_url: str):  # returns judge.rulebook.Rulebook
    """A Rulebook on a fresh SQLite file with the deterministic hash embedder and an in-memory index."""
    from judge.testing import hash_rulebook

    return hash_rulebook(sqlite_url)


@pytest.fixture(autouse=True)
def _restore_logger_levels():  # the CLI quiets third-party loggers; keep that from leaking between tests
    import logging

    names = ("instructor", "httpx", "httpx2", "openai", "chromadb")
    saved = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(autouse=True)
def _forget_secrets():  # keys a test's backend registered must not blank text in later tests' logs
    from judge.backends import secrets

    saved = secrets.protected()
    yield
    secrets.protect_only(saved)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _close_chroma_connections(port: int) -> None:
    """Close the HTTP connections of every Chroma client of the test server (best effort).

    chromadb 1.5.9 never closes an HttpClient's connection pool, not even on ``close()``; left open they are
    reported as ResourceWarnings when the interpreter exits.
    """
    from chromadb.api import ServerAPI
    from chromadb.api.shared_system_client import SharedSystemClient

    for system in list(getattr(SharedSystemClient, "_identifier_to_system", {}).values()):
        if str(system.settings.chroma_server_http_port) == str(port):
            session = getattr(system.instance(ServerAPI), "_session", None)
            if session is not None:
                session.close()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Chroma server (`chroma run` on 127.0.0.1, a free port, a tmp --path) shared by the session.

    Skipped when the ``chroma`` executable is missing or ``JUDGE_TEST_CHROMA_SERVER=0``. Tests share the
    server: each one must use its own collection names or delete what it finds (see test_retrieval.py).
    """
    if os.environ.get("JUDGE_TEST_CHROMA_SERVER", "1") == "0":
        pytest.skip("JUDGE_TEST_CHROMA_SERVER=0: Chroma server tests are off")
    beside = Path(sys.executable).parent / "chroma"  # the venv's, even when the venv is not activated
    exe = str(beside) if beside.is_file() else shutil.which("chroma")
    if exe is None:
        pytest.skip("no `chroma` executable (pip install chromadb) to start a Chroma server with")
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    root = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([exe, "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port",
                                 str(port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                chromadb.HttpClient(host="127.0.0.1", port=port,
                                    settings=ChromaSettings(anonymized_telemetry=False)).heartbeat()
                break
            except Exception as exc:  # not listening yet: connection errors vary by transport
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                    pytest.fail(f"`chroma run` on port {port} did not answer a heartbeat ({exc}); log:\n{tail}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        _close_chroma_connections(port)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
