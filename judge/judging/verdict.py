"""What a judgment returns: the structured explanation asked of the model, and the full result.

The explanation's rule ids are validated against the ids that were actually retrieved (passed as the
validation context, the way instructor's citation example checks quotes against their source), so the
model is re-asked with the error when it cites anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from judge.judging.checks import CheckResult
from judge.judging.decide import CheckWeights
from judge.judging.pairwise import Distribution

__all__ = [
    "AppliedRule",
    "Citation",
    "Explanation",
    "Failure",
    "JudgeConfig",
    "OrderResult",
    "TraceEntry",
    "Verdict",
]


def _check_retrieved(value: str, info: ValidationInfo, what: str) -> str:
    """Normalise a cited id and refuse it unless it was retrieved (``retrieved_ids`` in the context)."""
    value = value.strip().strip("[]")
    ids = (info.context or {}).get("retrieved_ids")
    if ids is not None and value not in ids:
        raise ValueError(f"{what} {value!r} is not in the RULEBOOK; use only these ids: {', '.join(sorted(ids))}")
    return value


class AppliedRule(BaseModel):
    """One rule the judge applied, and which response it favours."""

    rule_id: str = Field(description="A rule id exactly as written in the RULEBOOK.")
    favours: Literal["A", "B", "neither"] = Field(description="Which response this rule favours.")
    note: str = Field(max_length=150, description="One short line: how the rule applies to this pair.")

    @field_validator("rule_id")
    @classmethod
    def _cited_rule_was_retrieved(cls, value: str, info: ValidationInfo) -> str:
        return _check_retrieved(value, info, "rule_id")


class Explanation(BaseModel):
    """The judge's structured reasons for its verdict."""

    rules_applied: list[AppliedRule] = Field(min_length=1, max_length=3)
    deciding_rule: str = Field(description="The id of the highest-precedence rule that decided the verdict.")
    confidence: float = Field(ge=0.0, le=1.0, description="Confidence that the verdict is right, 0 to 1.")
    rationale: str = Field(max_length=400, description="One or two sentences.")

    @field_validator("deciding_rule")
    @classmethod
    def _deciding_rule_was_retrieved(cls, value: str, info: ValidationInfo) -> str:
        return _check_retrieved(value, info, "deciding_rule")


class OrderResult(BaseModel):
    """One order's verdict, mapped back to the caller's A/B labels."""

    shown_first: Literal["A", "B"]
    distribution: Distribution
    answer_mass: float = Field(description="Probability the first token put on any answer token.")
    top_logprobs: list[tuple[str, float]]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class Citation(BaseModel):
    """A cited rule resolved to its text, layer and version."""

    rule_id: str
    layer: str
    authority: str | None
    version: int
    title: str
    excerpt: str
    favours: Literal["A", "B", "neither"]
    note: str
    score: float | None = None


class TraceEntry(BaseModel):
    """Between two cited rules that favour different responses: which prevailed and why."""

    winner: str
    loser: str
    criterion: str
    reason: str


class PrecedentRef(BaseModel):
    """The ruling on the same facts that decided a verdict: no model was asked."""

    ruling_id: str
    holding: Literal["A", "B", "tie"] = Field(description="The ruling's holding in this pair's slots.")
    similarity: float = Field(description="Cosine of prompt + responses (1.0 for the same normalised texts).")
    swapped: bool = Field(description="This pair shows the ruling's responses in the other slots.")


class Failure(BaseModel):
    """Why a comparison produced no verdict. A failure is never a score."""

    stage: Literal["input", "retrieval", "verdict", "checks", "explanation", "backend", "budget"]
    reason: str
    raw: str | None = None


class JudgeConfig(BaseModel):
    """Everything about the judge that can change a verdict (part of the cache key)."""

    model_config = ConfigDict(frozen=True)

    backend: str
    model: str
    template_version: str
    both_orders: bool = True
    explain: bool = True
    use_rules: bool = True
    allow_tie: bool = False
    k_spec: int = 3
    k_rulings: int = 2
    n_constitution: int = 2
    max_retries: int = 2
    temperature: float = 0.0
    top_logprobs: int = 10
    bind_precedent: bool = Field(
        default=True, description="An active ruling on a near-duplicate pair decides the verdict (stare decisis).")
    precedent_threshold: float = Field(
        default=0.95, ge=0.0, le=1.0,
        description="Embedding cosine of prompt + responses from which a ruling's pair counts as the same facts.")
    precedent_confidence: float = Field(
        default=0.95, ge=0.5, le=1.0,
        description="Probability a precedent-bound verdict gives the ruling's holding (a prior, not a measurement: "
                    "measure it with `judge eval` on held-out rulings and set it, or leave it to a calibrator).")
    params: dict[str, Any] = Field(default_factory=dict)
    method: Literal["pairwise", "checks"] = Field(
        default="pairwise", description="pairwise: one A-or-B question per order (rules shown in the prompt "
                                        "unless use_rules is False); checks: the retrieved rules' yes/no "
                                        "checks asked of each response alone, combined by precedence.")
    holistic: Literal["none", "pointwise", "pairwise"] = Field(
        default="pointwise", description="With method checks: the rule-free signal beside the rules - none, "
                                         "one general yes/no question per response, or the bare pairwise "
                                         "question in both orders.")
    max_checks: int = Field(default=12, ge=1, le=64, description="Rule checks asked per response, at most.")
    check_weights: CheckWeights = Field(default_factory=CheckWeights,
                                        description="How graded checks become a probability.")


class Verdict(BaseModel):
    """The full result of comparing one pair. JSON-serialisable.

    ``winner`` and ``probabilities`` are None exactly when ``failure`` is set.
    """

    pair_id: str | None
    winner: Literal["A", "B", "tie"] | None
    probabilities: Distribution | None
    orders: list[OrderResult] = Field(default_factory=list)
    position_inconsistent: bool | None = None
    citations: list[Citation] = Field(default_factory=list)
    precedent: PrecedentRef | None = Field(
        default=None, description="Set when an active ruling on a near-duplicate pair decided the verdict.")
    deciding_rule: str | None = None
    rationale: str | None = None
    verbal_confidence: float | None = None
    explanation_agrees: bool | None = Field(
        default=None, description="Whether the deciding rule, as the judge explained it, favours the winner "
                                  "(small models' explanations often contradict their own verdict).")
    precedence_trace: list[TraceEntry] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list,
                                      description="Every rule check asked, with both responses' P(yes).")
    decided_by: Literal["rules", "holistic", "precedent", "model"] | None = Field(
        default=None, description="rules: a decisive rule check; holistic: no rule separated the responses; "
                                  "precedent: a binding ruling; model: the pairwise question.")
    check_features: dict[str, float] = Field(default_factory=dict,
                                             description="The inputs of the check weighting (for fitting it).")
    prefilled_tokens: int | None = Field(default=None, description="Prompt tokens the endpoint actually "
                                                                   "processed (not served from its prompt cache).")
    checks_asked: int = Field(default=0, description="Rule-check requests sent to the backend for this verdict.")
    checks_cached: int = Field(default=0, description="Rule-check answers taken from the check cache (not asked).")
    retrieved: list[dict[str, Any]] = Field(default_factory=list)
    rulebook_version: str | None = None
    config: JudgeConfig
    cache_key: str
    truncated: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    failure: Failure | None = None
    cached: bool = False
    slot_bias: float | None = Field(default=None, description="Slot bias (log-odds) removed, if corrected.")
    raw_probabilities: Distribution | None = Field(
        default=None, description="The judge's own probabilities when a calibrator replaced them.")
    calibrator: str | None = Field(default=None, description="Id of the calibrator applied, if any.")
    escalated: bool = Field(default=False, description="Confidence below the abstention threshold: the verdict "
                                                       "goes to a person; winner is the judge's best guess.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _failure_is_never_a_score(self) -> Verdict:
        if self.failure is not None and (self.winner is not None or self.probabilities is not None):
            raise ValueError("a failed comparison carries no winner or probabilities")
        if self.failure is None and (self.winner is None or self.probabilities is None):
            raise ValueError("a comparison without failure must have a winner and probabilities")
        return self

    @property
    def confidence(self) -> float | None:
        """Probability of the winner."""
        return self.probabilities.confidence if self.probabilities else None


def explanation_model(retrieved_ids: list[str]) -> type[Explanation]:
    """An `Explanation` whose JSON schema lists the retrieved ids as the only allowed rule ids (an enum).

    Endpoints that enforce JSON schemas (llama.cpp's grammar, OpenAI structured outputs) then cannot emit
    any other id; validation still checks every reply against the ids in the validation context, with a
    message the model can act on when it is re-asked.
    """
    from pydantic import create_model

    if not retrieved_ids:
        return Explanation
    enum: dict[str, Any] = {"enum": list(retrieved_ids)}
    applied = create_model("AppliedRule", __base__=AppliedRule, rule_id=(str, Field(
        description="A rule id from the RULEBOOK.", json_schema_extra=enum)))
    return create_model(
        "Explanation", __base__=Explanation,
        rules_applied=(list[applied], Field(min_length=1, max_length=3)),
        deciding_rule=(str, Field(description="The highest-precedence rule that decided the verdict.",
                                  json_schema_extra=enum)))
