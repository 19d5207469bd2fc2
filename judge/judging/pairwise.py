"""Both orders: read a verdict distribution from token logprobs, map the swapped order back, combine.

Pure functions on plain values. A distribution is P(A), P(tie), P(B) over the *original* A/B labels.

The embedded 1.5B judge prefers whatever sits in slot A on most pairs, so one order alone is little better
than chance; averaging the two orders' probabilities cancels most of the slot bias. Disagreement between
orders is kept as a flag and a calibration signal, never turned into a tie by itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "Combined",
    "Distribution",
    "VerdictTokenError",
    "combine",
    "correct_slot_bias",
    "distribution_from_top_logprobs",
    "slot_bias",
    "swap",
]

Winner = Literal["A", "B", "tie"]

#: Tokens that count as each answer when reading the first generated token's top logprobs.
ANSWER_TOKENS: Mapping[Winner, tuple[str, ...]] = {
    "A": ("A",),
    "B": ("B",),
    "tie": ("T", "TIE", "Tie", "tie"),
}


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


class VerdictTokenError(ValueError):
    """The first generated token carries no probability mass on any answer token."""


def _normalise_token(token: str) -> str:
    return token.strip().strip("*\"'`.:()[]").strip()


def distribution_from_top_logprobs(top: Sequence[tuple[str, float]], *, allow_tie: bool = True,
                                   min_mass: float = 0.5) -> tuple[Distribution, float]:
    """Turn the first token's top logprobs into P(A), P(tie), P(B).

    Args:
        top: (token, logprob) pairs for the first generated token.
        allow_tie: whether "T"/"tie" counts as an answer.
        min_mass: the answer tokens must carry at least this much probability, else the reply is not a
            verdict (`VerdictTokenError`) - a reply that does not parse is never a score.

    Returns:
        The renormalised distribution and the raw mass the answer tokens carried.
    """
    mass: dict[Winner, float] = {"A": 0.0, "tie": 0.0, "B": 0.0}
    for token, logprob in top:
        norm = _normalise_token(token)
        for outcome, spellings in ANSWER_TOKENS.items():
            if outcome == "tie" and not allow_tie:
                continue
            if norm in spellings:
                mass[outcome] += math.exp(logprob)
                break
    total = sum(mass.values())
    if total < min_mass:
        seen = ", ".join(f"{t!r}:{math.exp(lp):.2f}" for t, lp in list(top)[:5]) or "nothing"
        raise VerdictTokenError(f"answer tokens carry {total:.2f} of the probability (< {min_mass}); "
                                f"top tokens: {seen}")
    return Distribution(a=mass["A"] / total, tie=mass["tie"] / total, b=mass["B"] / total), total


def swap(dist: Distribution) -> Distribution:
    """Map a distribution from the swapped order (B shown first) back to the original labels."""
    return Distribution(a=dist.b, tie=dist.tie, b=dist.a)


@dataclass(frozen=True)
class Combined:
    """Both orders combined."""

    distribution: Distribution
    position_inconsistent: bool


def combine(original: Distribution, swapped_back: Distribution) -> Combined:
    """Average the two orders (the swapped one already mapped back) and flag disagreement."""
    avg = Distribution(a=(original.a + swapped_back.a) / 2, tie=(original.tie + swapped_back.tie) / 2,
                       b=(original.b + swapped_back.b) / 2)
    return Combined(avg, original.winner != swapped_back.winner)


def slot_bias(first_slot_probs: Sequence[float]) -> float:
    """The judge's mean preference for the first slot, in log-odds, estimated without labels.

    Args:
        first_slot_probs: for each judged order, P(first-shown response wins) / (P(first) + P(second)).
            Over a batch judged in both orders every response sits in each slot equally often, so an
            unbiased judge averages 0 log-odds.
    """
    if not first_slot_probs:
        return 0.0
    eps = 1e-6
    logits = [math.log(max(p, eps) / max(1 - p, eps)) for p in first_slot_probs]
    return sum(logits) / len(logits)


def correct_slot_bias(dist: Distribution, bias: float, *, shown_first: Literal["A", "B"]) -> Distribution:
    """Subtract a slot bias (log-odds, from `slot_bias`) from one order's distribution.

    The tie mass is kept; only the split between the two responses is shifted.
    """
    first, second = (dist.a, dist.b) if shown_first == "A" else (dist.b, dist.a)
    decisive = first + second
    if decisive <= 0:
        return dist
    eps = 1e-9
    logit = math.log(max(first, eps) / max(second, eps)) - bias
    p_first = decisive / (1 + math.exp(-logit))
    p_second = decisive - p_first
    if shown_first == "A":
        return Distribution(a=p_first, tie=dist.tie, b=p_second)
    return Distribution(a=p_second, tie=dist.tie, b=p_first)
