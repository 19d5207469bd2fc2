"""`judge report`: an evaluation as a self-contained HTML page with plots, plus metrics.json."""

from __future__ import annotations

from pathlib import Path

import typer

from judge.cli.common import console, emit_json


def report(
    results: Path = typer.Argument(..., help="Results JSONL from `judge run` on the labelled pairs."),
    labels: Path = typer.Option(..., "--labels", "-l",
                                help="Labelled pairs JSONL: id, prompt, response_a, response_b, label."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write index.html, metrics.json and the PNGs."),
    recalibrate: str = typer.Option("auto", "--recalibrate",
                                    help="auto, none, temperature, platt, isotonic or logistic (cross-fitted)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap replicates for every interval."),
    seed: int = typer.Option(0, "--seed", help="Seed for folds and bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print where the report went and its headline as JSON."),
) -> None:
    """Write an HTML report of RESULTS against labelled pairs: calibration plots, breakdowns, confident errors.

    The page (OUT/index.html) is a single file that opens offline; the plots are also written as PNGs and
    the full metrics as OUT/metrics.json.
    """
    from judge.calibration.workflow import evaluate_results
    from judge.cli.eval_cmd import headline_table
    from judge.records import read_pairs, read_results
    from judge.reporting import write_report

    ev = evaluate_results(labels, results, recalibrate=recalibrate, seed=seed, n_boot=bootstrap)
    pairs = {rec.pair.id or "": rec for rec in read_pairs(labels)}
    index = write_report(ev, out, verdicts=read_results(results), pairs=pairs)
    reports = [ev.raw] + ([ev.recalibrated] if ev.recalibrated is not None else [])
    if as_json:
        emit_json({"index": str(index), "metrics": str(Path(index).parent / "metrics.json"),
                   "recalibration": ev.recalibration.describe(),
                   "headline": {rep.variant: {k: v.point for k, v in rep.headline.items()} for rep in reports}})
        return
    console.print(headline_table(reports, f"{ev.results} vs {ev.labelled}"))
    if ev.recalibration.skipped:
        console.print(f"recalibration {ev.recalibration.describe()}", highlight=False)
    console.print(f"report written to {index}", highlight=False)
