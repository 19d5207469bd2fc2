"""`judge eval` and `judge calibrate`: measure how honest the judge's confidence is, and correct it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from judge._atomic import write_text_atomic
from judge.cli.common import (
    ALLOW_EMPTY_HELP,
    EXIT_CODES,
    check_out_file,
    check_url,
    console,
    emit_json,
    err_console,
    exit_for_failures,
    refuse_input_as_output,
    require_rulebook,
    state,
)
from judge.cli.run_cmd import HOLDOUT_OPT, judge_file
from judge.errors import NothingScoredError

if TYPE_CHECKING:
    from judge.calibration.evaluate import EvalReport
    from judge.calibration.workflow import Evaluation

RESULTS_OPT = typer.Option(..., "--results", "-r", help="Results JSONL from `judge run` on the labelled pairs "
                                                       "(repeat for several files).")
GROUP_OPT = typer.Option("source", "--group-by",
                         help="What a pair's source is for leave-one-source-out validation: its 'source' field, "
                              "'file' (each labelled file), or another field of the pair records.")
SIGNALS_OPT = typer.Option("auto", "--signals",
                           help="Signals of the logistic calibrator: auto (logit, plus each of logit*agree, "
                                "logit*retrieval, verbal that lowers the left-out log loss on every source) or a "
                                "comma-separated list. 'length' is never chosen by auto: naming it rewards the "
                                "longer response, which pairs built to mislead exploit (docs/calibration.md).")


def check_method(value: str) -> str:
    """Typer callback for ``--method`` / ``--recalibrate``: auto or a calibration method, else a usage error (exit
    2) naming the option, before anything is read or judged."""
    from judge.calibration.methods import METHODS

    if value != "auto" and value not in METHODS:
        raise typer.BadParameter(f"unknown calibration method {value!r}; known: auto, {', '.join(METHODS)}")
    return value


def _between_0_and_1(value: float) -> float:
    """Typer callback for ``--target`` / ``--delta``: strictly between 0 and 1, else a usage error (exit 2)."""
    if not 0.0 < value < 1.0:
        raise typer.BadParameter(f"{value:g} is not between 0 and 1 (both excluded)")
    return value


RECALIBRATE_HELP = "auto, none, temperature, platt, isotonic or logistic (cross-fitted)."
BOOTSTRAP_HELP = "Bootstrap replicates for every interval."
FOLDS_OPT = typer.Option(5, "--folds", min=2, help="Cross-fitting folds.")
SEED_OPT = typer.Option(0, "--seed", help="Seed for folds and bootstrap.")
TARGET_OPT = typer.Option(0.9, "--target", callback=_between_0_and_1,
                          help="Target agreement for selective judging (abstention), between 0 and 1.")
DELTA_OPT = typer.Option(0.1, "--delta", callback=_between_0_and_1,
                         help="Risk tolerance: P(agreement below target) <= delta, between 0 and 1.")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def headline_table(reports: list[EvalReport], title: str) -> Table:
    """Headline metrics with 95% bootstrap CIs, one column per report (raw, recalibrated, ...)."""
    table = Table(title=title)
    table.add_column("metric")
    for rep in reports:
        table.add_column(rep.variant, overflow="fold")
    names = list(reports[0].headline)
    for name in names:
        cells = []
        for rep in reports:
            e = rep.headline.get(name)
            cells.append("-" if e is None else f"{_fmt(e.point)} [{_fmt(e.low, 2)}, {_fmt(e.high, 2)}]")
        table.add_row(name, *cells)
    for label, get in (
        ("scored / labelled", lambda r: f"{r.n_scored} / {r.n_labelled}"),
        ("failed, escalated, missing", lambda r: f"{r.n_failed}, {r.n_escalated}, {r.n_missing}"),
        ("ECE if calibrated (mean / p95; p)", lambda r: r.ece_floor_text()),
        ("wrong@high (wrong / confident)",
         lambda r: f"{int(r.wrong_at_high['n_wrong'])} / {int(r.wrong_at_high['n_confident'])}"),
        ("judge picks longer / labels do",
         lambda r: f"{_fmt(r.length_preference['judge_longer'], 2)} / {_fmt(r.length_preference['label_longer'], 2)}"),
        ("coverage @ target (held-out)",
         lambda r: "-" if not r.selective else
         f"{r.selective_text()} (target {r.selective['target']}, delta {r.selective['delta']})"),
    ):
        table.add_row(label, *(get(r) for r in reports))
    return table


def nothing_scored(exc: NothingScoredError) -> NoReturn:
    """Say that no pair could be scored; exit 1 when pairs failed (their failures are in the results), else 2."""
    err_console.print(f"error: {exc}", highlight=False, markup=False)
    exit_for_failures(exc.failed, exc.labelled)
    raise typer.Exit(2)


def _recalibration_worse(ev: Evaluation) -> tuple[float, float] | None:
    """(raw, recalibrated) binary log loss when the cross-fitted recalibration made it worse, else None."""
    if ev.recalibrated is None:
        return None
    raw, recalibrated = (r.headline.get("log_loss_binary") for r in (ev.raw, ev.recalibrated))
    if raw is None or recalibrated is None or not recalibrated.point > raw.point:
        return None
    return raw.point, recalibrated.point


def _print_evaluation(ev: Evaluation, suspects: int = 10) -> None:
    reports = [ev.raw] + ([ev.recalibrated] if ev.recalibrated else [])
    console.print(headline_table(reports, escape(f"{ev.results} vs {ev.labelled}")))
    signals = ", ".join(f"{k} {_fmt(v, 2)}" for k, v in ev.raw.signal_auroc.items())
    console.print(f"AUROC of each signal for correctness (raw): {signals}", highlight=False, markup=False)
    if ev.recalibration.method or ev.recalibration.skipped:
        console.print(f"recalibration: {ev.recalibration.describe()}", highlight=False, markup=False)
    worse = _recalibration_worse(ev)
    if worse is not None:
        console.print(f"note: recalibration raised the held-out log loss ({worse[0]:.3f} -> {worse[1]:.3f}): on "
                      "this data the raw probabilities are better (--recalibrate none)", highlight=False,
                      markup=False)
    best = ev.recalibrated or ev.raw
    if best.suspects and suspects > 0:
        table = Table(title=f"labels the judge most confidently contradicts ({best.variant}): review these first")
        for col in ("pair", "label", "judge says", "confidence", "source"):
            table.add_column(col, overflow="fold")
        for sus in best.suspects[:suspects]:
            table.add_row(escape(sus.pair_id), escape(sus.label), escape(sus.judged), f"{sus.confidence:.2f}",
                          escape(sus.source))
        console.print(table)
    for note in ev.raw.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    if ev.source_validation is not None:
        from judge.cli.calibration_view import source_table

        console.print(source_table(ev.source_validation.summary(),
                                   "leave one source out: fitted on the others, raw -> recalibrated on this one"))
    if ev.applied is not None and ev.shift is not None:
        console.print(headline_table([ev.raw, ev.applied], escape(f"the calibrator on {ev.results}")))
        console.print(escape(ev.shift.describe()), highlight=False)
        sel = ev.applied.selective
        if sel is not None:
            console.print(f"the calibrator's abstention here: {ev.applied.selective_text()}; guarantee "
                          f"{sel.get('guarantee')}", highlight=False, markup=False)


def eval_(
    ctx: typer.Context,
    labelled: list[Path] = typer.Argument(..., help="Labelled pairs JSONL: id, prompt, response_a, response_b, "
                                                    "label (several files are read as one set)."),
    results: list[Path] | None = typer.Option(None, "--results", "-r",
                                              help="Results already produced by `judge run` (repeat for several "
                                                   "files); without it the judge runs first (see --out)."),
    out: Path | None = typer.Option(None, "--out", "-o", callback=check_out_file,
                                    help="Where the judge writes results when it runs "
                                                               "(default: <labelled>.results.jsonl)."),
    backend: str | None = typer.Option(None, "--backend", "-b",
                                       help="Backend when the judge runs (default: JUDGE_BACKEND, judge.toml, "
                                            "else local)."),
    base_url: str | None = typer.Option(None, "--base-url", callback=check_url,
                                            help="Endpoint for openai/<model>."),
    recalibrate: str = typer.Option("auto", "--recalibrate", callback=check_method, help=RECALIBRATE_HELP),
    folds: int = FOLDS_OPT,
    seed: int = SEED_OPT,
    n_boot: int = typer.Option(1000, "--bootstrap", min=1, help=BOOTSTRAP_HELP),
    split_repeats: int = typer.Option(1, "--split-repeats", min=1,
                                      help="Also recalibrate over this many random fold splits and print the "
                                           "recalibrated ECE / Brier / log loss as mean (min-max): on a few "
                                           "hundred pairs the split alone moves ECE by several hundredths."),
    target: float = TARGET_OPT,
    delta: float = DELTA_OPT,
    metrics_out: Path | None = typer.Option(None, "--metrics-out", "-m", callback=check_out_file,
                                            help="Write the full report as JSON."),
    holdout_same_prompt: bool = HOLDOUT_OPT,
    suspects: int = typer.Option(10, "--suspects", min=0, help="List this many labels the judge most confidently "
                                                        "contradicts (likely label errors); 0 for none."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON instead of tables."),
    group_by: str = GROUP_OPT,
    signals: str = SIGNALS_OPT,
    calibrator: Path | None = typer.Option(None, "--calibrator",
                                           help="Also score this fitted calibrator on the pairs and run the shift "
                                                "alarm: do they look like its calibration data?"),
    allow_empty: bool = typer.Option(False, "--allow-empty", help=ALLOW_EMPTY_HELP),
) -> None:
    """Evaluate the judge on labelled pairs: agreement, calibration (ECE, Brier, ...), raw vs recalibrated;
    with several sources, also leaving one source out.

    {exit_codes}
    """
    from judge.calibration.recalibrate import load_calibrator
    from judge.calibration.workflow import evaluate_results, parse_signals

    features = parse_signals(signals)
    refuse_input_as_output(metrics_out, [*labelled, *(results or []), calibrator], "--metrics-out")
    refuse_input_as_output(out, [*labelled, calibrator], "--out")
    if results:
        ignored = [name for name, value in (("--out", out), ("--backend", backend), ("--base-url", base_url))
                   if value is not None]
        if ignored:
            raise typer.BadParameter(f"{', '.join(ignored)} only apply when the judge runs (without --results)")
    cal = load_calibrator(calibrator) if calibrator is not None else None
    if not results:
        from judge.records import read_pairs
        from judge.runs import JudgeOptions, RunOptions, open_judge

        if len(labelled) != 1:
            raise typer.BadParameter("judging several labelled files at once is not supported: judge each with "
                                     "`judge run` and pass the results with --results")
        results = [out or labelled[0].with_name(labelled[0].stem + ".results.jsonl")]
        records = list(read_pairs(labelled[0]))
        require_rulebook(state(ctx).settings, allow_empty=allow_empty)
        err_console.print(f"judging {len(records)} pairs of {labelled[0]} -> {results[0]} (labels are not shown to "
                          "the judge)", highlight=False, markup=False)
        judge_file(open_judge(JudgeOptions(backend=backend, base_url=base_url, explain=False),
                              workspace=state(ctx).workspace()),
                   records, results[0], RunOptions(holdout_same_prompt=holdout_same_prompt))
    try:
        ev = evaluate_results(labelled, results, recalibrate=recalibrate, n_folds=folds, seed=seed, n_boot=n_boot,
                              target=target, delta=delta, split_repeats=split_repeats, group_by=group_by,
                              features=features, calibrator=cal)
    except NothingScoredError as exc:
        nothing_scored(exc)
    if metrics_out is not None:
        write_text_atomic(metrics_out, ev.model_dump_json(indent=2))
    if as_json:
        emit_json(json.loads(ev.model_dump_json()))
    else:
        _print_evaluation(ev, suspects)
    exit_for_failures(ev.raw.n_failed, ev.raw.n_labelled)


def calibrate(
    labelled: list[Path] = typer.Argument(..., help="Labelled pairs JSONL the results were produced on (several "
                                                    "files are read as one set)."),
    results: list[Path] = RESULTS_OPT,
    out: Path = typer.Option(..., "--out", "-o", callback=check_out_file,
                           help="Where to write the calibrator (JSON)."),
    method: str = typer.Option("auto", "--method", callback=check_method,
                               help="auto (the simplest method within one standard error of the lowest "
                                    "cross-validated log loss), temperature, platt, isotonic, logistic or none."),
    folds: int = FOLDS_OPT,
    seed: int = SEED_OPT,
    target: float = TARGET_OPT,
    delta: float = DELTA_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the calibrator as JSON."),
    group_by: str = GROUP_OPT,
    signals: str = SIGNALS_OPT,
) -> None:
    """Fit a calibrator for the judge configuration of RESULTS; apply it with `judge run --calibrator`.
    With several sources, the method and signals are chosen by the worst left-out source, and the
    leave-one-source-out figures are printed and stored with the calibrator."""
    from judge.calibration.workflow import fit_from_results, parse_signals

    refuse_input_as_output(out, [*labelled, *results], "--out")
    try:
        cal = fit_from_results(labelled, results, method=method, n_folds=folds, seed=seed, target=target,
                               delta=delta, group_by=group_by, features=parse_signals(signals))
    except NothingScoredError as exc:
        nothing_scored(exc)
    write_text_atomic(out, cal.model_dump_json(indent=2))
    if as_json:
        emit_json({"id": cal.id, **json.loads(cal.model_dump_json())})
        return
    losses = ", ".join(f"{k} {v:.4f}" for k, v in cal.cv_log_loss.items())
    criterion = "worst left-out source's log loss" if cal.selection == "worst left-out source" else \
        "the simplest method within one standard error of the lowest cross-validated log loss"
    console.print(f"calibrator {cal.id}: {cal.method} fitted on {cal.n_fitted} verdicts ({criterion}: {losses})",
                  highlight=False, markup=False)
    if cal.method == "logistic":
        feats = cal.params.get("features", [])
        console.print(f"signals: {', '.join(feats)}", highlight=False, markup=False)
        if "length" in feats:
            console.print("warning: the calibrator uses response length; a longer response gets more credit, "
                          "which pairs built to mislead exploit (see docs/calibration.md)", highlight=False)
    if cal.source_validation:
        from judge.cli.calibration_view import source_table

        console.print(source_table(cal.source_validation, "leave one source out: fitted on the others, "
                                                          "raw -> recalibrated on this one"))
    if cal.tie_model is not None:
        c0, c1 = cal.tie_model
        console.print(f"ties (the judge never says tie; {cal.tie_rate:.1%} of the labels): P(tie) = "
                      f"sigmoid({c0:.3f} {'-' if c1 < 0 else '+'} {abs(c1):.3f} |logit P(A)|), from "
                      f"{cal.tie_probability(0.5):.1%} at an even call", highlight=False, markup=False)
    elif cal.tie_rate > 0:
        console.print(f"ties: {cal.tie_rate:.1%} of the labels; the judge's own tie mass is kept, or this rate "
                      "is used", highlight=False, markup=False)
    if cal.abstain:
        th = cal.abstain
        if th["certified"]:
            console.print(f"abstain below confidence {th['threshold']:.3f}: agreement >= {th['target']} with "
                          f"probability >= {1 - th['delta']:.2f} ({th['n_kept']}/{th['n_calibration']} labelled "
                          "verdicts kept; `judge eval` measures this on held-out folds)", highlight=False, markup=False)
        else:
            console.print(f"no confidence threshold certifies agreement >= {th['target']} at delta {th['delta']} "
                          "on this data: with --abstain every verdict would be escalated",
                          highlight=False, markup=False)
    console.print(f"written to {out}", highlight=False, markup=False)


eval_.__doc__ = (eval_.__doc__ or "").format(exit_codes=EXIT_CODES)
