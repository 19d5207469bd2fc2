"""The Model Spec importer on the real extracted data, and the shipped rulebook/ it generates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from judge.errors import InputError
from judge.rules.model import Authority, Layer, Rule, slugify
from judge.rules.model_spec import (
    EXAMPLE_SOURCE,
    EXAMPLE_TAG,
    LICENSE_NAME,
    import_model_spec,
    import_model_spec_to_dir,
)
from judge.rules.textio import read_rulebook, ruling_text

REPO_ROOT = Path(__file__).resolve().parent.parent
RULEBOOK = REPO_ROOT / "rulebook"
PROCESS_IDS = {"spec/process-no-fabricated-tool-results", "spec/process-efficient-search-queries",
               "spec/process-no-repeated-irrelevant-reasoning"}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def spec_dir(shared_data: Path) -> Path:
    return shared_data / "model_spec"


@pytest.fixture
def source(spec_dir: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: _jsonl(spec_dir / f"{name}.jsonl") for name in ("entries", "examples", "pairs")}


@pytest.fixture
def imported(spec_dir: Path) -> dict[str, Rule]:
    rules = import_model_spec(spec_dir)
    by_id = {r.id: r for r in rules}
    assert len(by_id) == len(rules)
    return by_id


def _rule_id(entry: dict[str, Any]) -> str:
    layer = "constitution" if entry["authority"] == "root" else "spec"
    return f"{layer}/{slugify(entry['id'])}"


def test_counts_match_the_source(imported: dict[str, Rule], source: dict[str, list[dict[str, Any]]]) -> None:
    entries, pairs = source["entries"], source["pairs"]
    layers = [r.layer for r in imported.values()]
    root = sum(e["authority"] == "root" for e in entries)
    good_bad = sum(p["meta"]["pair_kind"] == "GOOD>BAD" for p in pairs)
    assert layers.count(Layer.CONSTITUTION) == root
    assert layers.count(Layer.SPEC) == len(entries) - root
    assert layers.count(Layer.RULING) == good_bad
    # the revision the rulebook was built from (NOTICE.md of the extracted data)
    assert (root, len(entries) - root, good_bad) == (22, 58, 199)


def test_entries_keep_authority_parent_and_text(imported: dict[str, Rule],
                                                source: dict[str, list[dict[str, Any]]]) -> None:
    entries = {e["id"]: e for e in source["entries"]}
    for entry in entries.values():
        rule = imported[_rule_id(entry)]
        assert rule.authority == (Authority(entry["authority"]) if entry["authority"] else None)
        assert rule.title == entry["title"]
        assert rule.parent == (_rule_id(entries[entry["parent"]]) if entry["parent"] else None)
        assert rule.specificity == len(entry["ancestors"])
        assert rule.source == f"openai/model_spec@{entry['origin_commit'][:12]}"
        if entry["text"].strip():
            assert rule.text == entry["text"]
        else:
            assert rule.text.startswith("This section groups: ")
            children = [e["title"] for e in entries.values() if e["parent"] == entry["id"]]
            assert children and all(title in rule.text for title in children)
        assert ("overview" in rule.tags) == (entry["authority"] is None)
        assert set(entry["tags"]) <= set(rule.tags)
    for rule in imported.values():
        assert rule.parent is None or rule.parent in imported


def test_rulings_follow_the_pairs(imported: dict[str, Rule], source: dict[str, list[dict[str, Any]]]) -> None:
    entries = {e["id"]: e for e in source["entries"]}
    for pair in (p for p in source["pairs"] if p["meta"]["pair_kind"] == "GOOD>BAD"):
        rule = imported[f"ruling/{slugify(pair['id'])}"]
        case = rule.case
        assert case is not None
        assert (case.prompt, case.response_a.text, case.response_b.text) == (
            pair["prompt"], pair["response_a"], pair["response_b"])
        assert case.response_a.process is None and case.response_b.process is None
        cited = _rule_id(entries[pair["meta"]["section"]])
        assert case.holding == pair["label"] and case.cites == (cited,)
        assert rule.specificity == imported[cited].specificity + 1
        assert (rule.source, rule.tags) == (EXAMPLE_SOURCE, (EXAMPLE_TAG,))
        assert rule.text == ruling_text(case.holding, case.rationale)
        other = "B" if case.holding == "A" else "A"
        assert f"response {case.holding} GOOD" in case.rationale
        assert f"response {other} BAD" in case.rationale
        assert "pair_kind" not in case.prompt and "example_id" not in case.prompt


def test_every_ruling_cites_an_existing_rule(imported: dict[str, Rule]) -> None:
    rulings = [r for r in imported.values() if r.case is not None]
    assert rulings
    for rule in rulings:
        assert rule.case is not None and rule.case.cites
        assert all(c in imported and imported[c].layer is not Layer.RULING for c in rule.case.cites)


def test_verdict_notes_reach_the_rationale(imported: dict[str, Rule]) -> None:
    rule = imported["ruling/modelspec-follow-all-applicable-instructions-ex4-c1-r1r2"]
    assert rule.case is not None
    assert "root instructions override system" in rule.case.rationale
    assert "system message cannot override root-level rules" in rule.case.rationale
    # "[?](#respect_creators)" in a description becomes the section's title, never a raw anchor
    assert not any("](#" in r.case.rationale for r in imported.values() if r.case is not None)


def _owned_files(root: Path) -> dict[str, bytes]:
    files = [*root.glob("constitution/*.md"), *root.glob("spec/*.md"), *root.glob("rulings/*.jsonl"),
             root / "NOTICE.md", root / LICENSE_NAME]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(files)}


def test_shipped_rulebook_is_a_fresh_import(spec_dir: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(RULEBOOK, tmp_path, dirs_exist_ok=True)
    report = import_model_spec_to_dir(spec_dir, tmp_path)
    assert (report.constitution, report.spec, report.rulings) == (22, 58, 199)
    assert report.files_written == 0  # re-importing over the shipped rulebook changes nothing, checks included
    assert _owned_files(RULEBOOK) == _owned_files(tmp_path)
    assert (tmp_path / LICENSE_NAME).read_bytes() == (spec_dir / "LICENSE").read_bytes()
    assert report.origin_commit in (tmp_path / "NOTICE.md").read_text()


def test_shipped_rulebook_reads_and_has_the_process_rules(imported: dict[str, Rule]) -> None:
    rules = {r.id: r for r in read_rulebook(RULEBOOK)}
    assert set(rules) == set(imported) | PROCESS_IDS
    for rule_id, rule in imported.items():  # the imported text, plus the checks people wrote for it
        assert rules[rule_id].model_copy(update={"checks": ()}).content_hash() == rule.content_hash()
        assert rules[rule_id].checks or rule.layer is Layer.RULING
    for rule_id in PROCESS_IDS:
        rule = rules[rule_id]
        assert rule.process_rule and rule.layer is Layer.SPEC and rule.authority is Authority.GUIDELINE
        assert rule.source == "judge" and len(rule.text) > 400


def test_reimport_keeps_the_checks_of_existing_rules(spec_dir: Path, tmp_path: Path) -> None:
    import_model_spec_to_dir(spec_dir, tmp_path)
    target = tmp_path / "constitution" / "do-not-encourage-self-harm.md"
    text = target.read_text(encoding="utf-8")
    checks = 'checks:\n- question: Does it name a dose?\n  expect: "no"\n'
    target.write_text(text.replace("\n---\n", f"\n{checks}---\n", 1), encoding="utf-8")
    import_model_spec_to_dir(spec_dir, tmp_path)
    (rule,) = [r for r in read_rulebook(tmp_path) if r.id == "constitution/do-not-encourage-self-harm"]
    assert [c.question for c in rule.checks] == ["Does it name a dose?"]


def test_import_touches_only_its_own_files(spec_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "process").mkdir()
    mine = tmp_path / "process/process-mine.md"
    mine.write_text("---\nid: spec/process-mine\ntitle: Mine\ntags: [process]\nsource: judge\n---\nKeep.\n")
    (tmp_path / "README.md").write_text("mine")
    first = import_model_spec_to_dir(spec_dir, tmp_path)
    assert first.files_written == 83 and first.files_removed == 0
    stale = tmp_path / "spec/renamed-upstream.md"
    stale.write_text((tmp_path / "spec/style.md").read_text().replace("spec/style", "spec/renamed-upstream"))
    second = import_model_spec_to_dir(spec_dir, tmp_path)
    assert (second.files_written, second.files_unchanged, second.files_removed) == (0, 83, 1)
    assert not stale.exists()
    assert mine.read_text().endswith("Keep.\n") and (tmp_path / "README.md").read_text() == "mine"
    assert "spec/process-mine" in {r.id for r in read_rulebook(tmp_path)}


def test_missing_source_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="entries.jsonl"):
        import_model_spec(tmp_path)
