"""Costs and exit codes: unknown without a price, --max-cost refused without one, cached tokens apart, the
endpoint part of the cache key, exit code 1 when pairs failed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from judge.backends.openai_compat import OpenAIProtocolBackend
from tests.test_cli import invoke
from tests.test_robustness import QUICK, _completion


def _pairs(tmp_path: Path, n: int = 2) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}?", "response_a": "yes",
                                        "response_b": "no"}) + "\n" for i in range(n)), encoding="utf-8")
    return path


class Endpoints:
    """OpenAI-compatible endpoints by base URL (mock transports): each answers A, or fails with 500 when dead."""

    def __init__(self, dead: tuple[str, ...] = ()) -> None:
        self.dead = set(dead)
        self.requests: list[str] = []

    def handler(self, url: str) -> Callable[[httpx2.Request], httpx2.Response]:
        def handle(_request: httpx2.Request) -> httpx2.Response:
            self.requests.append(url)
            if url in self.dead:
                return httpx2.Response(500, json={"error": {"message": "down"}})
            return httpx2.Response(200, json=_completion("A"))
        return handle

    def make_backend(self, spec: str, *, base_url: str | None = None, **_kw: Any) -> OpenAIProtocolBackend:
        url = base_url or "http://default.invalid/v1"
        client = openai.AsyncOpenAI(base_url=url, api_key="k",
                                    http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler(url))))
        return OpenAIProtocolBackend(name=spec, model=spec.removeprefix("openai/"), client=client, retry=QUICK)


@pytest.fixture
def endpoints(monkeypatch: pytest.MonkeyPatch) -> Endpoints:
    made = Endpoints()
    monkeypatch.setattr("judge.backends.registry.make_backend", made.make_backend)
    return made


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], out: str,
         *extra: str, pairs: Path | None = None) -> tuple[int, str, str]:
    return invoke(["--db", f"sqlite:///{tmp_path / 'j.db'}", "--embedding-model", "hash", "run",
                   str(pairs or _pairs(tmp_path)), "-o", str(tmp_path / out), "--no-rules", "--allow-empty",
                   "--backend", "openai/m", "--base-url", "http://one.invalid/v1", *extra], monkeypatch, capsys)


def test_cost_is_unknown_without_a_price_and_max_cost_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        endpoints: Endpoints) -> None:
    code, out, err = _run(tmp_path, monkeypatch, capsys, "a.jsonl", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["cost_usd"] is None and report["prompt_tokens"] > 0  # unknown, never a made-up 0.0
    assert all(json.loads(line)["cost_usd"] is None for line in (tmp_path / "a.jsonl").read_text().splitlines())
    code, out, _ = _run(tmp_path, monkeypatch, capsys, "b.jsonl", "--no-cache")
    assert code == 0 and "cost unknown" in " ".join(out.split())
    code, out, _ = _run(tmp_path, monkeypatch, capsys, "b.jsonl", "--json")  # resumed: every pair already done
    assert code == 0 and json.loads(out)["skipped"] > 0 and json.loads(out)["cost_usd"] is None

    asked = len(endpoints.requests)
    code, _, err = _run(tmp_path, monkeypatch, capsys, "c.jsonl", "--max-cost", "0.000001")
    said = " ".join(err.split())
    assert code == 2 and "--max-cost needs a price for 'm'" in said and "judge.toml" in said
    assert len(endpoints.requests) == asked and not (tmp_path / "c.jsonl").exists()


def test_a_price_from_judge_toml_gives_the_cost_and_a_working_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        endpoints: Endpoints) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "judge.toml").write_text('[prices.m]\ninput = 1000\noutput = 2000\n', encoding="utf-8")
    code, out, err = _run(tmp_path, monkeypatch, capsys, "a.jsonl", "--json", pairs=_pairs(tmp_path, 3))
    report = json.loads(out)
    assert code == 0, err
    # two orders per pair, 5 prompt + 1 completion tokens each (the endpoint's usage)
    assert report["prompt_tokens"] == 30 and report["completion_tokens"] == 6
    assert report["cost_usd"] == pytest.approx((30 * 1000 + 6 * 2000) / 1e6)
    # a budget below one pair's cost stops after the first pair (one worker: nothing else in flight)
    code, out, _ = _run(tmp_path, monkeypatch, capsys, "b.jsonl", "--json", "--no-cache", "--max-cost", "0.001",
                        "--concurrency", "1", pairs=_pairs(tmp_path, 3))
    budget = json.loads(out)
    assert code == 0 and budget["judged"] == 1 and budget["stopped_by_budget"]


def test_cached_verdicts_spend_nothing_and_count_against_no_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        endpoints: Endpoints) -> None:
    code, out, _ = _run(tmp_path, monkeypatch, capsys, "first.jsonl", "--json")
    first = json.loads(out)
    assert code == 0 and first["cached"] == 0 and first["prompt_tokens"] > 0
    asked = len(endpoints.requests)
    # the same pairs again into another file: answered from the judgment store
    code, out, err = _run(tmp_path, monkeypatch, capsys, "second.jsonl", "--json", "--max-tokens", "1")
    second = json.loads(out)
    assert code == 0, err
    assert second["judged"] == 2 and second["cached"] == 2 and not second["stopped_by_budget"]
    assert second["prompt_tokens"] == second["completion_tokens"] == 0
    assert second["cached_tokens"] == first["prompt_tokens"] + first["completion_tokens"]
    assert second["cost_usd"] is None and len(endpoints.requests) == asked  # no price: unknown, though 0 tokens
    code, out, _ = _run(tmp_path, monkeypatch, capsys, "third.jsonl")
    assert code == 0 and "answered from the cache for 2 pair(s), not counted" in " ".join(out.split())


def test_a_dead_endpoint_never_gets_a_verdict_cached_from_another_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        endpoints: Endpoints) -> None:
    code, _, _ = _run(tmp_path, monkeypatch, capsys, "live.jsonl")
    assert code == 0
    endpoints.dead.add("http://two.invalid/v1")
    code, _, err = _run(tmp_path, monkeypatch, capsys, "dead.jsonl", "--base-url", "http://two.invalid/v1")
    assert code == 1 and "2 of 2 pair(s) failed" in " ".join(err.split())
    results = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert all(r["failure"] and not r["cached"] for r in results)
    assert {r["config"]["endpoint"] for r in results} == {"http://two.invalid/v1"}
    # the live server's verdicts are still answered from the cache for the live server
    code, out, _ = _run(tmp_path, monkeypatch, capsys, "again.jsonl", "--json")
    assert code == 0 and json.loads(out)["cached"] == 2


def test_the_embedded_models_cache_keys_do_not_change() -> None:
    """Without an endpoint the key is computed as before endpoints were keyed: stored verdicts stay valid."""
    import hashlib

    from judge.judging.engine import cache_key
    from judge.judging.verdict import JudgeConfig
    from judge.rules.model import Pair, as_response

    pair = Pair(prompt="p", response_a=as_response("a"), response_b=as_response("b"))
    config = JudgeConfig(backend="local", model="q", template_version="t")
    blob = json.dumps({"pair": pair.model_dump(mode="json", exclude={"id"}), "rulebook": "rb-1", "rules": ["x"],
                       "config": config.model_dump(mode="json", exclude={"endpoint"})}, sort_keys=True,
                      ensure_ascii=False)
    assert cache_key(pair, "rb-1", ["x"], config) == hashlib.sha256(blob.encode()).hexdigest()
    there = config.model_copy(update={"endpoint": "http://a/v1"})
    elsewhere = config.model_copy(update={"endpoint": "http://b/v1"})
    assert len({cache_key(pair, "rb-1", ["x"], c) for c in (config, there, elsewhere)}) == 3


def test_compare_exits_1_when_the_pair_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], endpoints: Endpoints) -> None:
    endpoints.dead.add("http://one.invalid/v1")
    code, _, err = invoke(["--db", f"sqlite:///{tmp_path / 'j.db'}", "--embedding-model", "hash", "compare",
                           "--prompt", "q", "--a", "x", "--b", "y", "--allow-empty", "--method", "pairwise",
                           "--no-explain", "--backend", "openai/m", "--base-url", "http://one.invalid/v1"],
                          monkeypatch, capsys)
    assert code == 1 and "1 of 1 pair(s) failed" in " ".join(err.split())
    for command in ("run", "compare", "eval", "rerun", "gate"):
        code, out, _ = invoke([command, "--help"], monkeypatch, capsys)
        assert code == 0 and "2 bad input" in " ".join(out.split()), command


def test_eval_exits_1_when_some_labelled_pairs_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from judge.judging.verdict import Failure
    from tests.test_calibration_evaluate import _synthetic_files

    pairs, results = _synthetic_files(tmp_path, 40)
    code, _, err = invoke(["eval", str(pairs), "-r", str(results), "--bootstrap", "20", "--recalibrate", "none"],
                          monkeypatch, capsys)
    assert code == 0, err
    rows = results.read_text().splitlines()
    failed = json.loads(rows[0])
    failed.update(winner=None, probabilities=None, orders=[],
                  failure=Failure(stage="backend", reason="connection refused").model_dump())
    results.write_text("\n".join([json.dumps(failed), *rows[1:]]) + "\n")
    code, _, err = invoke(["eval", str(pairs), "-r", str(results), "--bootstrap", "20", "--recalibrate", "none"],
                          monkeypatch, capsys)
    assert code == 1 and "1 of 40 pair(s) failed" in " ".join(err.split()), err
