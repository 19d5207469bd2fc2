"""Judging a file of pairs: the orchestration behind `judge run` and `judge eval`, the same for Python.

One options object picks the judge (`JudgeOptions`), another says how to run (`RunOptions`); `judge_pairs`
judges records into a results file, alone or as one worker of a shared batch divided through the database.

```python
from judge.runs import JudgeOptions, RunOptions, judge_pairs, open_judge
from judge.records import read_pairs

judge = open_judge(JudgeOptions(backend="openai/gpt-4o-mini", method="checks"))
report = judge_pairs(judge, list(read_pairs("pairs.jsonl")), Path("results.jsonl"),
                     RunOptions(max_seconds=3600, holdout_same_prompt=True))   # closes the backend
```
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judge.backends import registry
from judge.backends.base import Backend, close_if_started
from judge.backends.deferred import DeferredBackend, endpoint_from_url
from judge.calibration.recalibrate import Calibrator, load_calibrator
from judge.caselaw.impact import ImpactReport
from judge.errors import ConfigError, InputError
from judge.judging.checks import template_version_of
from judge.judging.engine import Judge
from judge.judging.impact import rerun, rerun_plan
from judge.judging.runner import RunReport, run_pairs
from judge.judging.shared import SharedRunReport, batch_fingerprint, batch_id_for, run_shared
from judge.judging.weights import with_shipped_weights
from judge.records import PairRecord, write_results
from judge.settings import Settings
from judge.store.claims import DEFAULT_LEASE_S, WorkClaims
from judge.verdicts import JudgeConfig, Verdict
from judge.workspace import Workspace

__all__ = ["JudgeOptions", "RunOptions", "build_judge", "default_concurrency", "holdout", "is_local", "judge_file",
           "judge_pairs", "judge_shared", "open_judge"]


def endpoint_of(backend: Backend) -> str | None:
    """The endpoint a backend sends to (scheme, host, port and path; never a password or query), if it has one."""
    if isinstance(backend, DeferredBackend):
        return backend.endpoint  # known without making the backend
    client = getattr(backend, "client", None)
    return endpoint_from_url(str(getattr(client, "base_url", "") or ""))


def build_judge(backend: str | Backend | None = None, *, settings: Settings | None = None,
                base_url: str | None = None, use_cache: bool = True, calibrator: Calibrator | None = None,
                escalate_below: float | None = None,
                allow_rulebook_change: bool = False, workspace: Workspace | None = None,
                prior_weights: bool = False, **config_fields: Any) -> Judge:
    """A ready `Judge`: the configured rulebook, its judgment store (cache + audit) and a started backend.

    The embedded server has one slot, so for ``local`` backends the two orders run one after the other
    (the shared prompt prefix stays cached) and cost is zero. Call ``judge.backend.close()`` when done.

    Args:
        backend: ``local``, ``local/<path.gguf>`` or ``openai/<model>``; default: the settings' ``backend``
            (``JUDGE_BACKEND``, ``judge.toml``, else ``local``). A `judge.backends.base.Backend` object (your
            own, or `judge.backends.fake.FakeBackend`) is used as it is and stays yours to close.
        settings: where the rulebook lives (default: ``JUDGE_*`` environment, ``judge.toml``, then defaults).
        base_url: endpoint for ``openai/<model>`` (default: the settings' ``base_url``). It is part of every
            cache key, so a verdict made by one server is never answered for another.
        use_cache: answer identical requests from the judgment store (every verdict is recorded anyway).
        calibrator: a fitted calibrator for this judge configuration (refused when fitted for another);
            default: the settings' ``calibrator`` file (``JUDGE_CALIBRATOR``), if any.
        escalate_below: escalate verdicts whose (calibrated) confidence is below this.
        allow_rulebook_change: accept a calibrator fitted under another rulebook version.
        workspace: the database to judge against (default: opened from ``settings``).
        prior_weights: with the rule-checks method, combine the checks with the prior weights `CheckWeights()`
            instead of the fitted weighting that ships for this judge configuration (applied by default when
            one matches; a ``check_weights`` field given here always wins).
        **config_fields: `JudgeConfig` fields; backend and model come from the started backend. The method
            defaults to ``checks`` (the rules' yes/no checks, applied by precedence) when rules are used, and
            the template version to the one of the method (``bare`` without rules).
    """
    settings = workspace.settings if workspace is not None else settings or Settings.from_env()
    if calibrator is None and settings.calibrator is not None:
        calibrator = load_calibrator(settings.calibrator)
    use_rules = config_fields.get("use_rules", True)
    config_fields.setdefault("method", "checks" if use_rules else "pairwise")
    if config_fields["method"] == "checks" and use_rules:
        config_fields.setdefault("explain", False)
    config_fields.setdefault("template_version", template_version_of(config_fields["method"], use_rules))
    workspace = workspace or Workspace.open(settings)
    rulebook = workspace.rulebook(with_index=use_rules)
    backend = backend or settings.backend
    if isinstance(backend, str):
        made = registry.make_backend(backend, data_dir=settings.data_dir, base_url=base_url or settings.base_url)
    else:
        made = backend
    local = is_local(made)
    try:
        if not local:
            config_fields.setdefault("endpoint", endpoint_of(made))
        price = settings.price_for(made.name, made.model)
        config = JudgeConfig(backend=made.name, model=made.model, **config_fields)
        if "check_weights" not in config_fields and not prior_weights:
            config = with_shipped_weights(config)
        return Judge(made, rulebook if use_rules else None, config=config,
                     store=workspace.judgments(), concurrent_orders=not local, use_cache=use_cache,
                     price_per_mtok=(0.0, 0.0) if local else (price.per_mtok if price else None),
                     calibrator=calibrator, escalate_below=escalate_below,
                     allow_rulebook_change=allow_rulebook_change,
                     check_cache=workspace.check_answers())
    except BaseException:
        close_if_started(made, backend)  # a refused configuration must not leave the embedded server running
        raise


def is_local(backend: Backend) -> bool:
    """Whether a backend is the embedded one-slot server (judge one comparison at a time)."""
    return backend.name.startswith("local")


def default_concurrency(backend: Backend) -> int:
    """Comparisons in flight by default: 1 on the embedded one-slot server, 8 on endpoints."""
    return 1 if is_local(backend) else 8


@dataclass(frozen=True)
class JudgeOptions:
    """Which judge: the backend and every option that changes a verdict (the CLI's judging options).

    Attributes:
        backend: ``local``, ``local/<path.gguf>`` or ``openai/<model>``.
        base_url: endpoint for ``openai/<model>``.
        single_order: judge one order only (cheaper, biased).
        no_rules: the bare "which is better" baseline without rules.
        method: ``checks`` (the rules' yes/no checks by precedence) or ``pairwise``.
        holistic: with ``checks``, the rule-free signal: ``none``, ``pointwise`` or ``pairwise``.
        explain: with ``pairwise``, ask for cited rules and a rationale.
        k_spec, n_constitution: the best ``k_spec + n_constitution`` spec entries and constitution rules, ranked
            together, are shown; k_rulings: rulings shown.
        cache: answer identical requests from the judgment store.
        ties: offer a tie answer.
        calibrator: a calibrator file from `judge calibrate`.
        abstain: escalate below the calibrator's certified abstention threshold (needs ``calibrator``).
        escalate_below: escalate verdicts whose confidence is below this.
        allow_rulebook_change: keep a calibrator fitted under another rulebook version.
        bind_precedent: an active ruling on the same facts decides the verdict.
        precedent_confidence: probability a precedent-bound verdict gives the ruling's holding.
        prior_weights: combine rule checks with the prior weights, not the fitted weighting that ships.
    """

    backend: str | None = None
    base_url: str | None = None
    single_order: bool = False
    no_rules: bool = False
    method: str = "checks"
    holistic: str = "pointwise"
    explain: bool = True
    k_spec: int = 3
    k_rulings: int = 2
    n_constitution: int = 2
    cache: bool = True
    ties: bool = False
    calibrator: Path | None = None
    abstain: bool = False
    escalate_below: float | None = None
    allow_rulebook_change: bool = False
    bind_precedent: bool = True
    precedent_confidence: float | None = None
    prior_weights: bool = False

    def __post_init__(self) -> None:
        """Refuse options out of range (`InputError` naming the field) before anything is started."""
        if self.method not in ("checks", "pairwise"):
            raise InputError(f"--method must be checks or pairwise, got {self.method!r}", field="method")
        if self.holistic not in ("none", "pointwise", "pairwise"):
            raise InputError(f"--holistic must be none, pointwise or pairwise, got {self.holistic!r}",
                             field="holistic")
        pairwise = "no_rules" if self.no_rules else "method='pairwise'" if self.method == "pairwise" else None
        if pairwise and self.prior_weights:
            raise InputError(f"prior_weights applies to method='checks' only, not with {pairwise}",
                             field="prior_weights")
        if pairwise and self.holistic != "pointwise":
            raise InputError(f"holistic applies to method='checks' only, not with {pairwise}", field="holistic")
        for name in ("k_spec", "k_rulings", "n_constitution"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}",
                                 field=name)

    def config_fields(self) -> dict[str, Any]:
        """The `judge.verdicts.JudgeConfig` fields these options give (backend and model come from the
        started backend)."""
        checks = self.method == "checks" and not self.no_rules
        fields: dict[str, Any] = {
            "method": "checks" if checks else "pairwise", "holistic": self.holistic,
            "both_orders": not self.single_order, "explain": self.explain and not self.no_rules and not checks,
            "use_rules": not self.no_rules, "k_spec": self.k_spec, "k_rulings": self.k_rulings,
            "n_constitution": self.n_constitution, "allow_tie": self.ties and not self.no_rules,
            "bind_precedent": self.bind_precedent and not self.no_rules}
        if self.precedent_confidence is not None:
            fields["precedent_confidence"] = self.precedent_confidence
        return fields


@dataclass(frozen=True)
class RunOptions:
    """How to run: concurrency, budgets, leave-one-out, and whether to share the batch with other workers.

    Attributes:
        concurrency: comparisons in flight (default: 1 on the embedded one-slot server, 8 on endpoints).
        max_tokens: stop starting comparisons once this many tokens were used.
        max_cost: the same for the estimated cost in USD.
        max_seconds: the same for the time spent.
        holdout_same_prompt: a pair never retrieves a ruling decided on its own prompt (leave-one-out).
        shared: divide the pairs with every other worker on the same pairs, judge and database.
        batch: the shared batch's name (implies ``shared``; default: derived from the pairs and the judge).
        worker_id: this worker's id in a shared batch.
        lease_s: seconds a shared-batch claim lasts unless renewed.
    """

    concurrency: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    max_seconds: float | None = None
    holdout_same_prompt: bool = False
    shared: bool = False
    batch: str | None = None
    worker_id: str | None = None
    lease_s: float | None = None

    def __post_init__(self) -> None:
        for name, flag in (("max_tokens", "--max-tokens"), ("max_cost", "--max-cost"),
                           ("max_seconds", "--max-time"), ("lease_s", "--lease")):
            value = getattr(self, name)
            if value is not None and not value > 0:  # NaN too
                raise InputError(f"{flag} must be more than 0, got {value}", field=name)
        if self.concurrency is not None and self.concurrency < 1:
            raise InputError(f"--concurrency must be at least 1, got {self.concurrency}", field="concurrency")


def open_judge(options: JudgeOptions, *, settings: Settings | None = None,
               workspace: Workspace | None = None) -> Judge:
    """A started judge for ``options`` on the configured database (call ``judge.backend.close()`` when done).

    Raises:
        InputError: an option out of range, or ``abstain`` without a calibrator.
    """
    cal = load_calibrator(options.calibrator) if options.calibrator is not None else None
    escalate_below = options.escalate_below
    if options.abstain:
        if cal is None:
            raise InputError("--abstain needs --calibrator", field="abstain")
        if escalate_below is None:
            escalate_below = cal.abstain_threshold()
    return build_judge(options.backend, settings=settings, base_url=options.base_url, use_cache=options.cache,
                       calibrator=cal, escalate_below=escalate_below,
                       allow_rulebook_change=options.allow_rulebook_change, workspace=workspace,
                       prior_weights=options.prior_weights, **options.config_fields())


def holdout(judge: Judge, holdout_same_prompt: bool) -> Callable[[PairRecord], list[str]] | None:
    """Leave-one-out: a pair never retrieves a ruling decided on its own prompt."""
    if not holdout_same_prompt or judge.rulebook is None:
        return None
    by_prompt = judge.rulebook.rulings_by_prompt()

    def exclude_for(record: PairRecord) -> list[str]:
        return by_prompt.get(" ".join(record.pair.prompt.split()), [])

    return exclude_for


def judge_file(judge: Judge, records: list[PairRecord], out: Path, run: RunOptions = RunOptions(), *,
               on_result: Callable[[Verdict], None] | None = None,
               on_skip: Callable[[PairRecord], None] | None = None) -> RunReport:
    """Judge records into ``out`` (appended; resumable; its folders created); closes the backend."""
    try:
        return asyncio.run(run_pairs(judge, records, out=out,
                                     concurrency=run.concurrency or default_concurrency(judge.backend),
                                     max_tokens=run.max_tokens, max_cost_usd=run.max_cost,
                                     max_seconds=run.max_seconds,
                                     exclude_for=holdout(judge, run.holdout_same_prompt),
                                     on_result=on_result, on_skip=on_skip))
    finally:
        judge.backend.close()


def judge_shared(judge: Judge, records: list[PairRecord], out: Path, run: RunOptions = RunOptions(), *,
                 workspace: Workspace, on_start: Callable[[WorkClaims], None] | None = None,
                 on_result: Callable[[Verdict], None] | None = None) -> SharedRunReport:
    """Judge records as one worker of a shared batch, then write the batch's verdicts to ``out``.

    The batch lives in the judge's database (`judge.judging.shared`): other workers running the same pairs
    with the same judge and database divide the work. ``out`` is replaced by the batch's verdicts in input
    order (complete unless a budget stopped this worker); closes the backend.

    Args:
        workspace: the database ``judge`` was opened on (`open_judge`), where the batch is divided.
        on_start: called with this worker's claims before judging starts (progress bars).
    """
    if judge.store is None:
        raise ConfigError("a shared run needs the judge's database (the batch is divided through it)")
    fingerprint = batch_fingerprint(judge, records, options={"holdout_same_prompt": run.holdout_same_prompt})
    claims = workspace.claims(run.batch or batch_id_for(fingerprint), worker_id=run.worker_id,
                              lease_s=run.lease_s or DEFAULT_LEASE_S)
    if on_start is not None:
        on_start(claims)
    try:
        report = asyncio.run(run_shared(judge, records, claims, fingerprint=fingerprint,
                                        concurrency=run.concurrency or default_concurrency(judge.backend),
                                        max_tokens=run.max_tokens, max_cost_usd=run.max_cost,
                                        max_seconds=run.max_seconds,
                                        exclude_for=holdout(judge, run.holdout_same_prompt),
                                        on_result=on_result))
    finally:
        judge.backend.close()
    write_results(out, claims.results())
    return report


def judge_pairs(judge: Judge, records: list[PairRecord], out: Path, run: RunOptions = RunOptions(), *,
                workspace: Workspace) -> RunReport:
    """`judge_shared` when ``run`` shares the batch, else `judge_file`; no progress callbacks.

    Args:
        workspace: the database ``judge`` was opened on (`open_judge`), where a shared batch is divided.
    """
    if run.shared or run.batch is not None:
        return judge_shared(judge, records, out, run, workspace=workspace)
    return judge_file(judge, records, out, run)


@dataclass(frozen=True)
class Rerun:
    """What `rerun_since` found and did: the impact analysis, and the run (None when nothing was affected)."""

    impact: ImpactReport
    run: RunReport | None


def rerun_since(since: str, *, out: str | Path, backend: str | Backend | None = None,
                settings: Settings | None = None, base_url: str | None = None, concurrency: int | None = None,
                on_start: Callable[[int], None] | None = None, on_result: Callable[[Verdict], None] | None = None,
                on_skip: Callable[[PairRecord], None] | None = None) -> Rerun:
    """Re-judge exactly the stored judgments a rulebook change since ``since`` affected (``judge rerun``,
    `judge.rerun`): `judge.caselaw.impact.impact`, then `judge.judging.impact.rerun` with ``backend`` (a
    backend object is used as it is and left open), each judgment on its stored pair and settings, results
    streamed to ``out`` (resumable). ``on_start`` is told how many pairs are to be judged before the first is;
    ``on_result`` / ``on_skip`` as in `judge.judging.runner.run_pairs`.

    Raises:
        RulebookError: ``since`` is not a version of the rulebook.
        StoreError: the configured SQLite database does not exist.
    """
    workspace = Workspace.open(settings or Settings.from_env(), create=False)
    found = workspace.rulebook().impact(since)
    if not found.affected:
        return Rerun(found, None)
    judge = build_judge(backend, base_url=base_url, workspace=workspace)
    if on_start is not None:
        on_start(sum(len(group.records) for group in rerun_plan(found.affected)))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        run = asyncio.run(rerun(judge, found.affected, out=path,
                                concurrency=concurrency or default_concurrency(judge.backend),
                                on_result=on_result, on_skip=on_skip))
    finally:
        close_if_started(judge.backend, backend)
    return Rerun(found, run)
