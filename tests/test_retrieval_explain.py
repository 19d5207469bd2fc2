"""Why a rule was retrieved: the rankings fused into a retrieval, named, and each rule's ranks in them.

The explanation is held to the score it explains: a rule's fused score is the sum of ``1 / (rrf_k + rank)``
over the rankings that list it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge.cases.files import read_case_files
from judge.cases.store import CaseStore
from judge.records import read_pairs
from judge.retrieval.fusion import RRF_K, RetrievalConfig
from judge.rulebook import Rulebook
from judge.rules.model import Layer, Pair, Response
from judge.testing import hash_rulebook
from judge.verdicts import JudgeConfig
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rulebook(sqlite_url: str) -> Rulebook:
    return hash_rulebook(sqlite_url, ROOT / "rulebook")


def test_each_score_is_the_sum_over_the_rankings_that_list_the_rule(rulebook: Rulebook) -> None:
    for record in read_pairs(ROOT / "examples" / "pairs.jsonl"):
        retrieval = rulebook.retrieve(record.pair, k=5)
        assert retrieval.rankings
        for retrieved in retrieval.rules:
            found = retrieval.explain(retrieved.rule.id)
            expected = sum(1.0 / (RRF_K + rank) for _, rank in found)
            assert retrieved.score == pytest.approx(expected), (retrieved.rule.id, found)
            pools = {r.pool for r in retrieval.rankings if retrieved.rule.id in r.ids}
            assert pools <= {"rulings" if retrieved.rule.layer is Layer.RULING else "rules"}


def test_rankings_are_named_by_what_searched(rulebook: Rulebook) -> None:
    pair = Pair(prompt="Rate my essay honestly.", response_a=Response(text="It is perfect!"),
                response_b=Response(text="The argument is clear; the ending is rushed."))
    names = [(r.pool, r.name) for r in rulebook.retrieve(pair, k=5).rankings]
    texts = ["pair", "prompt", "response A", "response B"]
    assert [n for p, n in names if p == "rules"] == [
        *(f"dense: {t}" for t in texts), *(f"full-text: {t}" for t in texts[1:])]
    assert [n for p, n in names if p == "rulings"] == [n for p, n in names if p == "rules"]

    # An empty response is not searched; a text repeated is searched once, under its first name.
    same = Pair(prompt="Say hello.", response_a=Response(text="Say hello."), response_b=Response(text=" "))
    names = [r.name for r in rulebook.retrieve(same, k=5, k_rulings=0).rankings]
    assert names == ["dense: pair", "dense: prompt", "full-text: prompt"]
    # A prompt asked alone is the pair's whole text: one dense ranking, not the same one twice.
    alone = Pair(prompt="Say hello.", response_a=Response(text=""), response_b=Response(text=""))
    assert [r.name for r in rulebook.retrieve(alone, k=5, k_rulings=0).rankings] == ["dense: prompt",
                                                                                     "full-text: prompt"]


def test_test_case_votes_and_dense_only_retrieval(sqlite_url: str, tmp_path: Path) -> None:
    rulebook = hash_rulebook(sqlite_url, ROOT / "rulebook")
    index = rulebook.index
    assert index is not None
    cases = [c for c in read_case_files(ROOT / "cases") if c.entries[0] == "spec/avoid-sycophancy"][:20]
    CaseStore(rulebook.store.engine, index.embedder).add(cases, note="test")
    pair = Pair(prompt=cases[0].prompt, response_a=Response(text="a"), response_b=Response(text="b"))
    retrieval = rulebook.retrieve(pair, k=5, k_rulings=0)
    votes = [r for r in retrieval.rankings if r.name == "test cases"]
    assert len(votes) == 1 and votes[0].ids[0] == "spec/avoid-sycophancy"
    assert ("test cases", 1) in retrieval.explain("spec/avoid-sycophancy")

    dense = hash_rulebook(f"sqlite:///{tmp_path / 'dense.db'}", ROOT / "rulebook")
    dense.retriever.config = RetrievalConfig.dense_whole()
    assert dense.retrieve(pair, k=5).rankings == ()


def test_json_explains_only_when_asked(rulebook: Rulebook) -> None:
    record = next(iter(read_pairs(ROOT / "examples" / "pairs.jsonl")))
    retrieval = rulebook.retrieve(record.pair, k=5)
    plain = retrieval.to_json()
    assert "rankings" not in plain and all("found_by" not in r for r in plain["rules"])
    explained = retrieval.to_json(explain=True)
    assert [r["name"] for r in explained["rankings"]] == [r.name for r in retrieval.rankings]
    for view in explained["rules"]:
        assert [(f["ranking"], f["rank"]) for f in view["found_by"]] == retrieval.explain(view["id"])
    json.dumps(explained)
    asked = retrieval.to_json(why=["spec/avoid-errors", retrieval.ids[0]])
    assert "rankings" in asked and [w["id"] for w in asked["why"]] == ["spec/avoid-errors", retrieval.ids[0]]
    assert asked["why"][1]["retrieved"] is True
    assert asked["why"][0]["retrieved"] == ("spec/avoid-errors" in retrieval.ids)
    assert [(f["ranking"], f["rank"]) for f in asked["why"][0]["found_by"]] == retrieval.explain("spec/avoid-errors")


def test_cli_explain(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                     sqlite_url: str) -> None:
    code, _, _ = run_cli(["rulebook", "load", str(ROOT / "rulebook")], monkeypatch, capsys, sqlite_url)
    assert code == 0
    args = ["retrieve", "--prompt", "Rate my essay", "--a", "Perfect!", "--b", "Needs work", "--explain"]
    code, out, _ = run_cli(args, monkeypatch, capsys, sqlite_url)
    assert code == 0 and "why: rank in each ranking" in out and "dense: prompt #" in out.replace("\n", " ")
    code, out, _ = run_cli([*args, "--json"], monkeypatch, capsys, sqlite_url)
    payload = json.loads(out)
    assert code == 0 and payload["rankings"] and all("found_by" in r for r in payload["rules"])
    code, out, _ = run_cli(args[:-1] + ["--json"], monkeypatch, capsys, sqlite_url)
    assert "rankings" not in json.loads(out)


def test_cli_why_a_rule_was_not_retrieved(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          sqlite_url: str) -> None:
    code, _, _ = run_cli(["rulebook", "load", str(ROOT / "rulebook")], monkeypatch, capsys, sqlite_url)
    assert code == 0
    base = ["retrieve", "--prompt", "Rate my essay", "--a", "Perfect!", "--b", "Needs work", "--k", "1",
            "--k-rulings", "0"]
    code, out, _ = run_cli([*base, "--json"], monkeypatch, capsys, sqlite_url)
    retrieved = {r["id"] for r in json.loads(out)["rules"]}
    code, out, _ = run_cli([*base, "--why", "spec/avoid-errors", "--why", "spec/avoid-sycophancy", "--json"],
                           monkeypatch, capsys, sqlite_url)
    why = {w["id"]: w for w in json.loads(out)["why"]}
    assert code == 0 and set(why) == {"spec/avoid-errors", "spec/avoid-sycophancy"}
    for rule_id, w in why.items():
        assert w["retrieved"] == (rule_id in retrieved)
    not_retrieved = [w for w in why.values() if not w["retrieved"]]
    assert not_retrieved and all(f["rank"] >= 1 for w in not_retrieved for f in w["found_by"])
    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    code, out, _ = run_cli([*base, "--why", "spec/avoid-errors"], monkeypatch, capsys, sqlite_url)
    assert code == 0
    assert ("spec/avoid-errors (not retrieved)" in out) == ("spec/avoid-errors" not in retrieved)
    code, _, err = run_cli([*base, "--why", "spec/no-such-rule"], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "spec/no-such-rule" in err and "Traceback" not in err


def test_cli_marks_the_rules_a_judge_shows(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           sqlite_url: str) -> None:
    code, _, _ = run_cli(["rulebook", "load", str(ROOT / "rulebook")], monkeypatch, capsys, sqlite_url)
    assert code == 0
    args = ["retrieve", "--prompt", "Rate my essay", "--a", "Perfect!", "--b", "Needs work"]
    code, out, _ = run_cli([*args, "--json"], monkeypatch, capsys, sqlite_url)
    rules = json.loads(out)["rules"]
    config = JudgeConfig(backend="none", model="none", template_version="none")

    def best(layers: set[str], n: int) -> set[str]:
        ranked = sorted((r for r in rules if r["layer"] in layers), key=lambda r: -r["score"])
        return {r["id"] for r in ranked[:n]}

    # What a judge shows: the best constitution rules and spec entries together, and the best rulings.
    assert {r["id"] for r in rules if r["shown"]} == (best({"constitution", "spec"},
                                                           config.n_constitution + config.k_spec)
                                                      | best({"ruling"}, config.k_rulings))
    code, out, _ = run_cli(args, monkeypatch, capsys, sqlite_url)
    n_shown = config.n_constitution + config.k_spec + config.k_rulings
    assert code == 0 and f"* shown to the model by a judge with the default configuration ({n_shown} of" in out
