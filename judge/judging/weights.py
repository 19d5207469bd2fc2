"""Fitting the check weighting from labelled verdicts, validating it on held-out sources, and the fitted
weightings that ship with the package.

Pure (SciPy for the fit): stored check answers plus the rules they belong to in, weights out. The weighting
is a logistic model without intercept (swapping A and B negates every feature) over two regimes: pairs a
rule level decided (the level's check difference and the holistic signal) and pairs no rule separated (the
other rules' difference and the holistic signal). Weights are never negative: the direction of a rule is the
rulebook's, the fit only sets how much it is trusted. Response length is never an input.

The fit is pulled toward the prior weights (`CheckWeights()`), with a strength chosen by leave-one-source-out
validation: with few labelled pairs, or pairs that disagree across sources, the weighting stays near the
prior. A fitted weighting is stored with the judge configuration it belongs to (`weights_key`), like a
calibrator, and `shipped_weights` finds the one that ships for a configuration.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from judge.jsonl import read_json_model
from judge.judging.decide import Decision, decide, p_a_from_features
from judge.rules.model import Rule
from judge.verdicts import CheckResult, CheckWeights, JudgeConfig

__all__ = [
    "STRENGTHS",
    "WEIGHTS_KEY_FIELDS",
    "FittedWeights",
    "Labelled",
    "SourceScore",
    "choose_strength",
    "fit_check_weights",
    "fit_weights",
    "load_weights",
    "redecide",
    "score",
    "shipped_weights",
    "validate_by_source",
    "weights_key",
    "with_shipped_weights",
]

#: The parts of a judge configuration a weighting belongs to (what produces the check answers and features).
WEIGHTS_KEY_FIELDS = ("backend", "model", "template_version", "method", "holistic", "use_rules", "k_spec",
                      "k_rulings", "n_constitution", "max_checks", "temperature", "top_logprobs", "params")
#: Strengths of the pull toward the prior tried by leave-one-source-out (the penalty is strength/2 times the
#: squared distance to the prior, against the summed log loss of the pairs); ``inf`` is the prior itself.
STRENGTHS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, math.inf)
_NAMES = ("rules", "holistic_decided", "lower", "holistic_open")


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


def _design(rows: Sequence[Labelled]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One column per weight: a decided pair fills the first two, an open pair the last two."""
    x = np.zeros((len(rows), 4))
    for i, r in enumerate(rows):
        f = r.features
        if f.get("decisive", 0.0) > 0:
            x[i, 0], x[i, 1] = f.get("rules", 0.0), f.get("holistic", 0.0)
        else:
            x[i, 2], x[i, 3] = f.get("lower", 0.0), f.get("holistic", 0.0)
    return x, np.array([1.0 if r.a_wins else 0.0 for r in rows])


def _vector(weights: CheckWeights) -> NDArray[np.float64]:
    return np.array([getattr(weights, n) for n in _NAMES], dtype=float)


def fit_check_weights(rows: Sequence[Labelled], *, prior: CheckWeights | None = None, strength: float = 1.0,
                      source: str = "fitted") -> CheckWeights:
    """Weights fitted on labelled pairs (ties excluded by the caller), pulled toward ``prior``.

    Minimises the summed log loss plus ``strength``/2 times the squared distance to the prior, with every
    weight kept >= 0. A weight no row informs (a regime without pairs) stays at the prior; ``strength=inf``
    returns the prior. The fit is a linear logistic model; `decide` additionally never lets the holistic
    signal flip a rule-decided verdict (see `p_a_from_features`).
    """
    prior = prior or CheckWeights()
    w0 = _vector(prior)
    if math.isinf(strength) or not rows:
        return prior.model_copy(update={"source": source})
    if strength <= 0:
        raise ValueError(f"strength must be > 0, got {strength}")
    x, y = _design(rows)

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = x @ w
        # log(1 + e^z) - y z, stably
        value = float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * strength * float(np.sum((w - w0) ** 2))
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))
        grad = x.T @ (p - y) + strength * (w - w0)
        return value, grad

    from scipy.optimize import minimize  # fitting only: a judge applying shipped weights never loads scipy

    found = minimize(loss, w0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * 4)
    fitted = {n: float(v) for n, v in zip(_NAMES, found.x, strict=True)}
    return prior.model_copy(update={**fitted, "source": source})


class SourceScore(BaseModel):
    """How a weighting does on one source's labelled pairs."""

    model_config = ConfigDict(frozen=True)

    n: int
    accuracy: float
    auroc: float | None = Field(description="AUROC of the confidence for being right (None when undefined).")
    log_loss: float


def score(rows: Sequence[Labelled], weights: CheckWeights) -> SourceScore:
    """Accuracy, AUROC of confidence and log loss of ``weights`` on labelled pairs (a 0.5 call counts wrong)."""
    from judge.calibration.metrics import auroc

    p = np.array([p_a_from_features(r.features, weights) for r in rows])
    y = np.array([r.a_wins for r in rows])
    correct = ((p > 0.5) == y) & (p != 0.5)
    conf = np.maximum(p, 1.0 - p)
    pc = np.clip(np.where(y, p, 1.0 - p), 1e-6, 1.0)
    value = auroc(conf, correct) if 0 < correct.sum() < len(rows) else math.nan
    return SourceScore(n=len(rows), accuracy=float(correct.mean()) if len(rows) else math.nan,
                       auroc=None if math.isnan(value) else round(float(value), 6),
                       log_loss=float(-np.log(pc).mean()) if len(rows) else math.nan)


def choose_strength(by_source: Mapping[str, Sequence[Labelled]], prior: CheckWeights,
                    strengths: Sequence[float] = STRENGTHS) -> tuple[float, dict[str, dict[str, float]]]:
    """The pull toward the prior whose weighting, fitted without each source in turn, does best on the source
    left out - judged by the worst left-out source's log loss (the weighting must hold on data it was not
    fitted on); a tie goes to the stronger pull. With fewer than two sources the prior is kept.

    Returns:
        (strength, {strength: {left-out source: log loss}}).
    """
    trials: dict[str, dict[str, float]] = {}
    if sum(1 for rows in by_source.values() if rows) < 2:
        return math.inf, trials
    best, best_worst = math.inf, math.inf
    for strength in sorted(strengths, reverse=True):
        losses = {}
        for held in by_source:
            train = [r for s, rows in by_source.items() if s != held for r in rows]
            if by_source[held]:
                fitted = fit_check_weights(train, prior=prior, strength=strength)
                losses[held] = round(score(by_source[held], fitted).log_loss, 6)
        trials[str(strength)] = losses
        worst = max(losses.values())
        if worst < best_worst - 1e-9:
            best, best_worst = strength, worst
    return best, trials


def validate_by_source(by_source: Mapping[str, Sequence[Labelled]], prior: CheckWeights,
                       strengths: Sequence[float] = STRENGTHS) -> dict[str, dict[str, Any]]:
    """Leave-one-source-out validation of the whole fitting procedure: for each source, the strength is chosen
    (by `choose_strength`) and the weights fitted on the other sources only, then both the prior and the
    fitted weighting are scored on the source left out.

    Returns:
        {source: {"prior": SourceScore, "fitted": SourceScore, "strength": float, "weights": CheckWeights}}.
    """
    out: dict[str, dict[str, Any]] = {}
    for held, rows in by_source.items():
        others = {s: r for s, r in by_source.items() if s != held}
        strength, _ = choose_strength(others, prior, strengths)
        fitted = fit_check_weights([r for rs in others.values() for r in rs], prior=prior, strength=strength)
        out[held] = {"prior": score(rows, prior), "fitted": score(rows, fitted), "strength": strength,
                     "weights": fitted}
    return out


def weights_key(config: JudgeConfig) -> dict[str, Any]:
    """The parts of a judge configuration a weighting belongs to."""
    dumped = config.model_dump(mode="json")
    return {k: dumped[k] for k in WEIGHTS_KEY_FIELDS}


class FittedWeights(BaseModel):
    """A check weighting fitted on labelled pairs, with the judge configuration it belongs to and how it was
    validated (leave one source out)."""

    model_config = ConfigDict(frozen=True)

    format: Literal["judge-check-weights/1"] = "judge-check-weights/1"
    judge: dict[str, Any] = Field(description="The judge configuration it belongs to (see weights_key).")
    rulebook_version: str | None = Field(default=None, description="The rulebook the verdicts were judged under.")
    weights: CheckWeights
    prior: CheckWeights
    strength: float | None = Field(description="Pull toward the prior (None: infinite, the prior itself).")
    strength_trials: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Left-out log loss per strength tried and source left out.")
    sources: dict[str, int] = Field(description="Labelled pairs fitted on, per source.")
    validation: dict[str, dict[str, SourceScore]] = Field(
        default_factory=dict, description="Per left-out source: the prior's and the fitted weighting's scores, "
                                          "the fitted one chosen and fitted without that source.")
    command: str = Field(description="The command that wrote it.")

    @property
    def id(self) -> str:
        """Content hash of the weighting and what it belongs to."""
        blob = json.dumps({"judge": self.judge, "weights": self.weights.model_dump(mode="json")}, sort_keys=True)
        return "cw-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]

    def matches(self, config: JudgeConfig) -> bool:
        """Whether it belongs to ``config``."""
        return self.judge == weights_key(config)


def fit_weights(by_source: Mapping[str, Sequence[Labelled]], *, judge: Mapping[str, Any], command: str,
                prior: CheckWeights | None = None, rulebook_version: str | None = None,
                strengths: Sequence[float] = STRENGTHS) -> FittedWeights:
    """Fit the weighting on every source, the strength chosen by leave-one-source-out, and validate the
    procedure on each source left out (`validate_by_source`)."""
    prior = prior or CheckWeights()
    strength, trials = choose_strength(by_source, prior, strengths)
    every = [r for rows in by_source.values() for r in rows]
    name = f"fitted on {', '.join(f'{s} {len(r)}' for s, r in by_source.items())} (pull {strength:g})"
    weights = fit_check_weights(every, prior=prior, strength=strength, source=name)
    checked = validate_by_source(by_source, prior, strengths)
    return FittedWeights(judge=dict(judge), rulebook_version=rulebook_version, weights=weights, prior=prior,
                         strength=None if math.isinf(strength) else strength, strength_trials=trials,
                         sources={s: len(r) for s, r in by_source.items()},
                         validation={s: {"prior": v["prior"], "fitted": v["fitted"]} for s, v in checked.items()},
                         command=command)


def load_weights(path: str | Path) -> FittedWeights:
    """Read a fitted weighting file.

    Raises:
        InputError: the file is missing or is not a fitted weighting.
    """
    return read_json_model(path, FittedWeights, "the check weights", "a check weighting")


def shipped_weights(config: JudgeConfig) -> FittedWeights | None:
    """The fitted weighting that ships with the package for ``config`` (judge/judging/check_weights/), if any."""
    folder = resources.files("judge.judging").joinpath("check_weights")
    if not folder.is_dir():
        return None
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        if item.name.endswith(".json"):
            fitted = FittedWeights.model_validate_json(item.read_text(encoding="utf-8"))
            if fitted.matches(config):
                return fitted
    return None


def with_shipped_weights(config: JudgeConfig) -> JudgeConfig:
    """``config`` with the shipped fitted weighting for it, when it uses the rule-checks method and one ships
    for its configuration; otherwise ``config`` unchanged."""
    if config.method != "checks":
        return config
    fitted = shipped_weights(config)
    if fitted is None or _same_values(fitted.weights, config.check_weights):
        # a fit that validated no better than the prior ships as the prior: the configuration (and with it
        # every cache key and results file made under it) stays what it was
        return config
    return config.model_copy(update={"check_weights": fitted.weights})


def _same_values(a: CheckWeights, b: CheckWeights) -> bool:
    return a.model_dump(exclude={"source"}) == b.model_dump(exclude={"source"})
