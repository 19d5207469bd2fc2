"""Case law as reviewable text: export the rulebook, diff it, and load it back without change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge.rulebook import Rulebook
from judge.settings import Settings
from tests.test_cli import REPO, run_cli


def test_export_of_the_default_rulebook_reproduces_its_text(hash_rulebook: Rulebook, tmp_path: Path) -> None:
    hash_rulebook.load(REPO / "rulebook")
    report = hash_rulebook.export(tmp_path / "out")
    assert len(report.written) > 50 and not report.removed
    for file in (tmp_path / "out").rglob("*"):
        if file.is_file():
            rel = file.relative_to(tmp_path / "out")
            assert file.read_bytes() == (REPO / "rulebook" / rel).read_bytes(), rel


def test_changes_round_trip_through_text(hash_rulebook: Rulebook, tmp_path: Path) -> None:
    rb = hash_rulebook
    rb.load(REPO / "rulebook")
    ruling = rb.add_ruling(prompt="Rate my essay", response_a="Perfect!", response_b="Needs work", holding="B",
                           rationale="Honest feedback.", cites=["spec/avoid-sycophancy"], author="me")
    rb.overrule(ruling.id, reason="the essay was in fact perfect")
    rb.amend("spec/avoid-sycophancy", reason="clarify", text="Do not flatter; give honest, useful feedback.")
    before = rb.version
    out = tmp_path / "reviewed"
    rb.export(out)
    report = rb.load(out)
    assert (report.added, report.amended) == (0, 0) and rb.version == before

    fresh = Rulebook.open(settings=Settings(db_url=f"sqlite:///{tmp_path / 'fresh.db'}", embedding_model="hash",
                                            index_path=tmp_path / "fresh-index"))
    fresh.load(out)
    exported = {r.id: r for r in rb.rules()}
    reloaded = {r.id: r for r in fresh.rules()}
    assert exported.keys() == reloaded.keys()
    assert reloaded[ruling.id].status == exported[ruling.id].status
    assert reloaded["spec/avoid-sycophancy"].text == exported["spec/avoid-sycophancy"].text
    # a second export of an unchanged rulebook writes nothing: the pull-request diff is empty
    assert rb.export(out).written == ()


def test_export_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str,
                        tmp_path: Path) -> None:
    assert run_cli(["rulebook", "load", str(REPO / "rulebook")], monkeypatch, capsys, sqlite_url)[0] == 0
    code, out, _ = run_cli(["rulebook", "export", str(tmp_path / "x"), "--json"], monkeypatch, capsys, sqlite_url)
    assert code == 0 and len(json.loads(out)["written"]) > 50
