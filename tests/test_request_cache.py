"""A repeated request is answered from the judgment store before anything is retrieved; any change misses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from judge.api import compare as api_compare
from judge.backends.fake import FakeBackend, FakeReply
from judge.judging.engine import Judge
from judge.judging.prompts import TEMPLATE_VERSION
from judge.retrieval.fusion import RetrievalConfig
from judge.retrieval.index import RuleIndex
from judge.rulebook import Rulebook
from judge.rules.model import Authority, Layer, Pair, Rule
from judge.settings import Settings
from judge.store import RulebookStore
from judge.store.judgments import JudgmentStore
from judge.verdicts import JudgeConfig, Verdict

PAIR = Pair(id="p1", prompt="At what temperature does water boil?",
            response_a="Water boils at 100 degrees Celsius at sea level.",
            response_b="Water boils at 50 degrees Celsius, trust me.")


class RefusingEmbedder:
    """An embedder with another one's name and dimension that fails the test if asked to embed."""

    def __init__(self, name: str, dim: int) -> None:
        self._name, self._dim = name, dim

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        raise AssertionError(f"the embedder was asked to embed {len(texts)} text(s)")


class RefusingClient:
    """A Chroma client that fails the test when the index is touched at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the index was opened ({name})")


def _reply(_body: dict[str, Any]) -> FakeReply:
    return FakeReply(text="A", top_logprobs=[("A", math.log(0.8)), ("B", math.log(0.2))])


def _config(backend: FakeBackend, **kw: Any) -> JudgeConfig:
    return JudgeConfig(backend=backend.name, model=backend.model, template_version=TEMPLATE_VERSION, explain=False,
                       **kw)


@pytest.fixture
def rb(hash_rulebook: Rulebook) -> Rulebook:
    hash_rulebook.add_rule(Rule(id="constitution/no-harm", layer=Layer.CONSTITUTION, title="Do no serious harm",
                                text="Never help anyone hurt themselves or others.", authority=Authority.ROOT))
    hash_rulebook.add_rule(Rule(id="spec/honesty", layer=Layer.SPEC, title="Be honest",
                                text="State facts correctly; do not invent them.", authority=Authority.USER))
    return hash_rulebook


def _blind(rb: Rulebook, *, retrieval: RetrievalConfig | None = None) -> Rulebook:
    """The same rulebook and index settings as ``rb``, opened anew (as another process would) with an index
    and embedder that fail if used."""
    assert rb.index is not None
    index = RuleIndex(RefusingClient(), RefusingEmbedder(rb.index.embedder.name, rb.index.embedder.dim),
                      collection=rb.index.collection_name)
    return Rulebook(RulebookStore(rb.store.engine), index, retrieval=retrieval or rb.retriever.config)


def _counting(rb: Rulebook, monkeypatch: pytest.MonkeyPatch) -> list[Pair]:
    calls: list[Pair] = []
    real = rb.retrieve

    def retrieve(pair: Pair, **kw: Any) -> Any:
        calls.append(pair)
        return real(pair, **kw)

    monkeypatch.setattr(rb, "retrieve", retrieve)
    return calls


def test_a_repeated_request_is_answered_without_the_embedder_or_the_index(rb: Rulebook) -> None:
    store = JudgmentStore(rb.store.engine)
    first_backend = FakeBackend(_reply)
    first = Judge(first_backend, rb, config=_config(first_backend), store=store).compare(PAIR)
    assert first.failure is None and not first.cached and len(first_backend.history) == 2

    backend = FakeBackend(_reply)
    again = Judge(backend, _blind(rb), config=_config(backend), store=store).compare(
        PAIR.model_copy(update={"id": "p1-again"}))
    assert again.cached and again.pair_id == "p1-again" and backend.history == []
    assert again.cache_key == first.cache_key and again.probabilities == first.probabilities
    assert [r["id"] for r in again.retrieved] == [r["id"] for r in first.retrieved]
    assert store.count() == 1  # an answer from the store is not recorded again


def test_any_change_of_the_request_misses(rb: Rulebook, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JudgmentStore(rb.store.engine)
    backend = FakeBackend(_reply)
    Judge(backend, rb, config=_config(backend), store=store).compare(PAIR)
    retrieved = _counting(rb, monkeypatch)

    def compare(pair: Pair = PAIR, rulebook: Rulebook = rb, exclude: Sequence[str] = (), **kw: Any) -> Verdict:
        fake = FakeBackend(_reply, model=kw.pop("model", "fake-judge"))
        return Judge(fake, rulebook, config=_config(fake, **kw), store=store).compare(pair, exclude=exclude)

    assert compare().cached and retrieved == []  # the same request: no retrieval
    compare(model="another-model")
    compare(endpoint="http://elsewhere.example/v1")
    compare(both_orders=False)
    compare(k_spec=1)
    compare(Pair(id="p1", prompt=PAIR.prompt, response_a=PAIR.response_a, response_b="Water boils at 90 degrees."))
    compare(exclude=["spec/honesty"])
    assert len(retrieved) == 6
    dense = _blind(rb, retrieval=RetrievalConfig.dense_whole())
    with pytest.raises(AssertionError, match="was asked to embed|index was opened"):
        compare(rulebook=dense)  # other retrieval settings must retrieve, here with an index that refuses
    rb.add_rule(Rule(id="spec/units", layer=Layer.SPEC, title="Get units right",
                     text="Temperatures and units must be stated correctly."))
    changed = compare()
    assert len(retrieved) == 7 and not changed.cached and changed.rulebook_version == rb.version


def test_a_request_resolved_through_the_cache_key_is_remembered(rb: Rulebook, monkeypatch: pytest.MonkeyPatch) -> None:
    # A verdict stored before requests were recorded is found by its cache key once, then by the request.
    store = JudgmentStore(rb.store.engine)
    backend = FakeBackend(_reply)
    judge_ = Judge(backend, rb, config=_config(backend), store=store, use_cache=False)
    judge_.compare(PAIR)
    retrieved = _counting(rb, monkeypatch)
    cached = Judge(backend, rb, config=_config(backend), store=store)
    assert cached.compare(PAIR).cached and len(retrieved) == 0  # recorded by the uncached run
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM judgment_requests")  # as on a database from before revision 0010
    assert cached.compare(PAIR).cached and len(retrieved) == 1
    assert cached.compare(PAIR).cached and len(retrieved) == 1


def test_a_failed_judgment_is_never_answered_from_the_request(rb: Rulebook) -> None:
    store = JudgmentStore(rb.store.engine)
    replies = iter([FakeReply(
        text="Sure", top_logprobs=[("Sure", math.log(0.9)), ("I", math.log(0.05)), ("A", math.log(0.05))]), FakeReply(
        text="A", top_logprobs=[("A", math.log(0.9)), ("B", math.log(0.1))])])
    backend = FakeBackend(lambda _body: next(replies))
    judge_ = Judge(backend, rb, config=_config(backend, both_orders=False), store=store)
    assert judge_.compare(PAIR).failure is not None
    ok = judge_.compare(PAIR)
    assert ok.failure is None and not ok.cached and len(backend.history) == 2
    assert judge_.compare(PAIR).cached and len(backend.history) == 2
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM judgment_requests").scalar_one() == 1


def test_judge_compare_repeated_through_the_api_needs_no_retrieval(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Any) -> None:
    from judge.backends import registry
    from judge.retrieval import index_layout

    monkeypatch.setattr(registry, "make_backend", lambda *a, **k: FakeBackend(_reply))
    settings = Settings(data_dir=tmp_path, embedding_model="hash")
    Rulebook.open(settings=settings).load("rulebook")
    config = JudgeConfig(backend="x", model="y", template_version=TEMPLATE_VERSION, explain=False, method="pairwise")
    first = api_compare("What is 2+2?", "4", "5", settings=settings, config=config)
    assert first.failure is None and not first.cached

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the index was opened")

    monkeypatch.setattr(index_layout, "make_client", refuse)
    monkeypatch.setattr("judge.rulebook.embedder_for", lambda settings, **_k: RefusingEmbedder("hash:64", 64))
    again = api_compare("What is 2+2?", "4", "5", settings=settings, config=config)
    assert again.cached and again.cache_key == first.cache_key
    with pytest.raises(AssertionError, match="the index was opened|was asked to embed"):
        api_compare("What is 2+2?", "4", "6", settings=settings, config=config)
