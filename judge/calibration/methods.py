"""Recalibration methods: fit one method on labelled verdict signals and predict P(A wins | not a tie).

Methods (each maps a verdict's signals to P(A wins | not a tie)):

* ``none``        - the judge's own probability.
* ``temperature`` - ``sigmoid(logit / T)``: one scale for the whole log-odds.
* ``platt``       - top-label Platt scaling: ``P(winner is right) = sigmoid(a * logit(confidence) + b)``.
* ``isotonic``    - top-label isotonic regression of correctness on confidence (monotone, step-wise).
* ``logistic``    - a small multi-signal logistic model without intercept over A-oriented features
                    (:data:`~judge.calibration.signals.FEATURES`), so that it treats the two slots alike:
                    swapping A and B gives exactly ``1 - P(A)``.

Top-label methods keep the judge's binary winner and re-state its probability; when the fitted probability of
the winner drops below 0.5 the calibrated distribution names the other response. Ties: methods are fitted on
pairs whose label is not a tie; a verdict's tie mass is kept and A/B share the rest. A judge that never says
tie gets a tie probability from the labels (`fit_ties`, `distributions`).

Pure functions: signal tables and labels in, numbers out. Fitting uses scikit-learn and scipy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from judge.calibration.signals import CANDIDATE_FEATURES, FEATURES, SignalTable, feature_matrix

__all__ = ["DEFAULT_FEATURES", "LEGACY_FEATURES", "METHODS", "Method", "check_params", "distributions", "fit",
           "fit_ties", "predict"]

Method = Literal["none", "temperature", "platt", "isotonic", "logistic"]
METHODS: tuple[Method, ...] = ("none", "temperature", "platt", "isotonic", "logistic")
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


def check_params(method: str, params: Mapping[str, Any]) -> None:
    """Refuse parameters ``predict`` cannot apply honestly: a missing one, a number that is not finite, a
    temperature that is not positive (one below 0 inverts the judge), logistic coefficients that do not match its
    features, an isotonic curve whose x decreases or whose y leaves [0, 1].

    Raises:
        ValueError: naming the parameter.
    """
    if method == "temperature" and _numbers(method, params, "temperature", scalar=True)[0] <= 0:
        raise ValueError(f"temperature calibrator: params.temperature must be above 0, got {params['temperature']}")
    if method == "platt":
        _numbers(method, params, "a", scalar=True)
        _numbers(method, params, "b", scalar=True)
    if method == "logistic":
        names = params.get("features", list(LEGACY_FEATURES))
        known = sorted(set(FEATURES) | set(LEGACY_FEATURES))
        if not isinstance(names, list | tuple) or not names or not all(n in known for n in names):
            raise ValueError(f"logistic calibrator: params.features must name known features ({', '.join(known)}), "
                             f"got {names!r}")
        if len(_numbers(method, params, "coef")) != len(names):
            raise ValueError(f"logistic calibrator: params.coef needs one number per feature ({len(names)})")
    if method == "isotonic":
        x, y = _numbers(method, params, "x"), _numbers(method, params, "y")
        if not x or len(x) != len(y) or any(b < a for a, b in itertools.pairwise(x)) \
                or any(not 0.0 <= v <= 1.0 for v in y):
            raise ValueError("isotonic calibrator: params.x and params.y must be as long as each other, x "
                             "non-decreasing and y within [0, 1]")


def _numbers(method: str, params: Mapping[str, Any], name: str, *, scalar: bool = False) -> list[float]:
    """``params[name]`` as finite numbers (one, when ``scalar``), else ValueError naming it."""
    value = params.get(name)
    values: list[Any] | None = [value] if scalar else list(value) if isinstance(value, list | tuple | np.ndarray) \
        else None
    out: list[float] = []
    for v in values if values is not None else [None]:
        if not isinstance(v, int | float | np.number) or isinstance(v, bool) or not math.isfinite(float(v)):
            shape = "a finite number" if scalar else "a list of finite numbers"
            raise ValueError(f"{method} calibrator: params.{name} must be {shape}, got {value!r}")
        out.append(float(v))
    return out


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
