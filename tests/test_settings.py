"""Settings: flags > environment > judge.toml / [tool.judge] > defaults, with the source of every value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from judge.errors import ConfigError
from judge.settings import Price, Settings
from judge.store import open_database
from tests.test_cli import invoke

REPO = Path(__file__).resolve().parent.parent


def _toml(directory: Path, text: str, name: str = "judge.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    config = _toml(tmp_path, 'backend = "openai/from-file"\nembedding_model = "hash:8"\ndata_dir = "data"\n'
                             'chroma_url = "http://file:1"\n')
    env = {"JUDGE_BACKEND": "openai/from-env", "JUDGE_CHROMA_URL": "http://env:2"}
    s = Settings.from_env(env, cwd=tmp_path, chroma_url="http://flag:3")
    assert s.chroma_url == "http://flag:3" and s.source("chroma_url") == "flag"
    assert s.backend == "openai/from-env" and s.source("backend") == "env JUDGE_BACKEND"
    assert s.embedding_model == "hash:8" and s.source("embedding_model") == str(config)
    assert s.data_dir == (tmp_path / "data").resolve()  # relative to the file
    assert s.index_path is None and s.source("index_path") == "default"
    assert s.config_file == config
    assert Settings.from_env({}, cwd=tmp_path / "elsewhere").backend == "local"


def test_pyproject_tool_table_and_judge_config_variable(tmp_path: Path) -> None:
    _toml(tmp_path, '[project]\nname = "x"\n[tool.judge]\nbackend = "openai/pp"\n', "pyproject.toml")
    assert Settings.from_env({}, cwd=tmp_path).backend == "openai/pp"
    _toml(tmp_path, '[project]\nname = "x"\n', "pyproject.toml")
    s = Settings.from_env({}, cwd=tmp_path)
    assert s.backend == "local" and s.config_file is None
    explicit = _toml(tmp_path, 'backend = "openai/named"\n', "other.toml")
    assert Settings.from_env({"JUDGE_CONFIG": str(explicit)}, cwd=tmp_path).backend == "openai/named"
    with pytest.raises(ConfigError, match="not a file"):
        Settings.from_env({"JUDGE_CONFIG": str(tmp_path / "missing.toml")}, cwd=tmp_path)


@pytest.mark.parametrize(("text", "message"), [
    ("backend = [\n", "not valid TOML"),
    ("bakend = 'local'\n", "unknown setting 'bakend'"),
    ("api_key = 'sk-x'\n", "not read from a file"),
    ("[prices.m]\ninput = -1\noutput = 1\n", "prices"),
    ("[prices.m]\ninput = 1\n", "prices"),
])
def test_a_bad_config_file_is_one_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env({}, cwd=tmp_path)
    assert str(path) in str(info.value)


def test_prices_and_masking(tmp_path: Path) -> None:
    _toml(tmp_path, '[prices."gpt-x"]\ninput = 0.5\noutput = 2\n[prices."openai/other"]\ninput = 1\noutput = 1\n')
    s = Settings.from_env({"JUDGE_API_KEY": "sk-very-secret", "JUDGE_DB": "postgresql://me:hunter2@db/judge",
                           "JUDGE_BASE_URL": "http://127.0.0.1:9/v1?model=m&api_key=sk-in-the-query&Sig=abc"},
                          cwd=tmp_path)
    assert s.price_for("openai/gpt-x", "gpt-x") == Price(input=0.5, output=2)
    assert s.price_for("openai/other", "other") == Price(input=1, output=1)
    assert s.price_for("openai/unpriced", "unpriced") is None
    shown = json.dumps(s.shown())
    assert "sk-very-secret" not in shown and "hunter2" not in shown and "me:***@db" in shown
    assert "sk-in-the-query" not in shown and "abc" not in shown and "?model=m&api_key=***&Sig=***" in shown


def test_config_show_init_and_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUDGE_API_KEY", "sk-never-printed")
    _toml(tmp_path, 'backend = "openai/m"\n')
    code, out, _ = invoke(["--embedding-model", "hash", "config", "show", "--json"], monkeypatch, capsys)
    shown = json.loads(out)
    assert code == 0 and shown["config_file"] == str(tmp_path / "judge.toml")
    assert shown["settings"]["backend"] == {"value": "openai/m", "source": str(tmp_path / "judge.toml")}
    assert shown["settings"]["embedding_model"]["source"] == "flag"
    assert shown["settings"]["data_dir"]["source"] == "env JUDGE_DATA_DIR"
    assert shown["settings"]["api_key"] == {"value": "****", "source": "env JUDGE_API_KEY"}
    # values as data, not as the table's text: null where not set, numbers as numbers, prices as objects
    assert shown["settings"]["calibrator"]["value"] is None and shown["settings"]["prices"]["value"] == {}
    assert isinstance(shown["settings"]["full_text_common"]["value"], float)
    assert shown["settings"]["index_path"]["value"] == str(Path(shown["settings"]["data_dir"]["value"]) / "index")
    code, out, _ = invoke(["config", "show"], monkeypatch, capsys)
    assert code == 0 and "sk-never-printed" not in out and "openai/m" in out

    (tmp_path / "judge.toml").unlink()
    code, out, err = invoke(["--embedding-model", "hash", "init", "--json"], monkeypatch, capsys)
    assert code == 0, err
    done = json.loads(out)
    assert done["config_written"] and done["added"] > 250 and Path(done["data_dir"]).is_dir()
    written = (tmp_path / "judge.toml").read_text(encoding="utf-8")
    assert Settings.from_env({}, cwd=tmp_path).backend == "local"  # every line is commented out, and valid
    for name in Settings.model_fields:
        assert name in written, name
    shipped = sum(1 for f in (REPO / "cases").glob("*.jsonl")
                  for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    assert done["cases_added"] == shipped > 6000  # the default case set comes with the default rulebook
    for rule_id, flag in (("constitution/protect-privacy", ["--constitution"]), ("spec/avoid-errors", [])):
        code, _, err = invoke(["--embedding-model", "hash", "rulebook", "amend", rule_id, *flag, "--reason",
                               "local policy", "--title", "Local title"], monkeypatch, capsys)
        assert code == 0, err
    code, out, _ = invoke(["--embedding-model", "hash", "init", "--json"], monkeypatch, capsys)
    again = json.loads(out)
    assert code == 0 and not again["config_written"] and again["added"] == 0  # idempotent, file kept
    assert again["kept"] == ["constitution/protect-privacy", "spec/avoid-errors"]  # local amendments stay
    code, out, _ = invoke(["--embedding-model", "hash", "rulebook", "show", "constitution/protect-privacy",
                           "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["title"] == "Local title"
    assert again["cases_added"] == 0 and again["cases_existing"] == shipped
    code, out, _ = invoke(["--embedding-model", "hash", "coverage", "--json"], monkeypatch, capsys)
    entries = json.loads(out)["entries"]
    assert code == 0 and len(entries) == 61 and min(e["distinct_accepted"] for e in entries) >= 100
    code, out, _ = invoke(["--embedding-model", "hash", "rulebook", "list", "--layer", "constitution", "--json"],
                          monkeypatch, capsys)
    assert code == 0 and len(json.loads(out)["rules"]) == 22

    code, out, _ = invoke(["--version"], monkeypatch, capsys)
    assert code == 0 and out.startswith("judge ")


def test_an_empty_rulebook_says_to_load_rules_instead_of_indexing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    open_database(db).dispose()  # a database that holds no rules
    for args in (["index", "rebuild"], ["retrieve", "--prompt", "p", "--a", "a", "--b", "b"]):
        code, out, err = invoke(["--db", db, "--embedding-model", "hash", *args], monkeypatch, capsys)
        said = " ".join(err.split())
        assert code == 2 and "holds no rules" in said and "judge init" in said, (args, err)
        assert "judge rulebook load" in said and "--allow-empty" not in said and "indexed" not in out


def test_judge_backend_variable_picks_the_default_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`build_judge` without a backend takes the settings' one (JUDGE_BACKEND)."""
    from judge.api import build_judge

    asked: list[str] = []

    def make_backend(spec: str, **_kw: object) -> None:
        asked.append(spec)
        raise ConfigError("stop here")

    monkeypatch.setattr("judge.backends.registry.make_backend", make_backend)
    monkeypatch.setenv("JUDGE_BACKEND", "openai/from-env")
    with pytest.raises(ConfigError, match="stop here"):
        build_judge(settings=Settings.from_env(db_url=f"sqlite:///{tmp_path / 'x.db'}", embedding_model="hash"),
                    use_rules=False)
    assert asked == ["openai/from-env"]


_HEAVY_AFTER = """
import sys
import judge.cli.main
for argv in {argvs!r}:
    sys.argv = ['judge', *argv]
    try:
        judge.cli.main.main()
    except SystemExit:
        pass
heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'chromadb', 'onnxruntime', 'sklearn')
         if m in sys.modules]
print('HEAVY', heavy)
"""


@pytest.mark.parametrize("argvs", [[], [["--help"]], [["rulebook", "list"], ["config", "show"]]],
                         ids=["import", "help", "rulebook-list"])
def test_commands_that_do_not_embed_never_import_torch(argvs: list[list[str]]) -> None:
    """Importing the CLI, `judge --help` and `judge rulebook list` load no embedding, index or scikit-learn
    library (fast start): the embedder loads at its first use."""
    done = subprocess.run([sys.executable, "-c", _HEAVY_AFTER.format(argvs=argvs)], capture_output=True,
                          text=True, cwd=REPO, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout[-800:]


def test_retrieval_setting_picks_the_workspace_rulebooks_search(tmp_path: Path) -> None:
    from judge.retrieval.fusion import RetrievalConfig
    from judge.workspace import Workspace

    _toml(tmp_path, 'retrieval = "dense"\n')
    s = Settings.from_env({"JUDGE_DATA_DIR": str(tmp_path / "d"), "JUDGE_EMBEDDING_MODEL": "hash"}, cwd=tmp_path)
    assert s.retrieval == "dense" and s.source("retrieval") == str(tmp_path / "judge.toml")
    with Workspace.open(s) as ws:
        assert ws.rulebook(with_index=False).retriever.config == RetrievalConfig.dense_whole()
        fused = RetrievalConfig(lexical=False)
        assert ws.rulebook(with_index=False, retrieval=fused).retriever.config == fused
    assert Settings.from_env({"JUDGE_RETRIEVAL": "fused"}, cwd=tmp_path).retrieval == "fused"
    with pytest.raises(ConfigError, match="retrieval"):
        Settings.from_env({"JUDGE_RETRIEVAL": "sparse"}, cwd=tmp_path)


def test_full_text_common_setting_reaches_the_full_text_search(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from judge.retrieval.fusion import RetrievalConfig
    from judge.rules.model import Pair
    from judge.store import RulebookStore, lexical
    from judge.testing import hash_rulebook
    from judge.workspace import Workspace

    assert Settings().full_text_common == lexical.COMMON_FRACTION == RetrievalConfig().common_fraction
    s = Settings.from_env({"JUDGE_DATA_DIR": str(tmp_path / "d"), "JUDGE_EMBEDDING_MODEL": "hash",
                           "JUDGE_FULL_TEXT_COMMON": "0.02"}, cwd=tmp_path)
    assert s.full_text_common == 0.02
    with Workspace.open(s) as ws:
        assert ws.rulebook(with_index=False).retriever.config == RetrievalConfig(common_fraction=0.02)
    for bad in ("0", "1.5", "often"):
        with pytest.raises(ConfigError, match="full_text_common"):
            Settings.from_env({"JUDGE_FULL_TEXT_COMMON": bad}, cwd=tmp_path)

    asked: list[float] = []
    search = RulebookStore.lexical_search_many

    def noted(self: RulebookStore, *args: object, common_fraction: float = lexical.COMMON_FRACTION,
              **kwargs: object) -> object:
        asked.append(common_fraction)
        return search(self, *args, common_fraction=common_fraction, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RulebookStore, "lexical_search_many", noted)
    rulebook = hash_rulebook(f"sqlite:///{tmp_path / 'rb.db'}", REPO / "rulebook")
    rulebook.retriever.config = RetrievalConfig(common_fraction=0.02)
    rulebook.retrieve(Pair(prompt="Is it safe to mix bleach and ammonia?", response_a="No.", response_b="Yes."))
    assert asked == [0.02]
