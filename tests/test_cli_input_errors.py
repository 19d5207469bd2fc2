"""Mistakes a user makes on the command line: exit code 2 and a message naming the field or option, with the
user's own text shown as it was written (never read as terminal markup), and no traceback."""

from __future__ import annotations

import json
import os
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
    assert "ruling.json:1" in str(raised.value) and f"(column {len(line) + 1})" in str(raised.value)
    with pytest.raises(InputError) as raised:  # a document of several lines: the line it stops on
        loads('{\n  "id": "p1",\n  "prompt": oops\n}\n', path="ruling.json")
    assert "ruling.json:3" in str(raised.value) and "(column 13)" in str(raised.value)


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


# ----------------------------------------------------------------------- files the system cannot write, markup

def test_an_output_that_cannot_be_written_is_named_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder", encoding="utf-8")
    assert run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)[0] == 0
    code, _, err = run_cli(["rulebook", "export", str(a_file)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "a-file" in err and "Traceback" not in err
    code, _, err = run_cli(["calibrate", str(REPO / "data" / "model_spec" / "pairs.jsonl"), "-r",
                            str(REPO / "evals" / "results" / "modelspec-rules.jsonl"), "-o",
                            str(a_file / "calibrator.json")], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "a-file" in flat(err) and "Traceback" not in err
    assert a_file.read_text(encoding="utf-8") == "not a folder"
    if Path("/proc/self").is_dir():  # a folder nothing can be created in, whoever runs the tests
        code, _, err = run_cli(["calibrate", str(REPO / "data" / "model_spec" / "pairs.jsonl"), "-r",
                                str(REPO / "evals" / "results" / "modelspec-rules.jsonl"), "-o",
                                "/proc/judge-calibrator.json"], monkeypatch, capsys, sqlite_url)
        assert code == 2 and "/proc/judge-calibrator.json" in flat(err) and "Traceback" not in err


def test_an_unwritable_output_is_named_not_its_temporary_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_db_url: str, tmp_path: Path) -> None:
    """Outputs are written to a temporary file and renamed into place; when that fails, the message names the
    file the user asked for."""
    sqlite_url = empty_db_url
    folder = tmp_path / "rules.jsonl"
    folder.mkdir()
    code, _, err = run_cli(["rulebook", "dump", str(folder)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and f"{folder}: Is a directory" in flat(err) and ".tmp" not in err and "Traceback" not in err
    assert folder.is_dir() and list(folder.iterdir()) == [] and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    if Path("/proc/self").is_dir():  # a folder nothing can be created in, whoever runs the tests
        code, _, err = run_cli(["rulebook", "dump", "/proc/judge-rules.jsonl"], monkeypatch, capsys, sqlite_url)
        assert code == 2 and "/proc/judge-rules.jsonl:" in flat(err) and ".tmp" not in err
    code, _, err = run_cli(["rulebook", "dump", ""], monkeypatch, capsys, sqlite_url)  # the current folder
    assert code == 2 and "Is a directory" in flat(err) and "Traceback" not in err
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    code, _, err = run_cli(["rulebook", "dump", str(a_file / "sub" / "rules.jsonl")], monkeypatch, capsys, sqlite_url)
    assert code == 2 and f"{a_file}: Not a directory" in flat(err)


def test_an_output_is_written_through_a_link_and_never_replaces_a_pipe(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_db_url: str, tmp_path: Path) -> None:
    sqlite_url = empty_db_url
    target, link, pipe = tmp_path / "target.jsonl", tmp_path / "link.jsonl", tmp_path / "pipe.jsonl"
    target.write_text("old\n", encoding="utf-8")
    link.symlink_to(target)
    assert run_cli(["rulebook", "dump", str(link)], monkeypatch, capsys, sqlite_url)[0] == 0
    assert link.is_symlink() and target.read_text(encoding="utf-8") == ""  # an empty rulebook, written through
    os.mkfifo(pipe)
    code, _, err = run_cli(["rulebook", "dump", str(pipe)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and f"{pipe}: not a regular file" in flat(err)
    assert pipe.is_fifo()


def test_pair_ids_with_markup_print_literally_in_the_suspects_table(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path) -> None:
    labels, results = tmp_path / "labels.jsonl", tmp_path / "results.jsonl"
    rows = [json.loads(line) for line in (REPO / "data" / "model_spec" / "pairs.jsonl").read_text().splitlines()]
    labels.write_text("".join(json.dumps({**row, "id": row["id"] + "[/x]"}) + "\n" for row in rows))
    verdicts = [json.loads(line)
                for line in (REPO / "evals" / "results" / "modelspec-rules.jsonl").read_text().splitlines()]
    results.write_text("".join(json.dumps({**v, "pair_id": v["pair_id"] + "[/x]"}) + "\n" for v in verdicts))
    code, out, err = run_cli(["eval", str(labels), "-r", str(results), "--recalibrate", "none", "--suspects", "3"],
                             monkeypatch, capsys, sqlite_url)
    assert code == 0 and "Traceback" not in err, err
    assert "[/x]" in out and "labels the judge most confidently contradicts" in flat(out)


@pytest.mark.parametrize("option", ["--coverage", "--calibration"])
def test_a_gate_input_that_is_a_folder_is_named(option: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str], sqlite_url: str,
                                                tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)[0] == 0
    code, _, err = run_cli(["gate", "-c", str(REPO / "evals" / "results" / "modelspec-rules.jsonl"), option,
                            str(folder)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "a-folder" in flat(err) and "Traceback" not in err


def test_a_gate_results_folder_is_named_a_folder(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                 sqlite_url: str, tmp_path: Path) -> None:
    assert run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)[0] == 0
    code, _, err = run_cli(["gate", "-c", str(tmp_path)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "a folder, not a file" in flat(err)


@pytest.mark.parametrize(("content", "title", "message"), [
    (b"", None, "empty text"), (b"  \n\t", None, "empty text"), (b"\xff\xfe", None, "not UTF-8"),
    (None, "", "title must not be empty"),
])
def test_an_amendment_that_is_not_a_rule_is_refused_in_one_line(content: bytes | None, title: str | None,
                                                                 message: str, loaded: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = ["rulebook", "amend", "spec/avoid-errors", "--reason", "x"]
    if content is not None:
        text_file = tmp_path / "text.md"
        text_file.write_bytes(content)
        args += ["--text-file", str(text_file)]
    if title is not None:
        args += ["--title", title]
    code, _, err = run_cli(args, monkeypatch, capsys, loaded)
    assert code == 2 and message in flat(err) and "Traceback" not in err
    code, out, _ = run_cli(["rulebook", "history", "spec/avoid-errors", "--json"], monkeypatch, capsys, loaded)
    assert code == 0 and len(json.loads(out)) == 1  # nothing was stored


def test_retrieve_refuses_an_empty_measure_file_and_an_unknown_exclusion(loaded: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    code, _, err = run_cli(["retrieve", "--measure", str(empty)], monkeypatch, capsys, loaded)
    assert code == 2 and "no pairs to measure" in flat(err)
    code, _, err = run_cli(["retrieve", "--prompt", "Is 2 + 2 = 4?", "--a", "Yes.", "--b", "No.", "--exclude",
                            "spec/[bold]nope"], monkeypatch, capsys, loaded)
    assert code == 2 and "spec/[bold]nope" in flat(err)


@pytest.mark.parametrize(("argv", "said"), [
    (["run", "{empty}", "-o", "{out}", "--allow-empty"], "no pairs to judge"),
    (["run", "{blank}", "-o", "{out}", "--allow-empty"], "no pairs to judge"),
    (["rulebook", "ingest", "{empty}"], "no rules to ingest"),
    (["rulebook", "load", "{folder}"], "no rules in the directory"),
])
def test_an_empty_input_is_refused_not_taken_for_done(argv: list[str], said: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], sqlite_url: str,
                                                      tmp_path: Path) -> None:
    """An empty file or folder is most likely the wrong one: exit 2 naming it, as `judge eval` does, not exit 0
    with nothing done."""
    empty, blank, folder = tmp_path / "empty.jsonl", tmp_path / "blank.jsonl", tmp_path / "rules"
    empty.write_text("", encoding="utf-8")
    blank.write_text("\n\n", encoding="utf-8")
    folder.mkdir()
    (folder / "README.md").write_text("# notes\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = [a.format(empty=empty, blank=blank, folder=folder, out=out) for a in argv]
    code, _, err = run_cli(args, monkeypatch, capsys, sqlite_url)
    assert code == 2 and said in flat(err) and "Traceback" not in err, err
    assert str(tmp_path) in flat(err) and not out.exists()
