"""Choosing a recalibration method and the logistic method's features by left-out log loss.

``auto`` chooses the method by cross-validated log loss; when the labelled rows come from several sources
(``groups``) it chooses by the *worst* left-out source's log loss instead (`select_method`), because a
calibrator is used on pairs from a source it has not seen. The logistic method's features are ``logit`` plus
each candidate that lowers the left-out log loss on *every* source (`select_features`; random folds stand in
for sources when the data has one).

Pure functions: signal tables and labels in, numbers out; seeds are explicit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from judge.calibration.methods import _FITTERS, DEFAULT_FEATURES, METHODS, _binary_labels, _row_nll, predict
from judge.calibration.signals import CANDIDATE_FEATURES, FEATURES, SignalTable

__all__ = ["left_out_losses", "select_features", "select_method"]


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
