"""Precedence: table-driven checks of which rule prevails and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from judge.rules.model import Authority, Layer, Rule, RuleStatus, RulingCase
from judge.rules.precedence import conflict_trace, order_rules, prevails

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rule(rid: str, *, authority: Authority | None = None, specificity: int = 0, days: int = 0,
         status: RuleStatus = RuleStatus.ACTIVE, overrules: tuple[str, ...] = (), version: int = 1) -> Rule:
    layer = Layer(rid.split("/")[0])
    case = None
    if layer is Layer.RULING:
        case = RulingCase(prompt="p", response_a="a", response_b="b", holding="A", rationale="r", overrules=overrules)
    return Rule(id=rid, layer=layer, title=rid, text=f"text of {rid}", authority=authority,
                specificity=specificity, created_at=T0 + timedelta(days=days), status=status, case=case,
                version=version)


CASES = [
    # (higher, lower, criterion)
    (rule("constitution/c", authority=Authority.ROOT), rule("spec/s", authority=Authority.ROOT), "layer"),
    (rule("spec/s", authority=Authority.GUIDELINE, specificity=0), rule("ruling/r", specificity=9), "layer"),
    (rule("constitution/c"), rule("ruling/r", days=100), "layer"),
    (rule("spec/a", authority=Authority.SYSTEM), rule("spec/b", authority=Authority.DEVELOPER), "authority"),
    (rule("spec/a", authority=Authority.USER), rule("spec/b", authority=Authority.GUIDELINE), "authority"),
    (rule("spec/a", authority=Authority.GUIDELINE), rule("spec/b", authority=None), "authority"),
    (rule("spec/a", authority=Authority.USER, specificity=3),
     rule("spec/b", authority=Authority.USER, specificity=1), "specificity"),
    (rule("ruling/new", days=5), rule("ruling/old", days=1), "recency"),
    (rule("ruling/deep", specificity=2, days=1), rule("ruling/recent", specificity=1, days=9), "specificity"),
    (rule("spec/a", authority=Authority.USER), rule("spec/b", authority=Authority.USER), "id"),
]


@pytest.mark.parametrize(("higher", "lower", "criterion"), CASES, ids=[f"{c[0].id}>{c[1].id}" for c in CASES])
def test_prevails_table(higher: Rule, lower: Rule, criterion: str) -> None:
    for a, b in ((higher, lower), (lower, higher)):
        decision = prevails(a, b)
        assert (decision.winner, decision.loser, decision.criterion) == (higher.id, lower.id, criterion)
        assert decision.reason


def test_order_rules_sorts_by_layer_then_authority_then_specificity_then_recency() -> None:
    rules = [
        rule("ruling/old", days=1),
        rule("spec/guideline", authority=Authority.GUIDELINE),
        rule("ruling/new", days=3),
        rule("constitution/root", authority=Authority.ROOT),
        rule("spec/user-deep", authority=Authority.USER, specificity=2),
        rule("spec/user-top", authority=Authority.USER, specificity=0),
    ]
    result = order_rules(rules)
    assert result.ids == ["constitution/root", "spec/user-deep", "spec/user-top", "spec/guideline",
                          "ruling/new", "ruling/old"]
    assert result.excluded == ()


def test_overruled_rulings_never_bind() -> None:
    result = order_rules([
        rule("ruling/dead", status=RuleStatus.OVERRULED),
        rule("ruling/replaced", status=RuleStatus.SUPERSEDED),
        rule("ruling/live"),
    ])
    assert result.ids == ["ruling/live"]
    assert {e.rule_id: e.reason.split(":")[0] for e in result.excluded} == {
        "ruling/dead": "overruled", "ruling/replaced": "superseded"}


def test_ruling_overruled_by_another_in_the_same_set_is_excluded() -> None:
    result = order_rules([rule("ruling/old", days=1), rule("ruling/new", days=2, overrules=("ruling/old",))])
    assert result.ids == ["ruling/new"]
    assert result.excluded[0].reason == "overruled by ruling/new"


def test_duplicate_ids_keep_latest_version() -> None:
    result = order_rules([rule("ruling/x", version=1), rule("ruling/x", version=2, status=RuleStatus.OVERRULED)])
    assert result.ids == []
    assert result.excluded[0].rule_id == "ruling/x"


def test_conflict_trace_names_winner_and_reason_for_opposed_rules_only() -> None:
    result = order_rules([
        rule("constitution/safety", authority=Authority.ROOT),
        rule("spec/helpful", authority=Authority.USER),
        rule("spec/style", authority=Authority.GUIDELINE),
    ])
    trace = conflict_trace(result, {"constitution/safety": "A", "spec/helpful": "B", "spec/style": "B"})
    assert [(d.winner, d.loser, d.criterion) for d in trace] == [
        ("constitution/safety", "spec/helpful", "layer"),
        ("constitution/safety", "spec/style", "layer"),
    ]
    assert result.explain("spec/helpful", "spec/style").criterion == "authority"
