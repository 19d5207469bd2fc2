"""`judge rerun --since VERSION`: re-judge exactly the stored judgments a rulebook change affected."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import typer

from judge.cli.common import (
    ALLOW_EMPTY_HELP,
    EXIT_CODES,
    check_out_file,
    console,
    emit_json,
    err_console,
    exit_for_failures,
    require_rulebook,
    state,
)
from judge.cli.progress import RunProgress
from judge.cli.run_cmd import BACKEND_OPT, BASE_URL_OPT, verdict_table


def rerun(
    ctx: typer.Context,
    since: str = typer.Option(..., "--since", help="Rulebook version (rb-...) before the changes."),
    out: Path = typer.Option(..., "--out", "-o", callback=check_out_file,
                             help="Results JSONL (appended; re-running resumes)."),
    backend: str | None = BACKEND_OPT,
    base_url: str | None = BASE_URL_OPT,
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1,
                                           help="Comparisons in flight (default: 1 embedded, 8 endpoints)."),
    table: bool = typer.Option(True, "--table/--no-table", help="Print the verdict table at the end."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help=ALLOW_EMPTY_HELP),
) -> None:
    """Re-judge exactly the judgments `judge rulebook impact --since VERSION` lists, writing results like
    `judge run`.

    Each is judged again on its stored pair with its stored settings (rules shown, both orders, explanation,
    ties) by --backend; the new verdicts are recorded at the current rulebook version (new cache keys).
    Judgments stored without their pair cannot be re-run and are reported.

    {exit_codes}
    """
    from judge.api import rerun as rerun_since
    from judge.judging.impact import rerun_plan
    from judge.records import read_results

    st = state(ctx)
    require_rulebook(st.settings, allow_empty=allow_empty)
    with ExitStack() as stack:
        def started(n: int) -> None:  # the bar appears once there is something to re-judge
            bars.append(stack.enter_context(RunProgress("re-judging", n, console=err_console)))

        bars: list[RunProgress] = []
        done = rerun_since(since, out=out, backend=backend, settings=st.settings, base_url=base_url,
                           concurrency=concurrency, on_start=started, on_result=lambda _v: bars[0].advance(),
                           on_skip=lambda _r: bars[0].skip())
    report, run = done.impact, done.run
    for u in report.unknown:
        err_console.print(f"cannot re-run {u.cache_key[:12]} (pair {u.pair_id or '-'}): {u.reason}",
                          highlight=False, markup=False)
    if run is None:
        if as_json:
            emit_json({"affected": 0, "unknown": len(report.unknown), "judged": 0, "out": str(out)})
        else:
            console.print(f"nothing to re-run: no judgment since {since} is affected", highlight=False, markup=False)
            if report.before_note:
                err_console.print(f"note: {report.before_note}", highlight=False, markup=False)
        return
    ids = {r.pair.id for group in rerun_plan(report.affected) for r in group.records}
    if as_json:
        emit_json({**vars(run), "affected": len(report.affected), "unknown": len(report.unknown),
                   "rulebook_version": report.current_version, "out": str(out)})
        exit_for_failures(run.failed, run.judged)
        return
    if table:
        console.print(verdict_table([v for v in read_results(out) if v.pair_id in ids],
                                    f"re-judged since {since} (now {report.current_version})"))
    console.print(f"re-judged {run.judged} of {len(report.affected)} affected judgment(s) (skipped {run.skipped} "
                  f"already in {out}, failed {run.failed}); {len(report.unknown)} unknown; results in {out}",
                  highlight=False, markup=False)
    exit_for_failures(run.failed, run.judged)


rerun.__doc__ = (rerun.__doc__ or "").format(exit_codes=EXIT_CODES)
