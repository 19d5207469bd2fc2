"""The public surface: exported names are frozen, and every CLI command answers --help."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import judge
from judge.cli.main import app

EXPORTED = {
    "Authority", "Case", "Change", "Judge", "JudgeConfig", "JudgeError", "Layer", "Pair", "Process", "Response",
    "Retrieval", "RetrievedRule", "Rule", "RuleStatus", "Rulebook", "Settings", "ToolCall", "Verdict",
    "__version__",
}


def test_exported_names_are_frozen_and_resolve() -> None:
    assert set(judge.__all__) == EXPORTED
    for name in judge.__all__:
        assert getattr(judge, name) is not None


def test_import_is_light() -> None:
    code = "import sys, judge; print(int(any(m.startswith(('chromadb', 'torch', 'sqlalchemy')) for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


COMMANDS = [[], ["rulebook"], ["rulebook", "import-model-spec"], ["rulebook", "load"], ["rulebook", "list"],
            ["rulebook", "show"], ["rulebook", "history"], ["rulebook", "add-ruling"], ["rulebook", "amend"],
            ["rulebook", "overrule"], ["index"], ["index", "rebuild"], ["index", "sync"], ["index", "status"],
            ["retrieve"], ["run"], ["compare"], ["serve"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "judge" for c in COMMANDS])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
