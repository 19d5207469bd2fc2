"""Shared fixtures: every test gets its own data dir, and nothing reaches a model hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every JUDGE_* location at a per-test temporary directory."""
    data_dir = tmp_path / "judge-data"
    monkeypatch.setenv("JUDGE_DATA_DIR", str(data_dir))
    for var in ("JUDGE_DB", "JUDGE_INDEX_PATH", "JUDGE_CHROMA_URL", "JUDGE_EMBEDDING_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return data_dir


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it are skipped loudly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: CI runs with ../shared beside the checkout")
    return SHARED_DATA


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file URL."""
    return f"sqlite:///{tmp_path / 'rulebook.db'}"


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
