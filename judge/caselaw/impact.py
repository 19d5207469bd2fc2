"""Impact of rulebook changes on stored judgments: which would be shown other rules now.

A judgment is *affected* when the rules a judge with its configuration would show for its pair now differ
from the rules it was shown: a rule entered or left the shown set, or a shown rule has a new version. A
rulebook change that touches no shown rule leaves the judgment unaffected, although every cache key moves
with the rulebook version. Re-judging the affected ones: `judge.judging.impact.rerun`.

```python
report = impact(rulebook, workspace.judgments(), since_version)
for entry in report.affected:
    print(entry.cache_key, entry.diff.added, entry.diff.removed, entry.diff.changed)
```

`diff_shown` is pure; `impact` is the I/O edge (retrieval and the judgment store).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from judge.retrieval.shown import RuleSource, shown_rules
from judge.rules.model import EMPTY_RULEBOOK_VERSION, Pair
from judge.store import RulebookStore
from judge.store.judgments import JudgmentStore, StoredJudgment
from judge.verdicts import JudgeConfig, Verdict

__all__ = ["RERUN_KEPT", "ImpactEntry", "ImpactReport", "RuleDiff", "ShownSource", "UnknownImpact", "diff_shown",
           "impact", "judgment_identity", "kept_config"]

#: Configuration fields a re-run takes from the stored judgment; backend and model come from the judge
#: re-running, the template version from the code (it names the prompt the code renders).
RERUN_KEPT = tuple(f for f in JudgeConfig.model_fields
                   if f not in ("backend", "model", "endpoint", "template_version"))


def kept_config(config: JudgeConfig) -> dict[str, Any]:
    """The fields of ``config`` a re-run keeps (`RERUN_KEPT`)."""
    return {name: getattr(config, name) for name in RERUN_KEPT}


def judgment_identity(pair: Pair, config: JudgeConfig, exclude: Sequence[str]) -> tuple[str, str, tuple[str, ...]]:
    """What makes two judgments the same question asked again: the pair's content (not its id), the
    configuration a re-run keeps and the rules held out. A re-run of a judgment has its identity."""
    pair_key = json.dumps(pair.model_dump(mode="json", exclude={"id"}), sort_keys=True)
    config_key = json.dumps(kept_config(config), sort_keys=True, default=str)
    return pair_key, config_key, tuple(exclude)


class ShownSource(RuleSource, Protocol):
    """A rule source over a rulebook store (a `judge.Rulebook` or a `judge.retrieval.retriever.Retriever`)."""

    store: RulebookStore


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
    recorded_before: int = 0

    @property
    def before_note(self) -> str | None:
        """What to say of the judgments recorded before ``since_version`` (not checked), if any."""
        if not self.recorded_before:
            return None
        return (f"{self.recorded_before} judgment(s) recorded before {self.since_version} were not checked: "
                "give the version they were judged at (or an earlier one) as --since to include them")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {"since_version": self.since_version, "current_version": self.current_version,
                "checked": self.checked, "recorded_before": self.recorded_before,
                "affected": [e.to_json() for e in self.affected],
                "unknown": [{"cache_key": u.cache_key, "pair_id": u.pair_id, "rulebook_version": u.rulebook_version,
                             "reason": u.reason} for u in self.unknown]}


def impact(rulebook: ShownSource, store: JudgmentStore, since_version: str) -> ImpactReport:
    """Stored judgments whose shown rules would differ now.

    Checks the latest judgment per cache key among those recorded at ``since_version`` or at any version
    written after it, except the current version (nothing has changed for those), and of a question asked
    again (`judgment_identity`: `judge rerun`, or the same pair judged again) only its newest judgment that did
    not fail: one already judged again under the current version is not affected, one whose re-run failed is.
    Each is re-retrieved for its stored pair with its own configuration (``k_spec``, ``k_rulings``,
    ``n_constitution``) and exclusions, exactly as `Judge` selects rules. Judgments made without rules have no
    rulebook version and are never affected; judgments stored without their pair are reported as unknown,
    never skipped.

    Raises:
        RulebookError: ``since_version`` is not a version of this rulebook.
    """
    seq = rulebook.store.seq_of(since_version)
    current = rulebook.store.version
    affected: list[ImpactEntry] = []
    unknown: list[UnknownImpact] = []
    checked = 0
    include = [EMPTY_RULEBOOK_VERSION] if since_version == EMPTY_RULEBOOK_VERSION else []
    asked: set[tuple[str, str, tuple[str, ...]]] = set()
    for judgment in store.iter_recorded_since(seq, include_versions=include):  # newest first
        verdict = judgment.verdict
        if judgment.pair is not None:
            identity = judgment_identity(judgment.pair, verdict.config, judgment.exclude)
            if identity in asked:
                continue  # judged again later: the newer judgment stands for it
            if verdict.failure is None:  # a failed attempt does not replace the judgment it was to redo
                asked.add(identity)
        if verdict.rulebook_version == current:
            continue  # judged (or failed) under the current rulebook: nothing has changed since
        checked += 1
        if judgment.pair is None:
            unknown.append(UnknownImpact(verdict.cache_key, verdict.pair_id, verdict.rulebook_version))
            continue
        entry = _check(rulebook, judgment, judgment.pair, verdict)
        if entry is not None:
            affected.append(entry)
    # The store yields newest first; report oldest first, as judged.
    return ImpactReport(since_version, current, checked, tuple(reversed(affected)), tuple(reversed(unknown)),
                        recorded_before=store.count_recorded_before(seq))


def _check(rulebook: ShownSource, judgment: StoredJudgment, pair: Pair, verdict: Verdict) -> ImpactEntry | None:
    if not verdict.config.use_rules:
        return None
    shown = shown_rules(rulebook, pair, verdict.config, judgment.exclude).rules
    diff = diff_shown(verdict.retrieved, [(r.id, r.version) for r in shown])
    if not diff:
        return None
    return ImpactEntry(verdict.cache_key, verdict.pair_id, verdict.rulebook_version, diff, pair, verdict.config,
                       judgment.exclude)
