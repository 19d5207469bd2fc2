"""Exact (Clopper-Pearson) confidence bounds for a binomial proportion: the certificate behind selective judging
(:mod:`judge.calibration.selective`) and the intervals of its held-out counts.

Pure functions; needs numpy and scipy (imported when a bound is first computed).
"""

from __future__ import annotations

import math
import operator

import numpy as np
from numpy.typing import NDArray

__all__ = ["clopper_pearson_interval", "clopper_pearson_lower"]


def _unit_open(name: str, what: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name}: {what} must lie in (0, 1), got {value}")
    return value


def _cp_lower(k: NDArray[np.int_], n: NDArray[np.int_], delta: float) -> NDArray[np.float64]:
    """Vectorised :func:`clopper_pearson_lower` for ``1 <= n`` and ``0 <= k <= n`` (no validation)."""
    from scipy.stats import beta as beta_dist  # scipy.stats costs ~1 s and ~40 MB to import: only when used

    out = np.zeros(k.shape, dtype=float)
    pos = k > 0
    out[pos] = beta_dist.ppf(delta, k[pos], n[pos] - k[pos] + 1)
    return out


def clopper_pearson_lower(k: int, n: int, delta: float) -> float:
    """One-sided exact (Clopper-Pearson) lower confidence bound for a binomial proportion.

    The bound ``L`` satisfies ``P(L <= p) >= 1 - delta`` for every true proportion ``p``; it is the ``delta``
    quantile of ``Beta(k, n - k + 1)``, and equals the lower end of the two-sided exact interval at confidence
    ``1 - 2 * delta``. Closed forms: ``delta ** (1 / n)`` when ``k == n``, ``1 - (1 - delta) ** (1 / n)`` when
    ``k == 1``.

    Args:
        k: Number of successes (correct kept verdicts), ``0 <= k <= n``.
        n: Number of trials (kept verdicts), ``n >= 0``.
        delta: Miss probability of the bound, in (0, 1).

    Returns:
        The lower bound in [0, 1]; ``0.0`` when ``k == 0``; NaN when ``n == 0`` (nothing to bound).

    Raises:
        ValueError: When ``k`` or ``n`` is not a non-negative integer, ``k > n``, or ``delta`` is not in (0, 1).
    """
    if isinstance(k, bool) or isinstance(n, bool):
        raise ValueError("clopper_pearson_lower: k and n must be integers, not bool")
    try:
        k, n = operator.index(k), operator.index(n)
    except TypeError as exc:
        raise ValueError(f"clopper_pearson_lower: k and n must be integers, got {k!r} and {n!r}") from exc
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"clopper_pearson_lower: need 0 <= k <= n, got k={k}, n={n}")
    delta = _unit_open("clopper_pearson_lower", "delta", delta)
    if n == 0:
        return math.nan
    return float(_cp_lower(np.array([k]), np.array([n]), delta)[0])


def clopper_pearson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson) ``1 - alpha`` confidence interval for a binomial proportion ``k / n``.

    Used for the held-out coverage and agreement of selective judging, which are counts over held-out pairs
    (a bootstrap would have to refit the calibrators and thresholds in every replicate).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when ``n == 0``.

    Raises:
        ValueError: As :func:`clopper_pearson_lower`, with ``alpha`` in place of ``delta``.
    """
    low = clopper_pearson_lower(k, n, alpha / 2.0)
    if n == 0:
        return math.nan, math.nan
    return low, 1.0 - clopper_pearson_lower(n - k, n, alpha / 2.0)

