"""Retrieval: embed rules and pairs, and find the rules nearest a pair in a derived Chroma index.

The index is rebuilt from the SQL system of record whenever it is stale; see `RuleIndex`.
"""

from judge.retrieval.embedder import (
    Embedder,
    HashEmbedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    embedder_for,
    make_embedder,
)
from judge.retrieval.index import (
    INDEX_SCHEMA_VERSION,
    Hit,
    IndexState,
    RuleIndex,
    make_client,
    make_ephemeral_client,
)

__all__ = [
    "INDEX_SCHEMA_VERSION",
    "Embedder",
    "HashEmbedder",
    "Hit",
    "IndexState",
    "OnnxEmbedder",
    "RuleIndex",
    "SentenceTransformerEmbedder",
    "embedder_for",
    "make_client",
    "make_embedder",
    "make_ephemeral_client",
]
