"""The evaluation report's plots as PNG bytes: reliability diagram, confidence histogram, risk-coverage curves.

Plots use :class:`matplotlib.figure.Figure` directly (no pyplot, no global figure registry, no GUI backend).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    from judge.calibration.evaluate import EvalReport

__all__ = ["confidence_hist_png", "reliability_png", "risk_coverage_png"]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _fmt(x: Any, digits: int = 3) -> str:
    """A number for the page: ``-`` for None or NaN."""
    if not _finite(x):
        return "-"
    return str(x) if isinstance(x, int) else f"{x:.{digits}f}"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100)
    finally:
        fig.clear()
    return buf.getvalue()


def _nonempty_bins(report: EvalReport) -> list[dict[str, float]]:
    return [b for b in report.reliability.get("uniform", [])
            if b.get("count", 0) > 0 and _finite(b.get("mean_confidence")) and _finite(b.get("accuracy"))]


def _short(variant: str) -> str:
    return variant.split(" (", 1)[0]


def _ece_name(report: EvalReport) -> str | None:
    return next((k for k in report.headline if k.startswith("ece_uniform")), None)


def reliability_png(reports: Sequence[EvalReport]) -> bytes:
    """Reliability diagram, one panel per report: accuracy against mean confidence per non-empty equal-width
    bin, the diagonal of perfect calibration, and the number of verdicts per bin (bars and labels)."""
    fig = Figure(figsize=(5.4 * len(reports), 4.6), layout="constrained")
    axes = fig.subplots(1, len(reports), squeeze=False)[0]
    for ax, rep, colour in zip(axes, reports, _COLOURS, strict=False):
        bins = _nonempty_bins(rep)
        counts_ax = ax.twinx()
        counts_ax.set_ylabel("verdicts in bin", color="#7f8c99")
        counts_ax.tick_params(axis="y", colors="#7f8c99")
        ax.set_zorder(counts_ax.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
        if bins:
            counts_ax.bar([(b["lower"] + b["upper"]) / 2 for b in bins], [b["count"] for b in bins],
                          width=[0.9 * (b["upper"] - b["lower"]) for b in bins], color="#cfd8e3", alpha=0.7)
            counts_ax.set_ylim(0, max(b["count"] for b in bins) * 3)
            xs, ys = [b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins]
            ax.plot(xs, ys, marker="o", color=colour, label="accuracy in bin")
            for b in bins:
                ax.annotate(f"n={int(b['count'])}", (b["mean_confidence"], b["accuracy"]), textcoords="offset points",
                            xytext=(0, 7), ha="center", fontsize=7)
            low = min(0.5, math.floor(min(b["lower"] for b in bins) * 10) / 10)
        else:
            ax.text(0.5, 0.5, "no scored verdicts", ha="center", transform=ax.transAxes)
            low = 0.0
        ece_key = _ece_name(rep)
        ece = f"  ({ece_key} {_fmt(rep.headline[ece_key].point)})" if ece_key else ""
        ax.set_title(f"{_short(rep.variant)}{ece}", fontsize=10)
        ax.set_xlim(low, 1.0)
        ax.set_ylim(0.0, 1.12)  # room for the count label of a bin at accuracy 1
        ax.set_xlabel("mean confidence in bin")
        ax.set_ylabel("accuracy in bin")
        ax.legend(loc="best", fontsize=8)  # away from the bins' points (a fixed corner hid a bin at accuracy 1)
    return _png(fig)


def confidence_hist_png(reports: Sequence[EvalReport]) -> bytes:
    """Confidence histogram, one panel per report, from the equal-width reliability bins: right verdicts and
    wrong verdicts stacked."""
    fig = Figure(figsize=(5.4 * len(reports), 4.0), layout="constrained")
    axes = fig.subplots(1, len(reports), squeeze=False, sharey=True)[0]
    for ax, rep in zip(axes, reports, strict=False):
        bins = _nonempty_bins(rep)
        if bins:
            centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
            widths = [0.9 * (b["upper"] - b["lower"]) for b in bins]
            right = [round(b["count"] * b["accuracy"]) for b in bins]
            wrong = [int(b["count"]) - r for b, r in zip(bins, right, strict=True)]
            ax.bar(centres, right, width=widths, color="#4c9a5b", label="right")
            ax.bar(centres, wrong, width=widths, bottom=right, color="#d0584f", label="wrong")
            ax.legend(loc="best", fontsize=8)
            ax.set_xlim(min(0.5, math.floor(min(b["lower"] for b in bins) * 10) / 10), 1.0)
        else:
            ax.text(0.5, 0.5, "no scored verdicts", ha="center", transform=ax.transAxes)
        ax.set_title(f"{_short(rep.variant)} (n={rep.n_scored})", fontsize=10)
        ax.set_xlabel("confidence in the chosen outcome")
        ax.set_ylabel("verdicts")
    return _png(fig)


def risk_coverage_png(reports: Sequence[EvalReport]) -> bytes:
    """Risk-coverage curves (error rate among the verdicts kept against the share kept), one line per report,
    with the held-out selective-judging operating point and its target risk when known."""
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    drew = False
    for rep, colour in zip(reports, _COLOURS, strict=False):
        pts = [(c, r) for c, r, _ in rep.risk_coverage if _finite(c) and _finite(r)]
        if not pts:
            continue
        aurc = rep.headline.get("aurc")
        label = _short(rep.variant) + (f" (AURC {_fmt(aurc.point)})" if aurc is not None else "")
        ax.plot([0.0] + [c for c, _ in pts], [pts[0][1]] + [r for _, r in pts], drawstyle="steps-pre",
                color=colour, label=label)
        drew = True
        sel = rep.selective
        if sel and _finite(sel.get("coverage")) and _finite(sel.get("agreement")):
            ax.plot([sel["coverage"]], [1 - sel["agreement"]], marker="*", markersize=12, color=colour,
                    linestyle="none", label=f"{_short(rep.variant)}: held-out selective judging")
    targets = {rep.selective["target"] for rep in reports if rep.selective}
    for t in sorted(targets):
        ax.axhline(1 - t, color="grey", linestyle=":", linewidth=1, label=f"target risk {1 - t:.2f}")
    if not drew:
        ax.text(0.5, 0.5, "no scored verdicts", ha="center", transform=ax.transAxes)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("coverage (share of verdicts kept, most confident first)")
    ax.set_ylabel("risk (error rate among kept)")
    ax.set_title("Risk-coverage", fontsize=10)
    if drew:
        ax.legend(loc="best", fontsize=8)
    return _png(fig)

