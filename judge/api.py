"""One-call entry points: `judge.compare` and `judge.compare_many`.

They open the configured rulebook, start the backend (the embedded model by default), judge, and stop the
backend again. For many calls, build a `judge.Judge` once instead and reuse it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from judge.judging.pairs_io import PairRecord, pair_id
from judge.judging.verdict import JudgeConfig, Verdict
from judge.rules.model import Pair, Response
from judge.settings import Settings

__all__ = ["compare", "compare_many"]


def _judge(backend: str, settings: Settings, config: JudgeConfig | None, base_url: str | None):
    from judge.backends.registry import make_backend
    from judge.judging.engine import Judge
    from judge.rulebook import Rulebook
    from judge.store.judgments import JudgmentStore

    rulebook = Rulebook.open(settings=settings)
    made = make_backend(backend, data_dir=settings.data_dir, base_url=base_url)
    local = made.name.startswith("local")
    if config is not None and (config.backend, config.model) != (made.name, made.model):
        config = config.model_copy(update={"backend": made.name, "model": made.model})
    return Judge(made, rulebook, config=config, store=JudgmentStore(rulebook.store.engine),
                 concurrent_orders=not local)


def compare(prompt: str, response_a: str | Response, response_b: str | Response, *, backend: str = "local",
            settings: Settings | None = None, config: JudgeConfig | None = None,
            base_url: str | None = None) -> Verdict:
    """Judge one pair under the configured rulebook and return the full `Verdict`.

    Args:
        prompt: the user prompt (or rendered conversation).
        response_a: response A (text, or a `Response` with a process).
        response_b: response B.
        backend: ``local`` (embedded, offline), ``local/<path.gguf>`` or ``openai/<model>``.
        settings: where the rulebook lives (default: ``JUDGE_*`` environment, then defaults).
        config: judge configuration (defaults: both orders, rules retrieved, explanation).
        base_url: endpoint for ``openai/<model>``.
    """
    judge = _judge(backend, settings or Settings.from_env(), config, base_url)
    try:
        return judge.compare(Pair(prompt=prompt, response_a=response_a, response_b=response_b, id="compare"))
    finally:
        judge.backend.close()


def compare_many(pairs: Iterable[Pair], *, backend: str = "local", settings: Settings | None = None,
                 config: JudgeConfig | None = None, base_url: str | None = None, concurrency: int | None = None,
                 out: str | Path | None = None) -> list[Verdict]:
    """Judge many pairs (bounded concurrency; streamed to `out` as JSONL and resumable when given)."""
    from judge.judging.runner import read_results, run_pairs

    judge = _judge(backend, settings or Settings.from_env(), config, base_url)
    records = [PairRecord(pair=p if p.id else p.model_copy(update={"id": pair_id(p)}), label=None, source=None,
                          line=i) for i, p in enumerate(pairs, 1)]
    collected: list[Verdict] = []
    try:
        n = concurrency or (1 if judge.backend.name.startswith("local") else 8)
        asyncio.run(run_pairs(judge, records, out=Path(out) if out else None, concurrency=n,
                              on_result=collected.append))
    finally:
        judge.backend.close()
    if out is not None:
        by_id = {v.pair_id: v for v in read_results(out)}
        return [by_id[r.pair.id] for r in records if r.pair.id in by_id]
    order = {r.pair.id: i for i, r in enumerate(records)}
    return sorted(collected, key=lambda v: order.get(v.pair_id, 0))
