"""Re-judging exactly the judgments a rulebook change affected (found by `judge.caselaw.impact`).

```python
report = rulebook.impact(since_version)
asyncio.run(rerun(judge, report.affected, out=Path("rerun.jsonl")))
```

`rerun_plan` is pure; `rerun` is the I/O edge (the backend).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# The impact analysis names are re-exported: they lived here before `judge.caselaw.impact`.
from judge.caselaw.impact import (
    ImpactEntry,
    ImpactReport,
    RuleDiff,
    UnknownImpact,
    diff_shown,
    impact,
    judgment_identity,
    kept_config,
)
from judge.judging.checks import template_version_of
from judge.judging.engine import Judge
from judge.judging.runner import RunReport, run_pairs
from judge.records import PairRecord, pair_id
from judge.verdicts import JudgeConfig, Verdict

__all__ = ["ImpactEntry", "ImpactReport", "RerunGroup", "RuleDiff", "UnknownImpact", "diff_shown", "impact", "rerun",
           "rerun_plan"]


# ----------------------------------------------------------------------------- re-judging


@dataclass(frozen=True)
class RerunGroup:
    """Pairs to re-judge under one configuration, with each pair's exclusions (by record id)."""

    config_fields: dict[str, Any]
    records: tuple[PairRecord, ...]
    exclude: dict[str, tuple[str, ...]]


def rerun_plan(entries: Sequence[ImpactEntry]) -> list[RerunGroup]:
    """Group affected judgments by configuration, one record per distinct (pair, configuration, exclusions).

    Results files are keyed by pair id, so a pair id that would appear twice in the plan (one pair under
    two configurations, or two pairs sharing an id) is suffixed with ``@<cache-key prefix>``.
    """
    groups: dict[str, list[ImpactEntry]] = {}
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    for entry in entries:
        identity = judgment_identity(entry.pair, entry.config, entry.exclude)
        if identity in seen:
            continue
        seen.add(identity)
        groups.setdefault(identity[1], []).append(entry)
    counts = Counter(e.pair.id or pair_id(e.pair) for members in groups.values() for e in members)
    repeated = {i for i, n in counts.items() if n > 1}
    plan: list[RerunGroup] = []
    for members in groups.values():
        records: list[PairRecord] = []
        exclude: dict[str, tuple[str, ...]] = {}
        for entry in members:
            rid = entry.pair.id or pair_id(entry.pair)
            if rid in repeated:
                rid = f"{rid}@{entry.cache_key[:12]}"
            records.append(PairRecord(pair=entry.pair.model_copy(update={"id": rid}), label=None, source=None,
                                      line=len(records) + 1))
            exclude[rid] = entry.exclude
        first = members[0].config
        plan.append(RerunGroup(kept_config(first), tuple(records), exclude))
    return plan


def _excluder(exclude: dict[str, tuple[str, ...]]) -> Callable[[PairRecord], Sequence[str]]:
    return lambda record: exclude.get(record.pair.id or "", ())


def _add(total: RunReport, part: RunReport) -> None:
    for f in fields(RunReport):
        value, so_far = getattr(part, f.name), getattr(total, f.name)
        if f.name == "cost_usd":  # an unknown cost (None) makes the total unknown
            setattr(total, f.name, None if value is None or so_far is None else so_far + value)
            continue
        setattr(total, f.name, (so_far or value) if isinstance(value, bool) else so_far + value)


async def rerun(judge: Judge, entries: Sequence[ImpactEntry], *, out: Path | None = None, concurrency: int = 4,
                on_result: Callable[[Verdict], None] | None = None,
                on_skip: Callable[[PairRecord], None] | None = None) -> RunReport:
    """Re-judge affected judgments with ``judge``'s backend, store and rulebook, each under its own stored
    configuration (see `rerun_plan`), streaming results to ``out`` like `judge run` (resumable).

    The new verdicts are recorded in the judgment store at the current rulebook version: their cache keys
    differ from the old ones, which stay in the store for audit.
    """
    total = RunReport()
    for group in rerun_plan(entries):
        use_rules = bool(group.config_fields.get("use_rules", True))
        method = str(group.config_fields.get("method", "pairwise"))
        config = JudgeConfig(backend=judge.config.backend, model=judge.config.model, endpoint=judge.config.endpoint,
                             template_version=template_version_of(method, use_rules), **group.config_fields)
        runner = Judge(judge.backend, judge.rulebook, config=config, limits=judge.limits,
                       price_per_mtok=judge.price_per_mtok, store=judge.store,
                       concurrent_orders=judge.concurrent_orders, use_cache=judge.use_cache,
                       check_cache=judge.check_cache)
        part = await run_pairs(runner, group.records, out=out, concurrency=concurrency,
                               exclude_for=_excluder(group.exclude), on_result=on_result, on_skip=on_skip,
                               mixed_configs=True)
        _add(total, part)
    return total
