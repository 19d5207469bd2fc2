"""Batched retrieval returns exactly what a search per text returns.

Fused retrieval searches a pair with several texts (the prompt, each response, all three); the index is asked
once per collection for all the texts' vectors and the lexical index once for all the texts. These tests hold
the batched path to the per-text one: index queries one vector at a time (`RuleIndex.query_vector`) and the
full-text statement of one text and one group of layers at a time, as written before batching (the oracle
below). SQLite always; PostgreSQL when ``JUDGE_TEST_PG_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, bindparam, event, text

import judge.retrieval.retriever as retriever_module
from judge.records import read_pairs
from judge.retrieval import RuleIndex
from judge.retrieval.index import Hit
from judge.rulebook import Rulebook
from judge.rules.model import Layer, Pair, Response
from judge.rules.textio import read_rulebook
from judge.store import RulebookStore, lexical
from judge.store.lexical import informative_terms, query_terms
from judge.testing import hash_rulebook
from tests.test_retrieval_quality import store  # noqa: F401  (the SQLite / PostgreSQL store fixture)

ROOT = Path(__file__).resolve().parent.parent
GROUPS: list[tuple[Layer, ...]] = [(Layer.CONSTITUTION, Layer.SPEC), (Layer.RULING,), (Layer.SPEC,)]


def per_text_search(conn: Connection, query: str, layers: Collection[Layer], k: int,
                    exclude: Collection[str] = ()) -> list[tuple[str, float]]:
    """The full-text search of one text among some layers, one statement each (the layer filtered in the
    match on SQLite, in the WHERE clause on PostgreSQL), with the text's informative words."""
    terms = informative_terms(conn, [query_terms(query)])[0]
    if k <= 0 or not terms or not layers:
        return []
    fetch = k + len(exclude)
    names = sorted(Layer(layer).value for layer in layers)
    if conn.dialect.name == "sqlite":
        words = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        in_layers = " OR ".join(f'"{name}"' for name in names)
        result = conn.execute(text("SELECT rule_id, bm25(rule_fts, 0.0, 0.0, 1.0) AS score FROM rule_fts "
                                   "WHERE rule_fts MATCH :match ORDER BY score, rule_id LIMIT :fetch"),
                              {"match": f"layer : ({in_layers}) AND body : ({words})", "fetch": fetch})
        found = [(row.rule_id, -float(row.score)) for row in result]
    else:
        result = conn.execute(text("SELECT rule_id, ts_rank(tsv, q) AS score FROM rule_fts, "
                                   "to_tsquery('english', :q) AS q WHERE layer IN :layers AND tsv @@ q "
                                   "ORDER BY score DESC, rule_id LIMIT :fetch").bindparams(
                                       bindparam("layers", expanding=True)),
                              {"q": " | ".join(terms), "layers": names, "fetch": fetch})
        found = [(row.rule_id, float(row.score)) for row in result]
    return [hit for hit in found if hit[0] not in set(exclude)][:k]


def _pairs() -> list[Pair]:
    pairs = [record.pair for record in read_pairs(ROOT / "examples" / "pairs.jsonl")]
    pairs.append(Pair(prompt="How similar are humans and chimpanzees?",
                      response_a=Response(text="About 98.8% of DNA is shared; the differences matter."),
                      response_b=Response(text="Very similar. Anything else?")))
    pairs.append(Pair(prompt="the of and", response_a=Response(text="   "), response_b=Response(text="Yes.")))
    return pairs


@pytest.fixture
def default_rulebook(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Rulebook:
    """The default rulebook with the hash embedder, every layer but the constitution searched in the index
    (as a large rulebook's are), not in memory."""
    monkeypatch.setattr(retriever_module, "EXACT_LAYER_MAX", 0)
    return hash_rulebook(sqlite_url, ROOT / "rulebook")


def test_lexical_search_many_is_the_per_text_search(store: RulebookStore) -> None:  # noqa: F811
    store.sync(read_rulebook(ROOT / "rulebook"), author="test", reason="seed")
    texts = [t for pair in _pairs() for t in (pair.prompt, pair.response_a.text, pair.response_b.text)]
    texts += ["At what temperature does water boil?", "kettle", ""]
    for k, exclude in ((30, ()), (5, ()), (1, ()), (4, ("spec/avoid-sycophancy", "constitution/honesty")), (0, ())):
        batched = store.lexical_search_many(texts, GROUPS, k, exclude=exclude)
        with store.engine.connect() as conn:
            expected = [[per_text_search(conn, t, layers, k, exclude) for layers in GROUPS] for t in texts]
        assert batched == expected
        assert any(hits for per_text in batched for hits in per_text) or k == 0


def _document_frequency(conn: Connection, term: str) -> int:
    """The binding rules a word matches, counted in full (no threshold)."""
    if conn.dialect.name == "sqlite":
        return int(conn.execute(text("SELECT count(*) FROM rule_fts WHERE rule_fts MATCH :m"),
                                {"m": 'body : "' + term + '"'}).scalar_one())
    return int(conn.execute(text("SELECT count(*) FROM rule_fts WHERE tsv @@ to_tsquery('english', :t)"),
                            {"t": term}).scalar_one())


def test_informative_terms_drop_common_words_and_keep_the_rarest(store: RulebookStore) -> None:  # noqa: F811
    store.sync(read_rulebook(ROOT / "rulebook"), author="test", reason="seed")
    texts = [t for pair in _pairs() for t in (pair.prompt, pair.response_a.text, pair.response_b.text)]
    lists = [query_terms(t) for t in texts] + [[]]
    with store.engine.connect() as conn:
        rules = int(conn.execute(text("SELECT count(*) FROM rule_fts")).scalar_one())
        for rarest, fraction, floor in ((3, 0.1, 2), (5, 0.02, 0), (None, 0.1, 2), (None, 0.5, 1000)):
            chosen = informative_terms(conn, lists, rarest=rarest, fraction=fraction, floor=floor)
            limit = int(max(floor, rules * fraction))
            for terms, kept in zip(lists, chosen, strict=True):
                docs = {term: _document_frequency(conn, term) for term in terms}
                eligible = [t for t in terms if docs[t] <= limit]
                expected = set(sorted(eligible, key=lambda t: docs[t])[:rarest])
                assert kept == [t for t in eligible if t in expected]  # the text's order, rarest kept
            dropped = any(len(kept) < len(terms) for terms, kept in zip(lists, chosen, strict=True))
            assert dropped == (limit < rules or rarest is not None)
        # A rulebook smaller than the floor keeps every word (by default).
        assert informative_terms(conn, lists) == lists


@pytest.mark.parametrize(("informative", "rarest", "floor"), [(True, None, 0), (True, 2, 0), (False, None, 0)])
def test_lexical_search_takes_any_text_as_data(store: RulebookStore,  # noqa: F811
                                               informative: bool, rarest: int | None, floor: int) -> None:
    store.sync(read_rulebook(ROOT / "rulebook"), author="test", reason="seed")
    texts = ['"quoted" words "unbalanced', "safety NEAR(privacy harm, 2) AND NOT OR honesty*", "a* OR b* -c ^d",
             "col : honesty", "(((privacy)))", "Größe der Daten, données personnelles", "個人情報 とは 数据隐私",
             "privacy'); DROP TABLE rule_fts; --", "", "   ", "!!!", "\x00 \\ % _ ? :q0"]
    with store.engine.connect() as conn:
        hits = lexical.search_many(conn, texts, GROUPS, 5, informative=informative, rarest=rarest, floor=floor)
        assert len(hits) == len(texts) and all(len(per_text) == len(GROUPS) for per_text in hits)
        assert any(hits[1]) and any(hits[7])  # words inside operators and punctuation are still searched
        assert hits[8] == hits[9] == hits[10] == [[], [], []]
        assert int(conn.execute(text("SELECT count(*) FROM rule_fts")).scalar_one()) > 0


def test_query_vectors_is_query_vector_per_vector(default_rulebook: Rulebook) -> None:
    rulebook = default_rulebook
    index = rulebook.index
    assert index is not None
    pairs = _pairs()
    vectors = index.embedder.encode([t for p in pairs for t in (p.query_text(), p.prompt, p.response_a.text)])
    excluded = ["ruling/modelspec-adapt-length-in-voice-mode-ex1-c1-r1r2", "spec/avoid-sycophancy"]
    for layer in (Layer.SPEC, Layer.RULING, Layer.CONSTITUTION):
        for k, exclude, use_passages, active_only in ((30, (), True, True), (5, excluded, True, True),
                                                      (7, excluded, False, True), (3, (), False, False)):
            batched = index.query_vectors(vectors, layer=layer, k=k, exclude=exclude, use_passages=use_passages,
                                          active_only=active_only)
            assert batched == [index.query_vector(v, layer=layer, k=k, exclude=exclude, use_passages=use_passages,
                                                  active_only=active_only) for v in vectors]
            assert any(batched) and all(len(hits) <= k for hits in batched)
    # A ruling's status asked of the store (no metadata read) gives the hits the index's metadata gives.
    ruling = index.query_vector(vectors[0], layer=Layer.RULING, k=1)[0].rule_id
    rulebook.overrule(ruling, reason="no longer binds")
    rulebook.sync_index()
    asked: list[set[str]] = []

    def binding(ids: Collection[str]) -> set[str]:
        asked.append(set(ids))
        return rulebook.store.binding(ids)

    for layer in (Layer.SPEC, Layer.RULING):
        for k, exclude, use_passages in ((30, (), True), (5, excluded, True), (7, excluded, False)):
            by_metadata = index.query_vectors(vectors, layer=layer, k=k, exclude=exclude, use_passages=use_passages)
            assert index.query_vectors(vectors, layer=layer, k=k, exclude=exclude, use_passages=use_passages,
                                       binding=binding) == by_metadata
            assert not any(hit.rule_id == ruling for hits in by_metadata for hit in hits)
    assert asked and any(ruling in ids for ids in asked)  # asked for rulings only, the overruled one among them
    assert all(rule_id.startswith("ruling/") for ids in asked for rule_id in ids)
    process = index.query_vectors(vectors[:3], layer=Layer.SPEC, k=3, where_extra={"process": True})
    assert process == [index.query_vector(v, layer=Layer.SPEC, k=3, where_extra={"process": True})
                       for v in vectors[:3]]
    assert index.query_vectors(vectors, layer=Layer.SPEC, k=0) == [[] for _ in vectors]
    assert index.query_vectors(np.zeros((0, index.embedder.dim)), layer=Layer.SPEC, k=5) == []


def test_store_binding_is_the_latest_active_version(store: RulebookStore) -> None:  # noqa: F811
    store.sync(read_rulebook(ROOT / "rulebook"), author="test", reason="seed")
    rulings = [rule.id for rule in store.iter_current(Layer.RULING)][:3]
    some = [*rulings, "spec/avoid-sycophancy", "ruling/no-such-ruling"]
    assert store.binding(some) == {*rulings, "spec/avoid-sycophancy"}
    rulebook = Rulebook(store, None)
    rulebook.overrule(rulings[0], reason="no longer binds")
    assert store.binding(some) == {*rulings[1:], "spec/avoid-sycophancy"}
    assert store.binding([]) == set()


def test_remembered_word_counts_choose_the_same_words_without_counting(store: RulebookStore) -> None:  # noqa: F811
    store.sync(read_rulebook(ROOT / "rulebook"), author="test", reason="seed")
    texts = [t for pair in _pairs() for t in (pair.prompt, pair.response_a.text, pair.response_b.text)]
    lists = [query_terms(t) for t in texts]
    counted: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "LIMIT (SELECT cap FROM capped)" in statement:
            counted.append(statement)

    known = lexical.TermCounts()
    with store.engine.connect() as conn:
        for fraction, floor in ((0.1, 2), (0.02, 0)):
            expected = informative_terms(conn, lists, fraction=fraction, floor=floor)
            known = lexical.TermCounts()
            counted.clear()
            assert informative_terms(conn, lists[:4], fraction=fraction, floor=floor, known=known) == expected[:4]
            assert informative_terms(conn, lists, fraction=fraction, floor=floor, known=known) == expected
            assert len(counted) == 2
            assert informative_terms(conn, lists, fraction=fraction, floor=floor, known=known) == expected
            assert len(counted) == 2  # every word known: no statement at all
            assert known.cap is not None and set(known.counts) == {t for terms in lists for t in terms}
        small = lexical.TermCounts(limit=5)  # full: forgets what it held, still answers correctly
        assert informative_terms(conn, lists[:2], fraction=0.02, floor=0, known=small) == \
            informative_terms(conn, lists[:2], fraction=0.02, floor=0)
        assert informative_terms(conn, lists, fraction=0.02, floor=0, known=small) == \
            informative_terms(conn, lists, fraction=0.02, floor=0)
        assert len(small.counts) <= 5


def _view(rulebook: Rulebook, pair: Pair, exclude: Sequence[str]) -> dict[str, Any]:
    retrieval = rulebook.retrieve(pair, k=5, exclude=exclude, precedent_threshold=0.5)
    return {"rules": [(r.rule.id, r.score, r.similarity) for r in retrieval.rules],
            "excluded": retrieval.precedence.excluded, "precedents": retrieval.precedents,
            "version": retrieval.rulebook_version}


def test_batched_retrieval_returns_what_per_text_retrieval_returns(default_rulebook: Rulebook,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rulebook = default_rulebook
    rulebook.sync_index()
    cases: list[tuple[Pair, tuple[str, ...]]] = [(pair, ()) for pair in _pairs()]
    cases.append((cases[0][0], ("spec/avoid-sycophancy", "ruling/modelspec-adapt-length-in-voice-mode-ex1-c1-r1r2")))
    # A ruling the first pair retrieves is overruled: it must no longer be found, by either path.
    overruled = next(r.rule.id for r in rulebook.retrieve(cases[0][0], k=5).rules if r.rule.id.startswith("ruling/"))
    rulebook.overrule(overruled, reason="no longer binds")
    rulebook.sync_index()

    index = rulebook.index
    assert index is not None
    calls: list[str] = []
    statements: list[str] = []
    real_call = index._call

    def counted(layer: Layer, method: str, **kwargs: Any) -> Any:
        if method == "query":
            calls.append(f"{layer.value}{'-p' if kwargs.get('passages') else ''}")
        return real_call(layer, method, **kwargs)

    monkeypatch.setattr(index, "_call", counted)

    @event.listens_for(rulebook.store.engine, "before_cursor_execute")
    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "rule_fts" in statement:
            statements.append(statement)

    batched = []
    for pair, exclude in [*cases, *cases]:  # twice: the second time, the remembered statuses and word counts
        calls.clear()
        statements.clear()
        batched.append(_view(rulebook, pair, exclude))
        # One query per collection (spec and rulings, whole texts and passages) for every text of the pair,
        # plus the nearest rulings by the whole pair; one statement reading the document frequencies of all
        # the texts' words and one full-text search for all of them.
        assert len(calls) <= 5 + (2 if pair.has_process() else 0), calls
        assert len(statements) <= 2
    assert batched[:len(cases)] == batched[len(cases):]
    batched = batched[:len(cases)]

    # The oracle: one vector at a time, a ruling's status read from the index's metadata, every word counted.
    def per_vector(self: RuleIndex, vectors: np.ndarray, *, layer: Layer, k: int,
                   exclude: Collection[str] = (), active_only: bool = True,
                   where_extra: dict[str, Any] | None = None, use_passages: bool = True,
                   binding: object = None) -> list[list[Hit]]:
        return [self.query_vector(v, layer=layer, k=k, exclude=exclude, active_only=active_only,
                                  where_extra=where_extra, use_passages=use_passages) for v in vectors]

    def per_text(self: RulebookStore, queries: Sequence[str], groups: Sequence[Collection[Layer]], k: int, *,
                 exclude: Collection[str] = (), known: object = None,
                 common_fraction: float = lexical.COMMON_FRACTION) -> list[list[list[tuple[str, float]]]]:
        assert common_fraction == lexical.COMMON_FRACTION
        with self.engine.connect() as conn:
            return [[per_text_search(conn, q, layers, k, exclude) for layers in groups] for q in queries]

    monkeypatch.setattr(RuleIndex, "query_vectors", per_vector)
    monkeypatch.setattr(RulebookStore, "lexical_search_many", per_text)
    one_by_one = [_view(rulebook, pair, exclude) for pair, exclude in cases]
    assert batched == one_by_one
    assert all(view["rules"] for view in batched)
    assert not any(rid == overruled for view in batched for rid, _, _ in view["rules"])
    assert any(rid.startswith("ruling/") for view in batched for rid, _, _ in view["rules"])
