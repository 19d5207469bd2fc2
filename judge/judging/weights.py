"""Fitting the check weighting from labelled verdicts, and re-deciding stored verdicts under other weights.

Pure (scikit-learn for the fit): stored check answers plus the rules they belong to in, weights out. The
weighting is two logistic regressions without intercept (swapping A and B negates every feature): one for
pairs a rule level decided (the level's check difference and the holistic signal), one for pairs no rule
separated (the other rules' difference and the holistic signal). Weights are never negative: the direction
of a rule is the rulebook's, the fit only sets how much it is trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.linear_model import LogisticRegression

from judge.judging.decide import Decision, decide
from judge.rules.model import Rule
from judge.verdicts import CheckResult, CheckWeights

__all__ = ["Labelled", "fit_check_weights", "redecide"]

#: Fewer labelled pairs than this in a regime keep that regime's prior weights.
MIN_ROWS = 12


@dataclass(frozen=True)
class Labelled:
    """One labelled pair's weighting inputs: the decision's features and whether A is the better response."""

    features: Mapping[str, float]
    a_wins: bool


def redecide(checks: Sequence[CheckResult], rules: Mapping[str, Rule], weights: CheckWeights, *,
             holistic: Literal["none", "pointwise", "pairwise"] = "pointwise",
             pairwise_signal: float | None = None) -> Decision:
    """The decision stored check answers give under ``weights`` and another holistic signal.

    Args:
        checks: a verdict's check answers.
        rules: rule id -> rule, for every rule the checks belong to (unknown ids are skipped).
        weights: the weighting to apply.
        holistic: drop the pointwise holistic answer (``none``), keep it, or replace it with ``pairwise_signal``.
        pairwise_signal: log-odds of A from the bare pairwise question (``holistic="pairwise"``).
    """
    if holistic == "pairwise" and pairwise_signal is None:
        raise ValueError("holistic='pairwise' needs pairwise_signal")
    # decide() reads the pointwise answer when no signal is given, and ignores it when one is
    signal = {"pointwise": None, "none": 0.0, "pairwise": pairwise_signal}[holistic]
    graded = {c.rule_id: rules[c.rule_id] for c in checks if c.rule_id in rules}
    return decide(list(graded.values()), checks, weights, holistic=signal)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    if len(y) < MIN_ROWS or len(set(y.tolist())) < 2:
        return None
    # mirrored copies: the fit must not learn a preference for either slot
    model = LogisticRegression(fit_intercept=False, C=1.0)
    model.fit(np.vstack([x, -x]), np.concatenate([y, 1 - y]))
    w = np.clip(model.coef_[0], 0.0, None)
    return float(w[0]), float(w[1])


def fit_check_weights(rows: Sequence[Labelled], *, prior: CheckWeights | None = None,
                      source: str = "fitted") -> CheckWeights:
    """Weights fitted on labelled pairs (ties excluded by the caller); a regime with too few pairs keeps
    the prior's weights."""
    prior = prior or CheckWeights()
    decided = [r for r in rows if r.features.get("decisive", 0.0) > 0]
    open_ = [r for r in rows if r.features.get("decisive", 0.0) <= 0]
    fitted = prior.model_dump()
    d = _fit(np.array([[r.features["rules"], r.features["holistic"]] for r in decided]).reshape(-1, 2),
             np.array([int(r.a_wins) for r in decided]))
    if d is not None:
        fitted["rules"], fitted["holistic_decided"] = d
    o = _fit(np.array([[r.features["lower"], r.features["holistic"]] for r in open_]).reshape(-1, 2),
             np.array([int(r.a_wins) for r in open_]))
    if o is not None:
        fitted["lower"], fitted["holistic_open"] = o
    fitted["source"] = source
    return CheckWeights.model_validate(fitted)
