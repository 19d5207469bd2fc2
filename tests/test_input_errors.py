"""Bad input across commands: one clear error (exit 2, file:line and field, no traceback), nothing stored.

Rule ids with whitespace or control characters, `rulebook ingest` checked as `rulebook load` is, bad command
options, results lines that fail validation, gate files mixing two judges or holding an unknown status, and
a rule file without front matter.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from judge.judging.verdict import Distribution, JudgeConfig, Verdict
from tests.test_cli import invoke

CONFIG = JudgeConfig(backend="fake", model="m", template_version="t")


def _cli(args: list[str], db: str, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from judge.cli.common import console, err_console

    for con in (console, err_console):
        monkeypatch.setattr(con, "width", 400)  # one message per line, paths unwrapped
    return invoke(["--db", db, "--embedding-model", "hash", *args], monkeypatch, capsys)


def _rules_stored(db: str) -> int:
    path = db.removeprefix("sqlite:///")
    if not Path(path).exists():
        return 0
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        return int(conn.execute("select count(*) from rule_versions").fetchone()[0]) if "rule_versions" in tables \
            else 0


def _assert_clear(code: int, err: str, where: str, *words: str) -> None:
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert where in said and all(w in said for w in words), said


def _rule(rid: Any, **over: Any) -> dict[str, Any]:
    return {"id": rid, "layer": "spec", "title": "t", "text": "Be clear.", "authority": "guideline", **over}


def _write_jsonl(path: Path, *objs: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def _md(rid: str, *, parent: str | None = None) -> str:
    return (f"---\nid: {json.dumps(rid)}\ntitle: t\nauthority: guideline\n"
            + (f"parent: {parent}\n" if parent else "") + "source: user\n---\nBe clear.\n")


# ============================================================== rule ids: no trailing newline, no control chars
@pytest.mark.parametrize("suffix", ["\n", " ", "\t", "\r", "\x00", "\u2028"])
def test_a_rule_id_with_whitespace_or_a_control_character_is_refused(
        suffix: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from judge.errors import RulebookParseError
    from judge.rules.model import Layer, Rule
    from judge.rules.textio import read_rulebook

    with pytest.raises(ValueError, match="must look like"):
        Rule(id="spec/a" + suffix, layer=Layer.SPEC, title="t", text="x")
    # ingest (rule objects) and load (Markdown front matter and ruling JSONL) refuse it alike
    ingest_file = _write_jsonl(tmp_path / "rules.jsonl", _rule("spec/ok"), _rule("spec/a" + suffix))
    code, _, err = _cli(["rulebook", "ingest", str(ingest_file)], sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, f"{ingest_file}:2:", "id", "must look like")
    md_dir = tmp_path / "rb"
    (md_dir / "spec").mkdir(parents=True)
    (md_dir / "spec" / "a.md").write_text(_md("spec/a" + suffix), encoding="utf-8")
    code, _, err = _cli(["rulebook", "load", str(md_dir)], sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, f"{md_dir / 'spec' / 'a.md'}:2:", "id")
    ruling = {"id": "ruling/r" + suffix, "title": "t", "holding": "A", "rationale": "r", "prompt": "p?",
              "response_a": "a", "response_b": "b", "source": "user"}
    jsonl_dir = tmp_path / "rb2"
    _write_jsonl(jsonl_dir / "rulings" / "r.jsonl", ruling)
    code, _, err = _cli(["rulebook", "load", str(jsonl_dir)], sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, f"{jsonl_dir / 'rulings' / 'r.jsonl'}:1:", "id")
    assert _rules_stored(sqlite_url) == 0
    with pytest.raises(RulebookParseError, match="bad id"):  # the library refuses it too
        read_rulebook(md_dir)


# ============================================================== ingest is checked as load is
@pytest.mark.parametrize("problem", ["duplicate-same-batch", "duplicate-later-batch", "unknown-parent",
                                     "unknown-cite", "id-object"])
def test_ingest_refuses_what_load_refuses_with_file_line_and_field(
        problem: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ruling = {"id": "ruling/r", "layer": "ruling", "title": "t", "text": "Holding: response A is better. r",
              "case": {"prompt": "p?", "response_a": "a", "response_b": "b", "holding": "A", "rationale": "r",
                       "cites": ["spec/nowhere"]}}
    rules, field, line, words = {
        "duplicate-same-batch": ([_rule("spec/a"), _rule("spec/b"), _rule("spec/a", text="Other.")], "id", 3,
                                 "duplicate id 'spec/a'"),
        "duplicate-later-batch": ([_rule("spec/a"), _rule("spec/b"), _rule("spec/a", text="Other.")], "id", 3,
                                  "duplicate id 'spec/a'"),
        "unknown-parent": ([_rule("spec/a"), _rule("spec/b", parent="spec/nowhere")], "parent", 2,
                           "'spec/nowhere'"),
        "unknown-cite": ([_rule("spec/a"), ruling], "cites", 2, "'spec/nowhere'"),
        "id-object": ([_rule("spec/a"), _rule({"x": 1})], "id", 2, "string"),
    }[problem]
    path = _write_jsonl(tmp_path / "rules.jsonl", *rules)
    batch = ["--batch-size", "1"] if problem == "duplicate-later-batch" else []
    code, _, err = _cli(["rulebook", "ingest", str(path), *batch], sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, f"{path}:{line}:", field, words)
    assert _rules_stored(sqlite_url) == 0  # the whole file is checked before the first batch is written

    # the same problem in rulebook text: load refuses it too, naming file:line and the field
    root = tmp_path / "rb"
    if problem.startswith("duplicate"):
        (root / "spec").mkdir(parents=True)
        (root / "spec" / "a.md").write_text(_md("spec/a"), encoding="utf-8")
        (root / "other").mkdir()
        (root / "other" / "a.md").write_text(_md("spec/a"), encoding="utf-8")
        where, load_field = f"{root / 'spec' / 'a.md'}:2:", "duplicate id 'spec/a'"
    elif problem == "unknown-parent":
        (root / "spec").mkdir(parents=True)
        (root / "spec" / "b.md").write_text(_md("spec/b", parent="spec/nowhere"), encoding="utf-8")
        where, load_field = f"{root / 'spec' / 'b.md'}:5:", "parent 'spec/nowhere'"
    elif problem == "unknown-cite":
        _write_jsonl(root / "rulings" / "r.jsonl", {"id": "ruling/r", "title": "t", "holding": "A",
                                                    "rationale": "r", "prompt": "p?", "response_a": "a",
                                                    "response_b": "b", "source": "user",
                                                    "cites": ["spec/nowhere"]})
        where, load_field = f"{root / 'rulings' / 'r.jsonl'}:1:", "cites 'spec/nowhere'"
    else:
        _write_jsonl(root / "rulings" / "r.jsonl", {"id": {"x": 1}, "title": "t", "holding": "A",
                                                    "rationale": "r", "prompt": "p?", "response_a": "a",
                                                    "response_b": "b", "source": "user"})
        where, load_field = f"{root / 'rulings' / 'r.jsonl'}:1:", "field 'id' must be a string"
    code, _, err = _cli(["rulebook", "load", str(root)], sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, where, load_field)
    assert "{'x': 1}" not in err  # a JSON value is named as JSON, never as a Python repr
    assert _rules_stored(sqlite_url) == 0


def test_ingest_accepts_a_parent_later_in_the_file_or_already_stored(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    first = _write_jsonl(tmp_path / "one.jsonl", _rule("spec/b", parent="spec/c"), _rule("spec/c"))
    code, out, err = _cli(["rulebook", "ingest", str(first), "--batch-size", "1", "--json"], sqlite_url,
                          monkeypatch, capsys)
    assert code == 0 and json.loads(out)["added"] == 2, err
    second = _write_jsonl(tmp_path / "two.jsonl", _rule("spec/d", parent="spec/b"))
    code, out, err = _cli(["rulebook", "ingest", str(second), "--json"], sqlite_url, monkeypatch, capsys)
    assert code == 0 and json.loads(out)["added"] == 1, err
    # re-running the same file is still idempotent (its ids are stored already: not duplicates)
    code, out, err = _cli(["rulebook", "ingest", str(first), "--json"], sqlite_url, monkeypatch, capsys)
    assert code == 0 and json.loads(out)["unchanged"] == 2, err


def test_a_rule_file_without_front_matter_says_so_with_file_and_line(tmp_path: Path, sqlite_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rb" / "spec").mkdir(parents=True)
    path = tmp_path / "rb" / "spec" / "a.md"
    path.write_text("# Be clear\n\nSay what you mean.\n", encoding="utf-8")
    code, _, err = _cli(["rulebook", "load", str(tmp_path / "rb")], sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, f"{path}:1:", "missing front matter")
    path.write_text("---\nid: {x: 1}\ntitle: t\nsource: user\n---\nBe clear.\n", encoding="utf-8")
    code, _, err = _cli(["rulebook", "load", str(tmp_path / "rb")], sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, f"{path}:2:", "field 'id' must be a string, got an object")


# ============================================================== bad command options
@pytest.mark.parametrize("option", ["base-url", "base-url-port", "out-dir", "out-under-a-file",
                                    "negative-concurrency", "zero-concurrency"])
def test_bad_run_options_are_usage_errors_not_tracebacks(option: str, tmp_path: Path, sqlite_url: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pairs = _write_jsonl(tmp_path / "p.jsonl", {"id": "p0", "prompt": "q?", "response_a": "a", "response_b": "b"})
    out = tmp_path / "o.jsonl"
    extra, words = {
        "base-url": (["--backend", "openai/m", "--base-url", "not a url"], ["--base-url", "not an http(s) URL"]),
        "base-url-port": (["--backend", "openai/m", "--base-url", "http://h:port/v1"], ["--base-url"]),
        "out-dir": (["-o", str(tmp_path)], ["--out", "is a directory"]),
        "out-under-a-file": (["-o", str(pairs / "o.jsonl")], ["--out", "is a file, not a folder"]),
        "negative-concurrency": (["-c", "-3"], ["--concurrency", "greater than or equal to 1"]),
        "zero-concurrency": (["-c", "0"], ["--concurrency"]),
    }[option]

    def no_judge(*_a: Any, **_k: Any) -> None:
        raise AssertionError("no judge may be built for a bad option")

    monkeypatch.setattr("judge.cli.run_cmd._judge", no_judge)
    args = ["run", str(pairs), *(["-o", str(out)] if "out" not in option else []), *extra, "--allow-empty"]
    code, _, err = _cli(args, sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, "", *words)
    assert not out.exists()


def test_a_good_base_url_passes_the_check() -> None:
    from judge.cli.common import check_url

    assert check_url(" http://127.0.0.1:8000/v1 ") == "http://127.0.0.1:8000/v1"
    assert check_url("https://api.example.com/v1") == "https://api.example.com/v1"
    assert check_url(None) is None


# ============================================================== results lines name the field
def _verdict(pid: str, config: JudgeConfig = CONFIG, winner: str = "A") -> Verdict:
    probs = Distribution(a=0.9, tie=0.0, b=0.1) if winner == "A" else Distribution(a=0.1, tie=0.0, b=0.9)
    return Verdict(pair_id=pid, winner=winner, probabilities=probs, config=config, cache_key=pid)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["eval", "gate", "library"])
def test_a_results_line_that_fails_validation_names_file_line_and_field(
        command: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from judge.errors import InputError
    from judge.judging.runner import read_results

    good = json.loads(_verdict("p0").model_dump_json())
    bad = {**json.loads(_verdict("p1").model_dump_json()), "winner": "C"}
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    if command == "library":
        with pytest.raises(InputError) as info:
            read_results(results)
        assert info.value.line == 2 and info.value.field == "winner"
        return
    if command == "eval":
        labelled = _write_jsonl(tmp_path / "l.jsonl", {"id": "p0", "prompt": "q?", "response_a": "a",
                                                       "response_b": "b", "label": "A"})
        args = ["eval", str(labelled), "-r", str(results)]
    else:
        cases = _write_jsonl(tmp_path / "c.jsonl", {"id": "p0", "entries": ["spec/a"]})
        args = ["gate", "--candidate", str(results), "--cases", str(cases)]
    code, _, err = _cli(args, sqlite_url, monkeypatch, capsys)
    _assert_clear(code, err, f"{results}:2:", "field winner")


# ============================================================== the gate gates one judge, known statuses only
def test_the_gate_refuses_results_from_two_judge_configurations(tmp_path: Path, sqlite_url: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    other = CONFIG.model_copy(update={"both_orders": False})
    results = tmp_path / "r.jsonl"
    results.write_text("".join(v.model_dump_json() + "\n" for v in (_verdict("c1"), _verdict("c2", other))),
                       encoding="utf-8")
    cases = _write_jsonl(tmp_path / "c.jsonl", {"id": "c1", "entries": ["spec/a"]},
                         {"id": "c2", "entries": ["spec/a"]})
    code, _, err = _cli(["gate", "--candidate", str(results), "--cases", str(cases)], sqlite_url, monkeypatch,
                        capsys)
    _assert_clear(code, err, str(results), "two judge configurations", "both_orders True vs False", "'c2'")
    # one configuration passes the check
    results.write_text("".join(v.model_dump_json() + "\n" for v in (_verdict("c1"), _verdict("c2"))),
                       encoding="utf-8")
    code, _, err = _cli(["gate", "--candidate", str(results), "--cases", str(cases)], sqlite_url, monkeypatch,
                        capsys)
    assert code in (0, 1) and "two judge configurations" not in err, err


def test_an_unknown_case_status_is_bad_input_not_unaccepted(tmp_path: Path, sqlite_url: str,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "r.jsonl"
    results.write_text(_verdict("c1").model_dump_json() + "\n", encoding="utf-8")
    cases = _write_jsonl(tmp_path / "c.jsonl", {"id": "c1", "entries": ["spec/a"], "status": "accepted"},
                         {"id": "c2", "entries": ["spec/a"], "status": "bogus"})
    code, _, err = _cli(["gate", "--candidate", str(results), "--cases", str(cases)], sqlite_url, monkeypatch,
                        capsys)
    _assert_clear(code, err, f"{cases}:2:", "unknown case status 'bogus'", "accepted, draft, rejected")


# ============================================================== two orders that cancel; a pinned model file
def test_two_orders_that_cancel_exactly_are_a_tie_at_even_odds_not_at_zero() -> None:
    from judge.judging.pairwise import Distribution, combine

    combined = combine(Distribution(a=0.9, tie=0.0, b=0.1), Distribution(a=0.1, tie=0.0, b=0.9))
    assert combined.distribution.winner == "tie" and combined.position_inconsistent
    assert combined.distribution.confidence == pytest.approx(0.5)  # was P(tie) = 0.00
    assert Distribution(a=0.7, tie=0.1, b=0.2).confidence == pytest.approx(0.7)
    assert Distribution(a=0.2, tie=0.6, b=0.2).confidence == pytest.approx(0.6)


def test_a_local_model_file_is_checked_against_a_given_sha256(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from judge.backends.local_model import GGUF_MAGIC, ModelIntegrityError
    from judge.backends.registry import make_backend

    model = tmp_path / "m.gguf"
    model.write_bytes(GGUF_MAGIC + b"\0" * 64)
    good = hashlib.sha256(model.read_bytes()).hexdigest()
    started: list[Path] = []

    class NoServer:
        def __init__(self, path: Path, **_kw: Any) -> None:
            started.append(path)

        def start(self) -> NoServer:
            raise RuntimeError("stop here: the file was accepted")

    monkeypatch.setattr("judge.backends.local_server.LocalServer", NoServer)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        make_backend(f"local/{model}@sha256:{'0' * 64}", data_dir=tmp_path)
    assert started == []  # refused before anything was served
    with pytest.raises(RuntimeError, match="accepted"):
        make_backend(f"local/{model}@sha256:{good.upper()}", data_dir=tmp_path)
    with pytest.raises(RuntimeError, match="accepted"):
        make_backend(f"local/{model}", data_dir=tmp_path)  # no pin: the GGUF magic is checked only
    assert started == [model.resolve(), model.resolve()]
