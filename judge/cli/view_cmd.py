"""`judge view`: a results file as one self-contained HTML page, written to a file or served locally."""

from __future__ import annotations

from pathlib import Path

import typer

from judge._atomic import write_text_atomic
from judge.cli.common import console, refuse_input_as_output


def view(
    results: Path = typer.Argument(..., exists=True, dir_okay=False, help="Results JSONL from `judge run`."),
    labels: Path | None = typer.Option(None, "--labels", "-l", exists=True, dir_okay=False,
                                       help="Labelled pairs JSONL: adds right/wrong, accuracy and calibration."),
    pairs: Path | None = typer.Option(None, "--pairs", "-p", exists=True, dir_okay=False,
                                      help="The judged pairs JSONL, for prompts and responses (no labels needed)."),
    rulebook: Path | None = typer.Option(None, "--rulebook", "-r", exists=True, file_okay=False,
                                         help="A rulebook directory, for the text of every checked rule."),
    out: Path | None = typer.Option(None, "--out", "-o", dir_okay=False,
                                    help="The HTML file to write (default: RESULTS with .html, unless --serve)."),
    serve: bool = typer.Option(False, "--serve", help="Serve the page on 127.0.0.1 until Ctrl-C."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port for --serve (0: any free port)."),
    low_confidence: float = typer.Option(0.6, "--low-confidence", min=0.0, max=1.0,
                                         help="Where the page's low-confidence filter starts."),
) -> None:
    """Show RESULTS as a page: one row per pair, its texts, cited rules, checks and trace, with filters.

    The page is a single HTML file that opens offline (no network asset); every text from a user, a rule or
    a model is shown as text. With --labels it also shows accuracy and the calibration plots.
    """
    from judge.view import render_view, serve_page

    target = out if out is not None else (None if serve else results.with_suffix(".html"))
    refuse_input_as_output(target, [results, labels, pairs], "--out")
    page = render_view(results, labels, pairs=pairs, rulebook=rulebook, low_confidence=low_confidence)
    if target is not None:
        write_text_atomic(target, page)
        console.print(f"page written to {target}", highlight=False, markup=False)
    if serve:
        def ready(url: str) -> None:
            console.print(f"serving {url} (Ctrl-C to stop)", highlight=False, markup=False)

        try:
            serve_page(page, port=port, on_ready=ready)
        except OSError as exc:
            from judge.errors import InputError

            raise InputError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}", field="--port") from None
        console.print("stopped", highlight=False)
