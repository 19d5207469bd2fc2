"""Pair files: moved to `judge.records` (re-exported here for code that imports them from this path)."""

from judge.records import MAX_FIELD_CHARS, PairRecord, pair_id, read_pairs

__all__ = ["MAX_FIELD_CHARS", "PairRecord", "pair_id", "read_pairs"]
