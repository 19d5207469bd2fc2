"""One-call entry points: `judge.compare`, `judge.compare_many`, `judge.evaluate`, `judge.rerun` and
`judge.report` (what `judge compare`, `run`, `eval`, `rerun` and `report` do).

They open the configured rulebook, start the backend (the embedded model by default), judge, and stop the
backend again; a `Backend` object given as ``backend`` is used as it is and left open. For many calls, build a
`judge.Judge` once instead and reuse it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge.backends.base import close_if_started
from judge.errors import InputError
from judge.records import PairRecord, compare_pair_id, pair_id
from judge.rules.model import Pair, Response, as_response
from judge.settings import Settings
from judge.verdicts import JudgeConfig, Verdict

if TYPE_CHECKING:
    from judge.backends.base import Backend
    from judge.calibration.workflow import Evaluation
    from judge.runs import Rerun

__all__ = ["compare", "compare_many", "evaluate", "report", "rerun"]


def __getattr__(name: str) -> Any:
    # build_judge, default_concurrency and is_local live in `judge.runs` (loaded on first use, like the rest).
    if name in ("build_judge", "default_concurrency", "endpoint_of", "is_local"):
        from judge import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'judge.api' has no attribute {name!r}")


def _fields(config: JudgeConfig | None) -> dict[str, Any]:
    """The fields set on ``config`` (backend and model come from the started backend): the others keep the
    judge's defaults (the rule-checks method and its template), not `JudgeConfig`'s field defaults."""
    return config.model_dump(exclude={"backend", "model"}, exclude_unset=True) if config is not None else {}


def compare(prompt: str, response_a: str | Response, response_b: str | Response, *,
            backend: str | Backend | None = None,
            settings: Settings | None = None, config: JudgeConfig | None = None,
            base_url: str | None = None) -> Verdict:
    """Judge one pair under the configured rulebook and return the full `Verdict`.

    Args:
        prompt: the user prompt (or rendered conversation).
        response_a: response A (text, or a `Response` with a process).
        response_b: response B.
        backend: ``local`` (embedded, offline), ``local/<path.gguf>`` or ``openai/<model>``, or a `Backend`
            object (used as it is, left open).
        settings: where the rulebook lives (default: ``JUDGE_*`` environment, then defaults).
        config: judge configuration: the fields set on it replace the judge's defaults (rule checks, rules
            retrieved; `judge.runs.build_judge`), e.g. ``JudgeConfig(method="pairwise")``.
        base_url: endpoint for ``openai/<model>``.
    """
    from judge.runs import build_judge

    if not prompt.strip():
        raise InputError("prompt must be a non-empty string", field="prompt")
    judge = build_judge(backend, settings=settings, base_url=base_url, **_fields(config))
    try:
        return judge.compare(Pair(prompt=prompt, response_a=as_response(response_a),
                                  response_b=as_response(response_b),
                                  id=compare_pair_id(prompt, response_a, response_b)))
    finally:
        close_if_started(judge.backend, backend)


def _records(pairs: Iterable[Pair]) -> list[PairRecord]:
    """The pairs as records, each with an id (given, or derived from its text); results are keyed by id, so
    two pairs under one id are refused, as in a pair file."""
    records: list[PairRecord] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(pairs, 1):
        if not isinstance(p, Pair):
            raise TypeError(f"pair {i}: expected a judge.Pair, got {type(p).__name__}")
        if not p.prompt.strip():
            raise InputError(f"pair {i}: prompt must be a non-empty string", field="prompt")
        record = PairRecord(pair=p if p.id else p.model_copy(update={"id": pair_id(p)}), label=None, source=None,
                            line=i)
        pid = record.pair.id or ""
        if pid in seen:
            raise InputError(f"pairs {seen[pid]} and {i} share the id {pid!r} (results are keyed by id)", field="id")
        seen[pid] = i
        records.append(record)
    return records


def compare_many(pairs: Iterable[Pair], *, backend: str | Backend | None = None, settings: Settings | None = None,
                 config: JudgeConfig | None = None, base_url: str | None = None, concurrency: int | None = None,
                 out: str | Path | None = None) -> list[Verdict]:
    """Judge many pairs (bounded concurrency; streamed to `out` as JSONL and resumable when given)."""
    from judge.judging.runner import run_pairs
    from judge.records import read_results
    from judge.runs import build_judge, default_concurrency

    records = _records(pairs)
    if out is not None and Path(out).is_dir():
        raise InputError("a folder, not a file: results are written to a JSONL file", path=out)
    judge = build_judge(backend, settings=settings, base_url=base_url, **_fields(config))
    collected: list[Verdict] = []
    try:
        asyncio.run(run_pairs(judge, records, out=Path(out) if out else None,
                              concurrency=concurrency or default_concurrency(judge.backend),
                              on_result=collected.append))
    finally:
        close_if_started(judge.backend, backend)
    if out is not None:
        by_id = {v.pair_id: v for v in read_results(out)}
        return [by_id[r.pair.id] for r in records if r.pair.id in by_id]
    order = {r.pair.id: i for i, r in enumerate(records)}
    return sorted(collected, key=lambda v: order.get(v.pair_id, 0))


def evaluate(labelled: str | Path | Sequence[str | Path], *,
             results: str | Path | Sequence[str | Path] | None = None, out: str | Path | None = None,
             backend: str | None = None, settings: Settings | None = None, config: JudgeConfig | None = None,
             base_url: str | None = None, recalibrate: str | None = "auto", holdout_same_prompt: bool = False,
             **options: Any) -> Evaluation:
    """Evaluate the judge on labelled pairs: agreement and calibration, raw and cross-fitted recalibrated.

    What ``judge eval`` does. Without ``results`` the judge first runs on the pairs (labels and ``meta`` are
    never shown to it), writing to ``out`` (default ``<labelled>.results.jsonl``; resumable); with
    ``holdout_same_prompt`` a pair never retrieves a ruling decided on its own prompt (leave-one-out on pairs
    the rulebook was seeded from). ``options`` go to :func:`judge.calibration.workflow.evaluate_results`
    (n_folds, seed, n_boot, target, delta, split_repeats, group_by, features, calibrator). Several labelled
    files (with their ``results``) are read as one set; with pairs from several sources the report includes
    leave-one-source-out figures (``source_validation``).
    """
    from judge.calibration.workflow import evaluate_results
    from judge.records import read_pairs
    from judge.runs import RunOptions, build_judge, judge_file

    if results is None:
        if not isinstance(labelled, str | Path):
            raise InputError("evaluate: judging several labelled files at once is not supported; judge each and "
                             "pass their results")
        labelled = Path(labelled)
        results = Path(out) if out else labelled.with_name(labelled.stem + ".results.jsonl")
        fields = _fields(config)
        fields.setdefault("explain", False)  # the probability comes from the verdict token, not the explanation
        judge = build_judge(backend, settings=settings, base_url=base_url, **fields)
        judge_file(judge, list(read_pairs(labelled)), Path(results),
                   RunOptions(holdout_same_prompt=holdout_same_prompt))
    return evaluate_results(labelled, results, recalibrate=recalibrate, **options)


def rerun(since: str, *, out: str | Path, backend: str | Backend | None = None, settings: Settings | None = None,
          base_url: str | None = None, concurrency: int | None = None,
          on_start: Callable[[int], None] | None = None, on_result: Callable[[Verdict], None] | None = None,
          on_skip: Callable[[PairRecord], None] | None = None) -> Rerun:
    """Re-judge exactly the stored judgments a rulebook change since ``since`` affected (what ``judge rerun``
    does; see `judge.runs.rerun_since`)."""
    from judge.runs import rerun_since

    return rerun_since(since, out=out, backend=backend, settings=settings, base_url=base_url,
                       concurrency=concurrency, on_start=on_start, on_result=on_result, on_skip=on_skip)


def report(results: str | Path, labels: str | Path, out: str | Path, *, recalibrate: str | None = "auto",
           seed: int = 0, n_boot: int = 1000) -> tuple[Evaluation, Path]:
    """Write the HTML report of ``results`` against labelled pairs into the folder ``out`` (what ``judge
    report`` does; see `judge.reporting.report_files`): the evaluation and the path of ``index.html``."""
    from judge.reporting import report_files

    return report_files(results, labels, out, recalibrate=recalibrate, seed=seed, n_boot=n_boot)
