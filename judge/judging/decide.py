"""Precedence, executed: from graded rule checks (and a holistic signal) to a verdict and its reasons.

Pure: plain values in, a `Decision` out. For each rule, the two responses' compliance with its checks is
compared. Rules are grouped into precedence levels (layer, then authority). The highest level holding a
*decisive* difference (a check whose compliance probabilities differ by at least ``decisive_gap``) decides
the winner; no lower rule can overturn it. Inside that level a logistic weighting of the level's check
differences and the holistic signal gives the probability; the holistic signal can lower the confidence of
a rule-decided verdict but never flip it, so the cited rules always favour the winner. When no rule
separates the responses, the holistic signal (with the weaker rule evidence) decides and the decision says
so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from judge.judging.checks import HOLISTIC_ID
from judge.rules.model import AUTHORITY_RANK, LAYER_RANK, Rule
from judge.rules.precedence import conflict_trace, order_rules
from judge.verdicts import CheckResult, CheckWeights

__all__ = ["CheckWeights", "Decision", "RuleOutcome", "decide", "p_a_from_features"]

Side = Literal["A", "B"]


@dataclass(frozen=True)
class RuleOutcome:
    """One rule's checks compared: mean compliance-logit difference (A minus B), and what it favours."""

    rule: Rule
    checks: tuple[CheckResult, ...]
    difference: float
    decisive: bool

    @property
    def favours(self) -> Literal["A", "B", "neither"]:
        """The response this rule's checks favour."""
        if self.difference > 0:
            return "A"
        if self.difference < 0:
            return "B"
        return "neither"


@dataclass(frozen=True)
class Decision:
    """What the checks decided.

    Attributes:
        p_a: probability that A is the better response.
        decided_by: ``rules`` (a decisive level), ``holistic`` (no rule separated the responses).
        level: the deciding level as (layer, authority), when rules decided.
        cited: the deciding level's rules that favour the winner, highest precedence first.
        outcomes: every graded rule, precedence order.
        features: the inputs of the weighting (for fitting it).
        trace: between graded rules that favour different responses, which prevails and why.
    """

    p_a: float
    decided_by: Literal["rules", "holistic"]
    level: tuple[str, str] | None
    cited: tuple[RuleOutcome, ...]
    outcomes: tuple[RuleOutcome, ...]
    features: dict[str, float] = field(default_factory=dict)
    trace: tuple[tuple[str, str, str, str], ...] = ()


def _level(rule: Rule) -> tuple[int, int]:
    return LAYER_RANK[rule.layer], AUTHORITY_RANK[rule.authority]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def outcomes_for(rules: Sequence[Rule], results: Sequence[CheckResult], decisive_gap: float) -> list[RuleOutcome]:
    """Each rule with at least one answered check, precedence order."""
    by_rule: dict[str, list[CheckResult]] = {}
    for r in results:
        if r.rule_id != HOLISTIC_ID and r.answered:
            by_rule.setdefault(r.rule_id, []).append(r)
    ordered = order_rules(r for r in rules if r.id in by_rule).ordered
    out = []
    for rule in ordered:
        checks = by_rule[rule.id]
        diff = _mean([c.difference() for c in checks])
        decisive = diff != 0 and any(abs(c.gap()) >= decisive_gap and (c.gap() > 0) == (diff > 0) for c in checks)
        out.append(RuleOutcome(rule, tuple(checks), diff, decisive))
    return out


def decide(rules: Sequence[Rule], results: Sequence[CheckResult], weights: CheckWeights | None = None, *,
           holistic: float | None = None) -> Decision:
    """Apply the rules' graded checks in order of precedence.

    Args:
        rules: the rules whose checks were asked.
        results: every check's answers (rule checks and, optionally, the holistic check).
        weights: the weighting; default: the documented prior `CheckWeights()`.
        holistic: the holistic signal as a log-odds of A over B; default: read from the holistic check
            among ``results`` (0 without one).

    Returns:
        The decision; ``p_a`` is 0.5 when nothing separates the responses.
    """
    w = weights or CheckWeights()
    outcomes = outcomes_for(rules, results, w.decisive_gap)
    if holistic is None:
        found = next((r for r in results if r.rule_id == HOLISTIC_ID and r.answered), None)
        holistic = found.difference() if found is not None else 0.0
    f_h = holistic
    decisive = [o for o in outcomes if o.decisive]
    favours = {o.rule.id: o.favours for o in outcomes if o.favours != "neither"}
    trace = tuple((d.winner, d.loser, d.criterion, d.reason)
                  for d in conflict_trace(order_rules(o.rule for o in outcomes), favours))
    if decisive:
        level = _level(decisive[0].rule)
        in_level = [o for o in outcomes if _level(o.rule) == level]
        f_rules = sum(o.difference for o in in_level)
        if f_rules == 0:
            f_rules = sum(o.difference for o in decisive if _level(o.rule) == level)
        side: Side = "A" if f_rules > 0 else "B"
        cited = tuple(o for o in in_level if o.favours == side)
        first = decisive[0].rule
        features = {"rules": f_rules, "holistic": f_h, "lower": 0.0, "decisive": 1.0}
        return Decision(p_a=p_a_from_features(features, w), decided_by="rules",
                        level=(first.layer.value, first.authority.value if first.authority else "none"),
                        cited=cited, outcomes=tuple(outcomes), features=features, trace=trace)
    features = {"rules": 0.0, "holistic": f_h, "lower": sum(o.difference for o in outcomes), "decisive": 0.0}
    return Decision(p_a=p_a_from_features(features, w), decided_by="holistic", level=None, cited=(),
                    outcomes=tuple(outcomes), features=features, trace=trace)


#: The least log-odds a rule-decided verdict keeps for its side however strongly the holistic signal disagrees
#: (P(winner) 0.5025): the rule's side still wins, with a confidence that says how weak the verdict is.
MIN_RULE_MARGIN = 0.01


def p_a_from_features(features: Mapping[str, float], weights: CheckWeights) -> float:
    """P(A) from a decision's features (`Decision.features`) under ``weights``: what `decide` returns.

    When a rule level decided (``decisive`` > 0), the side its checks favour wins: the holistic signal may
    weaken that verdict down to `MIN_RULE_MARGIN` log-odds, never flip it or cancel it into a tie (a tie is a
    pairwise judge's answer, offered only when asked for). Otherwise the other rules' difference and the
    holistic signal decide.
    """
    f_h = features.get("holistic", 0.0)
    if features.get("decisive", 0.0) > 0:
        f_rules = features.get("rules", 0.0)
        sign = 1.0 if f_rules > 0 else -1.0
        margin = max(MIN_RULE_MARGIN, weights.rules * abs(f_rules) + weights.holistic_decided * f_h * sign)
        p_win = _sigmoid(margin)
        return p_win if sign > 0 else 1.0 - p_win
    return _sigmoid(weights.lower * features.get("lower", 0.0) + weights.holistic_open * f_h)
