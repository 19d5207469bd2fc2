"""Mistakes a user makes on the command line: exit code 2 and a message naming the field or option, with the
user's own text shown as it was written (never read as terminal markup), and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge.errors import InputError
from judge.jsonl import loads
from tests.test_cli import REPO, flat, run_cli

RULING = {"prompt": "Rate my essay", "response_a": "Perfect!", "response_b": "Needs work", "holding": "B",
          "rationale": "honest", "cites": ["spec/avoid-sycophancy"]}


@pytest.fixture
def loaded(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    code, _, _ = run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)
    assert code == 0
    return sqlite_url


def test_an_error_quoting_the_users_text_shows_it_as_written(loaded: str, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # "[/b]" would be a closing markup tag: read as markup it raised a traceback, "[bold]" vanished.
    for rule_id in ("spec/[/b]", "spec/[bold]x"):
        code, _, err = run_cli(["rulebook", "show", rule_id], monkeypatch, capsys, loaded)
        assert code == 2 and rule_id in flat(err) and "Traceback" not in err


def test_a_title_with_brackets_is_shown_as_written(loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ruling = tmp_path / "ruling.json"
    ruling.write_text(json.dumps({**RULING, "title": "[/b] the [bold]essay[/] ruling"}))
    code, out, err = run_cli(["rulebook", "add-ruling", "-f", str(ruling), "--json"], monkeypatch, capsys, loaded)
    assert code == 0, err
    code, out, err = run_cli(["rulebook", "show", json.loads(out)["id"]], monkeypatch, capsys, loaded)
    assert code == 0 and "[/b] the [bold]essay[/] ruling" in flat(out)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("response_b", 3, "response_b must be a string or an object"),
    ("cites", "spec/avoid-sycophancy", "cites must be a list of strings"),
    ("prompt", ["Rate my essay"], "prompt must be a string"),
])
def test_a_ruling_field_of_the_wrong_type_is_named(loaded: str, tmp_path: Path, field: str, value: object,
                                                   message: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ruling = tmp_path / "ruling.json"
    ruling.write_text(json.dumps({**RULING, field: value}))
    code, _, err = run_cli(["rulebook", "add-ruling", "-f", str(ruling)], monkeypatch, capsys, loaded)
    assert code == 2 and message in flat(err) and str(ruling) in err.replace("\n", "") and "Traceback" not in err


def test_unfinished_json_is_reported_where_it_ends(tmp_path: Path) -> None:
    line = '{"id": "p1", "prompt": "Rate my essay"'
    with pytest.raises(InputError) as raised:
        loads(line + "\n", path="pairs.jsonl", line=3)
    assert f"(column {len(line) + 1})" in str(raised.value) and "pairs.jsonl:3" in str(raised.value)
    with pytest.raises(InputError) as raised:  # a one-line document: the error is on its line 1
        loads(line + "\n", path="ruling.json")
    assert "(line 1)" in str(raised.value)


@pytest.mark.parametrize("args", [
    ["compare", "--prompt", "", "--a", "x", "--b", "y"],
    ["compare", "--prompt", "   ", "--a", "x", "--b", "y"],
    ["retrieve", "--prompt", "", "--a", "x", "--b", "y"],
])
def test_an_empty_prompt_is_refused_as_in_a_pair_file(args: list[str], loaded: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(args, monkeypatch, capsys, loaded)
    assert code == 2 and "--prompt" in err and "non-empty" in flat(err)


@pytest.mark.parametrize("option", ["--k", "--k-rulings"])
def test_retrieve_refuses_a_negative_count(option: str, loaded: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = ["retrieve", "--prompt", "Rate my essay", "--a", "x", "--b", "y", option, "-1"]
    code, _, err = run_cli(args, monkeypatch, capsys, loaded)
    assert code == 2 and option in err
