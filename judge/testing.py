"""Helpers for testing code that uses `judge`: a deterministic rulebook without any model.

`hash_rulebook` loads rulebook text into a SQLite file with the deterministic hash embedder and an
in-memory Chroma index, so retrieval - and therefore every prompt - is identical on every machine. The
cassette tests and the script that records them both build their rulebook with it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from judge.retrieval.embedder import HashEmbedder
from judge.retrieval.index import RuleIndex, make_ephemeral_client
from judge.rulebook import Rulebook
from judge.store import RulebookStore

__all__ = ["hash_rulebook"]


def hash_rulebook(db_url: str, rulebook_dir: str | Path | None = None, *, dim: int = 128) -> Rulebook:
    """A Rulebook on `db_url` indexed with `HashEmbedder(dim)` in memory, loaded from `rulebook_dir` if given."""
    index = RuleIndex(make_ephemeral_client(), HashEmbedder(dim=dim), collection=f"t{uuid.uuid4().hex[:12]}")
    rulebook = Rulebook(RulebookStore.open(db_url), index)
    if rulebook_dir is not None:
        rulebook.load(rulebook_dir)
    return rulebook
