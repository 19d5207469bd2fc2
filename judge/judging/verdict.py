"""The structured explanation a judgment asks of the model (the full result lives in `judge.verdicts`).

The explanation's rule ids are validated against the ids that were actually retrieved (passed as the
validation context, the way instructor's citation example checks quotes against their source), so the
model is re-asked with the error when it cites anything else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

# Re-exported: the result types lived here before they moved to the leaf module.
from judge.verdicts import (
    CheckResult,
    CheckWeights,
    Citation,
    Distribution,
    Failure,
    JudgeConfig,
    OrderResult,
    PrecedentRef,
    TraceEntry,
    Verdict,
)

__all__ = [
    "AppliedRule",
    "CheckResult",
    "CheckWeights",
    "Citation",
    "Distribution",
    "Explanation",
    "Failure",
    "JudgeConfig",
    "OrderResult",
    "PrecedentRef",
    "TraceEntry",
    "Verdict",
    "explanation_model",
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
