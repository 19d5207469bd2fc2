"""`judge gate`: the release gate — exit 0 only when the candidate passes every check of the policy."""

from __future__ import annotations

from pathlib import Path

import typer

from judge.cli.common import console, emit_json, err_console, state
from judge.rules.model import Layer

_SHOWN = 20  # unmatched pair ids listed in --json (the count is always given)


def _rulebook_entries(ctx: typer.Context) -> list[str]:
    book = state(ctx).rulebook(with_index=False, create=False)
    return [rule.id for rule in book.rules(Layer.SPEC, active_only=True)]


def gate(
    ctx: typer.Context,
    candidate: Path = typer.Option(..., "--candidate", "-c",
                                   help="Results JSONL from `judge run` on pairs with the CANDIDATE as response A "
                                        "and the baseline's response (head-to-head) or the case's reference "
                                        "answer as response B. This is what is gated."),
    baseline: Path | None = typer.Option(None, "--baseline",
                                         help="Results of the baseline (as response A) against the same "
                                              "references: its win rate is shown beside the candidate's, not "
                                              "gated. To gate candidate vs baseline, judge head-to-head pairs "
                                              "and pass them as --candidate."),
    policy: Path | None = typer.Option(None, "--policy", "-p",
                                       help="Gate policy TOML (see examples/gate.toml); default: 100 cases per "
                                            "entry, Wilson 95% lower bound >= 0.5, calibration not gated."),
    cases: Path | None = typer.Option(None, "--cases",
                                      help="Cases as JSONL (id, entries[, status, duplicate_of]) or as "
                                           "`judge cases list --json` prints them: the entries each result "
                                           "counts for (accepted cases only), and coverage unless --coverage "
                                           "is given. Without it the case store is asked."),
    coverage: Path | None = typer.Option(None, "--coverage",
                                         help="Coverage JSON as printed by `judge coverage --json` (distinct "
                                              "cases with near-duplicates merged)."),
    pairs: list[Path] = typer.Option([], "--pairs", metavar="PAIRS.jsonl",
                                     help="Pair JSONL whose meta.case_id maps pair ids to case ids (repeatable); "
                                          "otherwise a pair id is its case id."),
    calibration: Path | None = typer.Option(None, "--calibration",
                                            help="metrics.json from `judge eval --metrics-out` on held-out "
                                                 "rulings (the recalibrated report when present)."),
    rulebook_entries: bool = typer.Option(False, "--rulebook-entries",
                                          help="Also gate every active spec entry of the rulebook (--db), so an "
                                               "entry without any case or result fails instead of being unseen."),
    all_entries: bool = typer.Option(False, "--all", "--verbose", help="Show every entry, not only failing ones."),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON (exit code unchanged)."),
) -> None:
    """Gate a candidate: coverage per spec entry, win rate lower bound, judge calibration.

    Exit codes: 0 the gate passed; 1 it failed (a table lists every failing entry and why); 2 bad input or
    usage.
    """
    from judge.cli.cases_common import open_store
    from judge.gate.render import decision_json, decision_lines, decision_table
    from judge.gate.workflow import run_gate

    source = open_store(ctx) if cases is None else None
    required = _rulebook_entries(ctx) if rulebook_entries else []
    run = run_gate(policy, candidate, baseline=baseline, cases=cases, coverage=coverage, pairs=pairs,
                   calibration=calibration, source=source, required_entries=required)
    decision = run.decision
    if run.unmatched:
        err_console.print(f"warning: {len(run.unmatched)} of {run.results} candidate results belong to no accepted "
                          f"case (ignored), e.g. {run.unmatched[0]!r}", highlight=False, markup=False)
    if run.escalated:
        err_console.print(f"note: {run.escalated} of {run.results} candidate verdicts are escalated (below the judge's "
                          "abstention threshold: a person should review them); the gate counts them by their winner",
                          highlight=False, markup=False)
    if as_json:
        data = decision_json(decision)
        data["run"] = {"inputs": run.inputs, "results": run.results, "escalated": run.escalated,
                       "n_unmatched": len(run.unmatched),
                       "unmatched": run.unmatched[:_SHOWN], "baseline_results": run.baseline_results,
                       "baseline_n_unmatched": len(run.baseline_unmatched)}
        emit_json(data)
    else:
        if decision.entries and (all_entries or decision.failing):
            console.print(decision_table(decision, all_entries=all_entries))
        for line in decision_lines(decision):
            console.print(line, highlight=False, markup=False)
        verdict = "[bold green]PASSED[/]" if decision.passed else "[bold red]FAILED[/]"
        beyond = f"; {len(decision.reasons)} check(s) beyond the entries fail" if decision.reasons else ""
        console.print(f"gate {verdict}: {len(decision.entries) - len(decision.failing)}/{len(decision.entries)} "
                      f"entries pass{beyond}", highlight=False)  # counts only: the verdict's markup is ours
    if not decision.passed:
        raise typer.Exit(code=1)
