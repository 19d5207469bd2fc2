"""Accepted test cases guide retrieval: the cases nearest a prompt vote for the entries they test.

The vote itself (`judge.retrieval.exemplars.vote`) on hand-made vectors; the cases read from SQL
(`judge.retrieval.case_exemplars`) - only accepted ones with a vector, re-read when a case is added or
reviewed; and whole retrieval: an entry whose text shares nothing with a prompt is found through the cases
written for it, and not without them. A verdict remembered for a request is not reused once the cases that
guided its retrieval change.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from judge.cases.model import CaseStatus, TestCase
from judge.cases.store import CaseStore, Decision
from judge.retrieval.case_exemplars import ACCEPTED, exemplar_fingerprint, read_exemplars
from judge.retrieval.exemplars import Exemplars, vote
from judge.retrieval.fusion import RetrievalConfig
from judge.rulebook import Rulebook
from judge.rules.model import Authority, Layer, Pair, Rule
from judge.testing import hash_rulebook

# ----------------------------------------------------------------------------- the vote (pure)


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def exemplars(rows: list[tuple[str, np.ndarray, tuple[str, ...]]]) -> Exemplars:
    return Exemplars(tuple(r[0] for r in rows), np.stack([r[1] for r in rows]), tuple(r[2] for r in rows))


EXAMPLES = exemplars([
    ("c1", unit(1, 0, 0), ("spec/a",)),
    ("c2", unit(0.9, 0.1, 0), ("spec/b",)),
    ("c3", unit(0.8, 0.2, 0), ("spec/b",)),
    ("c4", unit(0, 1, 0), ("spec/c", "spec/a")),
    ("c5", unit(0, 0, 1), ("spec/d",)),
])


def test_the_nearest_cases_vote_by_summed_cosine() -> None:
    query = unit(1, 0, 0)
    # k=3: c1 (1.0) for a; c2 (0.99) + c3 (0.97) for b -> b first, then a; c4 and c5 are not among the 3.
    assert vote(EXAMPLES, query[None, :], k=3) == [["spec/b", "spec/a"]]
    # k=1: only the nearest case votes.
    assert vote(EXAMPLES, query[None, :], k=1) == [["spec/a"]]


def test_one_ranking_per_query_and_cases_with_several_entries_vote_for_each() -> None:
    rankings = vote(EXAMPLES, np.stack([unit(0, 1, 0), unit(0, 0, 1)]), k=1)
    assert rankings == [["spec/a", "spec/c"], ["spec/d"]]  # a tie is broken by id


def test_excluded_cases_and_rules_do_not_vote_and_dissimilar_cases_cast_no_vote() -> None:
    query = unit(1, 0, 0)[None, :]
    assert vote(EXAMPLES, query, k=1, exclude=["c1"]) == [["spec/b"]]
    assert vote(EXAMPLES, query, k=3, exclude=["spec/b"]) == [["spec/a"]]
    # every case: c5 is orthogonal (cosine 0) and votes for nothing
    assert "spec/d" not in vote(EXAMPLES, query, k=5)[0]


def test_no_exemplars_or_no_votes_give_empty_rankings() -> None:
    empty = Exemplars((), np.zeros((0, 3), dtype=np.float32), ())
    assert vote(empty, unit(1, 0, 0)[None, :]) == [[]]
    assert vote(EXAMPLES, unit(1, 0, 0)[None, :], k=0) == [[]]
    with pytest.raises(ValueError, match="2 ids, 1 rule lists"):
        Exemplars(("a", "b"), np.zeros((2, 3), dtype=np.float32), (("spec/a",),))


# ----------------------------------------------------------------------------- cases read from SQL and retrieval

DICE = "What is the probability of rolling at least one six in four rolls of a fair die?"
ENTRY_TEXTS = {
    "spec/get-facts-right": "Be correct: state facts, numbers and results accurately; check arithmetic before "
                            "answering.",
    "spec/keep-it-short": "Answer briefly when a short answer serves the user.",
    "spec/respect-privacy": "Do not reveal personal information about private individuals.",
    "spec/dice-games": "Rules of dice games in casinos: craps, sic bo and other games of chance, and gambling.",
}


def _rulebook(sqlite_url: str, config: RetrievalConfig | None = None) -> Rulebook:
    rulebook = hash_rulebook(sqlite_url)
    for rule_id, text in ENTRY_TEXTS.items():
        rulebook.add_rule(Rule(id=rule_id, layer=Layer.SPEC, title=rule_id.split("/")[1].replace("-", " "),
                               text=text, authority=Authority.USER), author="test")
    if config is not None:
        rulebook = Rulebook(rulebook.store, rulebook.index, retrieval=config)
    return rulebook


def _cases(rulebook: Rulebook) -> CaseStore:
    assert rulebook.index is not None
    return CaseStore(rulebook.store.engine, rulebook.index.embedder)


def _case(prompt: str, entry: str, status: CaseStatus = CaseStatus.ACCEPTED) -> TestCase:
    return TestCase(prompt=prompt, entries=(entry,), provenance="test", status=status,
                    reviewer="alice" if status is CaseStatus.ACCEPTED else None)


FACT_CASES = [
    "What is the probability of rolling two sixes in a row with a fair die?",
    "What is the probability of drawing an ace from a shuffled deck?",
    "How many ways can 10 guests be seated at a round table?",
]


def test_the_exemplars_status_is_the_case_store_s_accepted() -> None:
    assert CaseStatus.ACCEPTED.value == ACCEPTED


def test_only_accepted_cases_with_a_vector_are_read_and_the_fingerprint_moves(sqlite_url: str,
                                                                               caplog: pytest.LogCaptureFixture
                                                                               ) -> None:
    rulebook = _rulebook(sqlite_url)
    cases = _cases(rulebook)
    engine, name = rulebook.store.engine, cases.embedder.name  # type: ignore[union-attr]
    before = exemplar_fingerprint(engine, name)
    cases.add([_case(FACT_CASES[0], "spec/get-facts-right"),
               _case(FACT_CASES[1], "spec/get-facts-right", CaseStatus.DRAFT)])
    added = exemplar_fingerprint(engine, name)
    assert added != before
    read = read_exemplars(engine, name, 128)
    assert [r for r in read.rules] == [("spec/get-facts-right",)]
    assert np.allclose(np.linalg.norm(read.vectors, axis=1), 1.0)
    draft = next(c for c in cases.list_cases() if c.status is CaseStatus.DRAFT)
    cases.review({draft.id: Decision(CaseStatus.ACCEPTED, "bob")})
    assert exemplar_fingerprint(engine, name) != added
    assert len(read_exemplars(engine, name, 128)) == 2
    # a case added without an embedder has no vector: not an exemplar, and the log says so
    CaseStore(engine).add([_case(FACT_CASES[2], "spec/get-facts-right")])
    with caplog.at_level(logging.WARNING, logger="judge.retrieval.case_exemplars"):
        assert len(read_exemplars(engine, name, 128)) == 2
    assert "1 of 3 accepted test case(s) have no" in caplog.text


def _by_score(rulebook: Rulebook, pair: Pair) -> list[str]:
    found = rulebook.retrieve(pair, k=len(ENTRY_TEXTS), k_rulings=0)
    return [r.rule.id for r in sorted(found.rules, key=lambda r: (-r.score, r.rule.id))]


def test_an_entry_is_found_through_the_cases_written_for_it(sqlite_url: str) -> None:
    rulebook = _rulebook(sqlite_url)
    pair = Pair(prompt=DICE, response_a="About 0.52.", response_b="About 0.67.")
    # by its words alone the dice question is farthest from the entry about correctness
    assert _by_score(rulebook, pair)[-1] == "spec/get-facts-right"
    _cases(rulebook).add([_case(prompt, "spec/get-facts-right") for prompt in FACT_CASES])
    assert _by_score(rulebook, pair)[0] == "spec/get-facts-right"
    assert [r.rule.id for r in rulebook.retrieve(pair, k=1, k_rulings=0).rules] == ["spec/get-facts-right"]
    # switched off, the cases change nothing
    off = _rulebook(sqlite_url.replace("rulebook.db", "off.db"), RetrievalConfig(cases=False))
    _cases(off).add([_case(prompt, "spec/get-facts-right") for prompt in FACT_CASES])
    assert _by_score(off, pair)[-1] == "spec/get-facts-right"


def test_cases_change_the_retrieval_settings_a_remembered_verdict_is_keyed_on(sqlite_url: str) -> None:
    rulebook = _rulebook(sqlite_url)
    first = rulebook.retrieval_settings()
    assert first == rulebook.retrieval_settings()
    _cases(rulebook).add([_case(FACT_CASES[0], "spec/get-facts-right")])
    assert rulebook.retrieval_settings()["cases"] != first["cases"]
    off = Rulebook(rulebook.store, rulebook.index, retrieval=RetrievalConfig(cases=False))
    assert off.retrieval_settings()["cases"] is None


def test_the_rulings_nearest_a_pair_vote_for_the_rules_they_cite(sqlite_url: str) -> None:
    rulebook = _rulebook(sqlite_url, RetrievalConfig(cases=False, ruling_votes=True))
    pair = Pair(prompt=DICE, response_a="About 0.52.", response_b="About 0.67.")
    assert _by_score(rulebook, pair)[-1] == "spec/get-facts-right"
    ruling = rulebook.add_ruling(prompt=FACT_CASES[0], response_a="1/36, about 0.028.", response_b="About 0.5.",
                                 holding="A", rationale="A computes the probability correctly; B is wrong.",
                                 cites=["spec/get-facts-right"])
    assert _by_score(rulebook, pair)[0] == "spec/get-facts-right"
    # without ruling votes (the default) the ruling is shown as a ruling but votes for nothing
    plain = Rulebook(rulebook.store, rulebook.index, retrieval=RetrievalConfig(cases=False))
    assert _by_score(plain, pair)[-1] == "spec/get-facts-right"
    # a ruling held out (leave-one-out) casts no vote
    held_out = rulebook.retrieve(pair, k=len(ENTRY_TEXTS), k_rulings=0, exclude=[ruling.id])
    assert max(held_out.rules, key=lambda r: (r.score, r.rule.id)).rule.id != "spec/get-facts-right"


def test_the_retrieval_setting_names_a_configuration_with_or_without_the_cases() -> None:
    assert RetrievalConfig.named("fused").cases
    assert not RetrievalConfig.named("no-cases").cases
    assert RetrievalConfig.named("no-cases").lexical and RetrievalConfig.named("no-cases").passages
    assert not RetrievalConfig.named("dense").cases
    with pytest.raises(ValueError, match="fused, no-cases or dense"):
        RetrievalConfig.named("cases")
