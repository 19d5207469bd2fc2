"""The CLI in an 80-column terminal: help pages and tables where nothing is cut, and option names that do not
clash."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from judge.cli.common import table
from judge.cli.main import app
from tests.test_cli import run_cli

REPO = Path(__file__).resolve().parent.parent


def _commands() -> list[tuple[list[str], Any]]:
    found: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        found.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _commands()


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "judge" for p, _ in COMMANDS])
def test_every_help_page_reads_at_80_columns(path: list[str], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert "…" not in result.output  # nothing cut
    assert "<bool>" not in result.output  # flags take no value
    assert "list[" not in result.output  # a repeatable option shows its item's type (TEXT..., PATH...)
    assert (command.help or "").strip(), path  # every command says what it does
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name in ("option", "argument") and "--help" not in param.opts:
            assert (getattr(param, "help", None) or "").strip(), (path, param.opts)  # and every option and argument
        if param.param_type_name != "option":
            continue
        for name in [*param.opts, *param.secondary_opts]:  # every option name in full
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.output), (path, name)
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            assert re.search(rf"│ {re.escape(name)} ", result.output), (path, name)


def test_long_option_names_put_their_help_below_and_help_is_not_squeezed() -> None:
    out = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "80"}).output
    assert "--allow-rulebook-change" in out and "--n-constitution INT" in out and "--holdout-same-prompt" in out
    assert "│ --precedent / --no-precedent" in out
    # the help column keeps most of the width (typer's own layout wrapped it at about 17 characters)
    help_widths = [len(line.split("  ")[-1].rstrip(" │")) for line in out.splitlines() if line.startswith("│ --")]
    assert max(help_widths) > 40
    for panel in ("Judge", "Retrieval", "Budgets", "Calibration and abstention", "Shared batches"):
        assert f"╭─ {panel}" in out


def test_short_b_is_refused_in_commands_that_take_response_b() -> None:
    result = CliRunner().invoke(app, ["compare", "--prompt", "hi", "--a", "x", "-b", "y"])
    assert result.exit_code == 2
    text = " ".join((result.output + (result.stderr if result.stderr_bytes else "")).split())
    assert "-b is ambiguous" in text and "--backend" in text and "--response-b" in text


def test_compare_stores_each_pair_under_its_own_id() -> None:
    from judge.records import compare_pair_id

    one = compare_pair_id("hi", "x", "y")
    assert one == compare_pair_id("hi", "x", "y") and one.startswith("cli-")
    assert len({one, compare_pair_id("hi", "y", "x"), compare_pair_id("hi!", "x", "y"),
                compare_pair_id("hi", "x", "y ")}) == 4


def _render(tbl: Any) -> list[str]:
    out = io.StringIO()
    Console(width=80, file=out, color_system=None).print(tbl)
    return out.getvalue().splitlines()


def test_tables_fold_long_ids_and_keep_every_column_at_80_columns() -> None:
    long_id = "spec/an-entry-id-long-enough-that-no-eighty-column-table-could-fit-it-on-one-line"
    tbl = table("rules", "#", "id", "layer", "authority", "score", "title", narrow=("#", "layer", "authority",
                                                                                 "score"), right=("score",))
    tbl.add_row("1", long_id, "constitution", "platform", "0.912", "A title with [brackets] " * 4)
    lines = _render(tbl)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "…" not in text
    for narrow in ("constitution", "platform", "0.912", "layer", "authority", "score"):
        assert narrow in text  # no column collapsed to nothing
    cells = [line.split("│")[2].strip() for line in lines if line.count("│") > 3]
    assert long_id in "".join(cells)  # the id is whole, folded over lines


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str) -> str:
    code, _, err = run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)
    assert code == 0, err
    return sqlite_url


def test_rulebook_list_and_retrieve_at_80_columns(loaded: str, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("judge.cli.common.console", Console(width=80, color_system=None))
    monkeypatch.setattr("judge.cli.rulebook_cmd.console", Console(width=80, color_system=None))
    monkeypatch.setattr("judge.cli.retrieve_cmd.console", Console(width=80, color_system=None))
    code, out, _ = run_cli(["rulebook", "list", "--layer", "spec"], monkeypatch, capsys, loaded)
    assert code == 0 and "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    code, listed, _ = run_cli(["rulebook", "list", "--layer", "spec", "--json"], monkeypatch, capsys, loaded)
    flat = "".join(line.split("│")[1].strip() for line in out.splitlines() if line.count("│") > 3)
    for rule in json.loads(listed)["rules"]:
        assert rule["id"] in flat  # each id whole (folded when long), in the listed order
    code, out, _ = run_cli(["retrieve", "--prompt", "Rate my essay", "--response-a", "Perfect!", "--b",
                            "Needs work"], monkeypatch, capsys, loaded)
    assert code == 0 and "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    rows = [line.split("│") for line in out.splitlines() if line.count("│") > 5 and line.split("│")[1].strip()]
    assert rows and all(row[3].strip() and row[4].strip() and row[5].strip() for row in rows[1:])
