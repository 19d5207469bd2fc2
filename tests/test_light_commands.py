"""Commands that read the rulebook load neither the retrieval stack nor the judging one, a repeated comparison
loads neither the index, the embedder nor the HTTP client, and the database's schema is checked without Alembic
when it is current."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from judge.backends.base import Backend, ChatRequest
from judge.backends.deferred import DeferredBackend, endpoint_from_url
from judge.backends.fake import FakeBackend, FakeReply
from judge.runs import endpoint_of
from judge.store.engine import MIGRATIONS_DIR, alembic_config, newest_revision
from judge.testing import stub_endpoint

HEAVY = ("torch", "sentence_transformers", "chromadb", "onnxruntime", "numpy", "scipy", "sklearn", "openai",
         "alembic")

_RUN = """
import json, sys
from judge.cli.main import main
args, heavy = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["judge", *args]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & heavy)))
"""


def _loaded(args: list[str], tmp_path: Path) -> list[str]:
    env = {**os.environ, "JUDGE_DATA_DIR": str(tmp_path), "JUDGE_EMBEDDING_MODEL": "hash"}
    for var in ("JUDGE_DB", "JUDGE_INDEX_PATH", "JUDGE_CHROMA_URL", "JUDGE_CONFIG"):
        env.pop(var, None)
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(args), json.dumps(HEAVY)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_rulebook_list_show_and_history_load_no_retrieval_judging_or_migrations(tmp_path: Path) -> None:
    from judge.rulebook import Rulebook
    from judge.settings import Settings

    Rulebook.open(settings=Settings(data_dir=tmp_path, embedding_model="hash")).load("rulebook")
    assert _loaded(["rulebook", "list", "--limit", "2"], tmp_path) == []
    assert _loaded(["rulebook", "show", "spec/avoid-sycophancy"], tmp_path) == []
    assert _loaded(["rulebook", "history", "spec/avoid-sycophancy"], tmp_path) == []


def test_migration_files_are_named_after_their_revisions_in_order() -> None:
    # `newest_revision` reads the head from the file names (no Alembic on the common path).
    script = ScriptDirectory.from_config(alembic_config())
    files = sorted(p.stem for p in (MIGRATIONS_DIR / "versions").glob("*.py") if p.stem != "__init__")
    revisions = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert files == revisions
    assert newest_revision() == script.get_current_head() == revisions[-1]


def test_a_repeated_cli_compare_loads_neither_the_index_the_embedder_nor_the_client(tmp_path: Path) -> None:
    from judge.rulebook import Rulebook
    from judge.settings import Settings

    Rulebook.open(settings=Settings(data_dir=tmp_path, embedding_model="hash")).load("rulebook")
    with stub_endpoint() as base_url:
        compare = ["compare", "--prompt", "How do I boil an egg?", "--a", "Nine minutes in boiling water.",
                   "--b", "Order takeout.", "--backend", "openai/stub", "--base-url", base_url,
                   "--method", "pairwise", "--no-explain"]
        assert "openai" in _loaded(compare, tmp_path)  # judged: the client is made
        assert _loaded(compare, tmp_path) == ["numpy"]  # answered from the store (numpy: the judging code)


def test_a_deferred_backend_is_made_on_first_use_only() -> None:
    made: list[FakeBackend] = []

    def make() -> FakeBackend:
        made.append(FakeBackend(lambda _body: FakeReply(text="A", top_logprobs=[("A", -0.1)]), model="m"))
        return made[0]

    backend = DeferredBackend("openai/m", "m", endpoint_from_url("HTTP://Host.example:80/v1/"), make)
    assert isinstance(backend, Backend) and endpoint_of(backend) == "http://host.example/v1" and made == []
    backend.close()
    asyncio.run(backend.release())
    assert made == []
    assert backend.chat(ChatRequest(messages=({"role": "user", "content": "hi"},), max_tokens=1)).text == "A"
    assert len(made) == 1 and backend.history is made[0].history  # other attributes are the made backend's
    assert endpoint_from_url("https://api.example.com:8443/v1") == "https://api.example.com:8443/v1"
    assert endpoint_from_url("") is None
