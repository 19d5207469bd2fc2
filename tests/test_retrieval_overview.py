"""Overview and grouping entries (tagged ``overview``) are context, not rules a pair is judged by.

By default retrieval never returns them - not from dense, full-text or test-case rankings, in the fused or the
dense configuration - and the rules under them take their places; `RetrievalConfig(overview=True)` (and the
dense whole-text configuration, as retrieval was before) returns them like any rule.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from judge.records import read_pairs
from judge.retrieval import RuleIndex
from judge.retrieval.embedder import HashEmbedder
from judge.retrieval.fusion import RetrievalConfig
from judge.retrieval.index import make_ephemeral_client
from judge.rulebook import Rulebook
from judge.rules.model import OVERVIEW_TAG, Authority, Layer, Pair, Rule
from judge.rules.textio import read_rulebook
from judge.store import RulebookStore
from judge.testing import hash_rulebook
from tests.test_retrieval_quality import store  # noqa: F401  (the SQLite / PostgreSQL store fixture)

ROOT = Path(__file__).resolve().parent.parent

PROMPT = "How should the assistant format a recipe for banana bread with walnuts?"


def _rules() -> list[Rule]:
    overview = Rule(id="spec/recipes-overview", layer=Layer.SPEC, title="Recipes",
                    text=f"This chapter is about recipes. {PROMPT} Banana bread, walnuts, recipes.",
                    tags=(OVERVIEW_TAG,))
    entry = Rule(id="spec/recipe-format", layer=Layer.SPEC, title="Format recipes as lists",
                 text="Give the ingredients of a recipe as a list, then the numbered steps.",
                 authority=Authority.GUIDELINE, parent="spec/recipes-overview", specificity=1)
    other = Rule(id="spec/be-kind", layer=Layer.SPEC, title="Be kind", text="Answer with warmth.",
                 authority=Authority.GUIDELINE)
    root = Rule(id="constitution/no-harm", layer=Layer.CONSTITUTION, title="Do no harm",
                text="Never help anyone hurt people.", authority=Authority.ROOT)
    return [root, overview, entry, other]


def _rulebook(url: str, config: RetrievalConfig | None = None) -> Rulebook:
    index = RuleIndex(make_ephemeral_client(), HashEmbedder(dim=128), collection=f"t{uuid.uuid4().hex[:12]}")
    rulebook = Rulebook(RulebookStore.open(url), index, retrieval=config)
    for rule in _rules():
        rulebook.add_rule(rule, author="test")
    return rulebook


PAIR = Pair(prompt=PROMPT, response_a="Banana bread with walnuts: mix, bake.", response_b="Bake it.")


@pytest.mark.parametrize("config", [RetrievalConfig(), RetrievalConfig(cases=False, lexical=False),
                                    RetrievalConfig(fused=False, passages=False, lexical=False,
                                                    split_queries=False, cases=False)],
                         ids=["fused", "fused-dense-only", "dense"])
def test_overview_entries_are_not_retrieved(tmp_path: Path, config: RetrievalConfig) -> None:
    rulebook = _rulebook(f"sqlite:///{tmp_path / 'r.db'}", config)
    ids = rulebook.retrieve(PAIR, k=5).ids
    assert "spec/recipes-overview" not in ids
    assert {"spec/recipe-format", "spec/be-kind", "constitution/no-harm"} <= set(ids)


@pytest.mark.parametrize("config", [RetrievalConfig(overview=True), RetrievalConfig.dense_whole()],
                         ids=["fused", "dense-whole"])
def test_overview_entries_are_retrieved_when_asked(tmp_path: Path, config: RetrievalConfig) -> None:
    rulebook = _rulebook(f"sqlite:///{tmp_path / 'r.db'}", config)
    retrieval = rulebook.retrieve(PAIR, k=5)
    assert "spec/recipes-overview" in retrieval.ids
    best_spec = max((r for r in retrieval.rules if r.rule.layer is Layer.SPEC), key=lambda r: r.score)
    assert best_spec.rule.id == "spec/recipes-overview"  # its text holds the prompt: the best match


def test_an_entry_that_stops_being_an_overview_is_retrieved_again(tmp_path: Path) -> None:
    rulebook = _rulebook(f"sqlite:///{tmp_path / 'r.db'}")
    assert "spec/recipes-overview" not in rulebook.retrieve(PAIR, k=5).ids
    rulebook.amend("spec/recipes-overview", reason="now a rule of its own", tags=())
    assert "spec/recipes-overview" in rulebook.retrieve(PAIR, k=5).ids  # the version moved: read again


def test_store_tagged_reads_the_latest_binding_versions(tmp_path: Path) -> None:
    rulebook = _rulebook(f"sqlite:///{tmp_path / 'r.db'}")
    rules_store = rulebook.store
    assert rules_store.tagged(OVERVIEW_TAG, (Layer.SPEC, Layer.CONSTITUTION)) == {"spec/recipes-overview"}
    assert rules_store.tagged(OVERVIEW_TAG, (Layer.CONSTITUTION,)) == set()
    assert rules_store.tagged("no-such-tag", (Layer.SPEC,)) == set()
    rulebook.amend("spec/be-kind", reason="grouping", tags=(OVERVIEW_TAG, "style"))
    assert rules_store.tagged(OVERVIEW_TAG, (Layer.SPEC,)) == {"spec/recipes-overview", "spec/be-kind"}


def test_the_default_rulebook_shows_no_overview_entry(sqlite_url: str) -> None:
    rulebook = hash_rulebook(sqlite_url, ROOT / "rulebook")
    overview = rulebook.store.tagged(OVERVIEW_TAG, (Layer.SPEC, Layer.CONSTITUTION))
    assert len(overview) >= 10  # the Model Spec's overview and grouping headings
    for record in read_pairs(ROOT / "examples" / "pairs.jsonl"):
        retrieval = rulebook.retrieve(record.pair, k=5)
        assert not overview.intersection(retrieval.ids)
        assert all(not r.rule.overview for r in retrieval.rules)


def test_store_tagged_on_each_database(store: RulebookStore) -> None:  # noqa: F811
    rules = read_rulebook(ROOT / "rulebook")
    store.sync(rules, author="test", reason="seed")
    expected = {r.id for r in rules if r.overview and r.layer in (Layer.SPEC, Layer.CONSTITUTION)}
    assert expected and store.tagged(OVERVIEW_TAG, (Layer.SPEC, Layer.CONSTITUTION)) == expected
    assert store.tagged("process", (Layer.SPEC,)) == {r.id for r in rules if r.process_rule}
