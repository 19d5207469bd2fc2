"""Mistakes made through the Python API: the library's own errors (`judge.errors`), naming the file, pair or
field, and the judge's defaults kept unless a configuration field says otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import judge
from judge.backends import registry
from judge.backends.fake import FakeBackend, FakeReply
from judge.errors import InputError, NothingScoredError, StoreError
from judge.records import read_results
from judge.store.engine import open_engine
from judge.verdicts import Failure, JudgeConfig
from tests.test_calibration_evaluate import make
from tests.test_cli import run_cli


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> judge.Settings:
    """A data directory with the default rulebook and a fake backend answering yes to every check."""
    monkeypatch.setattr(registry, "make_backend",
                        lambda *a, **k: FakeBackend(lambda body: FakeReply("yes", top_logprobs=[("yes", -0.1)])))
    settings = judge.Settings(data_dir=tmp_path, embedding_model="hash")
    judge.Rulebook.open(settings=settings).load("rulebook")
    return settings


def test_database_urls_that_cannot_be_opened_are_store_errors() -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        open_engine("nonsense")
    with pytest.raises(StoreError, match="no database driver for mysql://"):
        open_engine("mysql://u@127.0.0.1/x")
    # A bare postgresql:// URL uses the PostgreSQL driver judge installs (SQLAlchemy's default is psycopg 3).
    assert open_engine("postgresql://u@127.0.0.1:9/x").url.drivername == "postgresql+psycopg2"


def test_a_results_file_that_is_missing_or_a_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as missing:
        read_results(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(missing.value)
    with pytest.raises(InputError, match="a folder, not a file"):
        read_results(tmp_path)


def test_compare_many_refuses_pairs_it_cannot_key(settings: judge.Settings, tmp_path: Path) -> None:
    twins = [judge.Pair(prompt="Rate my essay", response_a="a", response_b="b", id="d"),
             judge.Pair(prompt="Rate my poem", response_a="a", response_b="b", id="d")]
    with pytest.raises(InputError, match="pairs 1 and 2 share the id 'd'"):
        judge.compare_many(twins, settings=settings, out=tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists()  # refused before anything was judged
    with pytest.raises(InputError, match="pair 1: prompt must be a non-empty string"):
        judge.compare_many([judge.Pair(prompt=" ", response_a="a", response_b="b")], settings=settings)
    with pytest.raises(TypeError, match="pair 1: expected a judge.Pair, got dict"):
        judge.compare_many([{"prompt": "p", "response_a": "a", "response_b": "b"}],  # type: ignore[list-item]
                           settings=settings)
    with pytest.raises(InputError, match="a folder, not a file"):
        judge.compare_many(twins[:1], settings=settings, out=tmp_path)
    with pytest.raises(InputError, match="prompt must be a non-empty string"):
        judge.compare("", "a", "b", settings=settings)


def test_a_configuration_changes_only_the_fields_it_sets(settings: judge.Settings) -> None:
    default = judge.compare("Rate my essay", "It is perfect.", "It needs work.", settings=settings)
    tuned = judge.compare("Rate my essay", "It is perfect.", "It needs work.", settings=settings,
                          config=JudgeConfig(max_retries=1))
    assert default.config.method == tuned.config.method == "checks"
    assert tuned.config.template_version == default.config.template_version
    assert tuned.config.explain is default.config.explain is False and tuned.config.max_retries == 1


def test_nothing_to_score_is_an_error_with_the_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    pairs, results = tmp_path / "pairs.jsonl", tmp_path / "results.jsonl"
    failed = Failure(stage="backend", reason="endpoint unreachable")
    with pairs.open("w") as fp, results.open("w") as fr:
        for i in range(4):
            fp.write(json.dumps({"id": f"p{i}", "prompt": "q", "response_a": "a", "response_b": "b",
                                 "label": "A"}) + "\n")
            verdict = make(f"p{i}", 0.7)
            fr.write(verdict.model_copy(update={"winner": None, "probabilities": None, "failure": failed})
                     .model_dump_json() + "\n")
    with pytest.raises(NothingScoredError, match=r"no labelled pair has a verdict to score \(4 failed") as raised:
        judge.evaluate(pairs, results=results)
    assert raised.value.failed == 4 and raised.value.labelled == 4
    code, _, err = run_cli(["eval", str(pairs), "-r", str(results)], monkeypatch, capsys, sqlite_url)
    assert code == 1 and "4 failed" in err and "4 of 4 pair(s) failed" in " ".join(err.split())
    assert "Traceback" not in err


def test_retrieve_refuses_what_it_would_misread(settings: judge.Settings) -> None:
    rulebook = judge.Rulebook.open(settings=settings)
    pair = judge.Pair(prompt="Rate my essay", response_a="a", response_b="b")
    with pytest.raises(TypeError, match="expected a judge.Pair, got str"):
        rulebook.retrieve("Rate my essay")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not one string"):  # it was read as one-letter ids: nothing excluded
        rulebook.retrieve(pair, exclude="spec/avoid-sycophancy")
    with pytest.raises(ValueError, match="must not be negative"):
        rulebook.retrieve(pair, k=-1)
    assert "spec/avoid-sycophancy" not in rulebook.retrieve(pair, exclude=["spec/avoid-sycophancy"]).ids
