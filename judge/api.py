"""One-call entry points: `judge.compare` and `judge.compare_many`.

They open the configured rulebook, start the backend (the embedded model by default), judge, and stop the
backend again. For many calls, build a `judge.Judge` once instead and reuse it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge.errors import InputError
from judge.judging.pairs_io import PairRecord, pair_id
from judge.judging.verdict import JudgeConfig, Verdict
from judge.rules.model import Pair, Response, as_response
from judge.settings import Settings

if TYPE_CHECKING:
    from judge.backends.base import Backend
    from judge.calibration.recalibrate import Calibrator
    from judge.calibration.workflow import Evaluation
    from judge.judging.engine import Judge

__all__ = ["build_judge", "compare", "compare_many", "default_concurrency", "evaluate", "is_local"]


def build_judge(backend: str = "local", *, settings: Settings | None = None, base_url: str | None = None,
                use_cache: bool = True, calibrator: Calibrator | None = None, escalate_below: float | None = None,
                allow_rulebook_change: bool = False, prior_weights: bool = False, **config_fields: Any) -> Judge:
    """A ready `Judge`: the configured rulebook, its judgment store (cache + audit) and a started backend.

    The embedded server has one slot, so for ``local`` backends the two orders run one after the other
    (the shared prompt prefix stays cached) and cost is zero. Call ``judge.backend.close()`` when done.

    Args:
        backend: ``local``, ``local/<path.gguf>`` or ``openai/<model>``.
        settings: where the rulebook lives (default: ``JUDGE_*`` environment, then defaults).
        base_url: endpoint for ``openai/<model>``.
        use_cache: answer identical requests from the judgment store (every verdict is recorded anyway).
        calibrator: a fitted calibrator for this judge configuration (refused when fitted for another);
            default: the settings' ``calibrator`` file (``JUDGE_CALIBRATOR``), if any.
        escalate_below: escalate verdicts whose (calibrated) confidence is below this.
        allow_rulebook_change: accept a calibrator fitted under another rulebook version.
        prior_weights: with the rule-checks method, combine the checks with the prior weights `CheckWeights()`
            instead of the fitted weighting that ships for this judge configuration (applied by default when
            one matches; a ``check_weights`` field given here always wins).
        **config_fields: `JudgeConfig` fields; backend and model come from the started backend. The method
            defaults to ``checks`` (the rules' yes/no checks, applied by precedence) when rules are used, and
            the template version to the one of the method (``bare`` without rules).
    """
    from judge.backends.registry import make_backend
    from judge.judging.checks import CHECKS_TEMPLATE_VERSION
    from judge.judging.engine import Judge
    from judge.judging.prompts import BARE_TEMPLATE_VERSION, TEMPLATE_VERSION
    from judge.rulebook import Rulebook
    from judge.store.check_answers import CheckAnswerStore
    from judge.store.judgments import JudgmentStore

    settings = settings or Settings.from_env()
    if calibrator is None and settings.calibrator is not None:
        from judge.calibration.recalibrate import load_calibrator

        calibrator = load_calibrator(settings.calibrator)
    use_rules = config_fields.get("use_rules", True)
    config_fields.setdefault("method", "checks" if use_rules else "pairwise")
    if config_fields["method"] == "checks" and use_rules:
        config_fields.setdefault("template_version", CHECKS_TEMPLATE_VERSION)
        config_fields.setdefault("explain", False)
    config_fields.setdefault("template_version", TEMPLATE_VERSION if use_rules else BARE_TEMPLATE_VERSION)
    rulebook = Rulebook.open(settings=settings, with_index=use_rules)
    made = make_backend(backend, data_dir=settings.data_dir, base_url=base_url)
    local = is_local(made)
    try:
        config = JudgeConfig(backend=made.name, model=made.model, **config_fields)
        if "check_weights" not in config_fields and not prior_weights:
            from judge.judging.weights import with_shipped_weights

            config = with_shipped_weights(config)
        return Judge(made, rulebook if use_rules else None, config=config,
                     store=JudgmentStore(rulebook.store.engine), concurrent_orders=not local, use_cache=use_cache,
                     price_per_mtok=(0.0, 0.0) if local else None,
                     calibrator=calibrator, escalate_below=escalate_below,
                     allow_rulebook_change=allow_rulebook_change,
                     check_cache=CheckAnswerStore(rulebook.store.engine))
    except BaseException:
        made.close()  # a refused configuration must not leave the embedded server running
        raise


def is_local(backend: Backend) -> bool:
    """Whether a backend is the embedded one-slot server (judge one comparison at a time)."""
    return backend.name.startswith("local")


def default_concurrency(backend: Backend) -> int:
    """Comparisons in flight by default: 1 on the embedded one-slot server, 8 on endpoints."""
    return 1 if is_local(backend) else 8


def _fields(config: JudgeConfig | None) -> dict[str, Any]:
    return config.model_dump(exclude={"backend", "model"}) if config is not None else {}


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
    judge = build_judge(backend, settings=settings, base_url=base_url, **_fields(config))
    try:
        return judge.compare(Pair(prompt=prompt, response_a=as_response(response_a),
                                  response_b=as_response(response_b), id="compare"))
    finally:
        judge.backend.close()


def compare_many(pairs: Iterable[Pair], *, backend: str = "local", settings: Settings | None = None,
                 config: JudgeConfig | None = None, base_url: str | None = None, concurrency: int | None = None,
                 out: str | Path | None = None) -> list[Verdict]:
    """Judge many pairs (bounded concurrency; streamed to `out` as JSONL and resumable when given)."""
    from judge.judging.runner import read_results, run_pairs

    judge = build_judge(backend, settings=settings, base_url=base_url, **_fields(config))
    records = [PairRecord(pair=p if p.id else p.model_copy(update={"id": pair_id(p)}), label=None, source=None,
                          line=i) for i, p in enumerate(pairs, 1)]
    collected: list[Verdict] = []
    try:
        asyncio.run(run_pairs(judge, records, out=Path(out) if out else None,
                              concurrency=concurrency or default_concurrency(judge.backend),
                              on_result=collected.append))
    finally:
        judge.backend.close()
    if out is not None:
        by_id = {v.pair_id: v for v in read_results(out)}
        return [by_id[r.pair.id] for r in records if r.pair.id in by_id]
    order = {r.pair.id: i for i, r in enumerate(records)}
    return sorted(collected, key=lambda v: order.get(v.pair_id, 0))


def evaluate(labelled: str | Path | Sequence[str | Path], *,
             results: str | Path | Sequence[str | Path] | None = None, out: str | Path | None = None,
             backend: str = "local", settings: Settings | None = None, config: JudgeConfig | None = None,
             base_url: str | None = None, recalibrate: str | None = "auto", **options: Any) -> Evaluation:
    """Evaluate the judge on labelled pairs: agreement and calibration, raw and cross-fitted recalibrated.

    Without ``results`` the judge first runs on the pairs (labels and ``meta`` are never shown to it), writing
    to ``out`` (default ``<labelled>.results.jsonl``; resumable). ``options`` go to
    :func:`judge.calibration.workflow.evaluate_results` (n_folds, seed, n_boot, target, delta, split_repeats,
    group_by, features, calibrator). Several labelled files (with their ``results``) are read as one set; with
    pairs from several sources the report includes leave-one-source-out figures (``source_validation``).
    """
    from judge.calibration.workflow import evaluate_results
    from judge.judging.pairs_io import read_pairs
    from judge.judging.runner import run_pairs

    if results is None:
        if not isinstance(labelled, str | Path):
            raise InputError("evaluate: judging several labelled files at once is not supported; judge each and "
                             "pass their results")
        labelled = Path(labelled)
        results = Path(out) if out else labelled.with_name(labelled.stem + ".results.jsonl")
        fields = _fields(config)
        fields.setdefault("explain", False)  # the probability comes from the verdict token, not the explanation
        judge = build_judge(backend, settings=settings, base_url=base_url, **fields)
        try:
            asyncio.run(run_pairs(judge, list(read_pairs(labelled)), out=Path(results),
                                  concurrency=default_concurrency(judge.backend)))
        finally:
            judge.backend.close()
    return evaluate_results(labelled, results, recalibrate=recalibrate, **options)
