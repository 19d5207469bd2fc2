"""The gate from files: read the inputs, decide, and keep what was read (the edge the CLI and the pytest
plugin share)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judge.cases.coverage import EntryCoverage
from judge.errors import InputError
from judge.gate.decide import GateDecision, decide
from judge.gate.inputs import (
    CaseSource,
    check_one_judge,
    outcomes_from_verdicts,
    read_calibration,
    read_cases,
    read_coverage,
    read_pair_case_ids,
)
from judge.gate.policy import GatePolicy, load_policy

__all__ = ["GateRun", "run_gate"]


@dataclass
class GateRun:
    """A gate decision with what it was decided on.

    Attributes:
        decision: The decision.
        inputs: The files read (for the JSON report).
        results: Candidate results read.
        escalated: Candidate verdicts marked escalated (below the judge's abstention threshold: a person should
            review them); the gate counts them by their winner, like any verdict.
        unmatched: Candidate pair ids that belong to no counted case (ignored).
        baseline_results, baseline_unmatched: The same for the baseline, when given.
    """

    decision: GateDecision
    inputs: dict[str, Any] = field(default_factory=dict)
    results: int = 0
    escalated: int = 0
    unmatched: list[str] = field(default_factory=list)
    baseline_results: int | None = None
    baseline_unmatched: list[str] = field(default_factory=list)


def run_gate(policy: GatePolicy | str | Path | None, candidate: str | Path, *, baseline: str | Path | None = None,
             cases: str | Path | None = None, coverage: str | Path | None = None,
             pairs: Sequence[str | Path] = (), calibration: str | Path | None = None,
             source: CaseSource | None = None, required_entries: Sequence[str] = ()) -> GateRun:
    """Run the gate on files.

    Args:
        policy: A policy, a TOML file, or None for the default policy.
        candidate: `judge run` results with the candidate as response A.
        baseline: `judge run` results with the baseline as response A against the same references (its win
            rate is reported beside the candidate's, not gated).
        cases: Cases JSONL (id, entries): which entries each result counts for, and coverage unless given.
        coverage: Coverage JSON (as ``judge coverage --json`` prints it); wins over coverage from ``cases``.
        pairs: Pair files whose ``meta.case_id`` maps pair ids to case ids.
        calibration: ``metrics.json`` of ``judge eval --metrics-out``.
        source: Any other `CaseSource` (the case store); used when ``cases`` is not given.
        required_entries: Entries that must be gated even if nothing mentions them.

    Raises:
        InputError: A file is missing or malformed, or there is no way to map results to entries.
    """
    from judge.records import read_results

    if not isinstance(policy, GatePolicy):
        policy = load_policy(policy) if policy is not None else GatePolicy()
    if cases is not None:
        source = read_cases(cases, review_methods=policy.review_methods)
    elif source is None:
        raise InputError("the gate needs cases to map results to entries: a cases file (--cases, cases=) or a "
                         "case store (source=Workspace.open().cases())")
    elif policy.review_methods is not None:
        source = _ReviewedBy(source, policy.review_methods)
    pair_case_ids = read_pair_case_ids(pairs) if pairs else None
    cand_verdicts = read_results(_existing(candidate))
    check_one_judge(cand_verdicts, Path(candidate))
    cand = outcomes_from_verdicts(cand_verdicts, source.entries_of, pair_case_ids=pair_case_ids)
    base = None
    if baseline is not None:
        base_verdicts = read_results(_existing(baseline))
        check_one_judge(base_verdicts, Path(baseline))
        base = outcomes_from_verdicts(base_verdicts, source.entries_of, pair_case_ids=pair_case_ids)
    summary = read_calibration(calibration, ece_metric=policy.ece_metric) if calibration is not None else None
    entry_coverage = (read_coverage(coverage, review_methods=policy.review_methods) if coverage is not None
                      else source.coverage())
    decision = decide(entry_coverage, cand.by_entry, policy, calibration=summary,
                      baseline=base.by_entry if base is not None else None, required_entries=required_entries)
    inputs = {"candidate": str(candidate), "baseline": _opt(baseline), "cases": _opt(cases),
              "coverage": _opt(coverage), "pairs": [str(p) for p in pairs], "calibration": _opt(calibration)}
    return GateRun(decision=decision, inputs=inputs, results=cand.results, unmatched=cand.unmatched,
                   escalated=sum(1 for v in cand_verdicts if v.failure is None and v.escalated),
                   baseline_results=base.results if base is not None else None,
                   baseline_unmatched=base.unmatched if base is not None else [])


class _ReviewedBy:
    """A case store seen through a policy's review methods: only cases accepted by one of them count."""

    def __init__(self, store: Any, methods: Sequence[str]) -> None:
        if not hasattr(store, "counted_cases"):
            raise InputError("the policy counts only some review methods, but this case source cannot tell how "
                             "its cases were reviewed: pass --cases from `judge cases list --json`",
                             field="review_methods")
        self._store = store
        self._methods = tuple(methods)

    def coverage(self) -> Sequence[EntryCoverage]:
        """The store's coverage counting only the accepted reviews."""
        rows: Sequence[EntryCoverage] = self._store.coverage(methods=self._methods)
        return rows

    def entries_of(self, case_id: str) -> Sequence[str]:
        """The entries of a case accepted by one of the methods; empty otherwise."""
        entries: Sequence[str] = self._store.entries_of(case_id, methods=self._methods)
        return entries


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():  # a folder is named as one by the reader (`judge.jsonl.iter_lines`)
        raise InputError("no such results file", path=path)
    return path


def _opt(path: str | Path | None) -> str | None:
    return None if path is None else str(path)
