"""The checkout runs on its own: data inside it, no default path outside it, the environment read in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from judge.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("judge", "tests", "benchmarks", "evals", "scripts")
SUFFIXES = {".py", ".sh", ".md", ".toml"}


def _code_files() -> list[Path]:
    files = [ROOT / "Makefile"]
    for folder in CODE_DIRS:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    return files


@pytest.mark.parametrize("name", ["model_spec/LICENSE", "model_spec/NOTICE.md", "model_spec/entries.jsonl",
                                  "model_spec/examples.jsonl", "model_spec/pairs.jsonl",
                                  "model_spec/eval_prompts.jsonl", "model_spec/model_spec.md",
                                  "dev/LICENSE-PandaLM.txt", "dev/LICENSE-hh-rlhf.txt", "dev/NOTICE.md",
                                  "dev/pandalm_test.jsonl", "dev/hh_rlhf_harmless_test.jsonl"])
def test_data_ships_with_its_licences(name: str) -> None:
    assert (ROOT / "data" / name).stat().st_size > 0


def test_no_path_points_beside_the_checkout() -> None:
    outside = re.compile(r"\.\./shared|parents\[2\]")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in _code_files()
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if outside.search(line)]
    assert offenders == []


def _writes_environ(tree: ast.AST) -> list[int]:
    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            lines += [node.lineno for t in targets if isinstance(t, ast.Subscript) and is_environ(t.value)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (is_environ(owner) and node.func.attr in {"setdefault", "update", "pop", "clear"}) or (
                    isinstance(owner, ast.Name) and owner.id == "os" and node.func.attr in {"putenv", "unsetenv"}):
                lines.append(node.lineno)
    return lines


def test_no_module_writes_the_environment() -> None:
    offenders = []
    for folder in ("judge", "benchmarks", "scripts", "evals"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            offenders += [f"{path.relative_to(ROOT)}:{line}" for line in _writes_environ(tree)]
    assert offenders == []


def test_settings_read_the_endpoint_judge_variables_first() -> None:
    env = {"OPENAI_BASE_URL": "http://openai.example/v1", "JUDGE_BASE_URL": "http://127.0.0.1:9/v1",
           "OPENAI_API_KEY": "sk-openai"}
    settings = Settings.from_env(env)
    assert settings.base_url == "http://127.0.0.1:9/v1"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-openai"
    assert "sk-openai" not in repr(settings) and "sk-openai" not in str(settings)
    assert Settings.from_env({}).api_key is None
