"""`judge batch status|export NAME`: where a shared batch (`judge run --shared`) stands, and its verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from judge.cli.common import CliState, check_out_file, console, emit_json, state
from judge.cli.helpfmt import App
from judge.errors import InputError

if TYPE_CHECKING:
    from judge.store.claims import WorkClaims

app = App(help="Shared batches: several `judge run --shared` workers dividing one set of pairs.",
                  no_args_is_help=True)

BATCH_ARG = typer.Argument(..., help="The batch name (`judge run --shared` prints it; or your --batch).")


def _claims(st: CliState, batch: str) -> WorkClaims:
    workspace = st.workspace()
    claims: WorkClaims = workspace.claims(batch, worker_id="cli")
    if not claims.exists():
        raise InputError(f"no shared batch named {batch!r} in {workspace.where}", field="batch")
    return claims


@app.command("status")
def status(ctx: typer.Context, batch: str = BATCH_ARG,
           as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON.")) -> None:
    """How many pairs of the batch are done (a verdict or a recorded failure), being judged, and were taken over
    from a dead worker."""
    p = _claims(state(ctx), batch).progress()
    data = {"batch": batch, "total": p.total, "done": p.done, "held": p.held, "waiting": p.open - p.held,
            "reclaimed": p.reclaimed, "complete": p.complete}
    if as_json:
        emit_json(data)
        return
    console.print(f"batch {batch}: {p.done} of {p.total} done (a verdict or a recorded failure), {p.held} being "
                  f"judged, {p.open - p.held} "
                  f"waiting; {p.reclaimed} taken over after a lease ran out"
                  + (" (complete)" if p.complete else ""), highlight=False, markup=False)


@app.command("export")
def export(ctx: typer.Context, batch: str = BATCH_ARG,
           out: Path = typer.Option(..., "--out", "-o", callback=check_out_file,
                                    help="Results JSONL to write (replaced)."),
           as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON.")) -> None:
    """Write the batch's verdicts decided so far, one per pair in input order (as `judge run -o` does)."""
    from judge.records import write_results

    claims = _claims(state(ctx), batch)
    n = write_results(out, claims.results())
    total = claims.progress().total
    if as_json:
        emit_json({"batch": batch, "written": n, "total": total, "out": str(out)})
        return
    console.print(f"wrote {n} of {total} results of batch {batch} (verdicts and recorded failures) to {out}",
                  highlight=False, markup=False)
