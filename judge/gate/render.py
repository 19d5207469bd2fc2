"""How a gate decision reads: a rich table for people, plain text for test failures, a dict for machines."""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from judge.gate.decide import EntryResult, GateDecision

__all__ = ["decision_json", "decision_lines", "decision_table", "decision_text"]


def _f(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.3f}"


def decision_table(decision: GateDecision, *, all_entries: bool = False) -> Table:
    """The failing entries (or every entry) with their numbers and the reasons they fail."""
    rows: list[EntryResult] = decision.entries if all_entries else decision.failing
    n_fail, n_all = len(decision.failing), len(decision.entries)
    title = (f"judge gate: {'PASSED' if decision.passed else 'FAILED'} — {n_fail} of {n_all} entries fail"
             + (f"; {len(decision.reasons)} check(s) beyond the entries fail (below)" if decision.reasons else ""))
    table = Table(title=title, title_justify="left")
    table.add_column("entry", overflow="fold")
    table.add_column("cases", justify="right")
    table.add_column("W/L/T/F", justify="right")
    table.add_column("win rate", justify="right")
    table.add_column("lower", justify="right")
    table.add_column("bound", justify="right")
    with_baseline = any(e.baseline_n is not None for e in rows)
    if with_baseline:
        table.add_column("baseline", justify="right")
    table.add_column("why it fails" if not all_entries else "result", overflow="fold")
    for e in rows:
        cells = [escape(e.entry_id), f"{e.cases}/{e.min_cases}", f"{e.wins}/{e.losses}/{e.ties}/{e.failures}",
                 _f(e.win_rate), _f(e.lower_bound), f"{e.bound:g}"]
        if with_baseline:
            cells.append(_f(e.baseline_win_rate))
        cells.append(escape("\n".join(e.reasons)) if e.reasons else "ok")
        table.add_row(*cells)
    return table


def _calibration_line(decision: GateDecision) -> str | None:
    cal = decision.calibration
    if cal is None:
        return None
    if cal.summary is None:
        return "calibration: FAILED — " + "; ".join(cal.reasons)
    s = cal.summary
    bounds = ", ".join(f"{n} <= {b:g}" for n, b in (("ECE", cal.max_ece), ("Brier", cal.max_brier)) if b is not None)
    gated = f"{'PASSED' if cal.passed else 'FAILED'} ({bounds}, on the {cal.uses} value)" if bounds else "not gated"
    line = (f"calibration ({s.variant}, n={s.n}): {gated} — ECE {_f(s.ece_point)} (upper {_f(s.ece_high)}), "
            f"Brier {_f(s.brier_point)} (upper {_f(s.brier_high)})")
    return line + "".join(f"\n  {r}" for r in cal.reasons)


def decision_lines(decision: GateDecision) -> list[str]:
    """The lines printed under the table: gate-level reasons, calibration, notes."""
    lines = [f"gate: {r}" for r in decision.reasons if not r.startswith("calibration: ")]
    cal = _calibration_line(decision)
    if cal:
        lines.append(cal)
    lines.extend(f"note: {n}" for n in decision.notes)
    return lines


def decision_text(decision: GateDecision, *, all_entries: bool = False, width: int = 140) -> str:
    """The table and lines as plain text (for ``pytest.fail`` and logs)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, no_color=True, highlight=False, emoji=False, force_terminal=False)
    if decision.entries and (all_entries or decision.failing):
        console.print(decision_table(decision, all_entries=all_entries))
    else:
        console.print(f"judge gate: {'PASSED' if decision.passed else 'FAILED'} "
                      f"({len(decision.entries)} entries in scope, none failing)")
    for line in decision_lines(decision):
        console.print(line, markup=False)
    return buf.getvalue().rstrip() + "\n"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def decision_json(decision: GateDecision) -> dict[str, Any]:
    """The decision as JSON-ready data (NaN as null), failing entries listed by id for quick checks."""
    data = dataclasses.asdict(decision)
    data["failing"] = [e.entry_id for e in decision.failing]
    return _clean(data)  # type: ignore[no-any-return]
