"""Input checks shared by the metric modules: outcome names, probabilities, 0/1 flags, probability rows.

Each check names the calling metric in its error, and raises ``ValueError`` on empty or malformed input (see
the edge-case convention in :mod:`judge.calibration.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["OUTCOMES", "Outcomes"]

OUTCOMES: tuple[str, str, str] = ("A", "tie", "B")
_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
_LABELS = list(range(len(OUTCOMES)))
_ROW_SUM_TOL = 1e-6

Sized = Sequence[Any] | NDArray[Any]
Outcomes = Sequence[str] | Sequence[int] | NDArray[Any]


def _nonempty(name: str, n: int) -> None:
    if n == 0:
        raise ValueError(f"{name}: empty input; at least one row is required")


def _same_length(name: str, *arrays: Sized) -> int:
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"{name}: inputs have different lengths {sorted(lengths)}")
    n = lengths.pop()
    _nonempty(name, n)
    return n


def _outcomes(name: str, values: Outcomes) -> NDArray[np.int_]:
    """Map outcome names to column indices 0/1/2; integer indices are accepted as they are."""
    out = np.empty(len(values), dtype=int)
    for i, v in enumerate(values):
        if isinstance(v, str) and v in _INDEX:
            out[i] = _INDEX[v]
        elif isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v <= 2:
            out[i] = int(v)
        else:
            raise ValueError(f"{name}: unknown outcome {v!r}; expected one of {OUTCOMES} or 0/1/2")
    return out


def _probabilities(name: str, values: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d sequence of probabilities, got shape {arr.shape}")
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    return arr


def _binary(name: str, values: ArrayLike) -> NDArray[np.int_]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d sequence of 0/1 values, got shape {arr.shape}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name}: values must be 0/1 (or bool)")
    return arr.astype(int)


def _prob_rows(name: str, probs: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(probs, dtype=float)
    if arr.size == 0:
        _nonempty(name, 0)
    if arr.ndim != 2 or arr.shape[1] != len(OUTCOMES):
        raise ValueError(f"{name}: expected probability rows of shape (n, 3) in order {OUTCOMES}, got {arr.shape}")
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    if not np.allclose(arr.sum(axis=1), 1.0, atol=_ROW_SUM_TOL, rtol=0.0):
        raise ValueError(f"{name}: every probability row must sum to 1")
    return arr


def _conf_correct(name: str, confidence: ArrayLike, correct: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
    conf = _probabilities(name, confidence)
    corr = _binary(name, correct)
    _same_length(name, conf, corr)
    return conf, corr

