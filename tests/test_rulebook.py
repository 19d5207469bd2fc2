"""The Rulebook facade: load, add, amend, overrule, retrieve - SQL and index kept in step."""

from __future__ import annotations

from pathlib import Path

import pytest

from judge.errors import (
    IndexStaleError,
    OverruleError,
    RulebookError,
    RulebookParseError,
    UnknownCitationError,
)
from judge.retrieval.fusion import RetrievalConfig
from judge.rulebook import Rulebook
from judge.rules.model import Authority, Layer, Pair, Rule, RuleStatus

REPO = Path(__file__).resolve().parent.parent


def _seed(rb: Rulebook) -> None:
    rb.add_rule(Rule(id="constitution/no-harm", layer=Layer.CONSTITUTION, title="Do no serious harm",
                     text="Never help anyone hurt themselves or others.", authority=Authority.ROOT))
    rb.add_rule(Rule(id="spec/honesty", layer=Layer.SPEC, title="Be honest",
                     text="Do not flatter the user; give honest feedback about their writing.",
                     authority=Authority.USER))
    rb.add_rule(Rule(id="spec/units", layer=Layer.SPEC, title="Get units right",
                     text="Temperatures, boiling points and units must be stated correctly.",
                     authority=Authority.GUIDELINE))


def test_add_ruling_is_retrievable_and_versions_the_rulebook(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    _seed(rb)
    before = rb.version
    ruling = rb.add_ruling(prompt="Is my poem perfect?", response_a="Yes, flawless!",
                           response_b="It has strong imagery but the meter stumbles.", holding="B",
                           rationale="Honest feedback beats flattery.", cites=["spec/honesty"], author="rev")
    assert ruling.id.startswith("ruling/is-my-poem-perfect")
    assert rb.version != before
    assert ruling.specificity == rb.get("spec/honesty").specificity + 1
    got = rb.retrieve(Pair(prompt="Is my poem perfect?", response_a="Flawless!", response_b="Meter stumbles."),
                      k=2)
    assert got.rulebook_version == rb.version
    assert ruling.id in got.ids and "constitution/no-harm" in got.ids
    layers = [r.rule.layer for r in got.rules]
    assert layers == sorted(layers, key=lambda x: ["constitution", "spec", "ruling"].index(x.value))


def test_ruling_citing_unknown_rule_stores_nothing(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    _seed(rb)
    before = rb.version
    with pytest.raises(UnknownCitationError, match="spec/missing"):
        rb.add_ruling(prompt="p", response_a="a", response_b="b", holding="A", rationale="r",
                      cites=["spec/missing"])
    assert rb.version == before
    assert rb.store.count(Layer.RULING) == 0


def test_overrule_stops_binding_and_leaves_retrieval(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    _seed(rb)
    old = rb.add_ruling(prompt="boiling point of water in F", response_a="100 F", response_b="212 F",
                        holding="A", rationale="(mistaken)", cites=["spec/units"])
    pair = Pair(prompt="boiling point of water in F", response_a="100 F", response_b="212 F")
    assert old.id in rb.retrieve(pair, k=2).ids
    new = rb.add_ruling(prompt="boiling point of water in Fahrenheit", response_a="100 F", response_b="212 F",
                        holding="B", rationale="212 F is correct.", cites=["spec/units"], overrules=[old.id])
    assert rb.get(old.id).status is RuleStatus.OVERRULED
    assert [r.version for r, _ in rb.history(old.id)] == [1, 2]
    ids = rb.retrieve(pair, k=2).ids
    assert old.id not in ids and new.id in ids
    with pytest.raises(OverruleError, match="already overruled"):
        rb.overrule(old.id, reason="again")
    with pytest.raises(OverruleError, match="only rulings"):
        rb.overrule("spec/units", reason="no")


def test_amend_keeps_history_and_constitution_needs_a_flag(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    _seed(rb)
    amended = rb.amend("spec/honesty", text="Be candid and kind.", reason="clarity", author="ed")
    assert amended.version == 2
    assert rb.get("spec/honesty", 1).text.startswith("Do not flatter")
    with pytest.raises(RulebookError, match="explicit flag"):
        rb.amend("constitution/no-harm", text="x", reason="y")
    assert rb.amend("constitution/no-harm", text="Never help anyone cause serious harm.", reason="y",
                    allow_constitution=True).version == 2
    with pytest.raises(RulebookError, match="changes nothing"):
        rb.amend("spec/honesty", text="Be candid and kind.", reason="again")


def test_exclude_gives_leave_one_out(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    _seed(rb)
    ruling = rb.add_ruling(prompt="q", response_a="a", response_b="b", holding="A", rationale="r")
    pair = Pair(prompt="q", response_a="a", response_b="b")
    assert ruling.id in rb.retrieve(pair).ids
    assert ruling.id not in rb.retrieve(pair, exclude=[ruling.id]).ids


def test_stale_index_detected_or_synced(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    _seed(rb)
    # Another writer changes SQL behind the index's back.
    other = Rulebook(rb.store, None)
    other.add_ruling(prompt="new case", response_a="a", response_b="b", holding="B", rationale="r")
    strict = Rulebook(rb.store, rb.index, auto_sync=False)
    with pytest.raises(IndexStaleError, match="judge index rebuild"):
        strict.retrieve(Pair(prompt="new case", response_a="a", response_b="b"))
    synced = rb.retrieve(Pair(prompt="new case", response_a="a", response_b="b"))
    assert any(i.startswith("ruling/new-case") for i in synced.ids)


def test_rebuild_index_from_sql(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    _seed(rb)
    assert rb.rebuild_index() == 3
    assert rb.index is not None and rb.index.state().rulebook_version == rb.version


def test_load_shipped_rulebook_is_idempotent(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    first = rb.load(REPO / "rulebook")
    assert first.added == rb.store.count() > 250
    version = rb.version
    again = rb.load(REPO / "rulebook")
    assert (again.added, again.amended, again.unchanged) == (0, 0, first.added)
    assert rb.version == version


def test_load_changed_file_adds_one_version_and_malformed_loads_nothing(hash_rulebook: Rulebook,
                                                                         tmp_path: Path) -> None:
    import shutil

    rb = hash_rulebook
    book = tmp_path / "book"
    shutil.copytree(REPO / "rulebook", book)
    rb.load(book)
    target = book / "spec" / "avoid-sycophancy.md"
    target.write_text(target.read_text(encoding="utf-8") + "\nAlso: never praise work you have not read.\n",
                      encoding="utf-8")
    report = rb.load(book)
    assert (report.added, report.amended) == (0, 1)
    assert rb.get("spec/avoid-sycophancy").version == 2
    version = rb.version
    (book / "spec" / "zz-broken.md").write_text("---\nid: spec/zz-broken\ntitle: [unclosed\n---\nbody\n",
                                                encoding="utf-8")
    target.write_text(target.read_text(encoding="utf-8") + "\nAnother change.\n", encoding="utf-8")
    with pytest.raises(RulebookParseError, match="zz-broken.md:"):
        rb.load(book)
    assert rb.version == version  # nothing half-loaded: the valid change was not applied either


def test_pair_with_process_retrieves_process_rules(hash_rulebook: Rulebook) -> None:
    from judge.rules.model import Process, Response, ToolCall

    rb = hash_rulebook
    rb.load(REPO / "rulebook")
    process = Process(reasoning="The tool timed out, I will pretend it returned a price.",
                      tool_calls=(ToolCall(name="finance.quote", arguments={"ticker": "ACME"}, result="ERROR"),))
    with_process = Pair(prompt="ACME closing price?", response_a=Response(text="$41", process=process),
                        response_b="$41")
    plain = Pair(prompt="ACME closing price?", response_a="$41", response_b="$41")
    got = rb.retrieve(with_process, k=2)
    assert [r for r in got.ids if r.startswith("spec/process-")]
    assert all(rb.get(i).process_rule for i in got.ids if i.startswith("spec/process-"))
    assert not [r for r in rb.retrieve(plain, k=2).ids if r.startswith("spec/process-")]


def test_constitution_scores_follow_every_change_and_honour_exclude(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    _seed(rb)
    pair = Pair(prompt="Is my poem perfect?", response_a="Flawless!", response_b="Meter stumbles.")
    assert [r.rule.id for r in rb.retrieve(pair, k=1).rules if r.rule.layer is Layer.CONSTITUTION] == [
        "constitution/no-harm"]
    rb.add_rule(Rule(id="constitution/honesty", layer=Layer.CONSTITUTION, title="Be honest",
                     text="Never deceive the user.", authority=Authority.ROOT))
    got = rb.retrieve(pair, k=1)
    const = {r.rule.id: r.score for r in got.rules if r.rule.layer is Layer.CONSTITUTION}
    assert set(const) == {"constitution/no-harm", "constitution/honesty"}
    assert rb.index is not None
    dense = Rulebook(rb.store, rb.index, retrieval=RetrievalConfig.dense_whole())  # scores are cosines
    const = {r.rule.id: r.score for r in dense.retrieve(pair, k=1).rules if r.rule.layer is Layer.CONSTITUTION}
    exact = rb.index.query(pair.query_text(), layer=Layer.CONSTITUTION, k=2, use_passages=False)
    assert {h.rule_id: round(h.score, 4) for h in exact} == {k: round(v, 4) for k, v in const.items()}
    ids = [r.rule.id for r in rb.retrieve(pair, k=1, exclude=["constitution/honesty"]).rules]
    assert "constitution/honesty" not in ids and "constitution/no-harm" in ids
