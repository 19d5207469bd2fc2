"""The rule-checks method of a `Judge`: plan the checks, grade both responses, decide, cite.

Reasons come by construction: the citations are the deciding level's rules whose checks favour the
winner, each with both responses' answers; the rationale is written from the same numbers, so it cannot
contradict the verdict.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

from judge.backends.base import Backend
from judge.errors import BackendError
from judge.judging.checks import plan_checks
from judge.judging.decide import Decision, RuleOutcome, decide
from judge.judging.grading import CheckCache, endpoint_of, grade_pair
from judge.judging.pairwise import VerdictTokenError, combine
from judge.judging.prompts import PromptLimits, RenderedPrompt
from judge.rules.model import Pair, Rule
from judge.verdicts import CheckResult, Citation, Failure, JudgeConfig, OrderResult

__all__ = ["check_citations", "check_rationale", "decide_by_checks"]

class CheckingJudge(Protocol):
    """What the rule-checks method uses of a `judge.Judge`: its backend, configuration and pairwise question."""

    backend: Backend
    config: JudgeConfig
    limits: PromptLimits
    concurrent_orders: bool
    use_cache: bool
    check_cache: CheckCache | None

    async def ask_order(self, pair: Pair, rules: list[Rule], shown_first: Literal["A", "B"], *,
                        bare: bool | None = None) -> tuple[RenderedPrompt, OrderResult]:
        """Ask the pairwise question in one order."""


#: Log-odds cap of the pairwise holistic signal (one order's 0.999 must not outweigh every rule).
_HOLISTIC_CAP = 4.0


async def _pairwise_holistic(judge: CheckingJudge, pair: Pair) -> tuple[float, int, int]:
    """log(P(A) / P(B)) of the bare pairwise question, both orders combined; tokens in and out."""
    # the swapped order first, as the pairwise method asks on a one-slot server
    orders = [(await judge.ask_order(pair, [], first, bare=True))[1] for first in ("B", "A")]
    combined = combine(orders[0].distribution, orders[1].distribution).distribution
    p_a = min(max(combined.a / max(combined.a + combined.b, 1e-12), 1e-6), 1 - 1e-6)
    signal = max(-_HOLISTIC_CAP, min(_HOLISTIC_CAP, math.log(p_a / (1 - p_a))))
    return signal, sum(o.prompt_tokens for o in orders), sum(o.completion_tokens for o in orders)


async def decide_by_checks(judge: CheckingJudge, pair: Pair, rules: list[Rule], scores: dict[str, float]) -> tuple[
        Decision | None, dict[str, object], Failure | None]:
    """Grade the rules' checks for ``pair`` and decide; (decision, verdict fields, failure)."""
    cfg = judge.config
    planned = plan_checks(rules, has_process=pair.has_process(), max_checks=cfg.max_checks,
                          holistic=cfg.holistic == "pointwise", scores=scores)
    extra: dict[str, object] = {}
    try:
        graded = await grade_pair(judge.backend, pair, planned, sequential=not judge.concurrent_orders,
                                  top_logprobs=cfg.top_logprobs, max_chars=judge.limits.max_response_chars,
                                  cache=judge.check_cache, use_cached=judge.use_cache,
                                  endpoint=endpoint_of(judge.backend), template_version=cfg.template_version)
        extra.update(checks=graded.results, prompt_tokens=graded.prompt_tokens,
                     completion_tokens=graded.completion_tokens, prefilled_tokens=graded.prefilled_tokens,
                     truncated=graded.truncated, checks_asked=graded.asked, checks_cached=graded.cached)
        holistic: float | None = None
        if cfg.holistic == "pairwise":
            holistic, used_in, used_out = await _pairwise_holistic(judge, pair)
            extra["prompt_tokens"] = graded.prompt_tokens + used_in
            extra["completion_tokens"] = graded.completion_tokens + used_out
    except VerdictTokenError as exc:
        return None, extra, Failure(stage="verdict", reason=f"holistic reply is not a verdict: {exc}")
    except BackendError as exc:
        return None, extra, Failure(stage="backend", reason=str(exc), raw=getattr(exc, "raw", None))
    answered = [r for r in graded.results if r.answered]
    if not answered and holistic is None:
        reasons = "; ".join(sorted({r.failure or "" for r in graded.results}))[:400]
        return None, extra, Failure(stage="checks", reason=f"no check was answered: {reasons or 'no checks'}")
    decision = decide(rules, graded.results, cfg.check_weights, holistic=holistic)
    extra["check_features"] = decision.features
    return decision, extra, None


def _answers(check: CheckResult) -> str:
    return (f"\"{check.question}\" (complies: {check.expect}) A {check.p_yes_a:.2f} / B {check.p_yes_b:.2f} "
            "P(yes)")


def _note(outcome: RuleOutcome, limit: int = 150) -> str:
    best = max(outcome.checks, key=lambda c: abs(c.gap()))
    note = _answers(best)
    return note if len(note) <= limit else note[: limit - 3] + "..."


def check_citations(decision: Decision, winner: str, scores: dict[str, float]) -> list[Citation]:
    """The rules whose checks decided, each favouring the winner, with the answers that decided."""
    if winner not in ("A", "B"):
        return []
    out = []
    for o in decision.cited:
        if o.favours != winner:
            continue
        r = o.rule
        out.append(Citation(rule_id=r.id, layer=r.layer.value, authority=r.authority.value if r.authority else None,
                            version=r.version, title=r.title, excerpt=" ".join(r.text.split())[:300],
                            favours=o.favours, note=_note(o), score=scores.get(r.id)))
    return out


def check_rationale(decision: Decision, winner: str) -> str:
    """One or two sentences written from the decision's own numbers (so it cannot contradict it)."""
    if winner not in ("A", "B"):
        return "The checks do not separate the responses."
    if decision.decided_by == "rules" and decision.cited:
        lead = decision.cited[0]
        layer, authority = decision.level or ("", "")
        best = max(lead.checks, key=lambda c: abs(c.gap()))
        return (f"Response {winner} complies better with {lead.rule.id} ({layer}, {authority} authority), the "
                f"highest-precedence rule whose checks separate the responses: {_answers(best)}.")[:400]
    return (f"No rule's checks separate the responses decisively; the holistic comparison favours response "
            f"{winner} ({decision.features.get('holistic', 0.0):+.2f} log-odds for A).")[:400]

