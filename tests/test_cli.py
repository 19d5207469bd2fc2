"""The CLI end to end on a temporary database with the hash embedder: load, list, show, history, rulings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from judge.cli.main import main
from judge.verdicts import Distribution, JudgeConfig, Verdict

REPO = Path(__file__).resolve().parent.parent


def invoke(argv: list[str], monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``judge *argv`` in-process through the console-script entry point: (exit code, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["judge", *argv])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def flat(text: str) -> str:
    """``text`` with its line breaks and runs of spaces as single spaces (messages wrap at the terminal width)."""
    return " ".join(text.split())


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            db: str) -> tuple[int, str, str]:
    """`invoke` on the database ``db`` with the hash embedder."""
    return invoke(["--db", db, "--embedding-model", "hash", *args], monkeypatch, capsys)


def test_rulebook_workflow(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                           sqlite_url: str, tmp_path: Path) -> None:
    def cli(*args: str) -> tuple[int, str, str]:
        return run_cli(list(args), monkeypatch, capsys, sqlite_url)

    code, out, _ = cli("rulebook", "load", str(REPO / "rulebook"), "--json")
    assert code == 0 and json.loads(out)["added"] > 250
    code, out, _ = cli("rulebook", "load", str(REPO / "rulebook"), "--json")
    assert json.loads(out)["added"] == 0 and json.loads(out)["amended"] == 0

    code, out, _ = cli("rulebook", "list", "--layer", "constitution", "--json")
    listed = json.loads(out)["rules"]
    assert len(listed) == 22 and all(r["layer"] == "constitution" for r in listed)

    code, out, _ = cli("rulebook", "show", "spec/avoid-sycophancy", "--json")
    assert json.loads(out)["authority"] == "user"

    ruling = tmp_path / "ruling.json"
    ruling.write_text(json.dumps({"prompt": "Rate my essay", "response_a": "Perfect!", "response_b": "Needs work",
                                  "holding": "B", "rationale": "honest", "cites": ["spec/avoid-sycophancy"]}))
    code, out, _ = cli("rulebook", "add-ruling", "--file", str(ruling), "--author", "me", "--json")
    assert code == 0
    rid = json.loads(out)["id"]
    code, out, _ = cli("retrieve", "--prompt", "Rate my essay", "--a", "Perfect!", "--b", "Needs work", "--json")
    assert rid in [r["id"] for r in json.loads(out)["rules"]]

    code, out, _ = cli("rulebook", "overrule", rid, "--reason", "mistake")
    assert code == 0 and "overruled" in out
    code, out, _ = cli("rulebook", "history", rid, "--json")
    assert [h["status"] for h in json.loads(out)] == ["active", "overruled"]
    code, out, _ = cli("index", "status", "--json")
    assert json.loads(out)["current"] is True


def test_errors_are_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        empty_db_url: str, tmp_path: Path) -> None:
    sqlite_url = empty_db_url
    code, _, err = run_cli(["rulebook", "show", "spec/nope"], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "no rule with id 'spec/nope'" in err and "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prompt": "p", "response_a": "a", "response_b": "b", "holding": "A",
                               "rationale": "r", "cites": ["spec/does-not-exist"]}))
    code, _, err = run_cli(["rulebook", "add-ruling", "--file", str(bad)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "spec/does-not-exist" in err
    bad.write_text("{nope")
    code, _, err = run_cli(["rulebook", "add-ruling", "--file", str(bad)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "not valid JSON" in err and str(bad) in err
    code, _, err = run_cli(["run", str(REPO / "examples" / "pairs.jsonl"), "-o", str(tmp_path / "r.jsonl"),
                            "--max-time", "soon"], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "--max-time" in err and "not a duration" in err and not (tmp_path / "r.jsonl").exists()
    for option, value in (("--max-tokens", "-5"), ("--max-cost", "-1"), ("--max-time", "0"), ("--k-spec", "-1"),
                          ("--k-rulings", "-3"), ("--n-constitution", "-2"), ("--concurrency", "0")):
        code, _, err = run_cli(["run", str(REPO / "examples" / "pairs.jsonl"), "-o", str(tmp_path / "r.jsonl"),
                                option, value], monkeypatch, capsys, sqlite_url)
        assert code == 2 and option in err and "Traceback" not in err, (option, err)
        assert not (tmp_path / "r.jsonl").exists()  # refused before anything was judged
    for usage in (["run"], ["rulebook", "nosuch"], ["run", "x.jsonl", "-o", "y", "--concurrency", "many"]):
        code, _, err = run_cli(usage, monkeypatch, capsys, sqlite_url)  # usage errors: a message, not a traceback
        assert code == 2 and "Error" in err and "Traceback" not in err, usage


def _verdict(pair_id: str, **kw: Any) -> Verdict:
    config = JudgeConfig(backend="fake", model="fake", template_version="t")
    if "failure" in kw:
        return Verdict(pair_id=pair_id, winner=None, probabilities=None, config=config, cache_key="k", **kw)
    return Verdict(pair_id=pair_id, winner="B", probabilities=Distribution(a=0.3, tie=0.0, b=0.7),
                   position_inconsistent=False, config=config, cache_key="k", **kw)


def test_verdict_table_lists_the_deciding_rule_first_and_fits_80_columns() -> None:
    import io

    from rich.console import Console

    from judge.cli.run_cmd import verdict_table
    from judge.verdicts import Citation, Failure

    def cite(rule_id: str, favours: str) -> Citation:
        return Citation(rule_id=rule_id, layer="spec", authority=None, version=1, title="t", excerpt="e",
                        favours=favours, note="n")  # type: ignore[arg-type]

    long_id = "ruling/modelspec-do-not-encourage-self-harm-ex1-c1-r2r1"
    rows = [_verdict("p1", citations=[cite("spec/be-honest", "A"), cite(long_id, "B")], deciding_rule=long_id,
                     explanation_agrees=True),
            _verdict("p[2]", failure=Failure(stage="explanation", reason="cited [red]spec/unknown[/red]"))]
    wide, narrow = io.StringIO(), io.StringIO()
    Console(file=wide, width=200).print(verdict_table(rows, "verdicts"))
    Console(file=narrow, width=80).print(verdict_table(rows, "verdicts"))
    text = wide.getvalue()
    assert text.index(f"{long_id} (B, deciding)") < text.index("spec/be-honest (A)")  # deciding rule first
    assert "p[2]" in text and "explanation: cited [red]spec/unknown[/red]" in text  # text, not markup
    assert "contradicts" not in text
    assert max(len(line) for line in narrow.getvalue().splitlines()) <= 80
    assert "0.70" in narrow.getvalue() and "orders" in narrow.getvalue()
