"""`judge report`: an evaluation as a self-contained HTML page with plots, plus metrics.json."""

from __future__ import annotations

from pathlib import Path

import typer

from judge.cli.common import console, emit_json
from judge.cli.eval_cmd import BOOTSTRAP_HELP, RECALIBRATE_HELP, check_method, headline_table, nothing_scored
from judge.errors import NothingScoredError


def _check_out_dir(value: Path) -> Path:
    """Typer callback for ``--out``: a directory (missing folders are created), not an existing file."""
    if value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{str(value)!r} is a file; the output must be a directory (index.html, "
                                 "metrics.json and the PNGs are written into it)")
    ancestor = next((p for p in value.parents if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise typer.BadParameter(f"{str(ancestor)!r} is a file, not a folder")
    return value


def report(
    results: Path = typer.Argument(..., help="Results JSONL from `judge run` on the labelled pairs."),
    labels: Path = typer.Option(..., "--labels", "-l",
                                help="Labelled pairs JSONL: id, prompt, response_a, response_b, label."),
    out: Path = typer.Option(..., "--out", "-o", callback=_check_out_dir,
                             help="Directory to write index.html, metrics.json and the PNGs."),
    recalibrate: str = typer.Option("auto", "--recalibrate", callback=check_method, help=RECALIBRATE_HELP),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=1, help=BOOTSTRAP_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed for folds and bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print where the report went and its headline as JSON."),
) -> None:
    """Write an HTML report of RESULTS against labelled pairs: calibration plots, breakdowns, confident errors.

    The page (OUT/index.html) is a single file that opens offline; the plots are also written as PNGs and
    the full metrics as OUT/metrics.json.
    """
    from judge.api import report as write_html_report

    try:
        ev, index = write_html_report(results, labels, out, recalibrate=recalibrate, seed=seed, n_boot=bootstrap)
    except NothingScoredError as exc:
        nothing_scored(exc)  # exit 1 when pairs failed, as `judge eval` does
    reports = [ev.raw] + ([ev.recalibrated] if ev.recalibrated is not None else [])
    if as_json:
        emit_json({"index": str(index), "metrics": str(Path(index).parent / "metrics.json"),
                   "recalibration": ev.recalibration.describe(),
                   "headline": {rep.variant: {k: v.point for k, v in rep.headline.items()} for rep in reports}})
        return
    console.print(headline_table(reports, f"{ev.results} vs {ev.labelled}"))
    if ev.recalibration.skipped:
        console.print(f"recalibration {ev.recalibration.describe()}", highlight=False, markup=False)
    console.print(f"report written to {index}", highlight=False, markup=False)
