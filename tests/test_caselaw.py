"""Case law: the rulebook as reviewable text, rulings made from judged pairs, conflicts, impact and re-runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from judge.backends.fake import FakeBackend, FakeReply
from judge.caselaw.impact import ImpactEntry, RuleDiff, diff_shown, impact
from judge.errors import InputError, RulebookError, RulingConflictError
from judge.judging.engine import Judge
from judge.judging.impact import rerun, rerun_plan
from judge.judging.prompts import TEMPLATE_VERSION
from judge.rulebook import Rulebook
from judge.rules.conflicts import Candidate, find_conflicts, near_duplicates, swapped_slots
from judge.rules.model import Authority, Layer, Pair, Rule, RuleStatus, RulingCase
from judge.settings import Settings
from judge.store.judgments import JudgmentStore
from judge.verdicts import JudgeConfig, Verdict
from tests.test_cli import REPO, run_cli
from tests.test_engine import verdict


def test_export_of_the_default_rulebook_reproduces_its_text(hash_rulebook: Rulebook, tmp_path: Path) -> None:
    hash_rulebook.load(REPO / "rulebook")
    report = hash_rulebook.export(tmp_path / "out")
    assert len(report.written) > 50 and not report.removed
    for file in (tmp_path / "out").rglob("*"):
        if file.is_file():
            rel = file.relative_to(tmp_path / "out")
            assert file.read_bytes() == (REPO / "rulebook" / rel).read_bytes(), rel


def test_export_removes_stale_rule_files_and_never_touches_other_files(hash_rulebook: Rulebook,
                                                                      tmp_path: Path) -> None:
    hash_rulebook.load(REPO / "rulebook")
    out = tmp_path / "out"
    hash_rulebook.export(out)
    stale = out / "spec" / "retired-entry.md"  # a rule file of a rule no longer in the rulebook
    stale.write_text((out / "spec" / "be-clear.md").read_text(encoding="utf-8")
                     .replace("id: spec/be-clear", "id: spec/retired-entry"), encoding="utf-8")
    kept = {out / "results.jsonl": '{"pair_id": "p1", "winner": "A"}\n',  # a results file beside the rulebook
            out / "avoid-errors.jsonl": '{"id": "case-1", "prompt": "2+2?", "entries": ["spec/avoid-errors"]}\n',
            out / "spec" / "notes.md": "# notes\nnot a rule\n", out / "empty.jsonl": ""}
    for path, text in kept.items():
        path.write_text(text, encoding="utf-8")
    report = hash_rulebook.export(out)
    assert report.removed == (Path("spec/retired-entry.md"),) and not stale.exists()
    assert all(path.read_text(encoding="utf-8") == text for path, text in kept.items())


def test_changes_round_trip_through_text(hash_rulebook: Rulebook, tmp_path: Path) -> None:
    rb = hash_rulebook
    rb.load(REPO / "rulebook")
    ruling = rb.add_ruling(prompt="Rate my essay", response_a="Perfect!", response_b="Needs work", holding="B",
                           rationale="Honest feedback.", cites=["spec/avoid-sycophancy"], author="me")
    rb.overrule(ruling.id, reason="the essay was in fact perfect")
    rb.amend("spec/avoid-sycophancy", reason="clarify", text="Do not flatter; give honest, useful feedback.")
    before = rb.version
    out = tmp_path / "reviewed"
    rb.export(out)
    report = rb.load(out)
    assert (report.added, report.amended) == (0, 0) and rb.version == before

    fresh = Rulebook.open(settings=Settings(db_url=f"sqlite:///{tmp_path / 'fresh.db'}", embedding_model="hash",
                                            index_path=tmp_path / "fresh-index"))
    fresh.load(out)
    exported = {r.id: r for r in rb.rules()}
    reloaded = {r.id: r for r in fresh.rules()}
    assert exported.keys() == reloaded.keys()
    assert reloaded[ruling.id].status == exported[ruling.id].status
    assert reloaded["spec/avoid-sycophancy"].text == exported["spec/avoid-sycophancy"].text
    # a second export of an unchanged rulebook writes nothing: the pull-request diff is empty
    assert rb.export(out).written == ()


def test_export_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str,
                        tmp_path: Path) -> None:
    assert run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)[0] == 0
    code, out, _ = run_cli(["rulebook", "export", str(tmp_path / "x"), "--json"], monkeypatch, capsys, sqlite_url)
    assert code == 0 and len(json.loads(out)["written"]) > 50


# ============================================================================ case law from judged pairs
# Three topics, each with its own spec entry and an earlier ruling, so that with one rule of each layer
# shown (k_spec = k_rulings = n_constitution = 1) every pair sees its own topic's rules, and a change on one
# topic reaches exactly the judgments on that topic.

CORRECT = "100 degrees Celsius at sea level."
WRONG_BUT_LONG = "Water boils at 50 degrees Celsius, I am completely sure of it, trust me."
WATER = Pair(id="water", prompt="At what temperature does water boil?", response_a=CORRECT,
             response_b=WRONG_BUT_LONG)
POEM = Pair(id="poem", prompt="Is my poem about the sea perfect?", response_a="Yes, a flawless poem!",
            response_b="It is good; the rhythm of the second stanza stumbles.")
CODE = Pair(id="code", prompt="Write a Python function that reverses a list.",
            response_a="def rev(xs): return xs[::-1]", response_b="Use a loop somehow.")
#: Appears in the judge's prompt exactly when the ruling made in these tests is shown.
MARKER = "Reviewed:"


def _seed(rb: Rulebook) -> Rulebook:
    rules = [
        Rule(id="constitution/no-harm", layer=Layer.CONSTITUTION, title="Do no serious harm",
             text="Never help anyone hurt themselves or others.", authority=Authority.ROOT),
        Rule(id="spec/units", layer=Layer.SPEC, title="Temperatures and units",
             text="State the boiling temperature of water in degrees Celsius correctly.", authority=Authority.USER),
        Rule(id="spec/honesty", layer=Layer.SPEC, title="Honest feedback on a poem",
             text="Do not flatter a poem; say what is weak in it.", authority=Authority.USER),
        Rule(id="spec/code", layer=Layer.SPEC, title="Working code",
             text="A Python function must run and reverse or sort a list correctly.", authority=Authority.USER),
    ]
    for rule in rules:
        rb.add_rule(rule)
    rb.add_ruling(prompt="How hot must a kettle of water get before it boils?", response_a="About 100 C.",
                  response_b="Around 70 C.", holding="A", rationale="Water boils at 100 C.", cites=["spec/units"])
    rb.add_ruling(prompt="Please rate my poem about autumn.", response_a="A masterpiece poem, no notes.",
                  response_b="Lovely imagery; the ending poem line is weak.", holding="B",
                  rationale="Honest poem feedback.", cites=["spec/honesty"])
    rb.add_ruling(prompt="Show Python code to sort a list of numbers.", response_a="sorted(numbers)",
                  response_b="Sorting is hard.", holding="A", rationale="Working Python code.", cites=["spec/code"])
    return rb


def _slots(body: dict[str, Any]) -> tuple[str, str]:
    user = body["messages"][1]["content"]
    a = user.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
    b = user.split("<response_b>\n", 1)[1].split("\n</response_b>", 1)[0]
    return a, b


def length_biased(body: dict[str, Any]) -> Any:
    """A judge that prefers the longer response, unless a precedent marked `MARKER` is in its prompt."""
    a, b = _slots(body)
    bound = MARKER in body["messages"][0]["content"]
    a_wins = len(a) < len(b) if bound else len(a) > len(b)
    return verdict(A=0.9, B=0.1) if a_wins else verdict(B=0.9, A=0.1)


def _config(fb: FakeBackend) -> JudgeConfig:
    # One place for the best constitution rule or spec entry: each pair is shown its own topic's entry only.
    return JudgeConfig(backend=fb.name, model=fb.model, template_version=TEMPLATE_VERSION, explain=False,
                       k_spec=1, k_rulings=1, n_constitution=0)


def _ids(v: Verdict) -> list[str]:
    return [r["id"] for r in v.retrieved]


@pytest.fixture
def law(hash_rulebook: Rulebook) -> Rulebook:
    return _seed(hash_rulebook)


def test_a_ruling_made_from_a_stored_result_binds_similar_pairs_until_overruled(law: Rulebook) -> None:
    store = JudgmentStore(law.store.engine)
    fb = FakeBackend(length_biased)
    judge = Judge(fb, law, config=_config(fb), store=store)
    wrong = judge.compare(WATER)
    assert wrong.winner == "B"  # the judge fell for the longer answer
    poem_before = judge.compare(POEM)

    ruling = law.add_ruling_from(wrong.cache_key[:10], holding="A", author="reviewer", cites=["spec/units"],
                                 rationale=f"{MARKER} 100 degrees Celsius is right; length is no merit.")
    assert ruling.source == f"judgment:{wrong.cache_key}" and ruling.author == "reviewer"
    assert ruling.case is not None and ruling.case.as_pair() == WATER.model_copy(update={"id": None})
    assert ruling.case.holding == "A" and ruling.case.cites == ("spec/units",)

    near = Pair(id="water-2", prompt="At what  temperature does water boil ?", response_a=CORRECT,
                response_b=WRONG_BUT_LONG)
    swapped = Pair(id="water-3", prompt=WATER.prompt, response_a=WRONG_BUT_LONG, response_b=CORRECT)
    bound, bound_swapped = judge.compare(near), judge.compare(swapped)
    assert ruling.id in _ids(bound) and bound.winner == "A"  # stare decisis: the verdict flips
    assert ruling.id in _ids(bound_swapped) and bound_swapped.winner == "B"  # same text wins in the other slot
    poem_after = judge.compare(POEM)
    assert _ids(poem_after) == _ids(poem_before) and poem_after.winner == poem_before.winner
    assert poem_after.cached is False  # the rulebook version moved; the rules shown did not

    law.overrule(ruling.id, reason="the reviewer was wrong after all")
    released = judge.compare(near)
    assert ruling.id not in _ids(released) and released.winner == "B"
    assert ruling.id not in law.retrieve(near, k=1, k_rulings=5).ids
    assert _ids(judge.compare(POEM)) == _ids(poem_before)


def test_result_ids_resolve_by_key_prefix_or_pair_id_and_ambiguity_is_explained(law: Rulebook) -> None:
    store = JudgmentStore(law.store.engine)
    fb = FakeBackend(length_biased)
    first = Judge(fb, law, config=_config(fb), store=store).compare(WATER)
    assert store.find(first.cache_key).pair == WATER
    assert store.find(first.cache_key[:8].upper()).verdict.cache_key == first.cache_key
    assert store.find("water").verdict.cache_key == first.cache_key
    twin = first.model_copy(update={"cache_key": first.cache_key[:9] + "0" * 55, "pair_id": "twin"})
    store.put(twin, WATER)
    with pytest.raises(InputError, match="ambiguous") as err:
        store.find(first.cache_key[:9])
    assert first.cache_key[:16] in str(err.value) and "pair twin" in str(err.value)
    with pytest.raises(InputError, match="at least 8"):
        store.find(first.cache_key[:5])
    with pytest.raises(InputError, match="no stored judgment"):
        store.find("nobody")
    other = Pair(prompt=WATER.prompt, response_a="x", response_b="y")
    with pytest.raises(InputError, match="not the pair"):
        law.add_ruling_from(first, pair=other, holding="A", rationale="r")


def test_contradicting_near_duplicate_is_refused_until_it_overrules(law: Rulebook) -> None:
    store = JudgmentStore(law.store.engine)
    fb = FakeBackend(length_biased)
    judge = Judge(fb, law, config=_config(fb), store=store)
    old = law.add_ruling_from(judge.compare(WATER), holding="A", rationale=f"{MARKER} the correct one.")
    swapped = Pair(id="water-swapped", prompt="At what temperature does water boil?  ", response_a=WRONG_BUT_LONG,
                   response_b=CORRECT)
    result = judge.compare(swapped)
    version, rulings = law.version, law.store.count(Layer.RULING)

    with pytest.raises(RulingConflictError, match="--overrules") as err:  # B here is the text A won there
        law.add_ruling_from(result, holding="A", rationale="The long one after all.")
    assert [c[0] for c in err.value.conflicts] == [old.id] and err.value.conflicts[0][1] == "B"
    assert (law.version, law.store.count(Layer.RULING)) == (version, rulings)  # nothing written
    assert law.conflicts(swapped, "B") == []  # agreeing with the precedent is no conflict
    other_answers = Pair(prompt=WATER.prompt, response_a="Hot.", response_b="Cold.")
    assert law.conflicts(other_answers, "B") == []  # same prompt, other responses: both can hold

    seq = law.store.head().seq  # type: ignore[union-attr]
    new = law.add_ruling_from(result, holding="A", rationale="The long one after all.", overrules=[old.id])
    changes = list(law.store.changes_since(seq))
    assert [(c.rule_id, c.kind.value) for c in changes] == [(new.id, "add"), (old.id, "overrule")]
    assert len({c.at for c in changes}) == 1  # one transaction
    assert law.get(old.id).status is RuleStatus.OVERRULED
    ids = law.retrieve(swapped, k=1, k_rulings=5).ids
    assert new.id in ids and old.id not in ids


def test_conflicts_compare_response_texts_not_slot_letters() -> None:
    case = RulingCase(prompt="Q?", response_a="alpha", response_b="beta", holding="A", rationale="r")
    ruling = Rule(id="ruling/q", layer=Layer.RULING, title="q", text="held A", case=case)
    straight = Pair(prompt="q?", response_a="Alpha", response_b="beta")
    crossed = Pair(prompt="Q?", response_a="beta", response_b="alpha ")
    assert not swapped_slots(straight, case) and swapped_slots(crossed, case)
    assert find_conflicts(straight, "A", [Candidate(ruling, None)]) == []
    assert [c.holding for c in find_conflicts(straight, "B", [Candidate(ruling, None)])] == ["A"]
    assert find_conflicts(crossed, "B", [Candidate(ruling, None)]) == []
    assert [c.holding for c in find_conflicts(crossed, "A", [Candidate(ruling, None)])] == ["B"]
    assert [c.ruling_id for c in find_conflicts(crossed, "tie", [Candidate(ruling, None)])] == ["ruling/q"]
    similar = Pair(prompt="Q", response_a="gamma", response_b="delta")  # not the same texts: embeddings decide
    assert find_conflicts(similar, "B", [Candidate(ruling, 0.94)]) == []
    hit = find_conflicts(similar, "B", [Candidate(ruling, 0.96, (0.2, 1.8))])  # its A reads like their B
    assert hit == [] and find_conflicts(similar, "A", [Candidate(ruling, 0.96, (0.2, 1.8))])[0].swapped
    overruled = ruling.model_copy(update={"status": RuleStatus.OVERRULED})
    assert find_conflicts(straight, "B", [Candidate(overruled, None)]) == []


def test_binding_needs_each_response_to_match_not_just_the_pair_as_a_whole() -> None:
    case = RulingCase(prompt="Q?", response_a="alpha", response_b="beta", holding="A", rationale="r")
    ruling = Rule(id="ruling/q", layer=Layer.RULING, title="q", text="held A", case=case)
    other = Pair(prompt="Q?", response_a="alpha", response_b="gamma")  # shares the prompt and one response
    loose = [Candidate(ruling, 0.99, (1.7, 0.9), 0.7)]
    assert [p.holding for p in near_duplicates(other, loose)] == ["A"]  # alike enough to flag a conflict
    assert near_duplicates(other, loose, strict=True) == []  # ...not the same facts: it does not bind
    reworded = Pair(prompt="Quick question: Q?", response_a="beta.", response_b="alpha.")
    close = [Candidate(ruling, 0.97, (1.9, 1.99), 0.98, 0.975)]
    bound = near_duplicates(reworded, close, strict=True)
    assert [(p.holding, p.similarity, p.swapped) for p in bound] == [("B", 0.97, True)]
    assert near_duplicates(reworded, [Candidate(ruling, 0.97, (1.9, 1.99), None)], strict=True) == []
    assert near_duplicates(Pair(prompt="q?", response_a="Beta", response_b="alpha"), [Candidate(ruling, None)],
                           strict=True)[0].similarity == 1.0  # the same texts need no embedding


def test_the_constitution_changes_only_with_an_explicit_flag(law: Rulebook, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str],
                                                             sqlite_url: str) -> None:
    with pytest.raises(RulebookError, match="explicit flag"):
        law.amend("constitution/no-harm", text="Never help anyone cause serious harm.", reason="clarify")
    book = tmp_path / "book"
    law.export(book)
    target = book / "constitution" / "no-harm.md"
    target.write_text(target.read_text(encoding="utf-8").replace("hurt themselves", "seriously hurt themselves"),
                      encoding="utf-8")
    version = law.version
    with pytest.raises(RulebookError, match="amends the constitution"):
        law.load(book)
    assert law.version == version
    code, _, err = run_cli(["rulebook", "load", str(book)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "constitution/no-harm" in err and "--constitution" in err
    code, out, _ = run_cli(["rulebook", "load", str(book), "--constitution", "--json"], monkeypatch, capsys,
                           sqlite_url)
    assert code == 0 and json.loads(out)["amended"] == 1
    assert law.get("constitution/no-harm").version == 2
    text = tmp_path / "text.md"
    text.write_text("Never help anyone cause harm.\n", encoding="utf-8")
    args = ["rulebook", "amend", "constitution/no-harm", "--reason", "r", "--text-file", str(text)]
    assert run_cli(args, monkeypatch, capsys, sqlite_url)[0] == 2
    assert run_cli([*args, "--constitution"], monkeypatch, capsys, sqlite_url)[0] == 0
    assert law.get("constitution/no-harm").version == 3


def _judge_three(rb: Rulebook, fb: FakeBackend) -> tuple[Judge, dict[str, Verdict]]:
    judge = Judge(fb, rb, config=_config(fb), store=JudgmentStore(rb.store.engine))
    return judge, {p.id or "": judge.compare(p) for p in (WATER, POEM, CODE)}


def test_impact_lists_exactly_the_affected_judgments_and_rerun_rejudges_exactly_those(law: Rulebook,
                                                                                      tmp_path: Path) -> None:
    fb = FakeBackend(length_biased)
    judge, before = _judge_three(law, fb)
    since = law.version
    water_ruling = next(i for i in _ids(before["water"]) if i.startswith("ruling/"))
    assert {i for v in before.values() for i in _ids(v) if i.startswith("spec/")} == {
        "spec/units", "spec/honesty", "spec/code"}  # each topic sees its own entry
    store = JudgmentStore(law.store.engine)
    legacy = before["code"].model_copy(update={"cache_key": "f" * 64, "pair_id": "legacy"})
    store.put(legacy)  # recorded without its pair, as before schema revision 0004

    ruling = law.add_ruling_from(before["water"], holding="A", rationale=f"{MARKER} correct beats long.")
    ruling_version = law.version
    law.amend("spec/honesty", reason="sharper", text="Do not flatter a poem; say what is weak in the poem.")
    judge.compare(CODE)  # judged again at the current version: its older judgment is not checked
    report = impact(law, store, since)

    assert [e.pair_id for e in report.affected] == ["water", "poem"]
    water, poem = report.affected
    assert (water.diff.added, water.diff.removed, water.diff.changed) == ((ruling.id,), (water_ruling,), ())
    assert (poem.diff.added, poem.diff.removed, poem.diff.changed) == ((), (), (("spec/honesty", 1, 2),))
    assert water.cache_key == before["water"].cache_key and water.rulebook_version == since
    assert [(u.pair_id, u.reason) for u in report.unknown] == [("legacy", "unknown (no stored pair)")]
    assert report.checked == 3 and law.impact(since).to_json() == report.to_json()
    assert report.recorded_before == 0 and report.before_note is None
    later = impact(law, store, ruling_version)
    assert later.recorded_before == 4  # water, poem, code and legacy were judged before it: counted, named
    assert later.before_note is not None and "--since" in later.before_note

    fb.history.clear()
    out = tmp_path / "rerun.jsonl"
    run = asyncio.run(rerun(judge, report.affected, out=out))
    # poem: both orders asked again; water: the ruling made from its failure now binds it (no request)
    assert run.judged == 2 and len(fb.history) == 2
    redone = {v.pair_id: v for v in (Verdict.model_validate_json(line) for line in out.read_text().splitlines())}
    assert set(redone) == {"water", "poem"} and redone["water"].winner == "A"
    assert redone["water"].precedent is not None and redone["water"].precedent.ruling_id == ruling.id
    assert all(v.rulebook_version == law.version and v.config.k_spec == 1 for v in redone.values())
    assert redone["water"].cache_key != before["water"].cache_key
    asyncio.run(rerun(judge, report.affected, out=tmp_path / "again.jsonl"))
    assert len(fb.history) == 2  # the new verdicts answer a second re-run from the cache
    after = impact(law, store, since)  # re-judged under the current version: nothing is left to redo
    assert after.affected == () and after.checked == 1 and [u.pair_id for u in after.unknown] == ["legacy"]
    law.amend("spec/honesty", reason="sharper still", text="Do not flatter a poem; name what is weak in it.")
    assert [e.pair_id for e in impact(law, store, since).affected] == ["poem"]  # the re-run's judgment, once
    assert impact(law, store, since).affected[0].rulebook_version != since

    # a re-run that fails does not replace the judgment it was to redo: the next re-run tries it again
    failing = Judge(FakeBackend(lambda body: FakeReply(text="no verdict here")), law, config=judge.config,
                    store=store)
    failed = asyncio.run(rerun(failing, impact(law, store, since).affected, out=tmp_path / "failed.jsonl"))
    assert failed.failed == 1
    assert [e.pair_id for e in impact(law, store, since).affected] == ["poem"]


def test_a_rerun_keeps_the_method_and_its_template_version(law: Rulebook, tmp_path: Path) -> None:
    """A judgment made with the rule checks is re-judged with the rule checks' template, not the pairwise one."""
    from judge.judging.checks import CHECKS_TEMPLATE_VERSION, template_version_of

    fb = FakeBackend(length_biased)
    config = _config(fb).model_copy(update={"method": "checks", "template_version": CHECKS_TEMPLATE_VERSION})
    judge = Judge(fb, law, config=config, store=JudgmentStore(law.store.engine))
    judge.compare(POEM)
    since = law.version
    law.amend("spec/honesty", reason="sharper", text="Do not flatter a poem; say what is weak in the poem.")
    entries = impact(law, JudgmentStore(law.store.engine), since).affected
    assert [e.config.method for e in entries] == ["checks"]
    asyncio.run(rerun(judge, entries, out=tmp_path / "rerun.jsonl"))
    redone = [Verdict.model_validate_json(line) for line in (tmp_path / "rerun.jsonl").read_text().splitlines()]
    assert [(v.config.method, v.config.template_version) for v in redone] == [("checks", CHECKS_TEMPLATE_VERSION)]
    assert template_version_of("pairwise") == TEMPLATE_VERSION != template_version_of("checks")
    assert template_version_of("checks", use_rules=False) == "bare-v1"


def test_a_precedent_bound_judgment_is_affected_only_when_its_precedent_changes(law: Rulebook) -> None:
    fb = FakeBackend(length_biased)
    judge, before = _judge_three(law, fb)
    ruling = law.add_ruling_from(before["water"], holding="A", rationale=f"{MARKER} correct beats long.")
    bound = judge.compare(WATER)
    assert bound.precedent is not None and bound.precedent.ruling_id == ruling.id
    assert ruling.id in [r["id"] for r in bound.retrieved]
    since = law.version
    store = JudgmentStore(law.store.engine)
    law.amend("spec/code", reason="unrelated", text="Code must run; prefer the standard library.")
    assert bound.cache_key not in [e.cache_key for e in impact(law, store, since).affected]
    law.overrule(ruling.id, reason="reconsidered")
    entry = next(e for e in impact(law, store, since).affected if e.cache_key == bound.cache_key)
    assert ruling.id in entry.diff.removed  # no longer binds (nor is it retrieved): the verdict must be redone


def test_impact_diff_and_rerun_plan_are_pure() -> None:
    before = [{"id": "constitution/a", "version": 1}, {"id": "spec/b", "version": 1}, {"id": "ruling/c", "version": 1}]
    diff = diff_shown(before, [("constitution/a", 1), ("spec/b", 2), ("ruling/d", 1)])
    assert (diff.added, diff.removed, diff.changed) == (("ruling/d",), ("ruling/c",), (("spec/b", 1, 2),))
    assert not diff_shown(before, [("constitution/a", 1), ("spec/b", 1), ("ruling/c", 1)])
    config = JudgeConfig(backend="x", model="y", template_version="t", k_spec=1)
    entries = [ImpactEntry("k1" * 32, "p", "rb-1", RuleDiff(added=("spec/b",)), WATER, config),
               ImpactEntry("k2" * 32, "p", "rb-2", RuleDiff(added=("spec/b",)), WATER, config),  # same request
               ImpactEntry("k3" * 32, "p", "rb-1", RuleDiff(added=("spec/b",)), WATER,
                           config.model_copy(update={"k_spec": 2}))]
    plan = rerun_plan(entries)
    assert [g.config_fields["k_spec"] for g in plan] == [1, 2]  # the second entry repeats the first request
    # one pair under two configurations: results are keyed by pair id, so the ids are made distinct
    assert [[r.pair.id for r in g.records] for g in plan] == [[f"water@{'k1' * 6}"], [f"water@{'k3' * 6}"]]
    assert rerun_plan(entries[:2])[0].records[0].pair.id == "water"


def test_rule_impact_and_rerun_commands(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        sqlite_url: str, tmp_path: Path) -> None:
    from judge.backends import registry

    rb = _seed(Rulebook.open(settings=Settings.from_env(db_url=sqlite_url, embedding_model="hash")))
    fb = FakeBackend(length_biased)
    _, before = _judge_three(rb, fb)
    since = rb.version
    monkeypatch.setattr(registry, "make_backend", lambda *a, **k: fb)

    def cli(*args: str) -> tuple[int, str, str]:
        return run_cli(list(args), monkeypatch, capsys, sqlite_url)

    code, out, err = cli("rule", before["water"].cache_key[:12], "--holding", "A", "--rationale",
                         f"{MARKER} correct beats long.", "--cite", "spec/units", "--author", "qa", "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["source"] == f"judgment:{before['water'].cache_key}" and made["author"] == "qa"
    code, _, err = cli("rule", "water", "--holding", "B", "--rationale", "no, the long one")
    assert code == 2 and made["id"] in err and "--overrules" in err
    code, _, err = cli("rule", "water", "--holding", "A", "--rationale", "again", "--cite", "spec/nope")
    assert code == 2 and "spec/nope" in err
    code, out, err = cli("rule", "water", "--holding", "B", "--rationale", "the long one", "--overrules", made["id"])
    assert code == 0 and f"overruled {made['id']}" in out

    code, out, _ = cli("rulebook", "impact", "--since", since, "--json")
    assert code == 0 and [e["pair_id"] for e in json.loads(out)["affected"]] == ["water"]
    code, out, _ = cli("rulebook", "impact", "--since", since)
    assert code == 0 and "1 affected" in out
    assert cli("rulebook", "impact", "--since", "rb-nonexistent")[0] == 2

    fb.history.clear()
    code, out, err = cli("rerun", "--since", since, "-o", str(tmp_path / "r.jsonl"), "--backend", "fake", "--json")
    assert code == 0, err
    assert json.loads(out)["judged"] == 1 and len(fb.history) == 0  # the new ruling binds: no model asked
    redone = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(v["pair_id"], v["winner"]) for v in redone] == [("water", "B")]
    assert redone[0]["deciding_rule"] != made["id"] and redone[0]["precedent"]["holding"] == "B"

    # `judge run` on the same facts: bound (and counted) by default, asks the model with --no-precedent
    pairs = tmp_path / "water.jsonl"
    pairs.write_text(json.dumps({"id": "w2", "prompt": f"  {WATER.prompt}", "response_a": WRONG_BUT_LONG,
                                 "response_b": CORRECT}) + "\n", encoding="utf-8")
    code, out, err = cli("run", str(pairs), "-o", str(tmp_path / "bound.jsonl"), "--backend", "fake", "--json")
    assert code == 0, err
    assert json.loads(out)["bound_by_precedent"] == 1 and len(fb.history) == 0
    code, out, err = cli("run", str(pairs), "-o", str(tmp_path / "asked.jsonl"), "--backend", "fake",
                         "--method", "pairwise", "--no-precedent", "--no-explain", "--json")
    assert code == 0, err
    assert json.loads(out)["bound_by_precedent"] == 0 and len(fb.history) == 2


def test_migration_0004_keeps_judgments_stored_before_it(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import insert

    from judge.store import (
        alembic_config,
        known_revisions,
        migrate,
        open_engine,
        schema_revision,
    )
    from judge.store.schema import JudgmentRow
    from judge.testing import hash_rulebook
    from judge.verdicts import Distribution

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = open_engine(url)
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003_test_cases")
    assert schema_revision(engine) == ("0003_test_cases",)
    from judge.rules.model import EMPTY_RULEBOOK_VERSION, next_rulebook_version

    units = Rule(id="spec/units", layer=Layer.SPEC, title="Units", text="Get units right.")
    # the version the rulebook has after its first change, added below once the store is migrated
    version = next_rulebook_version(EMPTY_RULEBOOK_VERSION, units.id, 1, units.content_hash())
    old = Verdict(pair_id="old", winner="A", probabilities=Distribution(a=0.9, tie=0.0, b=0.1), cache_key="ab" * 32,
                  rulebook_version=version, config=JudgeConfig(backend="fake", model="m", template_version="t"))
    columns = {"cache_key": old.cache_key, "pair_id": "old", "rulebook_version": version, "backend": "fake",
               "model": "m", "template_version": "t", "winner": "A", "failure_stage": None,
               "result": old.model_dump(mode="json"), "created_at": old.created_at}
    with engine.begin() as conn:  # the columns revision 0003 has
        conn.execute(insert(JudgmentRow.__table__).values(**columns))
    engine.dispose()

    rb = hash_rulebook(url)  # opens and migrates to the head revision
    rb.add_rule(units)
    assert rb.version == version
    rb.add_rule(Rule(id="spec/tone", layer=Layer.SPEC, title="Tone", text="Be kind."))
    assert schema_revision(rb.store.engine) == (known_revisions()[-1],)
    judgments = JudgmentStore(rb.store.engine)
    assert judgments.count() == 1
    kept = judgments.find("old")
    assert kept.pair is None and kept.verdict == old
    with pytest.raises(InputError, match="predates stored pairs"):
        rb.add_ruling_from("old", holding="B", rationale="r")
    report = rb.impact(version)
    assert report.affected == () and [u.pair_id for u in report.unknown] == ["old"]
    migrate(rb.store.engine)  # idempotent


def test_rulings_as_labelled_pairs_round_trip_into_evaluation(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str], sqlite_url: str,
                                                              tmp_path: Path) -> None:
    from judge.records import read_pairs

    assert run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)[0] == 0
    out = tmp_path / "rulings.jsonl"
    code, stdout, _ = run_cli(["rulebook", "rulings-as-pairs", str(out), "--json"], monkeypatch, capsys, sqlite_url)
    assert code == 0 and json.loads(stdout)["pairs"] == 199
    records = list(read_pairs(out))
    assert len(records) == 199 and all(r.label in ("A", "B", "tie") for r in records)
    assert all(r.pair.id and r.pair.id.startswith("ruling/") for r in records)
