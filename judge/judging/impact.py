"""Impact of rulebook changes on stored judgments, and re-judging exactly the affected ones.

A judgment is *affected* when the rules a judge with its configuration would show for its pair now differ
from the rules it was shown: a rule entered or left the shown set, or a shown rule has a new version. A
rulebook change that touches no shown rule leaves the judgment unaffected, although every cache key moves
with the rulebook version.

```python
report = impact(rulebook, JudgmentStore(rulebook.store.engine), since_version)
for entry in report.affected:
    print(entry.cache_key, entry.added, entry.removed, entry.changed)
asyncio.run(rerun(judge, report.affected, out=Path("rerun.jsonl")))
```

`diff_shown` and `rerun_plan` are pure; `impact` and `rerun` are the I/O edges (retrieval, the store, the
backend).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge.judging.engine import Judge, shown_rules
from judge.judging.pairs_io import PairRecord, pair_id
from judge.judging.prompts import BARE_TEMPLATE_VERSION, TEMPLATE_VERSION
from judge.judging.runner import RunReport, run_pairs
from judge.judging.verdict import JudgeConfig, Verdict
from judge.rules.model import EMPTY_RULEBOOK_VERSION, Pair

if TYPE_CHECKING:
    from judge.rulebook import Rulebook
    from judge.store.judgments import JudgmentStore, StoredJudgment

__all__ = ["ImpactEntry", "ImpactReport", "RerunGroup", "RuleDiff", "UnknownImpact", "diff_shown", "impact", "rerun",
           "rerun_plan"]


@dataclass(frozen=True)
class RuleDiff:
    """How the shown rules changed: ids added, ids removed, ``(id, old version, new version)`` changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[tuple[str, int | None, int], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff_shown(before: Sequence[Mapping[str, Any]], now: Sequence[tuple[str, int]]) -> RuleDiff:
    """Compare a verdict's ``retrieved`` entries (``{"id", "version", ...}``) with ``(id, version)`` now shown.

    Ids keep the order they are listed in (precedence order). A stored entry without a version (never
    written by this judge, but tolerated) counts as changed when the rule is still shown.
    """
    old = {str(r["id"]): r.get("version") for r in before}
    new = dict(now)
    return RuleDiff(
        added=tuple(i for i in new if i not in old),
        removed=tuple(i for i in old if i not in new),
        changed=tuple((i, old[i], v) for i, v in new.items() if i in old and old[i] != v),
    )


@dataclass(frozen=True)
class ImpactEntry:
    """One affected judgment: what it was, what would be shown now, and what it needs to be re-judged."""

    cache_key: str
    pair_id: str | None
    rulebook_version: str | None
    diff: RuleDiff
    pair: Pair
    config: JudgeConfig
    exclude: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable view (the pair itself is left out)."""
        return {"cache_key": self.cache_key, "pair_id": self.pair_id, "rulebook_version": self.rulebook_version,
                "added": list(self.diff.added), "removed": list(self.diff.removed),
                "changed": [{"id": i, "from": old, "to": new} for i, old, new in self.diff.changed]}


@dataclass(frozen=True)
class UnknownImpact:
    """A judgment whose impact cannot be known: it was stored before judgments kept their pair."""

    cache_key: str
    pair_id: str | None
    rulebook_version: str | None
    reason: str = "unknown (no stored pair)"


@dataclass(frozen=True)
class ImpactReport:
    """Every stored judgment checked since a version: the affected ones and the ones that cannot be known."""

    since_version: str
    current_version: str
    checked: int
    affected: tuple[ImpactEntry, ...]
    unknown: tuple[UnknownImpact, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {"since_version": self.since_version, "current_version": self.current_version,
                "checked": self.checked, "affected": [e.to_json() for e in self.affected],
                "unknown": [{"cache_key": u.cache_key, "pair_id": u.pair_id, "rulebook_version": u.rulebook_version,
                             "reason": u.reason} for u in self.unknown]}


def impact(rulebook: Rulebook, store: JudgmentStore, since_version: str) -> ImpactReport:
    """Stored judgments whose shown rules would differ now.

    Checks the latest judgment per cache key among those recorded at ``since_version`` or at any version
    written after it, except the current version (nothing has changed for those). Each is re-retrieved for
    its stored pair with its own configuration (``k_spec``, ``k_rulings``, ``n_constitution``) and
    exclusions, exactly as `Judge` selects rules. Judgments made without rules have no rulebook version and
    are never affected; judgments stored without their pair are reported as unknown, never skipped.

    Raises:
        RulebookError: ``since_version`` is not a version of this rulebook.
    """
    seq = rulebook.store.seq_of(since_version)
    current = rulebook.version
    affected: list[ImpactEntry] = []
    unknown: list[UnknownImpact] = []
    checked = 0
    include = [EMPTY_RULEBOOK_VERSION] if since_version == EMPTY_RULEBOOK_VERSION else []
    for judgment in store.iter_recorded_since(seq, include_versions=include, exclude_version=current):
        checked += 1
        verdict = judgment.verdict
        if judgment.pair is None:
            unknown.append(UnknownImpact(verdict.cache_key, verdict.pair_id, verdict.rulebook_version))
            continue
        entry = _check(rulebook, judgment, judgment.pair, verdict)
        if entry is not None:
            affected.append(entry)
    # The store yields newest first; report oldest first, as judged.
    return ImpactReport(since_version, current, checked, tuple(reversed(affected)), tuple(reversed(unknown)))


def _check(rulebook: Rulebook, judgment: StoredJudgment, pair: Pair, verdict: Verdict) -> ImpactEntry | None:
    if not verdict.config.use_rules:
        return None
    shown = shown_rules(rulebook, pair, verdict.config, judgment.exclude).rules
    diff = diff_shown(verdict.retrieved, [(r.id, r.version) for r in shown])
    if not diff:
        return None
    return ImpactEntry(verdict.cache_key, verdict.pair_id, verdict.rulebook_version, diff, pair, verdict.config,
                       judgment.exclude)


# ----------------------------------------------------------------------------- re-judging

#: Configuration fields a re-run takes from the stored judgment; backend and model come from the judge
#: re-running, the template version from the code (it names the prompt the code renders).
_KEPT = tuple(f for f in JudgeConfig.model_fields if f not in ("backend", "model", "template_version"))


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
        kept = {name: getattr(entry.config, name) for name in _KEPT}
        config_key = json.dumps(kept, sort_keys=True, default=str)
        pair_key = json.dumps(entry.pair.model_dump(mode="json", exclude={"id"}), sort_keys=True)
        if (pair_key, config_key, entry.exclude) in seen:
            continue
        seen.add((pair_key, config_key, entry.exclude))
        groups.setdefault(config_key, []).append(entry)
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
        plan.append(RerunGroup({name: getattr(first, name) for name in _KEPT}, tuple(records), exclude))
    return plan


def _excluder(exclude: dict[str, tuple[str, ...]]) -> Callable[[PairRecord], Sequence[str]]:
    return lambda record: exclude.get(record.pair.id or "", ())


def _add(total: RunReport, part: RunReport) -> None:
    for f in fields(RunReport):
        value = getattr(part, f.name)
        setattr(total, f.name, (getattr(total, f.name) or value) if isinstance(value, bool)
                else getattr(total, f.name) + value)


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
        config = JudgeConfig(backend=judge.config.backend, model=judge.config.model,
                             template_version=TEMPLATE_VERSION if use_rules else BARE_TEMPLATE_VERSION,
                             **group.config_fields)
        runner = Judge(judge.backend, judge.rulebook, config=config, limits=judge.limits,
                       price_per_mtok=judge.price_per_mtok, store=judge.store,
                       concurrent_orders=judge.concurrent_orders, use_cache=judge.use_cache,
                       check_cache=judge.check_cache)
        part = await run_pairs(runner, group.records, out=out, concurrency=concurrency,
                               exclude_for=_excluder(group.exclude), on_result=on_result, on_skip=on_skip,
                               mixed_configs=True)
        _add(total, part)
    return total
