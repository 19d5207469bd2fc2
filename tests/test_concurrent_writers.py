"""Several processes adding rulings to one SQLite file and one local retrieval index: nothing lost, no crash.

A local Chroma directory is not safe for two processes at once: a conflict check reading the vector index
while another process writes it failed with ``chromadb.errors.InternalError: Error finding id``. Writers now
take one file lock in the index directory (`RuleIndex.writing`).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from judge.retrieval.embedder import HashEmbedder
from judge.retrieval.index import WRITE_LOCK_NAME, RuleIndex, make_client
from judge.rulebook import Rulebook
from judge.settings import Settings
from judge.store import RulebookStore

ROOT = Path(__file__).resolve().parent.parent

ADD_ONE = """
import sys
from judge.retrieval.embedder import HashEmbedder
from judge.retrieval.index import RuleIndex, make_client
from judge.rulebook import Rulebook
from judge.settings import Settings
from judge.store import RulebookStore

db, index_path, proc, i = sys.argv[1:]
settings = Settings(db_url=db, index_path=index_path)
rb = Rulebook(RulebookStore.open(db), RuleIndex(make_client(settings), HashEmbedder(dim=64)))
rb.add_ruling(prompt=f"Question {proc}-{i}: how do I do task number {proc}{i}?", response_a=f"Do step {i}.",
              response_b=f"I will not help with {proc}.", holding="A", rationale="helpful")
"""


def _open(tmp_path: Path) -> Rulebook:
    db = f"sqlite:///{tmp_path / 'judge.db'}"
    settings = Settings(db_url=db, index_path=tmp_path / "index", data_dir=tmp_path / "data")
    return Rulebook(RulebookStore.open(db), RuleIndex(make_client(settings), HashEmbedder(dim=64)))


def test_writers_in_other_processes_lose_nothing_and_never_crash(tmp_path: Path) -> None:
    """Each `add_ruling` in a process of its own, as `judge rulebook add-ruling` runs, several chains at once."""
    rb = _open(tmp_path)
    rb.add_ruling(prompt="Seed question?", response_a="yes", response_b="no", holding="A", rationale="seed")
    chains, each = 3, 3
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def chain(proc: int) -> list[subprocess.CompletedProcess[str]]:
        return [subprocess.run([sys.executable, "-c", ADD_ONE, f"sqlite:///{tmp_path / 'judge.db'}",
                                str(tmp_path / "index"), str(proc), str(i)], capture_output=True, text=True,
                               env=env, cwd=ROOT, timeout=600, check=False) for i in range(each)]

    with ThreadPoolExecutor(chains) as pool:
        runs = [r for rs in pool.map(chain, range(chains)) for r in rs]
    assert [r.returncode for r in runs] == [0] * len(runs), [r.stderr[-1500:] for r in runs if r.returncode]
    with sqlite3.connect(tmp_path / "judge.db") as conn:
        stored = conn.execute("select count(distinct rule_id) from rule_versions where rule_id like 'ruling/%'"
                              ).fetchone()[0]
    assert stored == 1 + chains * each
    # the index agrees with SQL: current, and every ruling is found by its own pair
    fresh = _open(tmp_path)
    assert fresh.index is not None
    assert fresh.index.state().rulebook_version == fresh.version
    assert fresh.index.count() == stored  # only rulings were added
    assert (tmp_path / "index" / WRITE_LOCK_NAME).exists()


def test_a_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    """Two writers on one local index (two handles, as two processes would have) never overlap."""
    first, second = _open(tmp_path), _open(tmp_path)
    assert first.index is not None
    order: list[str] = []
    holding = threading.Event()

    def hold() -> None:
        assert first.index is not None
        with first.index.writing():
            holding.set()
            time.sleep(1.0)
            order.append("first done")

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(timeout=30)
    second.add_ruling(prompt="Question?", response_a="yes", response_b="no", holding="A", rationale="r")
    order.append("second wrote")
    thread.join()
    assert order == ["first done", "second wrote"]


def test_an_in_memory_index_takes_no_lock(hash_rulebook: Rulebook) -> None:
    assert hash_rulebook.index is not None
    with hash_rulebook.index.writing(), hash_rulebook.index.writing():  # re-entrant, and free
        pass


def test_a_writer_held_up_too_long_gets_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from filelock import FileLock

    from judge.errors import IndexError_

    rb = _open(tmp_path)
    rb.add_ruling(prompt="Seed?", response_a="yes", response_b="no", holding="A", rationale="seed")
    monkeypatch.setattr("judge.retrieval.index.WRITE_LOCK_TIMEOUT_S", 0.2)
    other = FileLock(tmp_path / "index" / WRITE_LOCK_NAME)
    with other, pytest.raises(IndexError_, match="another process has been writing the retrieval index"):
        rb.add_ruling(prompt="Another?", response_a="yes", response_b="no", holding="A", rationale="r")
    assert len(list(rb.rules())) == 1  # nothing of the refused ruling was written
