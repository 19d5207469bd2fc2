"""A pytest plugin (entry point ``judge_gate``): gate a release inside a project's own test suite.

Installed with `judge`, it registers the ``judge_gate`` fixture and the ``judge_gate_policy`` ini option::

    # pytest.ini / [tool.pytest.ini_options]
    judge_gate_policy = "gate.toml"

    def test_release_gate(judge_gate):
        decision = judge_gate(candidate="results/candidate.jsonl", cases="cases.jsonl",
                              calibration="eval/metrics.json")
        assert decision.passed  # reached only when it passed: a failing gate fails the test with its table

Relative paths resolve against pytest's root directory. Nothing heavy is imported until the fixture runs,
since pytest loads this module in every session of every project that has `judge` installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from judge.gate.decide import GateDecision
    from judge.gate.policy import GatePolicy

__all__ = ["GateRunner", "judge_gate", "pytest_addoption"]

GateRunner = Callable[..., "GateDecision"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini option naming the default gate policy."""
    parser.addini("judge_gate_policy", "Gate policy TOML used by the judge_gate fixture when none is passed "
                                       "(relative to the root directory).", default="")


def make_runner(rootdir: Path, default_policy: str | None = None) -> GateRunner:
    """A callable that runs the gate on files and fails the current test, with the table, when it fails.

    Args:
        rootdir: Directory relative paths resolve against.
        default_policy: Policy file used when the call passes none (None or "": the default policy).
    """

    def resolve(path: str | Path | None) -> Path | None:
        return None if path is None else rootdir / Path(path)

    def run(*, candidate: str | Path, policy: GatePolicy | str | Path | None = None,
            baseline: str | Path | None = None, cases: str | Path | None = None,
            coverage: str | Path | None = None, pairs: Sequence[str | Path] = (),
            calibration: str | Path | None = None, source: Any = None,
            required_entries: Sequence[str] = (), all_entries: bool = False) -> GateDecision:
        from judge.errors import JudgeError
        from judge.gate.policy import GatePolicy
        from judge.gate.render import decision_text
        from judge.gate.workflow import run_gate

        if policy is None and default_policy:
            policy = default_policy
        chosen = policy if isinstance(policy, GatePolicy) else resolve(policy)
        try:
            result = run_gate(chosen, rootdir / Path(candidate), baseline=resolve(baseline),
                              cases=resolve(cases), coverage=resolve(coverage),
                              pairs=[rootdir / Path(p) for p in pairs], calibration=resolve(calibration),
                              source=source, required_entries=required_entries)
        except JudgeError as exc:
            pytest.fail(f"judge gate: bad input: {exc}", pytrace=False)
        if not result.decision.passed:
            pytest.fail(decision_text(result.decision, all_entries=all_entries), pytrace=False)
        return result.decision

    return run


@pytest.fixture
def judge_gate(pytestconfig: pytest.Config) -> GateRunner:
    """Run the release gate: ``judge_gate(candidate=..., cases=..., policy=..., calibration=...)``.

    Returns the `GateDecision` when the gate passes; fails the test with the table of failing entries
    otherwise (and on bad input, with the error).
    """
    policy = str(pytestconfig.getini("judge_gate_policy") or "") or None
    return make_runner(Path(pytestconfig.rootpath), policy)
