"""The gate decision: plain values in, a `GateDecision` out (no files, no clock, no unseeded randomness).

For every spec entry in the policy's scope the gate checks two things:

* **coverage** — the entry has at least ``min_cases`` distinct accepted cases;
* **win rate** — the candidate's win rate on the entry's comparisons (ties half or excluded, judge
  failures a loss or excluded, never a win) has a lower confidence bound at or above the entry's bound.
  The bound is the lower end of the two-sided ``confidence`` interval (Wilson, or a seeded percentile
  bootstrap), i.e. a one-sided ``(1 + confidence) / 2`` bound: conservative on purpose.

and, once, the judge's **calibration** on held-out rulings (ECE, Brier) against the policy's bounds.
The gate passes only when every check passes; every failure is kept as a readable reason.
"""

from __future__ import annotations

import fnmatch
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from judge.cases.coverage import EntryCoverage
from judge.gate.policy import GatePolicy

__all__ = [
    "CalibrationResult",
    "CalibrationSummary",
    "EntryOutcomes",
    "EntryResult",
    "GateDecision",
    "bootstrap_lower_bound",
    "decide",
    "wilson_interval",
    "win_rate",
]


@dataclass(frozen=True)
class EntryOutcomes:
    """The candidate's comparisons on one entry's cases (the candidate is response A).

    Attributes:
        wins: The candidate's response judged better.
        losses: The other response judged better.
        ties: Judged equally good.
        failures: Comparisons the judge failed to decide (never a win).
    """

    wins: int = 0
    losses: int = 0
    ties: int = 0
    failures: int = 0

    @property
    def judged(self) -> int:
        """Comparisons with a verdict."""
        return self.wins + self.losses + self.ties

    def __add__(self, other: EntryOutcomes) -> EntryOutcomes:
        return EntryOutcomes(self.wins + other.wins, self.losses + other.losses, self.ties + other.ties,
                             self.failures + other.failures)


@dataclass(frozen=True)
class CalibrationSummary:
    """The judge's calibration on held-out rulings: point estimates and upper ends of their 95% intervals.

    Attributes:
        ece_point, ece_high: Expected calibration error and the upper end of its interval.
        brier_point, brier_high: Binary Brier score and the upper end of its interval.
        n: Verdicts the metrics were computed on.
        variant: Which report they come from (``raw`` or ``recalibrated ...``).
        ece_floor: The ECE a perfectly calibrated judge with the same confidences shows on average at this
            ``n`` (None: not known). An ECE bound below it can hardly be met by any judge at this ``n``.
    """

    ece_point: float
    ece_high: float
    brier_point: float
    brier_high: float
    n: int
    variant: str = "raw"
    ece_floor: float | None = None


@dataclass(frozen=True)
class EntryResult:
    """The gate's finding for one entry.

    Attributes:
        entry_id: The spec entry.
        cases: Distinct accepted cases.
        min_cases: Cases this entry needs.
        wins, losses, ties, failures: The candidate's comparisons.
        n_judged: Comparisons the win rate is computed on (after the policy's tie and failure handling).
        win_rate: Point estimate (None without comparisons).
        lower_bound: Lower end of the confidence interval (None without comparisons).
        bound: What the lower bound must reach.
        baseline_win_rate, baseline_n: The baseline's win rate on the same entry, when a baseline is given
            (reported, not gated).
        passed: Whether the entry passes.
        reasons: Why it fails (empty when it passes).
    """

    entry_id: str
    cases: int
    min_cases: int
    wins: int
    losses: int
    ties: int
    failures: int
    n_judged: int
    win_rate: float | None
    lower_bound: float | None
    bound: float
    passed: bool
    reasons: list[str] = field(default_factory=list)
    baseline_win_rate: float | None = None
    baseline_n: int | None = None


@dataclass(frozen=True)
class CalibrationResult:
    """The gate's finding on the judge's calibration.

    Attributes:
        summary: The metrics (None when the policy bounds calibration but none was given).
        uses: ``point`` or ``upper``: which number was compared with the bounds.
        max_ece, max_brier: The bounds (None: not gated).
        passed: Whether calibration is within its bounds.
        reasons: Why it fails.
    """

    summary: CalibrationSummary | None
    uses: str
    max_ece: float | None
    max_brier: float | None
    passed: bool
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GateDecision:
    """The whole gate.

    Attributes:
        passed: Every entry and the calibration pass, and the scope is sound.
        entries: One result per entry in scope, sorted by id.
        calibration: The calibration finding (None when neither bounded nor given).
        reasons: Failures that belong to no single entry (scope, calibration), one line each.
        notes: Things worth knowing that do not fail the gate (unused overrides, ...).
    """

    passed: bool
    entries: list[EntryResult]
    calibration: CalibrationResult | None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[EntryResult]:
        """The entries that fail."""
        return [e for e in self.entries if not e.passed]


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    Closed form, because ``successes`` may be fractional (a tie counts half) while
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` takes whole counts only; on whole counts the
    two agree (the tests check it).

    Raises:
        ValueError: ``n`` is not positive or ``successes`` is outside ``[0, n]``.
    """
    if n <= 0:
        raise ValueError("the Wilson interval needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside [0, {n}]")
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = p + z2n / 2
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    denom = 1 + z2n
    return max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)


def bootstrap_lower_bound(scores: Sequence[float], *, confidence: float = 0.95, n_boot: int = 2000,
                          seed: int | Sequence[int] = 0) -> float:
    """Lower end of the two-sided percentile bootstrap interval of a mean (``scipy.stats.bootstrap``).

    Raises:
        ValueError: ``scores`` is empty.
    """
    import numpy as np  # only this interval needs them; the gate module itself stays light
    from scipy.stats import bootstrap

    if not scores:
        raise ValueError("the bootstrap needs at least one score")
    arr = np.asarray(scores, dtype=float)
    if arr.size == 1:  # one score has only itself to resample
        return float(arr[0])
    result = bootstrap((arr,), np.mean, n_resamples=n_boot, vectorized=True, confidence_level=confidence,
                       method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low)


def win_rate(outcomes: EntryOutcomes, policy: GatePolicy) -> tuple[float, int]:
    """The candidate's score and the number of comparisons it is over, under the policy's tie/failure rules.

    Returns:
        (successes, n): successes counts a win as 1 and (with ``ties = "half"``) a tie as 0.5.
    """
    successes = float(outcomes.wins)
    n = outcomes.wins + outcomes.losses
    if policy.ties == "half":
        successes += 0.5 * outcomes.ties
        n += outcomes.ties
    if policy.failures == "loss":
        n += outcomes.failures
    return successes, n


def _lower_bound(entry_id: str, outcomes: EntryOutcomes, successes: float, n: int, policy: GatePolicy) -> float:
    if policy.interval == "wilson":
        return wilson_interval(successes, n, policy.confidence)[0]
    scores = [1.0] * outcomes.wins + [0.0] * (n - outcomes.wins)
    if policy.ties == "half":
        scores[outcomes.wins:outcomes.wins + outcomes.ties] = [0.5] * outcomes.ties
    # Seeded per entry (not by position), so adding an entry never changes another entry's bound.
    return bootstrap_lower_bound(scores, confidence=policy.confidence, n_boot=policy.bootstrap_samples,
                                 seed=[policy.seed, zlib.crc32(entry_id.encode())])


def _entry(entry_id: str, cases: int, outcomes: EntryOutcomes, baseline: EntryOutcomes | None,
           policy: GatePolicy) -> EntryResult:
    min_cases = policy.min_cases_for(entry_id)
    bound = policy.bound_for(entry_id)
    reasons: list[str] = []
    if cases < min_cases:
        reasons.append(f"{cases} distinct accepted cases < {min_cases}")
    successes, n = win_rate(outcomes, policy)
    rate = low = None
    if outcomes.judged == 0:
        reasons.append("no results" + (f" ({outcomes.failures} failed comparisons)" if outcomes.failures else ""))
    elif n == 0:
        reasons.append(f"no decided comparisons ({outcomes.ties} ties excluded)")
    else:
        rate = successes / n
        low = _lower_bound(entry_id, outcomes, successes, n, policy)
        if low < bound:
            pct = round(policy.confidence * 100, 1)
            reasons.append(f"win rate {rate:.3f} has {pct:g}% lower bound {low:.3f} < {bound:g} (n={n})")
    base_rate = base_n = None
    if baseline is not None:
        b_successes, base_n = win_rate(baseline, policy)
        base_rate = b_successes / base_n if base_n else None
    return EntryResult(entry_id=entry_id, cases=cases, min_cases=min_cases, wins=outcomes.wins,
                       losses=outcomes.losses, ties=outcomes.ties, failures=outcomes.failures, n_judged=n,
                       win_rate=rate, lower_bound=low, bound=bound, passed=not reasons, reasons=reasons,
                       baseline_win_rate=base_rate, baseline_n=base_n)


def _calibration(summary: CalibrationSummary | None, policy: GatePolicy) -> CalibrationResult | None:
    gated = policy.max_ece is not None or policy.max_brier is not None
    if not gated and summary is None:
        return None
    reasons: list[str] = []
    if gated and summary is None:
        reasons.append("no calibration metrics given, but the policy bounds "
                       + " and ".join(n for n, b in (("ECE", policy.max_ece), ("Brier", policy.max_brier)) if b
                                      is not None))
    elif summary is not None:
        upper = policy.calibration_uses == "upper"
        for name, bound, point, high in (("ECE", policy.max_ece, summary.ece_point, summary.ece_high),
                                         ("Brier", policy.max_brier, summary.brier_point, summary.brier_high)):
            if bound is None:
                continue
            value = high if upper else point
            what = f"{name} upper 95% bound" if upper else name
            if math.isnan(value):
                reasons.append(f"{what} is unavailable (n={summary.n})")
            elif value > bound:
                floor = summary.ece_floor if name == "ECE" else None
                hint = (f"; a perfectly calibrated judge averages ECE {floor:.3f} at this n, so the bound needs "
                        "more labelled verdicts" if floor is not None and floor >= bound else "")
                reasons.append(f"{what} {value:.3f} > {bound:g} (point {point:.3f}, n={summary.n}, "
                               f"{summary.variant}{hint})")
    return CalibrationResult(summary=summary, uses=policy.calibration_uses, max_ece=policy.max_ece,
                             max_brier=policy.max_brier, passed=not reasons, reasons=reasons)


def _in_scope(known: set[str], policy: GatePolicy) -> tuple[list[str], list[str]]:
    """Entries in scope, and the scope's problems (patterns that match nothing)."""
    if policy.scope is None:
        return sorted(known), []
    chosen: set[str] = set()
    problems: list[str] = []
    for pattern in policy.scope:
        if any(ch in pattern for ch in "*?["):
            hits = {e for e in known if fnmatch.fnmatchcase(e, pattern)}
            if not hits:
                problems.append(f"scope pattern {pattern!r} matches no entry")
            chosen |= hits
        else:
            chosen.add(pattern)  # an entry named outright is required even with no cases or results
    return sorted(chosen), problems


def decide(coverage: Sequence[EntryCoverage], outcomes: Mapping[str, EntryOutcomes], policy: GatePolicy, *,
           calibration: CalibrationSummary | None = None,
           baseline: Mapping[str, EntryOutcomes] | None = None,
           required_entries: Sequence[str] = ()) -> GateDecision:
    """Decide whether a candidate passes the gate.

    Args:
        coverage: Test cases per entry (entries absent here have zero cases).
        outcomes: The candidate's comparisons per entry (entries absent here have no results).
        policy: Thresholds and interval.
        calibration: The judge's calibration on held-out rulings, if measured.
        baseline: The baseline's comparisons per entry against the same references (reported, not gated).
        required_entries: Entries that must be gated even if neither coverage nor results mention them
            (e.g. every spec entry in the rulebook), so an entry without any case cannot slip through.

    Returns:
        The decision: every entry in scope with its reasons, the calibration finding, and gate-level reasons.
    """
    cases = {c.entry_id: c.distinct_accepted for c in coverage}
    known = set(cases) | set(outcomes) | set(required_entries)
    entry_ids, reasons = _in_scope(known, policy)
    if not entry_ids:
        reasons.append("no spec entries in scope")
    entries = [_entry(e, cases.get(e, 0), outcomes.get(e, EntryOutcomes()),
                      None if baseline is None else baseline.get(e, EntryOutcomes()), policy) for e in entry_ids]
    cal = _calibration(calibration, policy)
    if cal is not None:
        reasons.extend(f"calibration: {r}" for r in cal.reasons)
    failing = [e for e in entries if not e.passed]
    notes = [f"per_entry {key!r} matches no entry in scope" for key in policy.per_entry
             if not any(fnmatch.fnmatchcase(e, key) for e in entry_ids)]
    passed = not failing and not reasons
    return GateDecision(passed=passed, entries=entries, calibration=cal, reasons=reasons, notes=notes)
