"""The public surface: exported names are frozen, and every CLI command answers --help."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

import judge
from judge.cli.main import app

EXPORTED = {
    "Authority", "Case", "Change", "Judge", "JudgeConfig", "JudgeError", "Layer", "Pair", "Process", "Response",
    "Retrieval", "RetrievedRule", "Rule", "RuleStatus", "Rulebook", "Settings", "ToolCall", "Verdict",
    "__version__", "compare", "compare_many", "evaluate", "render_view", "report", "rerun",
}


def test_exported_names_are_frozen_and_resolve() -> None:
    assert set(judge.__all__) == EXPORTED
    for name in judge.__all__:
        assert getattr(judge, name) is not None


def test_import_is_light() -> None:
    code = "import sys, judge; print(int(any(m.startswith(('chromadb', 'torch', 'sqlalchemy')) for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def _all_commands() -> list[list[str]]:
    """Every command and sub-command of the CLI, walked from the app (a new command cannot be missed)."""
    import typer.main

    found: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        found.append(path)
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):  # a group (typer may vendor click)
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _all_commands()


def test_the_cli_has_every_documented_command() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"rulebook export", "rulebook impact", "rule", "rerun", "run", "eval", "calibrate", "report", "gate",
            "cases generate", "cases pairs", "cases review", "coverage", "batch status", "batch export"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "judge" for c in COMMANDS])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_compare_and_compare_many_one_call(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from judge.backends import registry
    from judge.backends.fake import FakeBackend, FakeReply
    from judge.verdicts import JudgeConfig

    def reply(body: dict) -> FakeReply:
        return FakeReply("A", top_logprobs=[("A", -0.2), ("B", -1.7)])

    fake = FakeBackend(reply)
    closed: list[bool] = []
    fake._on_close = lambda: closed.append(True)
    monkeypatch.setattr(registry, "make_backend", lambda *a, **k: fake)
    settings = judge.Settings(data_dir=tmp_path, embedding_model="hash")
    judge.Rulebook.open(settings=settings).load("rulebook")
    config = JudgeConfig(backend="x", model="y", template_version="rules-v2", explain=False, method="pairwise")
    verdict = judge.compare("What is 2+2?", "4", "5", settings=settings, config=config)
    assert verdict.failure is None and verdict.winner == "tie" and len(verdict.orders) == 2  # slot bias cancels
    assert verdict.config.backend == "fake" and closed == [True]
    from judge.records import compare_pair_id  # stored under the id `judge compare` gives the same texts

    assert verdict.pair_id == compare_pair_id("What is 2+2?", "4", "5") != judge.compare(
        "What is 3+3?", "6", "5", settings=settings, config=config).pair_id
    pairs = [judge.Pair(prompt=f"q{i}", response_a="a", response_b="b") for i in range(3)]
    out = tmp_path / "new" / "folder" / "r.jsonl"  # created, as `judge run -o` creates it
    many = judge.compare_many(pairs, settings=settings, config=config, out=out)
    assert len(many) == 3 and all(v.failure is None for v in many)
    assert len(out.read_text().splitlines()) == 3


def test_evaluate_runs_the_judge_without_showing_labels(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import json

    from judge.backends import registry
    from judge.backends.fake import FakeBackend, FakeReply

    def reply(body: dict) -> FakeReply:
        user = body["messages"][1]["content"]
        assert "SECRET" not in user  # neither the label nor meta reaches the judge
        if "Question: " in user:  # a check of one response (the default method): only the general one separates
            general = "Question: Does the response do what the user asked" in user
            p_yes = 0.9 if general and "the right answer" in user else 0.1 if general else 0.5
            return FakeReply("Yes", top_logprobs=[("Yes", math.log(p_yes)), ("No", math.log(1 - p_yes))])
        first = user.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
        return FakeReply("A" if "right" in first else "B", top_logprobs=[("A", -0.1), ("B", -2.4)]
                         if "right" in first else [("B", -0.1), ("A", -2.4)])

    monkeypatch.setattr(registry, "make_backend", lambda *a, **k: FakeBackend(reply))
    settings = judge.Settings(data_dir=tmp_path, embedding_model="hash")
    judge.Rulebook.open(settings=settings).load("rulebook")
    labelled = tmp_path / "labelled.jsonl"
    with labelled.open("w") as fh:
        for i in range(12):
            a_right = i % 2 == 0
            fh.write(json.dumps({"id": f"e{i}", "prompt": f"question {i}", "label": "A" if a_right else "B",
                                 "response_a": "the right answer" if a_right else "a wrong answer",
                                 "response_b": "a wrong answer" if a_right else "the right answer",
                                 "meta": {"note": "SECRET"}}) + "\n")
    ev = judge.evaluate(labelled, settings=settings, n_boot=50)
    assert len((tmp_path / "labelled.results.jsonl").read_text().splitlines()) == 12
    assert ev.raw.n_scored == 12 and ev.raw.headline["accuracy"].point == 1.0
    assert ev.recalibrated is not None
    # the HTML report of those results, in one call (what `judge report` does)
    ev2, index = judge.report(tmp_path / "labelled.results.jsonl", labelled, tmp_path / "report", n_boot=20)
    assert index == tmp_path / "report" / "index.html" and index.is_file() and ev2.raw.n_scored == 12
    assert (tmp_path / "report" / "metrics.json").is_file()


def test_a_backend_object_is_used_as_given_and_rerun_is_one_call(tmp_path) -> None:
    """`compare` and `rerun` take a `Backend` object (yours: left open); `judge.rerun` re-judges what a rulebook
    change affected, as `judge rerun` does."""
    from judge.backends.fake import FakeBackend, FakeReply
    from judge.verdicts import JudgeConfig

    fake = FakeBackend(lambda body: FakeReply("A", top_logprobs=[("A", -0.2), ("B", -1.7)]))
    closed: list[bool] = []
    fake._on_close = lambda: closed.append(True)
    settings = judge.Settings(data_dir=tmp_path, embedding_model="hash")
    book = judge.Rulebook.open(settings=settings)
    book.load("rulebook")
    since = book.version
    config = JudgeConfig(backend="x", model="y", template_version="rules-v3", explain=False, method="pairwise")
    verdict = judge.compare("Is my poem good? It is about autumn.", "It is perfect.", "The ending is weak.",
                            backend=fake, settings=settings, config=config)
    assert verdict.failure is None and verdict.config.backend == "fake" and closed == []  # still the caller's
    shown = [r["id"] for r in verdict.retrieved if r["id"].startswith("spec/")]
    assert judge.rerun(since, out=tmp_path / "none.jsonl", backend=fake, settings=settings).run is None
    book.amend(shown[0], reason="test", text="Say plainly what is weak in a piece of writing.")
    started: list[int] = []
    done = judge.rerun(since, out=tmp_path / "rerun.jsonl", backend=fake, settings=settings,
                       on_start=started.append)
    assert [e.pair_id for e in done.impact.affected] == [verdict.pair_id] and started == [1]
    assert done.run is not None and done.run.judged == 1 and closed == []
    assert len((tmp_path / "rerun.jsonl").read_text().splitlines()) == 1
