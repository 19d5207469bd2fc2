"""Reasons of a verdict decided by the model or by a binding precedent, as pure functions.

The model's structured explanation becomes citations of the rules it was shown and the precedence trace
between them (`with_explanation`); a binding precedent becomes a point-mass distribution on its holding and one
citation of the ruling (`point_mass`, `precedent_citation`). The rule-checks method writes its own reasons
(`judge.judging.check_verdict`).
"""

from __future__ import annotations

from typing import Literal

from judge.judging.verdict import Explanation
from judge.rules.model import Rule
from judge.rules.precedence import conflict_trace, order_rules
from judge.verdicts import Citation, Distribution, PrecedentRef, TraceEntry, Verdict

__all__ = ["point_mass", "precedent_citation", "with_explanation"]


def with_explanation(verdict: Verdict, explanation: Explanation, rules: list[Rule],
                     scores: dict[str, float]) -> Verdict:
    """The verdict with the model's explanation: citations of the rules it applied, the
    deciding rule, rationale, verbal confidence and the precedence trace of the cited rules."""
    by_id = {r.id: r for r in rules}
    citations = []
    for applied in explanation.rules_applied:
        rule = by_id[applied.rule_id]
        citations.append(Citation(
            rule_id=rule.id, layer=rule.layer.value, authority=rule.authority.value if rule.authority else None,
            version=rule.version, title=rule.title, excerpt=" ".join(rule.text.split())[:300],
            favours=applied.favours, note=applied.note, score=scores.get(rule.id)))
    favours = {c.rule_id: c.favours for c in citations if c.favours != "neither"}
    precedence = order_rules(by_id[c.rule_id] for c in citations)
    trace = [TraceEntry(winner=d.winner, loser=d.loser, criterion=d.criterion, reason=d.reason)
             for d in conflict_trace(precedence, favours)]
    deciding = next((c for c in citations if c.rule_id == explanation.deciding_rule), None)
    agrees = None if deciding is None or verdict.winner == "tie" else deciding.favours == verdict.winner
    return verdict.model_copy(update={
        "explanation_agrees": agrees,
        "citations": citations, "deciding_rule": explanation.deciding_rule,
        "rationale": explanation.rationale, "verbal_confidence": explanation.confidence,
        "precedence_trace": trace})


def point_mass(holding: Literal["A", "B", "tie"], confidence: float, *, allow_tie: bool) -> Distribution:
    """``confidence`` on ``holding``; the rest on B/A for a one-sided holding (shared with tie when ties are
    allowed), split between A and B for a tie."""
    rest = 1.0 - confidence
    if holding == "tie":
        return Distribution(a=rest / 2, tie=confidence, b=rest / 2)
    other, tie = (rest / 2, rest / 2) if allow_tie else (rest, 0.0)
    return Distribution(a=confidence, tie=tie, b=other) if holding == "A" else Distribution(a=other, tie=tie,
                                                                                              b=confidence)


def precedent_citation(ruling: Rule, ref: PrecedentRef) -> Citation:
    """The citation of a ruling that binds a pair as precedent on the same facts."""
    slots = ", responses in the other slots" if ref.swapped else ""
    return Citation(
        rule_id=ruling.id, layer=ruling.layer.value, authority=None, version=ruling.version, title=ruling.title,
        excerpt=" ".join(ruling.text.split())[:300], favours="neither" if ref.holding == "tie" else ref.holding,
        note=f"binding precedent on the same facts (similarity {ref.similarity:.3f}{slots})",
        score=ref.similarity)
