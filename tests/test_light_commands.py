"""Commands that read the rulebook load neither the retrieval stack nor the judging one, and the database's
schema is checked without Alembic when it is current."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from judge.store.engine import MIGRATIONS_DIR, alembic_config, newest_revision

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
