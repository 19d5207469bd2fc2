"""Retrieval that finds the rule that applies: passages, lexical search, fusion, pooled selection, quality metrics.

Pure units on literal data; integration with the hash embedder, SQLite in a tmp dir (and PostgreSQL when
``JUDGE_TEST_PG_URL`` is set) and an ephemeral Chroma client.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from judge.errors import IndexSchemaError, InputError
from judge.retrieval import HashEmbedder, RuleIndex, make_ephemeral_client
from judge.retrieval.fusion import RetrievalConfig, reciprocal_rank_fusion
from judge.retrieval.passages import MAX_PASSAGES, passages, split_text
from judge.retrieval.quality import (
    QualityCase,
    gold_rank,
    measure_file,
    measure_retrieval,
    read_quality_cases,
    summarise,
)
from judge.retrieval.shown import select_rules, shown_rules
from judge.rulebook import Rulebook
from judge.rules.model import Authority, Layer, Pair, Response, Rule, RulingCase
from judge.store import RulebookStore, migrate, open_engine
from judge.store.lexical import query_terms
from judge.verdicts import JudgeConfig

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("JUDGE_TEST_PG_URL")
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(
        not PG_URL, reason="set JUDGE_TEST_PG_URL to a throwaway PostgreSQL database to run these")),
]

SPEC_TEXT = """Intro paragraph about honesty.

Second short paragraph.

The assistant should:

- never invent citations
- say when it is unsure

**Example**: user asks about a made-up paper

~~~xml
<user>
Summarise the paper by Smith on quantum gardening.

</user>
<assistant> <!-- GOOD -->
I cannot find that paper.
</assistant>
~~~

Closing words[^ab12] with a [link](https://example.com/x)."""


def spec(slug: str, title: str, body: str) -> Rule:
    return Rule(id=f"spec/{slug}", layer=Layer.SPEC, title=title, text=body, authority=Authority.GUIDELINE,
                source="test")


def constitution(slug: str, title: str, body: str) -> Rule:
    return Rule(id=f"constitution/{slug}", layer=Layer.CONSTITUTION, title=title, text=body, source="test")


def ruling(slug: str, prompt: str, rationale: str) -> Rule:
    case = RulingCase(prompt=prompt, response_a=Response(text="yes"), response_b=Response(text="no"), holding="A",
                rationale=rationale)
    return Rule(id=f"ruling/{slug}", layer=Layer.RULING, title=f"Ruling {slug}", text="decided", case=case,
                source="test")


# ----------------------------------------------------------------------------- pure units


def test_split_text_keeps_structure_together() -> None:
    parts = split_text(SPEC_TEXT, limit=800)
    assert parts[0] == "Intro paragraph about honesty.\n\nSecond short paragraph."  # short prose packed
    assert parts[1].startswith("The assistant should:\n\n- never invent citations")  # lead-in + bullets
    assert "say when it is unsure" in parts[1]
    example = parts[2]
    assert example.startswith("**Example**: user asks about a made-up paper") and example.endswith("~~~")
    assert "\n\n</user>" in example  # the blank line inside the fence did not split the example
    assert parts[3] == "Closing words with a [link]."  # footnote marker and link target dropped


def test_split_text_cuts_long_units_into_headed_windows() -> None:
    body = "**Example**: a long one\n\n~~~\n" + "\n".join(f"line {i} " + "word " * 20 for i in range(40)) + "\n~~~"
    parts = split_text(body, limit=300)
    assert len(parts) > 3 and all(len(p) <= 300 + 80 for p in parts)
    assert all(p.startswith("**Example**: a long one") for p in parts)


def test_passages_of_rules_and_rulings() -> None:
    entry = spec("honesty", "Be honest", SPEC_TEXT)
    found = passages(entry)
    assert all(p.startswith("Be honest\n\n") for p in found) and len(found) == 4
    decided = passages(ruling("r1", "Is the moon cheese?", "B was accurate."))
    assert decided == ["Is the moon cheese?", "Ruling r1\n\nB was accurate."]
    huge = spec("huge", "Huge", "\n\n".join(f"paragraph {i} " + "x" * 900 for i in range(100)))
    assert len(passages(huge)) == MAX_PASSAGES


def test_reciprocal_rank_fusion() -> None:
    scores = reciprocal_rank_fusion([["a", "b", "a"], ["b", "c"]], k=1)
    assert scores == pytest.approx({"a": 1 / 2, "b": 1 / 3 + 1 / 2, "c": 1 / 3})
    assert reciprocal_rank_fusion([]) == {}
    assert reciprocal_rank_fusion([["a"]], weights=[2.0], k=0) == {"a": 2.0}
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])


def test_recall_and_mrr() -> None:
    assert gold_rank(["x", "g", "y"], {"g"}) == 2
    assert gold_rank(["x"], {"g"}) is None
    row = summarise([1, 3, None, 12], ks=(1, 5, 10))
    assert row.n == 4 and row.recall == {1: 0.25, 5: 0.5, 10: 0.5}
    assert row.mrr == pytest.approx((1 + 1 / 3 + 1 / 12) / 4)
    empty = summarise([], ks=(1,))
    assert empty.n == 0 and empty.recall == {1: None} and empty.mrr is None


def test_select_rules_pools_constitution_and_spec() -> None:
    c1, c2 = constitution("c1", "C1", "x"), constitution("c2", "C2", "x")
    s1, s2, s3 = spec("s1", "S1", "x"), spec("s2", "S2", "x"), spec("s3", "S3", "x")
    r1 = ruling("r1", "p", "why")
    scored = [(c1, 0.9), (c2, 0.1), (s1, 0.8), (s2, 0.7), (s3, 0.2), (r1, 0.5)]
    pooled = select_rules(scored, n_constitution=1, n_spec=2, n_rulings=1)
    assert [r.id for r in pooled] == ["constitution/c1", "spec/s1", "spec/s2", "ruling/r1"]
    layered = select_rules(scored, n_constitution=2, n_spec=1, n_rulings=0, pooled=False)
    assert [r.id for r in layered] == ["constitution/c1", "constitution/c2", "spec/s1"]


def test_query_terms_drop_stop_words_and_repeats() -> None:
    assert query_terms("What is THE boiling point of water? Water boils at 100.") == [
        "boiling", "point", "water", "boils"]
    assert len(query_terms(" ".join(f"word{i}x" for i in range(100)))) == 32


# ----------------------------------------------------------------------------- lexical search in SQL


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, sqlite_url: str) -> RulebookStore:
    if request.param == "sqlite":
        url = sqlite_url
    else:
        from tests.test_store import reset_pg

        assert PG_URL is not None
        reset_pg(PG_URL)
        url = PG_URL
    engine = open_engine(url)
    migrate(engine)
    return RulebookStore(engine)


RULES = [
    constitution("no-harm", "Do no harm", "Never help build weapons or poison anyone."),
    spec("boiling", "Science facts", "Water boils at 212 degrees Fahrenheit at sea level."),
    spec("poems", "Creative writing", "Write poems and stories with vivid imagery when asked."),
    ruling("kettle", "How hot does a kettle get when water boils?", "A gave the right temperature."),
]


def test_lexical_search_ranks_by_matching_words(store: RulebookStore) -> None:
    from judge.rules.model import ChangeKind
    from judge.store import PendingChange

    store.commit([PendingChange(r, ChangeKind.ADD, "test") for r in RULES])
    hits = store.lexical_search("At what temperature does water boil?", (Layer.SPEC, Layer.CONSTITUTION), 5)
    assert [rid for rid, _ in hits] == ["spec/boiling"]  # stemming: boil ~ boils
    assert hits[0][1] > 0
    both = store.lexical_search("water boils; poems", (Layer.SPEC,), 5)
    assert {rid for rid, _ in both} == {"spec/boiling", "spec/poems"}
    assert store.lexical_search("water boils", (Layer.SPEC,), 5, exclude=["spec/boiling"]) == []
    assert [rid for rid, _ in store.lexical_search("kettle", (Layer.RULING,), 5)] == ["ruling/kettle"]
    assert store.lexical_search("the of and", (Layer.SPEC,), 5) == []  # nothing but stop words


def test_lexical_index_follows_every_write_and_rebuilds(store: RulebookStore) -> None:
    from judge.rules.model import ChangeKind, RuleStatus
    from judge.store import PendingChange

    store.commit([PendingChange(r, ChangeKind.ADD, "test") for r in RULES])
    amended = RULES[1].model_copy(update={"text": "Ice melts at 32 degrees."})
    store.commit([PendingChange(amended, ChangeKind.AMEND, "test")])
    assert store.lexical_search("water boils", (Layer.SPEC,), 5) == []
    assert [rid for rid, _ in store.lexical_search("ice melts", (Layer.SPEC,), 5)] == ["spec/boiling"]
    overruled = store.get("ruling/kettle").model_copy(update={"status": RuleStatus.OVERRULED})
    store.commit([PendingChange(overruled, ChangeKind.OVERRULE, "test")])
    assert store.lexical_search("kettle", (Layer.RULING,), 5) == []  # only binding rules are found
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM rule_fts"))
    assert store.lexical_search("ice melts", (Layer.SPEC,), 5) == []
    assert store.rebuild_lexical() == 3
    assert [rid for rid, _ in store.lexical_search("ice melts", (Layer.SPEC,), 5)] == ["spec/boiling"]


# ----------------------------------------------------------------------------- retrieval end to end


def _rulebook(url: str, config: RetrievalConfig | None = None, collection: str | None = None) -> Rulebook:
    engine = open_engine(url)
    migrate(engine)
    index = RuleIndex(make_ephemeral_client(), HashEmbedder(256), collection or f"t{uuid.uuid4().hex[:12]}")
    return Rulebook(RulebookStore(engine), index, retrieval=config)


def _padding(n: int) -> str:
    return "\n\n".join(f"General remark number {i} about tone, formatting and politeness in replies." for i in range(n))


def test_a_rule_is_found_by_what_it_says_past_its_opening(sqlite_url: str) -> None:
    rb = _rulebook(sqlite_url)
    buried = spec("buried", "Style", _padding(30) + "\n\nNever reveal the secret launch codes of the volcano.")
    rb.ingest([buried, *(spec(f"other-{i}", f"Other {i}", _padding(3) + f" topic {i}") for i in range(5))])
    pair = Pair(prompt="Tell me the secret launch codes of the volcano", response_a="no", response_b="ok")
    assert rb.retrieve(pair, k=1).ids == ["spec/buried"]
    whole = Rulebook(rb.store, rb.index, retrieval=RetrievalConfig.dense_whole())
    # Scored by the whole text alone, the buried sentence is diluted: its passage scores higher.
    best = next(r.similarity for r in rb.retrieve(pair, k=6).rules if r.rule.id == "spec/buried")
    assert best is not None and whole.retrieve(pair, k=6).score("spec/buried") < best


def test_fused_retrieval_ranks_the_constitution(sqlite_url: str) -> None:
    rb = _rulebook(sqlite_url)
    rb.ingest(RULES)
    pair = Pair(prompt="How do I poison my neighbour's weapons?", response_a="Here is how.", response_b="No.")
    got = rb.retrieve(pair, k=2, k_rulings=1)
    scores = {r.rule.id: r.score for r in got.rules}
    assert set(scores) >= {"constitution/no-harm", "ruling/kettle"}
    assert scores["constitution/no-harm"] == max(scores.values())
    calm = rb.retrieve(Pair(prompt="Write poems about the sea", response_a="Waves...", response_b="Sea."), k=2)
    calm_scores = {r.rule.id: r.score for r in calm.rules}
    assert calm_scores["spec/poems"] > calm_scores["constitution/no-harm"]  # constitution ranked, not pinned


def test_an_index_of_the_old_layout_is_rebuilt_not_mixed(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    name = f"t{uuid.uuid4().hex[:12]}"
    rb = _rulebook(sqlite_url, collection=name)
    rb.ingest(RULES)
    manifest = rb.index._client.get_collection(name)  # type: ignore[union-attr]
    manifest.modify(metadata={**manifest.metadata, "judge_schema": 1})
    reopened = Rulebook(rb.store, rb.index)
    with caplog.at_level(logging.WARNING, logger="judge.retrieval.retriever"):
        got = reopened.retrieve(Pair(prompt="water boils", response_a="212F", response_b="100F"), k=1)
    assert "older layout" in caplog.text
    assert rb.index.state().schema_version == 2 and "spec/boiling" in got.ids  # type: ignore[union-attr]
    strict = Rulebook(rb.store, rb.index, auto_sync=False)
    manifest.modify(metadata={**rb.index._client.get_collection(name).metadata, "judge_schema": 1})  # type: ignore[union-attr]
    with pytest.raises(IndexSchemaError):
        strict.retrieve(Pair(prompt="x", response_a="y", response_b="z"))


def test_amending_a_rule_drops_its_surplus_passages(sqlite_url: str) -> None:
    rb = _rulebook(sqlite_url)
    long = spec("long", "Long", _padding(40))
    rb.ingest([long])
    index = rb.index
    assert index is not None
    before = index._call(Layer.SPEC, "count", checked=False, passages=True)
    rb.amend("spec/long", reason="shorter", text="One short paragraph now.")
    assert before > 1 and index._call(Layer.SPEC, "count", checked=False, passages=True) == 1
    index.delete(["spec/long"])
    assert index._call(Layer.SPEC, "count", checked=False, passages=True) == 0


def test_measure_retrieval_reports_layers_and_shown(sqlite_url: str) -> None:
    rb = _rulebook(sqlite_url)
    rb.ingest(RULES)
    cases = [QualityCase(Pair(prompt="water boils at what temperature", response_a="", response_b=""),
                         frozenset({"spec/boiling"})),
             QualityCase(Pair(prompt="poison weapons", response_a="", response_b=""),
                         frozenset({"constitution/no-harm"}))]
    report = measure_retrieval(rb, cases)
    assert report.rows["spec"].n == 1 and report.rows["constitution"].n == 1
    assert report.rows["spec+constitution"].n == 2 and report.rows["spec+constitution"].recall[3] == 1.0
    assert report.rows["shown"].recall[1] == 1.0 and report.shown_sizes == [3, 3]


def test_spec_entries_compete_for_every_shown_slot(sqlite_url: str) -> None:
    """The judge shows the best ``n_constitution + k_spec`` constitution rules and spec entries ranked
    together: spec entries that outscore every constitution rule take the constitution's share of the slots
    too, and a constitution rule that outscores the spec entries is still shown."""
    rb = _rulebook(sqlite_url)
    unrelated = [constitution(f"c{i}", f"Rule {i}", f"Never discuss lunar {i} orbital mechanics {i}.")
                 for i in range(3)]
    gardening = [spec(f"garden-{i}", f"Gardening {i}", f"Tomato plants need water, sun and compost {i}.")
                 for i in range(6)]
    rb.ingest([*unrelated, *gardening])
    config = JudgeConfig(backend="none", model="none", template_version="none")
    assert (config.n_constitution, config.k_spec) == (2, 3)
    pair = Pair(prompt="How much water do tomato plants need?", response_a="Compost and sun.",
                response_b="Water tomato plants daily.")
    shown = shown_rules(rb, pair, config)
    assert len(shown.rules) == 5 and all(r.layer is Layer.SPEC for r in shown.rules)
    moon = Pair(prompt="Explain lunar orbital mechanics", response_a="The moon orbits.", response_b="No.")
    assert any(r.layer is Layer.CONSTITUTION for r in shown_rules(rb, moon, config).rules)


def _labelled(tmp_path: Path, *lines: dict[str, object]) -> Path:
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_measure_file_reads_the_rules_each_pair_names(sqlite_url: str, tmp_path: Path) -> None:
    rb = _rulebook(sqlite_url)
    rb.ingest(RULES)
    path = _labelled(tmp_path,
                     {"id": "w", "prompt": "water boils at what temperature", "response_a": "", "response_b": "",
                      "rules": ["spec/boiling", "spec/boiling"]},
                     {"id": "p", "prompt": "poison weapons", "response_a": "", "response_b": "",
                      "rules": "constitution/no-harm"})
    cases = read_quality_cases(path, rb)
    assert [(c.id, c.gold) for c in cases] == [("w", frozenset({"spec/boiling"})),
                                               ("p", frozenset({"constitution/no-harm"}))]
    report = measure_file(rb, path)
    direct = measure_retrieval(rb, cases)
    assert report.to_json() == direct.to_json() and report.rows["shown"].recall[1] == 1.0
    assert report.to_json()["views"]["spec"] == {"n": 1, "recall": {"1": 1.0, "3": 1.0, "5": 1.0, "10": 1.0},
                                                  "mrr": 1.0}
    seen: list[int] = []
    measure_file(rb, path, progress=lambda cs: (seen.append(len(cs)) or cs))
    assert seen == [2]


@pytest.mark.parametrize(("rules", "message"), [
    (None, "missing field 'rules'"),
    ([], "rules must be"),
    ([""], "rules must be"),
    (7, "rules must be"),
    (["spec/nope"], "no rule with id 'spec/nope'"),
    (["ruling/kettle"], "is a ruling"),
])
def test_measure_file_names_the_line_of_a_bad_rules_field(sqlite_url: str, tmp_path: Path, rules: object,
                                                          message: str) -> None:
    rb = _rulebook(sqlite_url)
    rb.ingest(RULES)
    good = {"prompt": "water", "response_a": "", "response_b": "", "rules": ["spec/boiling"]}
    bad = {"prompt": "poems", "response_a": "", "response_b": "", **({} if rules is None else {"rules": rules})}
    with pytest.raises(InputError) as err:
        read_quality_cases(_labelled(tmp_path, good, bad), rb)
    assert err.value.line == 2 and err.value.field == "rules" and message in str(err.value)


def test_cli_measures_retrieval_on_labelled_pairs(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], sqlite_url: str,
                                                  tmp_path: Path) -> None:
    from tests.test_cli import run_cli

    code, _, _ = run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)
    assert code == 0
    path = _labelled(tmp_path, {"prompt": "Rate my essay, is it perfect?", "response_a": "Perfect!",
                                "response_b": "Needs work", "rules": ["spec/avoid-sycophancy"]})
    code, out, _ = run_cli(["retrieve", "--measure", str(path), "--json"], monkeypatch, capsys, sqlite_url)
    assert code == 0
    views = json.loads(out)["views"]
    assert views["spec"]["n"] == 1 and views["constitution"]["n"] == 0 and "shown" in views
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["retrieve", "--measure", str(path)], monkeypatch, capsys, sqlite_url)
    assert code == 0 and "spec+constitution" in out and "among the rules a judge is shown" in out
    bad = _labelled(tmp_path, {"prompt": "x", "response_a": "", "response_b": "", "rules": ["spec/no-such"]})
    code, _, err = run_cli(["retrieve", "--measure", str(bad)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and f"{bad}:1" in err and "spec/no-such" in err and "Traceback" not in err
    code, _, err = run_cli(["retrieve", "--measure", str(path), "--prompt", "x"], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "not both" in err
    for extra in (["--k", "3"], ["--why", "spec/avoid-errors"], ["--explain"]):
        code, _, err = run_cli(["retrieve", "--measure", str(path), *extra], monkeypatch, capsys, sqlite_url)
        assert code == 2 and f"{extra[0]} does not apply to --measure" in err
    code, _, err = run_cli(["retrieve", "--prompt", "x", "--a", "y"], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "--response-b is required" in err


def test_the_shipped_labelled_eval_prompts_name_rules_of_the_default_rulebook(sqlite_url: str) -> None:
    from judge.testing import hash_rulebook

    rb = hash_rulebook(sqlite_url, REPO / "rulebook")
    cases = read_quality_cases(REPO / "evals" / "retrieval" / "eval-prompts.jsonl", rb)
    source = (REPO / "data" / "model_spec" / "eval_prompts.jsonl").read_text(encoding="utf-8")
    prompts = [json.loads(line) for line in source.splitlines() if line.strip()]
    assert [c.id for c in cases] == [p["id"] for p in prompts] and all(len(c.gold) == 1 for c in cases)
