"""Automated review of draft test cases: the checks `judge cases check` applies, recorded as method ``check``.

A draft case is accepted by the check when all of these hold, and rejected (never deleted) with the reasons
otherwise:

* **on topic** - the entry the case says it tests is among the ``top_k`` spec entries most similar to the
  case, scoring an entry by its best passage (its title, its text cut into passages, its checks' questions)
  and the case both as a whole (conversation, prompt, expected behaviour) and by its expected behaviour
  alone (what the case asks of a compliant answer is what names the entry; the prompt's topic often does
  not), the better of the two ranks counting;
* **clean** - its text shares no word 8-gram with a benchmark prompt (`judge.cases.contamination`);
* **specific** - it states the expected behaviour in at least ``min_expected_words`` words;
* **tagged** - it carries every tag in ``required_tags``.

A check is weaker than a person: it can tell that a case is about its entry and does not leak a benchmark,
not that the expected behaviour is right. Cases keep the method that accepted them, so a gate can require a
person's review (`judge.gate.policy.GatePolicy.review_methods`). Pure: vectors, passages and contamination
hits in, decisions out; `entry_ranks` is plain numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from judge.cases.model import CaseStatus, TestCase

__all__ = ["CHECK_REVIEWER", "DEFAULT_POLICY", "CaseCheck", "CheckPolicy", "check_cases", "entry_ranks",
           "relevance_texts"]

#: The reviewer name recorded on cases this check decides (its version changes when the checks do).
CHECK_REVIEWER = "judge-cases-check-v2"


@dataclass(frozen=True)
class CheckPolicy:
    """What the automated review requires.

    Attributes:
        top_k: the case's entry must rank within this many spec entries by similarity.
        min_expected_words: the expected behaviour must have at least this many words.
        required_tags: tags every case must carry (e.g. ``("topic", "difficulty", "adversarial", "language")``).
    """

    top_k: int = 20
    min_expected_words: int = 5
    required_tags: tuple[str, ...] = ()


DEFAULT_POLICY = CheckPolicy()


@dataclass(frozen=True)
class CaseCheck:
    """The automated decision on one case.

    Attributes:
        case_id: the case.
        status: accepted or rejected.
        reasons: why it was rejected (empty when accepted).
        entry_rank: 1-based rank of the case's best-ranked entry among all spec entries.
    """

    case_id: str
    status: CaseStatus
    reasons: tuple[str, ...]
    entry_rank: int

    @property
    def note(self) -> str:
        """The review-log note: the check's verdict in words."""
        if self.status is CaseStatus.ACCEPTED:
            return f"{CHECK_REVIEWER}: passed (entry rank {self.entry_rank})"
        return f"{CHECK_REVIEWER}: " + "; ".join(self.reasons)


def relevance_texts(case: TestCase) -> tuple[str, str]:
    """What the on-topic check embeds: the whole case (conversation, prompt, expected behaviour), and the
    expected behaviour alone (the prompt when there is none)."""
    whole = "\n".join(part for part in (case.text(), case.expected or "") if part)
    return whole, case.expected or case.prompt


def entry_ranks(case_vectors: np.ndarray, passage_vectors: np.ndarray, passage_entries: Sequence[str],
                case_entries: Sequence[Sequence[str]]) -> list[int]:
    """Rank of each case's best entry among all entries, scoring an entry by its most similar passage.

    Args:
        case_vectors: one L2-normalised row per case.
        passage_vectors: one L2-normalised row per passage.
        passage_entries: the entry id of each passage row.
        case_entries: the entries each case tests.

    Returns:
        1-based ranks (1 = the most similar entry); ``len(entries) + 1`` when none of a case's entries has
        a passage.
    """
    names = sorted(set(passage_entries))
    column = {name: i for i, name in enumerate(names)}
    if len(case_vectors) == 0:
        return []
    sims = case_vectors @ passage_vectors.T  # cases x passages
    scores = np.full((len(case_vectors), len(names)), -np.inf, dtype=np.float64)
    owner = np.array([column[e] for e in passage_entries])
    for j in range(len(names)):
        scores[:, j] = sims[:, owner == j].max(axis=1)
    ranks = []
    for i, entries in enumerate(case_entries):
        own = [column[e] for e in entries if e in column]
        if not own:
            ranks.append(len(names) + 1)
            continue
        best = max(scores[i, j] for j in own)
        ranks.append(int((scores[i] > best).sum()) + 1)
    return ranks


def check_cases(cases: Sequence[TestCase], ranks: Sequence[int], contaminated: Mapping[str, str],
                policy: CheckPolicy = DEFAULT_POLICY) -> list[CaseCheck]:
    """Decide each case: accepted when every check passes, else rejected with the reasons.

    Args:
        cases: the cases, in the order of ``ranks``.
        ranks: `entry_ranks` of each case.
        contaminated: case id -> what it overlaps (source and text), for the cases that overlap a benchmark.
        policy: the thresholds.
    """
    decisions = []
    for case, rank in zip(cases, ranks, strict=True):
        reasons = []
        if rank > policy.top_k:
            reasons.append(f"off topic: its entry ranks {rank} by similarity (needs top {policy.top_k})")
        if case.id in contaminated:
            reasons.append(f"overlaps a benchmark prompt: {contaminated[case.id]}")
        if len((case.expected or "").split()) < policy.min_expected_words:
            reasons.append(f"expected behaviour under {policy.min_expected_words} words")
        missing = [t for t in policy.required_tags if t not in case.tags]
        if missing:
            reasons.append(f"missing tag(s): {', '.join(missing)}")
        status = CaseStatus.REJECTED if reasons else CaseStatus.ACCEPTED
        decisions.append(CaseCheck(case.id, status, tuple(reasons), rank))
    return decisions
