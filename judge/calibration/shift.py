"""The shift alarm: does a judged batch look like the data its calibrator was fitted on?

A calibrator's probabilities, and above all its abstention guarantee, hold for pairs exchangeable with its
calibration pairs. A calibrator keeps a sample of its inputs (:class:`ReferenceSample`: the symmetric signal
columns of :func:`~judge.calibration.signals.shift_columns`, numbers only, no text); :func:`shift_test` compares
a batch with it, one two-sample test per column - Kolmogorov-Smirnov for a continuous column, Fisher's exact
test for a 0/1 column (whether the two orders agreed) - with a Bonferroni correction, so the whole batch is
flagged at family-wise level ``alpha`` when nothing changed. A flagged batch means the guarantee is not
applicable; an unflagged one is no proof of exchangeability (a test of n rows sees only shifts large enough).

Pure functions: numbers in, a report out; subsampling is seeded.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from judge.calibration.signals import SignalTable, shift_columns

__all__ = ["DEFAULT_ALPHA", "MIN_BATCH", "ColumnTest", "ReferenceSample", "ShiftReport", "reference_from_table",
           "shift_test", "shift_test_columns"]

DEFAULT_ALPHA = 0.01
"""Family-wise false-alarm level of the shift alarm on a batch exchangeable with the calibration data."""
MIN_BATCH = 20
"""Fewer judged verdicts than this are not tested (too few to see anything but a gross shift)."""
_MAX_REFERENCE = 2000


class ReferenceSample(BaseModel):
    """The calibration data's inputs, column by column (see :func:`~judge.calibration.signals.shift_columns`)."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Calibration rows the sample was drawn from.")
    columns: dict[str, list[float]] = Field(description="Per column, the values of (a seeded sample of) the rows.")


class ColumnTest(BaseModel):
    """One column's two-sample test."""

    name: str
    test: Literal["ks", "fisher"]
    statistic: float
    p_value: float
    reference_mean: float
    batch_mean: float


class ShiftReport(BaseModel):
    """The shift alarm's finding for one batch."""

    status: Literal["shifted", "not_detected", "too_small", "no_reference"]
    n_batch: int
    n_reference: int = 0
    alpha: float = DEFAULT_ALPHA
    tests: list[ColumnTest] = Field(default_factory=list)

    @property
    def shifted(self) -> bool:
        """True when the batch differs from the calibration data (the guarantee is then not applicable)."""
        return self.status == "shifted"

    @property
    def guarantee_applies(self) -> bool:
        """Whether a calibrated abstention guarantee may be claimed for this batch: only when it was tested and
        no shift was found."""
        return self.status == "not_detected"

    def flagged(self) -> list[ColumnTest]:
        """The columns whose test rejects at the Bonferroni-corrected level."""
        level = self.alpha / max(len(self.tests), 1)
        return [t for t in self.tests if t.p_value < level]

    def describe(self) -> str:
        """One plain sentence for people."""
        if self.status == "no_reference":
            return ("shift not checked: the calibrator carries no sample of its calibration data (refit it); "
                    "its abstention guarantee assumes these pairs are like the calibration pairs")
        if self.status == "too_small":
            return (f"shift not checked: {self.n_batch} judged verdicts, at least {MIN_BATCH} are needed; the "
                    "abstention guarantee assumes these pairs are like the calibration pairs")
        if self.status == "not_detected":
            return (f"no shift detected: {self.n_batch} verdicts vs {self.n_reference} calibration rows "
                    f"(every column's test p >= {self.alpha:g}/{len(self.tests)})")
        parts = ", ".join(f"{t.name} (mean {t.reference_mean:.3f} -> {t.batch_mean:.3f}, p={t.p_value:.2g})"
                          for t in self.flagged())
        return (f"SHIFT: this batch of {self.n_batch} differs from the calibrator's {self.n_reference} calibration "
                f"rows in {parts}; the calibrated probabilities are extrapolated and the abstention guarantee is "
                "not applicable to this batch")


def reference_from_table(t: SignalTable, *, max_rows: int = _MAX_REFERENCE, seed: int = 0) -> ReferenceSample:
    """The sample a calibrator keeps of its calibration rows (all of them up to ``max_rows``, else a seeded
    sample), rounded to 6 decimals."""
    idx = np.arange(len(t))
    if len(t) > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(len(t), size=max_rows, replace=False))
    cols = shift_columns(t)
    return ReferenceSample(n=len(t), columns={k: [round(float(x), 6) for x in v[idx]] for k, v in cols.items()})


def _binary(a: NDArray[np.float64], b: NDArray[np.float64]) -> bool:
    both = np.concatenate([a, b])
    return bool(np.all((both == 0.0) | (both == 1.0)))


def _test(name: str, ref: NDArray[np.float64], batch: NDArray[np.float64]) -> ColumnTest:
    from scipy.stats import fisher_exact, ks_2samp

    means = {"reference_mean": float(ref.mean()), "batch_mean": float(batch.mean())}
    if _binary(ref, batch):
        table = [[int(ref.sum()), int(len(ref) - ref.sum())], [int(batch.sum()), int(len(batch) - batch.sum())]]
        res = fisher_exact(table)
        stat = abs(means["reference_mean"] - means["batch_mean"])
        return ColumnTest(name=name, test="fisher", statistic=stat, p_value=float(res.pvalue), **means)
    with warnings.catch_warnings():  # scipy's note that it used the asymptotic p-value: not the user's concern
        warnings.filterwarnings("ignore", message=".*ks_2samp.*", category=RuntimeWarning)
        res = ks_2samp(ref, batch)
    return ColumnTest(name=name, test="ks", statistic=float(res.statistic), p_value=float(res.pvalue), **means)


def shift_test_columns(reference: Mapping[str, NDArray[np.float64] | list[float]],
                       batch: Mapping[str, NDArray[np.float64] | list[float]], *,
                       alpha: float = DEFAULT_ALPHA, n_reference: int | None = None) -> ShiftReport:
    """Two-sample tests of every column present in both, Bonferroni-corrected at family-wise level ``alpha``.

    Raises:
        ValueError: When ``alpha`` is not in (0, 1) or the two share no column.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"shift test: alpha must lie in (0, 1), got {alpha}")
    names = [k for k in reference if k in batch]
    if not names:
        raise ValueError("shift test: the batch and the reference share no column")
    n_batch = len(batch[names[0]])
    n_ref = n_reference if n_reference is not None else len(reference[names[0]])
    if n_batch < MIN_BATCH:
        return ShiftReport(status="too_small", n_batch=n_batch, n_reference=n_ref, alpha=alpha)
    tests = [_test(k, np.asarray(reference[k], dtype=float), np.asarray(batch[k], dtype=float)) for k in names]
    level = alpha / len(tests)
    shifted = any(tst.p_value < level for tst in tests if math.isfinite(tst.p_value))
    return ShiftReport(status="shifted" if shifted else "not_detected", n_batch=n_batch, n_reference=n_ref,
                       alpha=alpha, tests=tests)


def shift_test(reference: ReferenceSample | None, batch: SignalTable, *,
               alpha: float = DEFAULT_ALPHA) -> ShiftReport:
    """Compare a judged batch's raw signals with a calibrator's reference sample (see the module docstring).

    ``batch`` must hold the judge's *raw* signals (:func:`~judge.calibration.signals.raw_view` of calibrated
    verdicts): the reference was taken before calibration.
    """
    if reference is None:
        return ShiftReport(status="no_reference", n_batch=len(batch), alpha=alpha)
    return shift_test_columns(reference.columns, shift_columns(batch), alpha=alpha, n_reference=reference.n)
