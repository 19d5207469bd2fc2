"""Cross-fitting: one calibrator per fold, fitted (and chosen) without that fold, for honest held-out figures
of the whole recalibration procedure, abstention thresholds included.

Pure functions: signal tables and labels in, numbers out; seeds are explicit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from judge.calibration.methods import DEFAULT_FEATURES, METHODS, _binary_labels, distributions, fit, fit_ties, predict
from judge.calibration.selection import _folds, select_features, select_method
from judge.calibration.selective import SelectiveResult, Threshold, choose_threshold
from judge.calibration.signals import SignalTable

__all__ = ["CrossFit", "abstention_threshold", "cross_fit", "cross_fit_abstention", "fit_folds"]


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
