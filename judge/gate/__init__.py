"""The release gate: does a candidate cover every spec entry and beat its baseline, with a judge whose
confidence is honest?

* :mod:`judge.gate.policy` — `GatePolicy` from TOML.
* :mod:`judge.gate.decide` — the pure decision (`decide`, `wilson_interval`, ...).
* :mod:`judge.gate.inputs` — results, cases, coverage and calibration files to plain values.
* :mod:`judge.gate.workflow` — `run_gate` on files (what ``judge gate`` and the pytest plugin call).
* :mod:`judge.gate.render` — tables, text and JSON.

Names load on first use: the pytest plugin imports this package in every test session, so it stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from judge.gate.decide import (
        CalibrationResult,
        CalibrationSummary,
        EntryOutcomes,
        EntryResult,
        GateDecision,
        decide,
        wilson_interval,
    )
    from judge.gate.policy import EntryOverride, GatePolicy, load_policy
    from judge.gate.render import decision_json, decision_text
    from judge.gate.workflow import GateRun, run_gate

_WHERE = {
    "CalibrationResult": "decide", "CalibrationSummary": "decide", "EntryOutcomes": "decide",
    "EntryResult": "decide", "GateDecision": "decide", "decide": "decide", "wilson_interval": "decide",
    "EntryOverride": "policy", "GatePolicy": "policy", "load_policy": "policy",
    "decision_json": "render", "decision_text": "render",
    "GateRun": "workflow", "run_gate": "workflow",
}

__all__ = [
    "CalibrationResult",
    "CalibrationSummary",
    "EntryOutcomes",
    "EntryOverride",
    "EntryResult",
    "GateDecision",
    "GatePolicy",
    "GateRun",
    "decide",
    "decision_json",
    "decision_text",
    "load_policy",
    "run_gate",
    "wilson_interval",
]


def __getattr__(name: str) -> object:
    if name in _WHERE:
        return getattr(importlib.import_module(f"judge.gate.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'judge.gate' has no attribute {name!r}")
