"""Signals a calibrator may use, read from verdicts (pure: verdicts and response lengths in, arrays out).

Every signal is *oriented toward response A*, so that a calibrator built on them treats the two slots alike:
swapping A and B negates the oriented signals and leaves the symmetric ones unchanged.

* ``logit``      - log(P(A) / P(B)) of the combined (both-orders) distribution, ties left out.
* ``agree``      - 1 when the two orders picked the same winner, 0 when they did not (0 for one order).
* ``length``     - log((len(A) + 1) / (len(B) + 1)) in characters.
* ``retrieval``  - the best similarity score among the retrieved spec entries and rulings (0 without rules).
* ``verbal``     - the explanation's verbal confidence, signed toward A: ``+(c - 0.5)`` when the judge's winner
                   is A, ``-(c - 0.5)`` when it is B; 0 when there is no explanation.

``raw_confidence`` (the probability the judge gave its winner) and ``raw_p_a`` are kept alongside.

A multi-signal calibrator reads its inputs as *features* built from these signals (:data:`FEATURES`, each
A-oriented so the A/B symmetry holds): ``logit`` always, the others only when they earn their place
(:data:`CANDIDATE_FEATURES`, chosen by left-out-source log loss). ``length`` is never a default candidate
(:data:`RISKY_FEATURES`): which response is longer is the first thing a pair built to mislead exploits.
The shift alarm compares the *symmetric* view of the signals (:func:`shift_columns`) between the calibration
data and a judged batch. A new signal is added here: a column of :class:`SignalTable`, a feature, a shift column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from judge.verdicts import Verdict

__all__ = ["CANDIDATE_FEATURES", "FEATURES", "RISKY_FEATURES", "SHIFT_COLUMNS", "SIGNAL_NAMES", "SignalTable",
           "binary_p_a", "feature_matrix", "raw_view", "shift_columns", "signals_from_verdicts"]

SIGNAL_NAMES: tuple[str, ...] = ("logit", "agree", "length", "retrieval", "verbal")
_LOGIT_CLIP = 12.0
_EPS = 1e-9


def binary_p_a(a: float, b: float) -> float:
    """P(A wins | not a tie) from the A and B masses (0.5 when both are zero)."""
    total = a + b
    return 0.5 if total <= 0.0 else a / total


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return float(np.clip(math.log(p / (1.0 - p)), -_LOGIT_CLIP, _LOGIT_CLIP))


@dataclass(frozen=True)
class SignalTable:
    """Signals of n scored verdicts as parallel arrays (row i is verdict i).

    Attributes:
        pair_ids: The verdicts' pair ids.
        raw_p_a: P(A | not tie) of the judge's combined distribution.
        tie: The judge's tie mass (0 when ties were not offered).
        logit: ``log(raw_p_a / (1 - raw_p_a))``, clipped to +-12.
        agree: 1.0 when both orders agree, else 0.0.
        length: Log length ratio of A over B.
        retrieval: Best retrieval similarity (0 when nothing was retrieved).
        verbal: Verbal confidence signed toward A (0 when absent).
    """

    pair_ids: tuple[str, ...]
    raw_p_a: NDArray[np.float64]
    tie: NDArray[np.float64]
    logit: NDArray[np.float64]
    agree: NDArray[np.float64]
    length: NDArray[np.float64]
    retrieval: NDArray[np.float64]
    verbal: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.pair_ids)

    def subset(self, idx: NDArray[np.int_] | Sequence[int]) -> SignalTable:
        """The rows at ``idx``."""
        ix = np.asarray(idx, dtype=int)
        return SignalTable(
            pair_ids=tuple(self.pair_ids[i] for i in ix), raw_p_a=self.raw_p_a[ix], tie=self.tie[ix],
            logit=self.logit[ix], agree=self.agree[ix], length=self.length[ix],
            retrieval=self.retrieval[ix], verbal=self.verbal[ix])

    def column(self, name: str) -> NDArray[np.float64]:
        """One signal by name (one of :data:`SIGNAL_NAMES`)."""
        if name not in SIGNAL_NAMES:
            raise ValueError(f"unknown signal {name!r}; known: {', '.join(SIGNAL_NAMES)}")
        return np.asarray(getattr(self, name), dtype=float)

    @property
    def raw_confidence(self) -> NDArray[np.float64]:
        """Probability of the judge's binary winner, max(P(A), P(B)) after leaving ties out."""
        return np.maximum(self.raw_p_a, 1.0 - self.raw_p_a)


def signals_from_verdicts(verdicts: Sequence[Verdict], lengths: Sequence[tuple[int, int]]) -> SignalTable:
    """Signals of scored verdicts.

    Args:
        verdicts: Verdicts without failure (a failed verdict has no probabilities to calibrate).
        lengths: ``(len(response_a), len(response_b))`` in characters, one per verdict.

    Raises:
        ValueError: On a failed verdict or when the lengths do not match the verdicts.
    """
    if len(verdicts) != len(lengths):
        raise ValueError(f"signals: {len(verdicts)} verdicts but {len(lengths)} length pairs")
    rows: list[tuple[float, ...]] = []
    for v, (len_a, len_b) in zip(verdicts, lengths, strict=True):
        if v.probabilities is None:
            raise ValueError(f"signals: verdict {v.pair_id!r} failed ({v.failure.stage if v.failure else '?'}); "
                             "failures carry no probabilities and are counted separately")
        dist = v.probabilities
        p_a = binary_p_a(dist.a, dist.b)
        agree = 1.0 if v.position_inconsistent is False else 0.0
        scores = [float(r["score"]) for r in v.retrieved if r.get("layer") != "constitution" and "score" in r]
        retrieval = max(scores) if scores else 0.0
        verbal = 0.0
        if v.verbal_confidence is not None and v.winner in ("A", "B"):
            verbal = (v.verbal_confidence - 0.5) * (1.0 if v.winner == "A" else -1.0)
        rows.append((p_a, dist.tie, _logit(p_a), agree, math.log((len_a + 1) / (len_b + 1)), retrieval, verbal))
    cols = np.asarray(rows, dtype=float).reshape(len(rows), 7)
    return SignalTable(
        pair_ids=tuple(v.pair_id or "" for v in verdicts), raw_p_a=cols[:, 0], tie=cols[:, 1], logit=cols[:, 2],
        agree=cols[:, 3], length=cols[:, 4], retrieval=cols[:, 5], verbal=cols[:, 6])


#: A-oriented features a multi-signal calibrator may use, by name: swapping A and B negates every one.
FEATURES: dict[str, Callable[[SignalTable], NDArray[np.float64]]] = {
    "logit": lambda t: t.logit,
    "logit*agree": lambda t: t.logit * t.agree,
    "length": lambda t: t.length,
    "logit*retrieval": lambda t: t.logit * t.retrieval,
    "verbal": lambda t: t.verbal,
}
#: Features a default calibrator may add to ``logit`` when they help on every left-out source, in trial order.
CANDIDATE_FEATURES: tuple[str, ...] = ("logit*agree", "logit*retrieval", "verbal")
#: Features only used when asked for by name: they reward what pairs built to mislead imitate.
RISKY_FEATURES: frozenset[str] = frozenset({"length"})


def feature_matrix(t: SignalTable, names: Sequence[str]) -> NDArray[np.float64]:
    """The ``(len(t), len(names))`` matrix of the named features.

    Raises:
        ValueError: On an unknown feature name.
    """
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown calibration feature(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(FEATURES)}")
    return np.column_stack([FEATURES[n](t) for n in names]) if names else np.zeros((len(t), 0))


#: Symmetric views of the signals the shift alarm compares (unchanged when A and B are swapped).
SHIFT_COLUMNS: dict[str, Callable[[SignalTable], NDArray[np.float64]]] = {
    "raw_confidence": lambda t: t.raw_confidence,
    "orders_agree": lambda t: t.agree,
    "retrieval": lambda t: t.retrieval,
    "|verbal|": lambda t: np.abs(t.verbal),
    "|length ratio|": lambda t: np.abs(t.length),
}


def shift_columns(t: SignalTable) -> dict[str, NDArray[np.float64]]:
    """The columns the shift alarm compares, by name (see :data:`SHIFT_COLUMNS`)."""
    return {name: np.asarray(fn(t), dtype=float) for name, fn in SHIFT_COLUMNS.items()}


def raw_view(verdict: Verdict) -> Verdict:
    """The verdict as the judge gave it: its raw probabilities when a calibrator replaced them."""
    if verdict.raw_probabilities is None or verdict.probabilities is None:
        return verdict
    return verdict.model_copy(update={"probabilities": verdict.raw_probabilities,
                                      "winner": verdict.raw_probabilities.winner})
