"""How many test cases each spec entry has: the shared shape between the case store and the release gate."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EntryCoverage"]


@dataclass(frozen=True)
class EntryCoverage:
    """Test cases of one spec entry.

    Attributes:
        entry_id: The spec entry (``spec/<slug>``).
        distinct_accepted: Accepted cases after merging near-duplicates (what the gate counts).
        accepted: Accepted cases, near-duplicates included.
        draft: Cases waiting for review.
        rejected: Cases a reviewer rejected.
    """

    entry_id: str
    distinct_accepted: int
    accepted: int
    draft: int
    rejected: int
