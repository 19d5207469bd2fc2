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
scipy. A fitted :class:`Calibrator` is a JSON document naming the judge configuration it belongs to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from judge.calibration.selective import SelectiveResult, Threshold, choose_threshold
from judge.calibration.shift import ReferenceSample, reference_from_table
from judge.calibration.signals import CANDIDATE_FEATURES, FEATURES, SignalTable, feature_matrix
from judge.errors import CalibratorMismatchError, ConfigError
from judge.jsonl import read_json_model
from judge.verdicts import JudgeConfig

__all__ = [
    "CALIBRATOR_FORMAT",
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
    "load_calibrator",
    "predict",
    "select_features",
    "select_method",
]

Method = Literal["none", "temperature", "platt", "isotonic", "logistic"]
METHODS: tuple[Method, ...] = ("none", "temperature", "platt", "isotonic", "logistic")
CALIBRATOR_FORMAT = "judge-calibrator/1"
#: JudgeConfig fields that change a verdict's probabilities (``explain`` and retries do not).
KEY_FIELDS = ("backend", "model", "template_version", "both_orders", "use_rules", "allow_tie", "k_spec",
              "k_rulings", "n_constitution", "temperature", "params")
log = logging.getLogger(__name__)
_EPS = 1e-6
_MIN_ROWS = 10
_MIN_TIES = 10  # tie labels (and as many non-ties) needed before the tie probability may depend on closeness


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -35.0, 35.0)))


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def _row_nll(p: NDArray[np.float64], y: NDArray[np.int_]) -> NDArray[np.float64]:
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1.0 - p)), dtype=np.float64)


def _nll(p: NDArray[np.float64], y: NDArray[np.int_]) -> float:
    return float(_row_nll(p, y).mean())


#: The logistic features of calibrators fitted before features were chosen per calibrator.
LEGACY_FEATURES: tuple[str, ...] = ("logit", "logit*agree", "length", "logit*retrieval", "verbal")
#: The logistic features tried when none are chosen: ``logit`` and every default candidate (never ``length``).
DEFAULT_FEATURES: tuple[str, ...] = ("logit", *CANDIDATE_FEATURES)


def _top_label(t: SignalTable) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(confidence of the binary winner, +1 when the winner is A / -1 when B / 0 when exactly even)."""
    return t.raw_confidence, np.sign(t.raw_p_a - 0.5)


def _from_top_label(q: NDArray[np.float64], sign: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.where(sign > 0, q, np.where(sign < 0, 1.0 - q, 0.5))


# --------------------------------------------------------------------------------------------- fitting


def _fit_temperature(t: SignalTable, y: NDArray[np.int_], features: Sequence[str] = ()) -> dict[str, Any]:
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda log_t: _nll(_sigmoid(t.logit / math.exp(log_t)), y), bounds=(-5.0, 5.0),
                          method="bounded")
    return {"temperature": float(math.exp(res.x))}


def _fit_platt(t: SignalTable, y: NDArray[np.int_], features: Sequence[str] = ()) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    conf, sign = _top_label(t)
    keep = sign != 0
    if not keep.any():
        raise ValueError("calibration: every verdict gives exactly 0.5; a top-label method has nothing to fit")
    correct = ((sign > 0) == (y == 1))[keep].astype(int)
    x = _logit(conf[keep]).reshape(-1, 1)
    if correct.min() == correct.max():  # always right (or always wrong): a constant probability
        rate = float(np.clip(correct.mean(), 0.01, 0.99))
        return {"a": 0.0, "b": float(math.log(rate / (1 - rate)))}
    model = LogisticRegression(C=1e4).fit(x, correct)
    return {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])}


def _fit_isotonic(t: SignalTable, y: NDArray[np.int_], features: Sequence[str] = ()) -> dict[str, Any]:
    from sklearn.isotonic import IsotonicRegression

    conf, sign = _top_label(t)
    keep = sign != 0
    if not keep.any():
        raise ValueError("calibration: every verdict gives exactly 0.5; a top-label method has nothing to fit")
    correct = ((sign > 0) == (y == 1))[keep].astype(float)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(conf[keep], correct)
    # isotonic steps reach 0 and 1 on small data; keep a Laplace margin so one surprise is not infinitely costly
    margin = 1.0 / (int(keep.sum()) + 2)
    return {"x": [float(v) for v in iso.X_thresholds_],
            "y": [float(np.clip(v, margin, 1.0 - margin)) for v in iso.y_thresholds_]}


def _fit_logistic(t: SignalTable, y: NDArray[np.int_],
                  features: Sequence[str] = DEFAULT_FEATURES) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    # The L2 penalty is applied to features on a common scale (each divided by its root mean square, not
    # centred: centring would break the A/B symmetry). Unscaled, the penalty falls hardest on the judge's own
    # log-odds, which a small model keeps within a few hundredths of 0, and the fit ignores it.
    names = list(features) or list(DEFAULT_FEATURES)
    x = feature_matrix(t, names)
    scale = np.sqrt((x**2).mean(axis=0))
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, fit_intercept=False).fit(x / scale, y)
    return {"coef": [float(c) for c in model.coef_[0] / scale],
            "features": names,
            "feature_scale": [float(v) for v in scale]}


_FITTERS: Mapping[str, Callable[[SignalTable, NDArray[np.int_], Sequence[str]], dict[str, Any]]] = {
    "none": lambda t, y, features: {},
    "temperature": _fit_temperature,
    "platt": _fit_platt,
    "isotonic": _fit_isotonic,
    "logistic": _fit_logistic,
}


def predict(method: str, params: Mapping[str, Any], t: SignalTable) -> NDArray[np.float64]:
    """P(A wins | not a tie) for every row of ``t`` under a fitted method."""
    if method == "none":
        return np.asarray(t.raw_p_a, dtype=float)
    if method == "temperature":
        return _sigmoid(t.logit / float(params["temperature"]))
    if method == "logistic":
        names = params.get("features", LEGACY_FEATURES)
        return _sigmoid(feature_matrix(t, names) @ np.asarray(params["coef"], dtype=float))
    conf, sign = _top_label(t)
    if method == "platt":
        q = _sigmoid(float(params["a"]) * _logit(conf) + float(params["b"]))
    elif method == "isotonic":
        q = np.interp(conf, np.asarray(params["x"], dtype=float), np.asarray(params["y"], dtype=float))
    else:
        raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
    return _from_top_label(q, sign)


def _binary_labels(t: SignalTable, labels: Sequence[str],
                   minimum: int = _MIN_ROWS) -> tuple[NDArray[np.int_], NDArray[np.bool_]]:
    """(1 = A won / 0 = B won, mask of the rows whose label is not a tie), after checking the labels."""
    lab = np.asarray(list(labels), dtype=object)
    if len(lab) != len(t):
        raise ValueError(f"calibration: {len(t)} signal rows but {len(lab)} labels")
    unknown = set(lab.tolist()) - {"A", "B", "tie"}
    if unknown:
        raise ValueError(f"calibration: labels must be 'A', 'B' or 'tie', got {sorted(map(str, unknown))}")
    decided = lab != "tie"
    y = (lab == "A").astype(int)
    if int(decided.sum()) < minimum:
        raise ValueError(f"calibration: {int(decided.sum())} labelled non-tie verdicts; at least {minimum} are "
                         "needed")
    if y[decided].min() == y[decided].max():
        raise ValueError("calibration: the labels name one winner only; both A and B wins are needed")
    return y, decided


def distributions(p_a: NDArray[np.float64], judge_tie: NDArray[np.float64], tie_rate: float,
                  tie_model: Sequence[float] | None = None) -> NDArray[np.float64]:
    """3-way rows (P(A), P(tie), P(B)) from calibrated P(A | not tie).

    A judge that offers ties keeps its tie mass; one that does not (tie mass 0) gets a tie probability from
    the calibration labels - ``sigmoid(c0 + c1 * |logit p_a|)`` with ``tie_model = (c0, c1)`` (see
    `fit_ties`), else the labels' ``tie_rate`` - so the calibrated distribution is honest about ties it never
    predicts.
    """
    label_tie = tie_rate if tie_model is None else _sigmoid(tie_model[0] + tie_model[1] * np.abs(_logit(p_a)))
    tie = np.where(judge_tie > 0, judge_tie, label_tie)
    return np.column_stack([(1.0 - tie) * p_a, tie, (1.0 - tie) * (1.0 - p_a)])


def fit_ties(p_a: NDArray[np.float64], judge_tie: NDArray[np.float64],
             labels: Sequence[str]) -> tuple[float, float] | None:
    """``(c0, c1)`` of P(tie label) = ``sigmoid(c0 + c1 * |logit p_a|)``, fitted on every labelled row.

    ``p_a`` is the calibrated P(A | not tie) of the rows. None - the constant tie rate is used - when the judge
    offers ties itself, or when there are fewer than 10 tie labels or 10 other labels to fit a curve on.
    """
    from sklearn.linear_model import LogisticRegression

    is_tie = np.asarray([x == "tie" for x in labels], dtype=int)
    if (judge_tie > 0).any() or min(int(is_tie.sum()), int(len(is_tie) - is_tie.sum())) < _MIN_TIES:
        return None
    model = LogisticRegression(C=1e4).fit(np.abs(_logit(p_a)).reshape(-1, 1), is_tie)
    return float(model.intercept_[0]), float(model.coef_[0, 0])


def fit(method: str, t: SignalTable, labels: Sequence[str], *,
        features: Sequence[str] = DEFAULT_FEATURES) -> dict[str, Any]:
    """Fit one method on the non-tie rows; returns its parameters (JSON-serialisable).

    ``features`` are the logistic method's inputs (ignored by the others).
    """
    if method not in _FITTERS:
        raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
    y, decided = _binary_labels(t, labels, minimum=2)
    return _FITTERS[method](t.subset(np.flatnonzero(decided)), y[decided], features)


def _folds(n: int, n_folds: int, seed: int) -> list[NDArray[np.int_]]:
    if n < n_folds:
        raise ValueError(f"calibration: {n} rows cannot be split into {n_folds} folds")
    return list(np.array_split(np.random.default_rng(seed).permutation(n), n_folds))


def _out_of_fold(method: str, t: SignalTable, y: NDArray[np.int_], folds: list[NDArray[np.int_]],
                 features: Sequence[str] = DEFAULT_FEATURES) -> NDArray[np.float64]:
    p = np.empty(len(y))
    for held in folds:
        train = np.setdiff1d(np.arange(len(y)), held)
        try:
            if y[train].min() == y[train].max():
                raise ValueError("one-sided training split")
            p[held] = predict(method, _FITTERS[method](t.subset(train), y[train], features), t.subset(held))
        except ValueError:  # a degenerate training split: the method falls back to the judge's own probability
            p[held] = predict("none", {}, t.subset(held))
    return p


def _group_index(groups: Sequence[str] | None, n: int, n_folds: int,
                 seed: int) -> tuple[list[NDArray[np.int_]], list[str], bool]:
    """Row indices per group, the group names, and whether they are real groups (else random folds)."""
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"calibration: {n} rows but {len(groups)} group keys")
        keys = sorted(set(groups))
        if len(keys) >= 2:
            arr = np.asarray(list(groups), dtype=object)
            return [np.flatnonzero(arr == k) for k in keys], keys, True
    folds = _folds(n, n_folds, seed)
    return folds, [f"fold {i + 1}" for i in range(len(folds))], False


def left_out_losses(method: str, t: SignalTable, labels: Sequence[str], groups: Sequence[str] | None, *,
                    features: Sequence[str] = DEFAULT_FEATURES, n_folds: int = 5,
                    seed: int = 0) -> dict[str, float]:
    """Binary log loss on each group's non-tie rows, each predicted by ``method`` fitted on the other groups.

    Groups are the labelled rows' sources; with fewer than two, ``n_folds`` random folds stand in for them.
    """
    y, decided = _binary_labels(t, labels)
    keep = np.flatnonzero(decided)
    sub, yy = t.subset(keep), y[keep]
    index, names, _ = _group_index(None if groups is None else [groups[int(i)] for i in keep], len(yy), n_folds,
                                   seed)
    rows = _row_nll(_out_of_fold(method, sub, yy, index, features), yy)
    return {name: float(rows[ix].mean()) for name, ix in zip(names, index, strict=True) if ix.size}


def select_features(t: SignalTable, labels: Sequence[str], groups: Sequence[str] | None = None, *,
                    candidates: Sequence[str] = CANDIDATE_FEATURES, n_folds: int = 5,
                    seed: int = 0) -> tuple[tuple[str, ...], dict[str, dict[str, float]]]:
    """The logistic calibrator's features: ``logit``, plus each candidate (in order) that lowers the left-out
    log loss on *every* group, given the features already taken.

    A signal that helps on some sources and hurts on one is a shortcut of the sources it helps on, and is left
    out. Returns the features and, per feature set tried (``+``-joined names), its left-out loss per group.
    """
    unknown = [c for c in candidates if c not in FEATURES]
    if unknown:
        raise ValueError(f"unknown calibration feature(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(FEATURES)}")
    current = ["logit"]
    cur = left_out_losses("logistic", t, labels, groups, features=current, n_folds=n_folds, seed=seed)
    tried = {"logit": cur}
    for cand in candidates:
        if cand in current:
            continue
        trial = left_out_losses("logistic", t, labels, groups, features=[*current, cand], n_folds=n_folds,
                                seed=seed)
        tried["+".join([*current, cand])] = trial
        if all(trial[g] < cur[g] for g in cur):
            current.append(cand)
            cur = trial
    return tuple(current), tried


def select_method(t: SignalTable, labels: Sequence[str], *, methods: tuple[str, ...] = METHODS, n_folds: int = 5,
                  seed: int = 0, groups: Sequence[str] | None = None,
                  features: Sequence[str] = DEFAULT_FEATURES) -> tuple[str, dict[str, float]]:
    """The method chosen by left-out log loss (non-tie rows), and every method's loss.

    With ``groups`` naming at least two sources, a method's loss is its *worst* left-out source's (each source
    predicted by the method fitted on the others); otherwise it is the k-fold cross-validated loss.

    One-standard-error rule: the *simplest* method (in ``methods`` order: none, temperature, Platt, isotonic,
    logistic) whose loss is within one standard error of the lowest loss wins. On a few dozen pairs the
    flexible methods' advantage is mostly noise, and a calibrator that fits noise makes confidence worse.
    """
    y, decided = _binary_labels(t, labels)
    keep = np.flatnonzero(decided)
    sub, yy = t.subset(keep), y[keep]
    index, _, by_group = _group_index(None if groups is None else [groups[int(i)] for i in keep], len(yy), n_folds,
                                      seed)
    rows = {m: _row_nll(_out_of_fold(m, sub, yy, index, features), yy) for m in methods}
    if by_group:
        worst_ix: dict[str, NDArray[np.int_]] = {}
        for m, r in rows.items():
            group_loss = [(float(r[ix].mean()), k) for k, ix in enumerate(index) if ix.size]
            worst_ix[m] = index[max(group_loss)[1]]
        losses = {m: float(rows[m][worst_ix[m]].mean()) for m in methods}
        best = min(losses, key=lambda m: (losses[m], methods.index(m)))
        best_rows = rows[best][worst_ix[best]]
    else:
        losses = {m: float(r.mean()) for m, r in rows.items()}
        best = min(losses, key=lambda m: (losses[m], methods.index(m)))
        best_rows = rows[best]
    se = float(best_rows.std(ddof=1) / math.sqrt(len(best_rows))) if len(best_rows) > 1 else 0.0
    chosen = next(m for m in methods if losses[m] <= losses[best] + se)
    return chosen, losses


@dataclass(frozen=True)
class _FoldFit:
    held: NDArray[np.int_]
    train: NDArray[np.int_]
    method: str
    params: dict[str, Any]
    tie_rate: float
    tie_model: tuple[float, float] | None


def _fold_fits(t: SignalTable, lab: list[str], method: str, n_folds: int, seed: int,
               features: Sequence[str] | None = None) -> list[_FoldFit]:
    """One calibrator per fold, fitted (and, with ``auto``, chosen) on the other folds only; the logistic
    features are chosen inside each training split too unless ``features`` names them."""
    if method != "auto" and method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; known: auto, {', '.join(METHODS)}")
    _binary_labels(t, lab)
    fits: list[_FoldFit] = []
    for i, held in enumerate(_folds(len(lab), n_folds, seed)):
        train = np.setdiff1d(np.arange(len(lab)), held)
        sub, sub_lab = t.subset(train), [lab[j] for j in train]
        try:
            feats = features
            if feats is None:
                feats = (select_features(sub, sub_lab, n_folds=n_folds, seed=seed + i + 1)[0]
                         if method in ("auto", "logistic") else DEFAULT_FEATURES)
            name = method if method != "auto" else select_method(sub, sub_lab, n_folds=n_folds, seed=seed + i + 1,
                                                                 features=feats)[0]
            params = fit(name, sub, sub_lab, features=feats)
        except ValueError:  # too few or one-sided training rows: keep the judge's own probability
            name, params = "none", {}
        fits.append(_FoldFit(held, train, name, params, sum(x == "tie" for x in sub_lab) / len(sub_lab),
                             fit_ties(predict(name, params, sub), sub.tie, sub_lab)))
    return fits


def _rows(f: _FoldFit, t: SignalTable) -> NDArray[np.float64]:
    return distributions(predict(f.method, f.params, t), t.tie, f.tie_rate, f.tie_model)


def _confidence_correct(probs: NDArray[np.float64],
                        labels: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
    pred = np.asarray(["A", "tie", "B"])[probs.argmax(axis=1)]
    return probs.max(axis=1), (pred == np.asarray(list(labels))).astype(int)


@dataclass(frozen=True)
class CrossFit:
    """One calibrator per fold, each fitted (and, with ``auto``, chosen) without its fold: what every
    cross-fitted figure is computed from, fitted once (see `fit_folds`)."""

    table: SignalTable
    labels: list[str]
    folds: list[_FoldFit]

    @property
    def methods(self) -> list[str]:
        """The method used in each fold."""
        return [f.method for f in self.folds]

    def probabilities(self) -> NDArray[np.float64]:
        """Out-of-fold rows ``(P(A), P(tie), P(B))`` for every row: each predicted by its fold's calibrator."""
        out = np.empty((len(self.labels), 3))
        for f in self.folds:
            out[f.held] = _rows(f, self.table.subset(f.held))
        return out

    def abstention(self, *, target: float, delta: float) -> tuple[SelectiveResult, list[Threshold]]:
        """Held-out coverage and agreement of recalibrated selective judging, done as `fit_from_results` does it.

        In each fold the fold's calibrator chooses its abstention threshold on its own predictions for the
        other folds (`abstention_threshold`), and both are applied to the held-out fold; the held-out counts are
        pooled. (One threshold chosen on cross-fitted confidences would mix the scales of five different
        calibrators.)
        """
        lab = self.labels
        kept = right = 0
        thresholds: list[Threshold] = []
        for f in self.folds:
            th = abstention_threshold(_rows(f, self.table.subset(f.train)), [lab[j] for j in f.train],
                                      target=target, delta=delta)
            thresholds.append(th)
            conf, correct = _confidence_correct(_rows(f, self.table.subset(f.held)), [lab[j] for j in f.held])
            keep = conf >= th.threshold
            kept += int(keep.sum())
            right += int(correct[keep].sum())
        n = len(lab)
        return SelectiveResult(coverage=kept / n, agreement=right / kept if kept else math.nan, n=n, n_kept=kept,
                               n_escalated=n - kept), thresholds


def fit_folds(t: SignalTable, labels: Sequence[str], *, method: str = "auto", n_folds: int = 5,
              seed: int = 0, features: Sequence[str] | None = None) -> CrossFit:
    """Fit one calibrator per fold, without that fold (see `CrossFit`).

    With ``method="auto"`` the method is chosen inside each outer training split by an inner cross-validation,
    so the predictions for a fold never saw its labels, not even through the choice of method; so are the
    logistic features (`select_features`) unless ``features`` names them.
    """
    lab = list(labels)
    return CrossFit(t, lab, _fold_fits(t, lab, method, n_folds, seed, features))


def cross_fit(t: SignalTable, labels: Sequence[str], *, method: str = "auto", n_folds: int = 5,
              seed: int = 0) -> tuple[NDArray[np.float64], list[str]]:
    """Out-of-fold calibrated 3-way distributions: each fold is predicted by a calibrator fitted without it.

    Returns:
        Rows ``(P(A), P(tie), P(B))`` for every row of ``t``, and the method used for each fold.
    """
    folds = fit_folds(t, labels, method=method, n_folds=n_folds, seed=seed)
    return folds.probabilities(), folds.methods


def abstention_threshold(cal_probs: NDArray[np.float64], labels: Sequence[str], *, target: float,
                         delta: float) -> Threshold:
    """The abstention threshold on calibrated confidence, chosen on one calibrator's own predictions for the
    labelled rows it was fitted on (`choose_threshold`: Clopper-Pearson bound, fixed-sequence testing).

    The threshold has to be on the scale of the calibrator that will apply it. Temperature, Platt and isotonic
    scaling are monotone in the judge's confidence, so the rows kept at any threshold are the ones the judge
    itself ranks highest, and the certificate counts how often those were right. `CrossFit.abstention`
    measures the whole procedure on held-out folds.
    """
    conf, correct = _confidence_correct(cal_probs, labels)
    return choose_threshold(conf, correct, target=target, delta=delta)


def cross_fit_abstention(t: SignalTable, labels: Sequence[str], *, target: float, delta: float,
                         method: str = "auto", n_folds: int = 5,
                         seed: int = 0) -> tuple[SelectiveResult, list[Threshold]]:
    """`CrossFit.abstention` of freshly fitted folds (see there)."""
    return fit_folds(t, labels, method=method, n_folds=n_folds, seed=seed).abstention(target=target, delta=delta)


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
        """The certified abstention threshold; 1.01 (escalate everything) when none reached the target.

        Raises:
            ConfigError: when the calibrator was fitted without an abstention target.
        """
        if not self.abstain:
            raise ConfigError(f"calibrator {self.id} has no abstention threshold (fit it with a --target)")
        if not self.abstain.get("certified"):
            log.warning("calibrator %s: no threshold certifies agreement >= %s; every verdict is escalated",
                        self.id, self.abstain.get("target"))
            return 1.01
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
