"""Rendering and checks shared by `judge eval`, `judge calibrate` and `judge run --calibrator`: the
leave-one-source-out table and the shift alarm on a judged batch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from judge.calibration.shift import ShiftReport
    from judge.judging.engine import Judge
    from judge.records import PairRecord
    from judge.verdicts import Verdict

__all__ = ["check_batch", "source_table"]


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def source_table(rows: list[dict[str, Any]], title: str) -> Table:
    """Leave-one-source-out figures (``SourceFigures`` dumps), raw -> recalibrated on each left-out source."""
    table = Table(title=title)
    for col in ("left-out source", "n", "fitted on", "method", "accuracy", "ECE-15", "Brier", "coverage at agreement"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if r.get("skipped"):
            table.add_row(escape(r["source"]), str(r["n"]), str(r["n_fitted"]), "-", "-", "-", "-",
                          escape(f"skipped: {r['skipped']}"))
            continue
        sel = r.get("selective") or {}
        method = r["method"] + (f" ({', '.join(r['features'])})" if r.get("features") else "")
        table.add_row(escape(r["source"]), str(r["n"]), str(r["n_fitted"]), escape(method),
                      *(f"{_f(r['raw'][k])} -> {_f(r['recalibrated'][k])}"
                        for k in ("accuracy", "ece_uniform_15", "brier_binary")),
                      "-" if not sel else f"{_f(sel.get('coverage'), 2)} at {_f(sel.get('agreement'), 2)}"
                      + ("" if sel.get("certified") else " (no certified threshold)"))
    return table


def check_batch(judge: Judge, records: list[PairRecord], out: Path, verdicts: list[Verdict], *, abstain: bool,
                trust_shifted: bool) -> tuple[ShiftReport, int]:
    """The shift alarm on a finished batch judged with a calibrator.

    On a shifted batch judged with ``abstain`` (and without ``trust_shifted``) every calibrated verdict is
    re-decided by the uncalibrated rule (`escalate_uncalibrated`, the same threshold on the judge's own
    confidence) and the re-decided verdicts are appended to ``out`` (the last line per pair wins; nothing is
    overwritten). Returns the report and how many verdicts were re-decided.
    """
    from judge.calibration.apply import batch_shift, escalate_uncalibrated

    cal = judge.calibrator
    if cal is None:
        raise ValueError("check_batch: the judge has no calibrator")
    lengths = {r.pair.id or "": (len(r.pair.response_a.text), len(r.pair.response_b.text)) for r in records}
    report = batch_shift(cal, verdicts, lengths)
    if not (report.shifted and abstain and not trust_shifted and judge.escalate_below is not None):
        return report, 0
    threshold = judge.escalate_below
    redo = [escalate_uncalibrated(v, threshold) for v in verdicts
            if v.failure is None and v.calibrator == cal.id]
    if redo:
        with out.open("a", encoding="utf-8") as fh:
            fh.write("".join(v.model_dump_json() + "\n" for v in redo))
    return report, len(redo)
