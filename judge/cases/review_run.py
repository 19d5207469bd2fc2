"""Run the automated case review against a store: embed, rank entries, check contamination, record.

The I/O edge of `judge.cases.autoreview` (which decides): reads the draft cases and the spec entries'
texts, embeds both, reads the benchmark prompts, and - with ``apply`` - records every decision in the
store's review log with method ``check``, all in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from judge.cases.autoreview import (
    CHECK_REVIEWER,
    DEFAULT_POLICY,
    CaseCheck,
    CheckPolicy,
    check_cases,
    entry_ranks,
    relevance_texts,
)
from judge.cases.contamination import BenchmarkPrompt, find_contamination, read_benchmark
from judge.cases.model import CaseStatus, TestCase
from judge.cases.store import CaseStore, Decision
from judge.retrieval.embedder import Embedder
from judge.retrieval.passages import split_text
from judge.rules.model import Rule

__all__ = ["CaseCheckRun", "review_drafts"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CaseCheckRun:
    """The outcome of `review_drafts`: one decision per draft checked, and whether they were recorded."""

    decisions: list[CaseCheck]
    applied: bool

    @property
    def accepted(self) -> int:
        """Drafts the check accepted."""
        return sum(d.status is CaseStatus.ACCEPTED for d in self.decisions)

    @property
    def rejected(self) -> int:
        """Drafts the check rejected."""
        return sum(d.status is CaseStatus.REJECTED for d in self.decisions)


def _passages(rules: Sequence[Rule]) -> tuple[list[str], list[str]]:
    texts, owners = [], []
    for rule in rules:
        for passage in [*split_text(rule.text), *(c.question for c in rule.checks)]:
            texts.append(f"{rule.title}\n\n{passage}")
            owners.append(rule.id)
        texts.append(rule.title)
        owners.append(rule.id)
    return texts, owners


def review_drafts(store: CaseStore, entries: Sequence[Rule], embedder: Embedder, *,
                  benchmarks: Sequence[str | Path] = (), policy: CheckPolicy = DEFAULT_POLICY,
                  entry: str | None = None, apply: bool = False,
                  progress: Progress | None = None) -> CaseCheckRun:
    """Check every draft case (of one entry, or all) and optionally record the decisions.

    Args:
        store: the case store.
        entries: the current spec entries (their texts are what a case must be about).
        embedder: embeds cases and entry passages (the store's embedder).
        benchmarks: JSONL files of benchmark prompts the cases must not overlap.
        policy: the check's thresholds.
        entry: only the drafts testing this entry.
        apply: record the decisions (reviewer `CHECK_REVIEWER`, method ``check``, the reasons as note).
        progress: called while embedding.
    """
    drafts: list[TestCase] = store.list_cases(entry=entry, status=CaseStatus.DRAFT)
    if not drafts:
        return CaseCheckRun([], apply)
    prompts: list[BenchmarkPrompt] = []
    for path in benchmarks:
        prompts.extend(read_benchmark(path))
    hits = find_contamination(((c.id, c.text()) for c in drafts), prompts)
    contaminated = {h.case_id: f"{h.source} line {h.line}: {h.snippet!r}" for h in hits}
    texts, owners = _passages(entries)
    total = len(texts) + len(drafts)
    passage_vectors = embedder.encode(texts)
    if progress is not None:
        progress(len(texts), total)
    whole, expected = [], []
    for start in range(0, len(drafts), 256):
        chunk = drafts[start:start + 256]
        pairs = [relevance_texts(c) for c in chunk]
        whole.append(embedder.encode([p[0] for p in pairs]))
        expected.append(embedder.encode([p[1] for p in pairs]))
        if progress is not None:
            progress(len(texts) + start + len(chunk), total)
    tested = [c.entries for c in drafts]
    ranks = [min(a, b) for a, b in zip(entry_ranks(np.vstack(whole), passage_vectors, owners, tested),
                                       entry_ranks(np.vstack(expected), passage_vectors, owners, tested),
                                       strict=True)]
    decisions = check_cases(drafts, ranks, contaminated, policy)
    if apply:
        store.review({d.case_id: Decision(d.status, CHECK_REVIEWER, "check", d.note) for d in decisions})
        log.info("case check recorded: %d accepted, %d rejected", sum(d.status is CaseStatus.ACCEPTED
                                                                       for d in decisions),
                 sum(d.status is CaseStatus.REJECTED for d in decisions))
    return CaseCheckRun(decisions, apply)
