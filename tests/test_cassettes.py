"""Adapter tests: real replies of the embedded model over the OpenAI protocol, replayed from cassettes.

The cassettes were recorded by scripts/record_cassettes.py against the embedded llama.cpp server; here they
replay with record mode ``none`` (no network, no model). Prompts depend on the shipped rulebook and the
prompt template: when either changes, re-record.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import vcr

from judge.backends.openai_compat import OpenAIProtocolBackend
from judge.judging.engine import Judge
from judge.records import read_pairs
from judge.rules.model import Response
from judge.testing import hash_rulebook

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"
VCR_OPTIONS = {"filter_headers": ["authorization", "x-api-key"], "match_on": ["method", "path", "body"],
               "decode_compressed_response": True}
RECORDED = sorted(p.stem.removeprefix("judge-") for p in CASSETTES.glob("judge-*.yaml"))
CHECKED = sorted(p.stem.removeprefix("checks-") for p in CASSETTES.glob("checks-*.yaml"))
GENERATION = CASSETTES / "generate-cases.yaml"


def test_cassettes_exist() -> None:
    assert RECORDED, "no cassettes in cassettes/: run scripts/record_cassettes.py"


@pytest.mark.parametrize("pair_id", RECORDED)
def test_replayed_judgment_is_a_real_verdict(pair_id: str, sqlite_url: str) -> None:
    """A recorded judgment replays: the verdict call sends the recorded requests."""
    pairs = {r.pair.id: r.pair for r in read_pairs(ROOT / "examples" / "pairs.jsonl")}
    rulebook = hash_rulebook(sqlite_url, ROOT / "rulebook")
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:8080/v1", api_key="sk-replay-only")
    backend = OpenAIProtocolBackend(name="local", model=MODEL, client=client)
    judge = Judge(backend, rulebook, concurrent_orders=False)
    with vcr.use_cassette(str(CASSETTES / f"judge-{pair_id}.yaml"), record_mode="none", **VCR_OPTIONS) as tape:
        verdict = judge.compare(pairs[pair_id])
    assert tape.play_count == len(tape)  # every recorded exchange was used: the prompts did not drift
    if verdict.failure is not None:
        # A recorded failure is a legitimate outcome, but it must carry its reason and never a score.
        assert verdict.winner is None and verdict.failure.reason
        return
    assert verdict.winner in ("A", "B", "tie")
    probs = verdict.probabilities
    assert probs is not None and abs(probs.a + probs.tie + probs.b - 1) < 1e-6
    assert len(verdict.orders) == 2 and {o.shown_first for o in verdict.orders} == {"A", "B"}
    assert all(o.answer_mass > 0.5 for o in verdict.orders)  # the real model put its mass on answer tokens
    retrieved = {r["id"] for r in verdict.retrieved}
    assert verdict.citations and all(c.rule_id in retrieved for c in verdict.citations)
    assert verdict.deciding_rule in retrieved


@pytest.mark.parametrize("pair_id", CHECKED)
def test_replayed_rule_checks_decide_with_citations_that_agree(pair_id: str, sqlite_url: str) -> None:
    """The rule-checks method against the real model: every check answered yes or no (or a recorded failure),
    both responses graded alone, citations that favour the winner, prefix reuse measured."""
    from judge.judging.checks import CHECKS_TEMPLATE_VERSION
    from judge.verdicts import JudgeConfig

    pairs = {r.pair.id: r.pair for r in read_pairs(ROOT / "examples" / "pairs.jsonl")}
    rulebook = hash_rulebook(sqlite_url, ROOT / "rulebook")
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:8080/v1", api_key="sk-replay-only")
    backend = OpenAIProtocolBackend(name="local", model=MODEL, client=client)
    config = JudgeConfig(backend=backend.name, model=backend.model, template_version=CHECKS_TEMPLATE_VERSION,
                         method="checks", explain=False)
    judge = Judge(backend, rulebook, concurrent_orders=False, config=config)
    with vcr.use_cassette(str(CASSETTES / f"checks-{pair_id}.yaml"), record_mode="none", **VCR_OPTIONS) as tape:
        verdict = judge.compare(pairs[pair_id])
    # every distinct recorded exchange was used (a question asked twice in one comparison is asked once now)
    assert tape.play_count == len({(r.method, r.uri, r.body) for r in tape.requests})
    assert verdict.failure is None and verdict.winner in ("A", "B")
    # each check is asked of each response alone; a question about two identical texts (or processes) is one
    # exchange: ex-process's responses say the same thing and differ only in how they got there
    pair = pairs[pair_id]

    def subject(response: Response, target: str) -> object:
        return response.process if target == "process" else response.text

    merged = sum(1 for c in verdict.checks if subject(pair.response_a, c.target) == subject(pair.response_b, c.target))
    assert verdict.checks and len(tape) == 2 * len(verdict.checks) - merged
    assert all(c.answered or c.failure for c in verdict.checks)
    assert all(c.favours == verdict.winner for c in verdict.citations)
    assert verdict.decided_by in ("rules", "holistic")
    assert verdict.prefilled_tokens is not None and verdict.prefilled_tokens < verdict.prompt_tokens / 2


def test_cassettes_hold_no_api_key() -> None:
    for path in CASSETTES.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert "sk-local-" not in text and "Bearer" not in text, path


@pytest.mark.skipif(not GENERATION.exists(), reason="generation cassette not recorded yet "
                                                   "(scripts/record_cassettes.py)")
def test_replayed_case_generation_gives_valid_drafts(sqlite_url: str) -> None:
    import asyncio

    from judge.cases.generate import generate_cases

    rulebook = hash_rulebook(sqlite_url, ROOT / "rulebook")
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:8080/v1", api_key="sk-replay-only")
    backend = OpenAIProtocolBackend(name="local", model=MODEL, client=client)
    with vcr.use_cassette(str(GENERATION), record_mode="none", **VCR_OPTIONS) as tape:
        cases = asyncio.run(generate_cases(backend, rulebook.get("spec/avoid-sycophancy"), 3, batch=3))
    assert tape.play_count == len(tape)
    assert cases and all(c.status.value == "draft" and c.entries == ("spec/avoid-sycophancy",) for c in cases)
    assert all(len(c.prompt) >= 10 and c.tags["difficulty"] in ("easy", "medium", "hard") for c in cases)
    assert len({c.id for c in cases}) == len(cases)
