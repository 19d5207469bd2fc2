"""Post-hoc recalibration of verdict probabilities: fit, choose by cross-validated log loss, cross-fit, apply.

Methods (each maps a verdict's signals to P(A wins | not a tie)):

* ``none``        - the judge's own probability.
* ``temperature`` - ``sigmoid(logit / T)``: one scale for the whole log-odds.
* ``platt``       - top-label Platt scaling: ``P(winner is right) = sigmoid(a * logit(confidence) + b)``.
* ``isotonic``    - top-label isotonic regression of correctness on confidence (monotone, step-wise).
* ``logistic``    - a small multi-signal logistic model without intercept over A-oriented features
                    (:data:`~judge.calibration.signals.FEATURES`), so that it treats the two slots alike:
                    swapping A and B gives exactly ``1 - P(A)``. Its features are ``logit`` plus each candidate
                    that lowers the left-out log loss on *every* source (`select_features`; random folds stand
                    in for sources when the data has one); ``length`` only when asked for by name.

``auto`` chooses the method by cross-validated log loss; when the labelled rows come from several sources
(``groups``) it chooses by the *worst* left-out source's log loss instead (`select_method`), because a
calibrator is used on pairs from a source it has not seen.

Top-label methods keep the judge's binary winner and re-state its probability; when the fitted probability of
the winner drops below 0.5 the calibrated distribution names the other response. Ties: calibrators are fitted
on pairs whose label is not a tie; a verdict's tie mass is kept and A/B share the rest. A judge that never says
tie gets a tie probability from the labels: with enough tie labels (`fit_ties`), a logistic curve in the
calibrated verdict's closeness ``|logit P(A | not tie)|`` (tie labels gather where the judge is torn), else the
overall tie rate.

Pure functions: signal tables and labels in, numbers out; seeds are explicit. Fitting uses scikit-learn and
scipy. A fitted :class:`Calibrator` is a JSON document naming the judge configuration it belongs to; this module
holds it and re-exports the methods (:mod:`judge.calibration.methods`), their choice
(:mod:`judge.calibration.selection`) and cross-fitting (:mod:`judge.calibration.crossfit`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from judge.calibration.crossfit import CrossFit, abstention_threshold, cross_fit, cross_fit_abstention, fit_folds
from judge.calibration.methods import METHODS, Method, check_params, distributions, fit, fit_ties, predict
from judge.calibration.selection import left_out_losses, select_features, select_method
from judge.calibration.shift import ReferenceSample, reference_from_table
from judge.calibration.signals import SignalTable
from judge.errors import CalibratorMismatchError, ConfigError
from judge.jsonl import read_json_model
from judge.verdicts import JudgeConfig

__all__ = [
    "CALIBRATOR_FORMAT",
    "ESCALATE_ALL",
    "METHODS",
    "Calibrator",
    "CrossFit",
    "abstention_threshold",
    "calibration_key",
    "check_compatible",
    "cross_fit",
    "cross_fit_abstention",
    "distributions",
    "fit",
    "fit_calibrator",
    "fit_folds",
    "fit_ties",
    "left_out_losses",
    "load_calibrator",
    "predict",
    "select_features",
    "select_method",
]

CALIBRATOR_FORMAT = "judge-calibrator/1"
#: The escalation threshold that escalates every verdict (above any confidence): what ``--abstain`` applies when no
#: threshold certifies the target agreement.
ESCALATE_ALL = 1.01
#: JudgeConfig fields that change a verdict's probabilities (``explain`` and retries do not).
KEY_FIELDS = ("backend", "model", "template_version", "both_orders", "use_rules", "allow_tie", "k_spec",
              "k_rulings", "n_constitution", "temperature", "params")
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- the artefact


def calibration_key(config: JudgeConfig) -> dict[str, Any]:
    """The parts of a judge configuration a calibrator belongs to."""
    dumped = config.model_dump(mode="json")
    return {k: dumped[k] for k in KEY_FIELDS}


class Calibrator(BaseModel):
    """A fitted calibrator, versioned with the judge configuration and rulebook version it was fitted for."""

    model_config = ConfigDict(frozen=True)

    format: Literal["judge-calibrator/1"] = "judge-calibrator/1"
    method: Method
    params: dict[str, Any] = Field(default_factory=dict)
    judge: dict[str, Any] = Field(description="The judge configuration it belongs to (see calibration_key).")
    rulebook_version: str | None = None
    n_fitted: int
    tie_rate: float = Field(0.0, ge=0.0, lt=1.0, description="Share of tie labels in the fitting data.")
    tie_model: tuple[float, float] | None = Field(
        None, description="(c0, c1): P(tie) = sigmoid(c0 + c1 * |logit P(A | not tie)|) for a judge that never "
                          "says tie (see fit_ties); None: the constant tie_rate.")
    cv_log_loss: dict[str, float] = Field(default_factory=dict)
    n_folds: int = 5
    seed: int = 0
    abstain: dict[str, Any] | None = Field(
        default=None, description="Abstention threshold on calibrated confidence with its guarantee: threshold "
                                  "(None when no threshold reached the target), target, delta, certified, ...")
    selection: str = Field("cross-validation", description="How the method was chosen: 'cross-validation' "
                                                           "(pooled k-fold) or 'worst left-out source'.")
    sources: dict[str, int] = Field(default_factory=dict, description="Fitting rows per source.")
    feature_trials: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Logistic feature sets tried (select_features): left-out log loss per "
                                          "source (or fold).")
    source_validation: list[dict[str, Any]] = Field(
        default_factory=list, description="Left-out-source figures of this fitting procedure, one row per source "
                                          "(see judge.calibration.sources).")
    reference: ReferenceSample | None = Field(
        None, description="A sample of the calibration data's inputs for the shift alarm (judge.calibration.shift); "
                          "None in calibrators fitted before it existed.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _check(self) -> Calibrator:
        check_params(self.method, self.params)
        if self.abstain is not None:  # a NaN bound is saved as null: hold it so, and the id stays what it was
            object.__setattr__(self, "abstain", {k: None if isinstance(v, float) and not math.isfinite(v) else v
                                                 for k, v in self.abstain.items()})
        return self

    @property
    def id(self) -> str:
        """A content hash of the method, parameters, judge key and abstention threshold (stable across saves)."""
        fields: dict[str, Any] = {"method": self.method, "params": self.params, "judge": self.judge,
                                  "rulebook_version": self.rulebook_version, "tie_rate": self.tie_rate}
        if self.tie_model is not None:  # absent from calibrators fitted before it existed: their ids stay
            fields["tie_model"] = list(self.tie_model)
        if self.abstain is not None:  # two thresholds on one fit are two calibrators (ids without one stay)
            fields["abstain"] = self.abstain
        body = json.dumps(fields, sort_keys=True, default=str)
        return "cal-" + hashlib.sha256(body.encode()).hexdigest()[:12]

    def predict_p_a(self, t: SignalTable) -> NDArray[np.float64]:
        """Calibrated P(A wins | not a tie) for every row."""
        return predict(self.method, self.params, t)

    def abstain_threshold(self) -> float:
        """The certified abstention threshold; `ESCALATE_ALL` (escalate everything) when none reached the target.

        Raises:
            ConfigError: when the calibrator was fitted without an abstention target.
        """
        if not self.abstain:
            raise ConfigError(f"calibrator {self.id} has no abstention threshold (fit it with a --target)")
        if not self.abstain.get("certified"):
            log.warning("calibrator %s: no threshold certifies agreement >= %s; every verdict is escalated",
                        self.id, self.abstain.get("target"))
            return ESCALATE_ALL
        return float(self.abstain["threshold"])

    def predict(self, t: SignalTable) -> NDArray[np.float64]:
        """Calibrated rows (P(A), P(tie), P(B)) for every row."""
        return distributions(self.predict_p_a(t), t.tie, self.tie_rate, self.tie_model)

    def tie_probability(self, p_a: float) -> float:
        """P(tie) this calibrator gives a judge that never says tie, at calibrated P(A | not tie) ``p_a``."""
        return float(distributions(np.asarray([p_a]), np.zeros(1), self.tie_rate, self.tie_model)[0, 1])


def fit_calibrator(t: SignalTable, labels: Sequence[str], config: JudgeConfig, *,
                   rulebook_version: str | None = None, method: str = "auto", n_folds: int = 5,
                   seed: int = 0, groups: Sequence[str] | None = None,
                   features: Sequence[str] | None = None) -> Calibrator:
    """Choose a method (or take ``method``) and fit it on every labelled row.

    Args:
        t, labels: The calibration rows' signals and labels.
        config: The judge configuration the rows were judged with.
        rulebook_version: The rulebook version they were judged under, if one.
        method: ``auto`` or a method name.
        n_folds, seed: Folds for the pooled cross-validation (and for feature choice on one source).
        groups: Each row's source. With two or more, ``auto`` chooses by the worst left-out source and a
            logistic feature must help on every left-out source.
        features: The logistic features by name (used as given; ``length`` only this way); default: chosen by
            `select_features`.
    """
    lab = list(labels)
    trials: dict[str, dict[str, float]] = {}
    if features is None:
        features, trials = select_features(t, lab, groups, n_folds=n_folds, seed=seed)
    chosen, losses = select_method(t, lab, n_folds=n_folds, seed=seed, groups=groups, features=features)
    by_source = groups is not None and len(set(groups)) >= 2
    if method != "auto":
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; known: auto, {', '.join(METHODS)}")
        chosen = method
    params = fit(chosen, t, lab, features=features)
    return Calibrator(method=cast(Method, chosen), params=params, judge=calibration_key(config),
                      rulebook_version=rulebook_version, n_fitted=len(lab),
                      tie_rate=sum(x == "tie" for x in lab) / len(lab),
                      tie_model=fit_ties(predict(chosen, params, t), t.tie, lab),
                      cv_log_loss={k: round(v, 6) for k, v in losses.items()}, n_folds=n_folds, seed=seed,
                      selection="worst left-out source" if by_source else "cross-validation",
                      sources=dict(Counter(groups)) if groups is not None else {},
                      feature_trials={k: {g: round(x, 6) for g, x in v.items()} for k, v in trials.items()},
                      reference=reference_from_table(t, seed=seed))


def check_compatible(cal: Calibrator, config: JudgeConfig, rulebook_version: str | None, *,
                     allow_rulebook_change: bool = False) -> None:
    """Refuse a calibrator fitted for another judge configuration (or rulebook version, unless allowed).

    Raises:
        CalibratorMismatchError: naming every field that differs.
    """
    key = calibration_key(config)
    diffs = [f"{k}: calibrator {cal.judge.get(k)!r} != judge {key[k]!r}" for k in KEY_FIELDS
             if cal.judge.get(k) != key[k]]
    if not allow_rulebook_change and cal.rulebook_version is not None and rulebook_version is not None \
            and cal.rulebook_version != rulebook_version:
        diffs.append(f"rulebook_version: calibrator {cal.rulebook_version} != judge {rulebook_version} "
                     "(refit, or accept the change with --allow-rulebook-change; allow_rulebook_change=True in "
                     "Python)")
    if diffs:
        raise CalibratorMismatchError(f"calibrator {cal.id} was fitted for another judge configuration: "
                                      + "; ".join(diffs))


def load_calibrator(path: str | Path) -> Calibrator:
    """Read a calibrator JSON file.

    Raises:
        InputError: when the file is missing or is not a calibrator.
    """
    return read_json_model(path, Calibrator, "the calibrator", "a judge calibrator")
