"""The plain data every package shares: a judgment's configuration, its result and their parts.

A leaf: it imports no engine, store or calibration code, so the store (which records verdicts), calibration
(which reads them) and the judging engine (which makes them) all depend on it and not on each other.
`cache_key` is here too: the store and the case law compute it for a stored pair without the engine, and so is
`request_key`, which finds a repeated request's verdict before anything is retrieved.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from judge.rules.model import Pair

__all__ = [
    "CheckRecord",
    "CheckResult",
    "CheckWeights",
    "Citation",
    "Distribution",
    "Failure",
    "JudgeConfig",
    "OrderResult",
    "PrecedentRef",
    "TraceEntry",
    "Verdict",
    "Winner",
    "cache_key",
    "compliance",
    "logit",
    "pair_hash",
    "request_key",
]

Winner = Literal["A", "B", "tie"]


class Distribution(BaseModel):
    """A 3-way verdict distribution. Sums to 1."""

    model_config = ConfigDict(frozen=True)

    a: float
    tie: float
    b: float

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        for v in (self.a, self.tie, self.b):
            if not (0.0 <= v <= 1.0) or math.isnan(v):
                raise ValueError(f"probabilities must be in [0, 1], got {self}")
        if abs(self.a + self.tie + self.b - 1.0) > 1e-6:
            raise ValueError(f"probabilities must sum to 1, got {self.a + self.tie + self.b}")
        return self

    @property
    def winner(self) -> Winner:
        """The most probable outcome (ties between outcomes resolve to "tie")."""
        best = max(self.a, self.tie, self.b)
        if self.a == best and self.b < best:
            return "A"
        if self.b == best and self.a < best:
            return "B"
        return "tie"

    @property
    def confidence(self) -> float:
        """Probability of the winner. When A and B are level above the tie mass (two orders that cancel
        exactly, ties off), the winner is "tie" and this is the probability each has, not the tie mass."""
        return max(self.a, self.tie, self.b)

    def p(self, outcome: Winner) -> float:
        """Probability of one outcome."""
        return {"A": self.a, "B": self.b, "tie": self.tie}[outcome]



#: Probabilities are clipped to this distance from 0 and 1 before taking logits (a check is one noisy
#: reading; an exact 0 or 1 would let it outweigh every other signal).
P_CLIP = 0.02



def compliance(p_yes: float, expect: Literal["yes", "no"]) -> float:
    """Probability that the answer is the compliant one, clipped to [P_CLIP, 1 - P_CLIP]."""
    p = p_yes if expect == "yes" else 1.0 - p_yes
    return min(1.0 - P_CLIP, max(P_CLIP, p))


def logit(p: float) -> float:
    """log(p / (1 - p))."""
    return math.log(p / (1.0 - p))


class CheckResult(BaseModel):
    """One check asked of both responses: the answers' P(yes), or why a response's answer failed."""

    model_config = ConfigDict(frozen=True)

    rule_id: str = Field(description="The rule the check belongs to (`holistic` for the rule-free question).")
    question: str
    expect: Literal["yes", "no"]
    target: Literal["response", "process"] = "response"
    p_yes_a: float | None = None
    p_yes_b: float | None = None
    failure: str | None = Field(default=None, description="Why an answer is missing: never guessed.")

    @property
    def answered(self) -> bool:
        """Both responses answered."""
        return self.p_yes_a is not None and self.p_yes_b is not None

    def difference(self) -> float:
        """Compliance logit of A minus that of B (positive: the check favours A); 0 if unanswered."""
        if self.p_yes_a is None or self.p_yes_b is None:
            return 0.0
        return logit(compliance(self.p_yes_a, self.expect)) - logit(compliance(self.p_yes_b, self.expect))

    def gap(self) -> float:
        """Compliance probability of A minus that of B."""
        if self.p_yes_a is None or self.p_yes_b is None:
            return 0.0
        return compliance(self.p_yes_a, self.expect) - compliance(self.p_yes_b, self.expect)



@dataclass(frozen=True)
class CheckRecord:
    """One check asked of one response, as recorded in the check-answer store (answer or failure).

    Attributes:
        cache_key: `check_cache_key` of the request.
        endpoint: where it was asked (base URL, or the embedded backend's name).
        model: the model asked.
        template_version: the checks template version.
        p_yes: P(yes) read from the reply; None when the reply was no answer.
        failure: why the reply was no answer.
        reply: the first token's alternatives and the reply text, as the endpoint gave them.
    """

    cache_key: str
    endpoint: str
    model: str
    template_version: str
    p_yes: float | None
    failure: str | None
    reply: dict[str, Any]


class CheckWeights(BaseModel):
    """How graded checks become a probability: logistic weights (no intercept: swapping A and B negates
    every feature) for the two regimes, and the gap that makes a check decisive.

    ``source`` names the data and command the weights were fitted with ("default" for the prior below).
    """

    model_config = ConfigDict(frozen=True)

    rules: float = Field(default=1.0, description="Weight of the deciding level's mean check difference.")
    holistic_decided: float = Field(default=0.5, description="Weight of the holistic signal when rules decide.")
    lower: float = Field(default=0.5, description="Weight of the other rules' mean difference when none decides.")
    holistic_open: float = Field(default=1.0, description="Weight of the holistic signal when no rule decides.")
    decisive_gap: float = Field(default=0.4, gt=0.0, lt=1.0,
                                description="Compliance-probability gap from which one check decides.")
    source: str = "default"



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

    # Defaults: the embedded judge (kept equal to judge.backends.local_model.DEFAULT_MODEL_NAME and
    # judge.judging.prompts.TEMPLATE_VERSION by a test: this module imports neither)
    backend: str = "local"
    model: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    template_version: str = "rules-v3"
    endpoint: str | None = Field(
        default=None, description="The OpenAI-compatible endpoint's base URL (None for the embedded model): a "
                                  "verdict made by one server is never answered from the cache for another.")
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
    escalate_below: float | None = Field(
        default=None, description="The threshold ``escalated`` was decided with (None: no threshold applied).")
    pair_hash: str | None = Field(
        default=None, description="`pair_hash` of the judged pair, in a results file (None elsewhere).")
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



def pair_hash(pair: Pair) -> str:
    """A short hash of a pair's content (prompt and responses with their processes, not its id): a results file
    keeps it with each verdict, so a resumed run judges again a pair whose text changed under the same id."""
    blob = json.dumps(pair.model_dump(mode="json", exclude={"id"}), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def cache_key(pair: Pair, rulebook_version: str | None, rule_ids: Sequence[str], config: JudgeConfig) -> str:
    """Hash of everything that determines a verdict: the pair (with processes), the rulebook version, the
    rules shown, the backend, its endpoint, model, template and parameters."""
    blob = json.dumps({
        "pair": pair.model_dump(mode="json", exclude={"id"}),
        "rulebook": rulebook_version,
        "rules": list(rule_ids),
        # Without an endpoint (the embedded model) the key stays what it was before endpoints were keyed.
        "config": config.model_dump(mode="json", exclude={"endpoint"} if config.endpoint is None else None),
    }, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


#: Bump when retrieval can return other rules for the same pair, rulebook version, settings and embedder (a
#: changed ranking): every request key changes with it, so no stored answer outlives the retrieval it came from.
REQUEST_KEY_REVISION = 2


def request_key(pair: Pair, rulebook_version: str | None, exclude: Sequence[str], config: JudgeConfig,
                retrieval: dict[str, Any] | None) -> str:
    """Hash of everything that determines what a judge retrieves for a pair and then decides: the pair (with
    processes), the rulebook version (the head of its change log: any change of any rule moves it), the rules
    held out, the retrieval settings and the embedder (``retrieval``: None for a judge without rules), and the
    judge configuration as in `cache_key` (backend, endpoint, model, template, method, orders, parameters).

    `cache_key` needs the rules retrieval shows; this key needs none, so a repeated request is answered from the
    judgment store without embedding the pair or opening the index."""
    blob = json.dumps({
        "revision": REQUEST_KEY_REVISION,
        "pair": pair.model_dump(mode="json", exclude={"id"}),
        "rulebook": rulebook_version,
        "exclude": sorted(set(exclude)),
        "retrieval": retrieval,
        "config": config.model_dump(mode="json", exclude={"endpoint"} if config.endpoint is None else None),
    }, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
