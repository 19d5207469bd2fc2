"""Precedence: which rule prevails, and why. Pure functions over `Rule` values; no I/O.

Order, first difference decides:

1. layer - constitution > spec entry > case ruling;
2. authority within a layer - root > system > developer > user > guideline > none;
3. specificity - the more specific (deeper) rule prevails over the general one;
4. recency - the more recently written version prevails;
5. id - only so the order is total and deterministic (never a reason a person should rely on).

Overruled and superseded rulings never bind: they are excluded before ordering, as is any ruling that
another ruling in the same set overrules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from judge.rules.model import AUTHORITY_RANK, LAYER_RANK, Rule

__all__ = [
    "Decision",
    "Exclusion",
    "PrecedenceResult",
    "conflict_trace",
    "order_rules",
    "precedence_key",
    "prevails",
]

Criterion = Literal["layer", "authority", "specificity", "recency", "id"]


def precedence_key(rule: Rule) -> tuple[int, int, int, float, str]:
    """Sort key: smaller sorts first = higher precedence."""
    return (
        LAYER_RANK[rule.layer],
        AUTHORITY_RANK[rule.authority],
        -rule.specificity,
        -rule.created_at.timestamp(),
        rule.id,
    )


@dataclass(frozen=True)
class Decision:
    """Between two rules: which prevails, by which criterion, in words."""

    winner: str
    loser: str
    criterion: Criterion
    reason: str


@dataclass(frozen=True)
class Exclusion:
    """A rule that was given but does not bind, and why."""

    rule_id: str
    reason: str


@dataclass(frozen=True)
class PrecedenceResult:
    """Binding rules, highest precedence first, plus the rules excluded and why."""

    ordered: tuple[Rule, ...]
    excluded: tuple[Exclusion, ...] = ()
    _by_id: Mapping[str, Rule] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ids(self) -> list[str]:
        """Ids of the binding rules in precedence order."""
        return [r.id for r in self.ordered]

    def explain(self, a: str, b: str) -> Decision:
        """Which of two binding rules prevails, and why (KeyError if either is not binding)."""
        return prevails(self._by_id[a], self._by_id[b])


def _fmt_time(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def prevails(a: Rule, b: Rule) -> Decision:
    """Decide which of two rules prevails and explain the deciding criterion."""
    first, second = (a, b) if precedence_key(a) <= precedence_key(b) else (b, a)
    if first.layer is not second.layer:
        return Decision(first.id, second.id, "layer",
                        f"{first.layer.value} outranks {second.layer.value}")
    if first.authority != second.authority:
        fa = first.authority.value if first.authority else "none"
        sa = second.authority.value if second.authority else "none"
        return Decision(first.id, second.id, "authority",
                        f"within the {first.layer.value} layer, {fa} authority outranks {sa} authority")
    if first.specificity != second.specificity:
        return Decision(first.id, second.id, "specificity",
                        f"more specific (depth {first.specificity} vs {second.specificity})")
    if first.created_at != second.created_at:
        return Decision(first.id, second.id, "recency",
                        f"more recent ({_fmt_time(first.created_at)} vs {_fmt_time(second.created_at)})")
    return Decision(first.id, second.id, "id", "equal rank; ordered by id only for determinism")


def order_rules(rules: Iterable[Rule]) -> PrecedenceResult:
    """Order the rules that apply to a pair by precedence, dropping those that do not bind.

    Duplicate ids keep the highest version only.
    """
    latest: dict[str, Rule] = {}
    for rule in rules:
        seen = latest.get(rule.id)
        if seen is None or rule.version > seen.version:
            latest[rule.id] = rule

    overruled_by: dict[str, str] = {}
    for rule in latest.values():
        if rule.case is not None and rule.binds:
            for target in rule.case.overrules:
                overruled_by.setdefault(target, rule.id)

    binding: list[Rule] = []
    excluded: list[Exclusion] = []
    for rule in latest.values():
        if not rule.binds:
            excluded.append(Exclusion(rule.id, f"{rule.status.value}: no longer binds"))
        elif rule.id in overruled_by:
            excluded.append(Exclusion(rule.id, f"overruled by {overruled_by[rule.id]}"))
        else:
            binding.append(rule)
    binding.sort(key=precedence_key)
    excluded.sort(key=lambda e: e.rule_id)
    return PrecedenceResult(tuple(binding), tuple(excluded), {r.id: r for r in binding})


def conflict_trace(result: PrecedenceResult, favours: Mapping[str, str]) -> list[Decision]:
    """For every two binding rules that favour different responses, say which prevails and why.

    Args:
        result: the ordered rules.
        favours: rule id -> "A" | "B" | "tie" (what the rule favours for this pair); rules absent from
            the mapping are not in conflict with anything.
    """
    cited = [r for r in result.ordered if r.id in favours]
    decisions: list[Decision] = []
    for i, hi in enumerate(cited):
        for lo in cited[i + 1:]:
            if favours[hi.id] != favours[lo.id]:
                decisions.append(prevails(hi, lo))
    return decisions

