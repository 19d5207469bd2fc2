"""`judge run` and `judge compare`: judge pairs under the rulebook and show the verdicts."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from judge.cli.common import (
    ALLOW_EMPTY_HELP,
    EXIT_CODES,
    SHORT_B_REFUSED,
    CliState,
    check_out_file,
    check_url,
    console,
    duration_s,
    emit_json,
    err_console,
    exit_for_failures,
    option_given,
    refuse_input_as_output,
    require_rulebook,
    response_option,
    state,
)
from judge.cli.progress import RunProgress
from judge.errors import InputError
from judge.records import compare_pair_id
from judge.rules.model import Pair, as_response
from judge.verdicts import Verdict

if TYPE_CHECKING:
    from judge.judging.engine import Judge
    from judge.judging.runner import RunReport
    from judge.judging.shared import SharedRunReport
    from judge.records import PairRecord
    from judge.runs import JudgeOptions, RunOptions
    from judge.store.claims import WorkClaims

JUDGE_PANEL = "Judge"
RETRIEVAL_PANEL = "Retrieval"
BUDGET_PANEL = "Budgets"
CALIBRATION_PANEL = "Calibration and abstention"
SHARED_PANEL = "Shared batches (several workers)"

BACKEND_OPT = typer.Option(None, "--backend", "-b", rich_help_panel=JUDGE_PANEL,
                           help="local, local/<path.gguf> or openai/<model> (default: JUDGE_BACKEND, "
                                "judge.toml, else local).")
BASE_URL_OPT = typer.Option(None, "--base-url", callback=check_url, rich_help_panel=JUDGE_PANEL,
                            help="Endpoint for openai/<model> (default: JUDGE_BASE_URL, judge.toml).")


HOLDOUT_OPT = typer.Option(False, "--holdout-same-prompt", rich_help_panel=RETRIEVAL_PANEL,
                           help="Never retrieve a ruling decided on the pair's own prompt (leave-one-out).")
CALIBRATOR_OPT = typer.Option(None, "--calibrator", rich_help_panel=CALIBRATION_PANEL,
                              help="Calibrator JSON from `judge calibrate`.")
ABSTAIN_OPT = typer.Option(False, "--abstain", rich_help_panel=CALIBRATION_PANEL,
                           help="Escalate verdicts below the calibrator's certified threshold.")
ESCALATE_OPT = typer.Option(None, "--escalate-below", min=0.0, max=1.0, rich_help_panel=CALIBRATION_PANEL,
                            help="Escalate verdicts whose confidence is below this.")
METHOD_OPT = typer.Option("checks", "--method", rich_help_panel=JUDGE_PANEL,
                          help="checks (rules' yes/no checks, by precedence) or pairwise (one A-or-B question "
                               "per order).")
HOLISTIC_OPT = typer.Option("pointwise", "--holistic", rich_help_panel=JUDGE_PANEL,
                            help="With --method checks, the rule-free signal: none, pointwise or pairwise.")
PRIOR_WEIGHTS_OPT = typer.Option(False, "--prior-weights", rich_help_panel=JUDGE_PANEL,
                                 help="With --method checks, use the prior weights, not the fitted ones.")
TRUST_SHIFTED_OPT = typer.Option(False, "--trust-shifted", rich_help_panel=CALIBRATION_PANEL,
                                 help="Keep the calibrated abstention on a batch the shift alarm flags.")
SINGLE_ORDER_OPT = typer.Option(False, "--single-order", rich_help_panel=JUDGE_PANEL,
                                help="Judge one order only (cheaper, biased).")
EXPLAIN_OPT = typer.Option(True, "--explain/--no-explain", rich_help_panel=JUDGE_PANEL,
                           help="With --method pairwise: ask for cited rules and a rationale.")


def refuse_inapplicable(ctx: typer.Context, *, method: str, no_rules: bool = False) -> None:
    """Refuse a judging option given on the command line that the chosen method would ignore: --method,
    --holistic and --prior-weights with --no-rules (the bare pairwise question), --holistic and --prior-weights
    with --method pairwise. Exit 2 naming the option, rather than a run that silently did something else."""
    given = {name for name in ("method", "holistic", "prior_weights") if option_given(ctx, name)}
    flag = {"method": "--method", "holistic": "--holistic", "prior_weights": "--prior-weights"}
    if no_rules and given:
        name = sorted(given)[0]
        raise typer.BadParameter("does not apply with --no-rules (the bare 'which is better' question)",
                                 param_hint=flag[name])
    if method == "pairwise" and given - {"method"}:
        name = sorted(given - {"method"})[0]
        raise typer.BadParameter("applies to --method checks only", param_hint=flag[name])


def _judge(st: CliState, options: JudgeOptions, *, allow_empty: bool = False) -> Judge:
    """The judge for ``options`` on the configured database (refused on a missing or empty rulebook)."""
    from judge.runs import open_judge

    require_rulebook(st.settings, allow_empty=allow_empty, use_rules=not options.no_rules)
    return open_judge(options, workspace=st.workspace())


def cost_text(cost_usd: float | None) -> str:
    """A cost as shown to a user: ``unknown`` without a price, never a made-up zero."""
    return "unknown (no price for the model: see docs/configuration.md)" if cost_usd is None \
        else f"${cost_usd:.4f}"


def verdict_table(verdicts: list[Verdict], title: str) -> Table:
    """A readable table: winner, P(winner), whether the orders agreed, the cited rules (deciding first) or failure.

    Made to stay readable in an 80-column terminal: the narrow columns never wrap, each cited rule starts a
    line, and the deciding rule is marked in that list rather than repeated in a column of its own.
    """
    table = Table(title=title, show_lines=True,
                  caption="(A) / (B): the response a cited rule favours; rule checks decide by precedence, the "
                          "pairwise method by the judge's explanation")
    table.add_column("pair", overflow="fold")
    table.add_column("winner", overflow="fold")
    table.add_column("P(winner)", no_wrap=True, justify="right")
    table.add_column("orders\nagree", no_wrap=True)
    table.add_column("rules cited / failure", overflow="fold")
    for v in verdicts:
        if v.failure is not None:
            table.add_row(escape(v.pair_id or "-"), "[red]failed[/]", "-", "-",
                          escape(f"{v.failure.stage}: {v.failure.reason[:160]}"))
            continue
        agree = "-" if v.position_inconsistent is None else ("no" if v.position_inconsistent else "yes")
        winner = f"escalate (best guess {v.winner})" if v.escalated else (v.winner or "-")
        table.add_row(escape(v.pair_id or "-"), winner, f"{v.confidence:.2f}", agree, _rules_cell(v))
    return table


def _rules_cell(v: Verdict) -> str:
    deciding = v.deciding_rule
    lines = [f"{c.rule_id} ({c.favours}{', deciding' if c.rule_id == deciding else ''})"
             for c in sorted(v.citations, key=lambda c: c.rule_id != deciding)]
    if deciding and all(c.rule_id != deciding for c in v.citations):
        lines.insert(0, f"{deciding} (deciding)")
    if v.precedent is not None:
        lines.append(f"(binding precedent, similarity {v.precedent.similarity:.3f}: no model asked)")
    if v.explanation_agrees is False:
        lines.append("(explanation contradicts the verdict)")
    if v.decided_by == "holistic":
        lines.append("(no rule's checks separated the responses: decided by the general question)")
    return escape("\n".join(lines)) if lines else "-"


def judge_file(judge: Judge, records: list[PairRecord], out: Path, run: RunOptions) -> RunReport:
    """`judge.runs.judge_file` with a progress bar on stderr; closes the backend."""
    from judge.runs import judge_file as run_file

    with RunProgress("judging", len(records), console=err_console) as bar:
        return run_file(judge, records, out, run, on_result=lambda _v: bar.advance(), on_skip=lambda _r: bar.skip())


def judge_shared(st: CliState, judge: Judge, records: list[PairRecord], out: Path, run: RunOptions
                 ) -> SharedRunReport:
    """`judge.runs.judge_shared` with a progress bar on stderr; closes the backend."""
    from judge.runs import judge_shared as run_shared

    with ExitStack() as stack:
        bars: list[RunProgress] = []

        def start(claims: WorkClaims) -> None:
            bars.append(stack.enter_context(RunProgress(
                f"judging (worker {claims.worker_id}, batch {claims.batch_id})", len(records), console=err_console)))

        report = run_shared(judge, records, out, run, workspace=st.workspace(), on_start=start,
                            on_result=lambda _v: bars[0].advance())
        if bars:
            bars[0].update(report.batch_done)
    return report


def run(
    ctx: typer.Context,
    pairs: Path = typer.Argument(..., help="JSONL of pairs: id, prompt, response_a, response_b."),
    out: Path = typer.Option(..., "--out", "-o", callback=check_out_file,
                             help="Results JSONL (appended; re-running resumes)."),
    backend: str | None = BACKEND_OPT,
    base_url: str | None = BASE_URL_OPT,
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1, rich_help_panel=JUDGE_PANEL,
                                           help="Comparisons in flight (default: 1 embedded, 8 endpoints)."),
    single_order: bool = SINGLE_ORDER_OPT,
    no_rules: bool = typer.Option(False, "--no-rules", rich_help_panel=JUDGE_PANEL,
                                  help="Bare 'which is better' baseline without rules (a pairwise question: "
                                       "--method, --holistic and --prior-weights are refused with it)."),
    method: str = METHOD_OPT,
    holistic: str = HOLISTIC_OPT,
    prior_weights: bool = PRIOR_WEIGHTS_OPT,
    explain: bool = EXPLAIN_OPT,
    k_spec: int = typer.Option(3, "--k-spec", "--k", rich_help_panel=RETRIEVAL_PANEL,
                               help="Spec entries shown (with --n-constitution: slots both layers share)."),
    k_rulings: int = typer.Option(2, "--k-rulings", rich_help_panel=RETRIEVAL_PANEL,
                                  help="Precedent rulings shown to the judge."),
    n_constitution: int = typer.Option(2, "--n-constitution", rich_help_panel=RETRIEVAL_PANEL,
                                       help="Constitution rules shown (with --k-spec: slots both layers share)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", rich_help_panel=BUDGET_PANEL,
                                          help="Token budget: stop cleanly when reached."),
    max_cost: float | None = typer.Option(None, "--max-cost", rich_help_panel=BUDGET_PANEL,
                                          help="Cost budget in USD (needs a price for the model)."),
    max_time: str | None = typer.Option(None, "--max-time", rich_help_panel=BUDGET_PANEL,
                                        help="Start no new comparison after this long (3600, 90m, 2h, 1h30m)."),
    table: bool = typer.Option(True, "--table/--no-table", help="Print the verdict table at the end."),
    ties: bool = typer.Option(False, "--ties", rich_help_panel=JUDGE_PANEL,
                              help="Offer a tie answer (T); useful with strong models."),
    slot_correction: bool = typer.Option(False, "--slot-correction", rich_help_panel=CALIBRATION_PANEL,
                                         help="Also write <out>.slot-corrected.jsonl (the batch's slot bias "
                                              "removed)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", rich_help_panel=JUDGE_PANEL,
                               help="Answer identical requests from the judgment store."),
    holdout_same_prompt: bool = HOLDOUT_OPT,
    calibrator: Path | None = CALIBRATOR_OPT,
    abstain: bool = ABSTAIN_OPT,
    escalate_below: float | None = ESCALATE_OPT,
    trust_shifted: bool = TRUST_SHIFTED_OPT,
    allow_rulebook_change: bool = typer.Option(False, "--allow-rulebook-change", rich_help_panel=CALIBRATION_PANEL,
                                               help="Use a calibrator fitted under another rulebook version."),
    precedent: bool = typer.Option(True, "--precedent/--no-precedent", rich_help_panel=JUDGE_PANEL,
                                   help="A ruling on a near-duplicate pair decides without the model."),
    precedent_confidence: float | None = typer.Option(
        None, "--precedent-confidence", min=0.5, max=1.0, rich_help_panel=JUDGE_PANEL,
        help="P(winner) of a precedent-bound verdict (default 0.95)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help=ALLOW_EMPTY_HELP),
    shared: bool = typer.Option(False, "--shared", rich_help_panel=SHARED_PANEL,
                                help="Divide the batch with every other `judge run --shared` on the same pairs "
                                     "and database (see docs/cli.md)."),
    batch: str | None = typer.Option(None, "--batch", rich_help_panel=SHARED_PANEL,
                                     help="Name of the shared batch (implies --shared)."),
    worker_id: str | None = typer.Option(None, "--worker-id", rich_help_panel=SHARED_PANEL,
                                         help="This worker's id (default: host:pid:random)."),
    lease: float | None = typer.Option(None, "--lease", min=0.001, rich_help_panel=SHARED_PANEL,
                                       help="Seconds a claim lasts unless renewed (default 120)."),
) -> None:
    """Judge every pair in a JSONL file (both orders where order can matter), streaming results to --out
    (resumable).

    With --shared (or --batch) several processes, on one machine or many, divide the pairs through the
    database: start the same command in each; every one returns when the whole batch is decided.

    {exit_codes}
    """
    from judge.judging.shared import SharedRunReport
    from judge.records import read_pairs, read_results
    from judge.runs import JudgeOptions, RunOptions

    st = state(ctx)
    refuse_inapplicable(ctx, method=method, no_rules=no_rules)
    max_seconds = duration_s(max_time, "--max-time") if max_time is not None else None
    refuse_input_as_output(out, [pairs, calibrator], "--out")
    records = list(read_pairs(pairs))  # validate the whole file before spending anything
    if not records:
        raise InputError("no pairs to judge (the file holds no pair lines)", path=pairs)
    options = JudgeOptions(backend=backend, base_url=base_url, single_order=single_order, no_rules=no_rules,
                           method=method, holistic=holistic, explain=explain, k_spec=k_spec, k_rulings=k_rulings,
                           n_constitution=n_constitution, cache=cache, ties=ties, calibrator=calibrator,
                           abstain=abstain, escalate_below=escalate_below,
                           allow_rulebook_change=allow_rulebook_change, bind_precedent=precedent,
                           precedent_confidence=precedent_confidence, prior_weights=prior_weights)
    run_options = RunOptions(concurrency=concurrency, max_tokens=max_tokens, max_cost=max_cost,
                             max_seconds=max_seconds, holdout_same_prompt=holdout_same_prompt, shared=shared,
                             batch=batch, worker_id=worker_id, lease_s=lease)
    judge = _judge(st, options, allow_empty=allow_empty)
    report: RunReport
    if shared or batch is not None:
        report = judge_shared(st, judge, records, out, run_options)
    else:
        report = judge_file(judge, records, out, run_options)
    ids = {r.pair.id for r in records}
    shown = [v for v in read_results(out) if v.pair_id in ids]
    shift_extra: dict[str, object] = {}
    if judge.calibrator is not None:
        from judge.cli.calibration_view import check_batch

        shift, redone = check_batch(judge, records, out, shown, abstain=abstain, trust_shifted=trust_shifted)
        shift_extra = {"shift": shift.model_dump(mode="json"), "redecided_uncalibrated": redone}
        if redone:
            shown = [v for v in read_results(out) if v.pair_id in ids]
        if not as_json:
            err_console.print(escape(shift.describe()), highlight=False)
            if redone:
                err_console.print(f"--abstain on a shifted batch: {redone} verdicts re-decided by the judge's own "
                                  f"confidence (escalated below {judge.escalate_below:.3f}); --trust-shifted keeps "
                                  "the calibrated abstention", highlight=False, markup=False)
            elif shift.shifted and abstain:
                err_console.print("--trust-shifted: the calibrated abstention is kept on a shifted batch; its "
                                  "guarantee does not apply", highlight=False)
    # with --abstain / --escalate-below: how many of the batch's verdicts went to a person (after any re-decision)
    escalated = sum(v.escalated for v in shown if v.failure is None) if judge.escalate_below is not None else None
    if as_json:
        extra: dict[str, object] = {"complete": report.complete} if isinstance(report, SharedRunReport) else {}
        if escalated is not None:
            extra.update(escalated=escalated, escalate_below=judge.escalate_below)
        emit_json({**vars(report), **extra, **shift_extra, "inconsistency_rate": report.inconsistency_rate,
                   "out": str(out)})
        exit_for_failures(report.failed, report.judged)
        return
    title = f"verdicts ({pairs})"
    if slot_correction:
        from judge.judging.slot import correct_batch

        shown, bias = correct_batch(shown)
        corrected = out.with_name(out.stem + ".slot-corrected.jsonl")
        corrected.write_text("".join(v.model_dump_json() + "\n" for v in shown), encoding="utf-8")
        title += f", slot bias {bias:+.2f} log-odds removed -> {corrected}"
    if table:
        console.print(verdict_table(shown, title))
    rate = report.inconsistency_rate
    if isinstance(report, SharedRunReport):
        console.print(f"worker {report.worker_id}, batch {report.batch_id}: {report.batch_done} of {report.total} "
                      f"pairs done (a verdict or a recorded failure); took over {report.reclaimed} expired "
                      f"claim(s), asked the model again for {report.rejudged}", highlight=False, markup=False)
    console.print(f"judged {report.judged}, skipped {report.skipped} already done, failed {report.failed}; "
                  f"orders disagreed on {report.position_inconsistent}"
                  + (f" ({rate:.0%})" if rate is not None else "")
                  + (f"; bound by precedent {report.bound_by_precedent}" if report.bound_by_precedent else "")
                  + (f"; escalated {escalated} of {len(shown)} (confidence below {judge.escalate_below:.3f})"
                     if escalated is not None else "")
                  + (f"; rule checks asked {report.checks_asked:,}, from cache {report.checks_cached:,}"
                     if report.checks_asked or report.checks_cached else "")
                  + f"; tokens {report.prompt_tokens + report.completion_tokens:,}"
                  + (f" (+{report.cached_tokens:,} answered from the cache for {report.cached} pair(s), not "
                     "counted)" if report.cached else "")
                  + f"; cost {cost_text(report.cost_usd)}"
                  + ("; STOPPED by budget" if report.stopped_by_budget else "") + f"; results in {out}",
                  highlight=False, markup=False)
    exit_for_failures(report.failed, report.judged)


def compare(
    ctx: typer.Context,
    prompt: str = typer.Option(..., "--prompt", help="The user prompt."),
    response_a: str = response_option("a"),
    response_b: str = response_option("b"),
    backend: str | None = typer.Option(None, "--backend", rich_help_panel=JUDGE_PANEL,
                                       help="local, local/<path.gguf> or openai/<model> (default: JUDGE_BACKEND, "
                                            "judge.toml, else local)."),
    base_url: str | None = BASE_URL_OPT,
    single_order: bool = SINGLE_ORDER_OPT,
    method: str = METHOD_OPT,
    holistic: str = HOLISTIC_OPT,
    prior_weights: bool = PRIOR_WEIGHTS_OPT,
    explain: bool = EXPLAIN_OPT,
    pair_id: str | None = typer.Option(None, "--id", help="Id to store the pair under (default: derived from "
                                                          "its text, printed)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help=ALLOW_EMPTY_HELP),
    _short_b: str | None = SHORT_B_REFUSED,
) -> None:
    """Judge one pair and print the verdict (JSON with --json).

    {exit_codes}
    """
    from judge.runs import JudgeOptions

    if not prompt.strip():  # as in a pair file: a pair without a prompt is not judged
        raise typer.BadParameter("must be a non-empty string", param_hint="--prompt")
    refuse_inapplicable(ctx, method=method)
    judge = _judge(state(ctx), JudgeOptions(backend=backend, base_url=base_url, single_order=single_order,
                                            method=method, holistic=holistic, explain=explain,
                                            prior_weights=prior_weights),
                   allow_empty=allow_empty)
    pair_id = pair_id or compare_pair_id(prompt, response_a, response_b)
    try:
        verdict = judge.compare(Pair(prompt=prompt, response_a=as_response(response_a),
                                     response_b=as_response(response_b), id=pair_id))
    finally:
        judge.backend.close()
    if as_json:
        emit_json(verdict.model_dump(mode="json"))
    else:
        console.print(verdict_table([verdict], "verdict"))
        if verdict.rationale:
            console.print(f"rationale: {verdict.rationale}", markup=False, highlight=False)
        console.print(f"stored as pair {pair_id}: `judge rule {pair_id} ...` makes a ruling from it",
                      markup=False, highlight=False)
    exit_for_failures(int(verdict.failure is not None), 1)


run.__doc__ = (run.__doc__ or "").format(exit_codes=EXIT_CODES)
compare.__doc__ = (compare.__doc__ or "").format(exit_codes=EXIT_CODES)
