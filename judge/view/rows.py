"""What the results viewer shows about each pair, as plain values (no I/O, no HTML).

`pair_views` joins verdicts with the pairs they judged (for the texts), the labels (for right / wrong) and
the rulebook's rules (for the text and layer of every rule a check or citation names). Every string here is
data: the template escapes it where it is rendered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from judge.judging.pairs_io import PairRecord
    from judge.judging.verdict import Verdict
    from judge.rules.model import Rule

__all__ = [
    "MAX_TEXT_CHARS",
    "CheckRow",
    "CitedRule",
    "OrderRow",
    "PairView",
    "RuleInfo",
    "clip",
    "pair_views",
    "rule_info",
]

#: Prompts, responses and raw model replies are cut to this many characters on the page.
MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class RuleInfo:
    """What the page says about a rule: its layer and, when the rulebook was given, its title and text."""

    rule_id: str
    layer: str
    title: str = ""
    text: str = ""
    authority: str = ""


@dataclass(frozen=True)
class OrderRow:
    """One order of a pairwise question: which response was shown first and the answer's distribution."""

    shown_first: str
    p_a: float
    p_tie: float
    p_b: float
    answer_mass: float


@dataclass(frozen=True)
class CheckRow:
    """One rule check asked of both responses."""

    rule_id: str
    layer: str
    question: str
    expect: str
    target: str
    p_yes_a: float | None
    p_yes_b: float | None
    favours: Literal["A", "B", "neither", ""]
    failure: str


@dataclass(frozen=True)
class CitedRule:
    """A rule the verdict cites, with its text."""

    rule_id: str
    layer: str
    authority: str
    version: int
    title: str
    text: str
    favours: str
    note: str


@dataclass(frozen=True)
class PairView:
    """One pair's row and detail on the page."""

    index: int
    pair_id: str
    winner: str
    confidence: float | None
    p_a: float | None
    p_tie: float | None
    p_b: float | None
    orders: list[OrderRow]
    agreement: Literal["agree", "disagree", ""]
    deciding_rule: str
    decided_by: str
    method: str
    escalated: bool
    failure_stage: str
    failure_reason: str
    failure_raw: str
    label: str
    correct: bool | None
    prompt: str | None
    response_a: str | None
    response_b: str | None
    rationale: str
    citations: list[CitedRule]
    checks: list[CheckRow]
    trace: list[tuple[str, str, str, str]]
    retrieved: list[RuleInfo]
    precedent: str
    rule_ids: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit:,} more characters not shown]"


def rule_info(rules: Sequence[Rule]) -> dict[str, RuleInfo]:
    """Rules by id as the page shows them (the last version given of each id wins)."""
    return {r.id: RuleInfo(r.id, r.layer.value, r.title, r.text, r.authority.value if r.authority else "")
            for r in rules}


def _layer_of(rule_id: str) -> str:
    # Rule ids start with their layer (constitution/..., spec/..., ruling/...); `holistic` is no rule.
    return rule_id.split("/", 1)[0] if "/" in rule_id else ""


def _favours(a: float | None, b: float | None, expect: str) -> Literal["A", "B", "neither", ""]:
    if a is None or b is None:
        return ""
    comply_a, comply_b = (a, b) if expect == "yes" else (1 - a, 1 - b)
    return "A" if comply_a > comply_b else "B" if comply_b > comply_a else "neither"


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _facts(v: Verdict) -> list[tuple[str, str]]:
    cfg = v.config
    facts = [
        ("backend / model", f"{cfg.backend} / {cfg.model}"),
        ("method", cfg.method + (f" (holistic: {cfg.holistic})" if cfg.method == "checks" else "")),
        ("template", cfg.template_version),
        ("rulebook version", v.rulebook_version or "-"),
        ("tokens (prompt / completion)", f"{v.prompt_tokens} / {v.completion_tokens}"),
        ("latency (s)", f"{v.latency_s:.2f}"),
        ("cached", "yes" if v.cached else "no"),
        ("created", v.created_at.isoformat(timespec="seconds")),
    ]
    if v.calibrator:
        raw = v.raw_probabilities
        facts.append(("calibrator", v.calibrator + ("" if raw is None else
                                                    f" (own P: A {raw.a:.3f}, tie {raw.tie:.3f}, B {raw.b:.3f})")))
    if v.slot_bias is not None:
        facts.append(("slot bias removed (log-odds)", f"{v.slot_bias:+.3f}"))
    if v.verbal_confidence is not None:
        facts.append(("stated confidence", _fmt(v.verbal_confidence)))
    if v.explanation_agrees is not None:
        facts.append(("explanation agrees with the verdict", "yes" if v.explanation_agrees else "no"))
    if v.truncated:
        facts.append(("texts cut to fit the context", "yes"))
    return facts


def _one(index: int, v: Verdict, record: PairRecord | None, label: str | None,
         rules: Mapping[str, RuleInfo]) -> PairView:
    def layer(rule_id: str) -> str:
        info = rules.get(rule_id)
        return info.layer if info else _layer_of(rule_id)

    p = v.probabilities
    citations = [CitedRule(c.rule_id, c.layer, c.authority or "", c.version, c.title,
                           rules[c.rule_id].text if c.rule_id in rules else c.excerpt, c.favours, c.note)
                 for c in v.citations]
    checks = [CheckRow(c.rule_id, layer(c.rule_id), c.question, c.expect, c.target, c.p_yes_a, c.p_yes_b,
                       _favours(c.p_yes_a, c.p_yes_b, c.expect), c.failure or "") for c in v.checks]
    retrieved = []
    for r in v.retrieved:
        rid = str(r.get("id", ""))
        info = rules.get(rid)
        retrieved.append(RuleInfo(rid, str(r.get("layer") or layer(rid)), info.title if info else "",
                                  info.text if info else "", info.authority if info else ""))
    # Every rule the verdict touches, for the page's "by rule" filter.
    rule_ids = sorted({c.rule_id for c in citations} | {c.rule_id for c in checks if c.rule_id != "holistic"}
                      | ({v.deciding_rule} if v.deciding_rule else set()))
    agreement: Literal["agree", "disagree", ""] = (
        "" if v.position_inconsistent is None or len(v.orders) < 2
        else "disagree" if v.position_inconsistent else "agree")
    precedent = ""
    if v.precedent is not None:
        pr = v.precedent
        precedent = (f"{pr.ruling_id} held {pr.holding} (similarity {pr.similarity:.3f}"
                     + (", responses swapped" if pr.swapped else "") + ")")
    pair = record.pair if record is not None else None
    return PairView(
        index=index,
        pair_id=v.pair_id or f"(no id, result {index + 1})",
        winner=v.winner or "",
        confidence=v.confidence,
        p_a=p.a if p else None,
        p_tie=p.tie if p else None,
        p_b=p.b if p else None,
        orders=[OrderRow(o.shown_first, o.distribution.a, o.distribution.tie, o.distribution.b, o.answer_mass)
                for o in v.orders],
        agreement=agreement,
        deciding_rule=v.deciding_rule or "",
        decided_by=v.decided_by or ("precedent" if v.precedent else "model" if v.failure is None else ""),
        method=v.config.method,
        escalated=v.escalated,
        failure_stage=v.failure.stage if v.failure else "",
        failure_reason=v.failure.reason if v.failure else "",
        failure_raw=clip(v.failure.raw or "") if v.failure else "",
        label=label or "",
        correct=None if label is None or v.winner is None else v.winner == label,
        prompt=clip(pair.prompt) if pair else None,
        response_a=clip(pair.response_a.text) if pair else None,
        response_b=clip(pair.response_b.text) if pair else None,
        rationale=v.rationale or "",
        citations=citations,
        checks=checks,
        trace=[(t.winner, t.loser, t.criterion, t.reason) for t in v.precedence_trace],
        retrieved=retrieved,
        precedent=precedent,
        rule_ids=rule_ids,
        facts=_facts(v),
    )


def pair_views(verdicts: Sequence[Verdict], pairs: Mapping[str, PairRecord] | None = None,
               rules: Mapping[str, RuleInfo] | None = None) -> list[PairView]:
    """One view per verdict, in the results' order.

    Args:
        verdicts: The verdicts to show (one per pair: the caller keeps the last line per pair).
        pairs: The judged pairs by id, for their texts and labels (a pair's label marks its verdict right or
            wrong); a verdict whose pair is not given shows no texts.
        rules: Rules by id (`rule_info`) for the text and layer of every checked or cited rule.
    """
    pairs = pairs or {}
    rules = rules or {}
    views = []
    for i, v in enumerate(verdicts):
        rec = pairs.get(v.pair_id or "")
        views.append(_one(i, v, rec, rec.label if rec is not None else None, rules))
    return views
