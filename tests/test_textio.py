"""The rulebook text format: round trips, byte stability, ownership and file:line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from judge.errors import DuplicateRuleError, RulebookError, RulebookParseError
from judge.rules.model import Authority, Holding, Layer, Process, Response, Rule, RuleStatus, RulingCase, ToolCall
from judge.rules.textio import read_rulebook, render_rule, rule_path, ruling_text, write_rulebook


def _ruling(rule_id: str, holding: Holding = "A", *, response_a: str | Response = "first",
            response_b: str | Response = "second", rationale: str = "Because.", cites: tuple[str, ...] = (),
            overrules: tuple[str, ...] = (), text: str | None = None, **kw: Any) -> Rule:
    case = RulingCase(prompt=f"prompt of {rule_id}", response_a=Response(text=response_a)
                if isinstance(response_a, str) else response_a, response_b=Response(text=response_b)
                if isinstance(response_b, str) else response_b, holding=holding, rationale=rationale,
                cites=cites, overrules=overrules)
    return Rule(id=rule_id, layer=Layer.RULING, title=f"Title of {rule_id}", case=case,
                text=ruling_text(holding, rationale) if text is None else text, **kw)


@pytest.fixture
def rules() -> list[Rule]:
    tool = ToolCall(name="search", arguments={"q": "zürich weather", "n": 3}, result="Sunny, 21°C")
    return [
        Rule(id="constitution/be-safe", layer=Layer.CONSTITUTION, title="Be safe", text="Never harm.",
             authority=Authority.ROOT, source="team"),
        Rule(id="spec/style", layer=Layer.SPEC, title="Yes: style, and more", text="Line one\n\nline two\n",
             tags=("overview", "a, b"), source="openai/model_spec@abc"),
        Rule(id="spec/be-clear", layer=Layer.SPEC, title="Be clear", text="Café ✓ \u2028 and\r\nCRLF",
             authority=Authority.GUIDELINE, parent="spec/style", specificity=1, tags=("yes", "null"),
             source="openai/model_spec@abc"),
        Rule(id="spec/process-x", layer=Layer.SPEC, title="Process rule", text="---\nnot front matter\n---",
             authority=Authority.GUIDELINE, tags=("process",), source="judge"),
        _ruling("ruling/plain", cites=("spec/be-clear",), source="cases/alpha", specificity=2),
        _ruling("ruling/with-process", holding="B", source="cases/alpha", tags=("t",),
                response_b=Response(text="done",
                                    process=Process(reasoning="think\nagain", tool_calls=(tool,))),
                response_a=Response(text="empty process", process=Process())),
        _ruling("ruling/tie", holding="tie", rationale="", source="cases/beta"),
        _ruling("ruling/old", status=RuleStatus.OVERRULED, source="cases/beta"),
        _ruling("ruling/new", overrules=("ruling/old",), source="cases/beta", parent="spec/style",
                authority=Authority.USER, text="A hand-written text that is not the derived one."),
    ]


def _hashes(rules: list[Rule]) -> dict[str, str]:
    return {r.id: r.content_hash() for r in rules}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_round_trip_keeps_content(rules: list[Rule], tmp_path: Path) -> None:
    write_rulebook(rules, tmp_path / "rb")
    assert _hashes(read_rulebook(tmp_path / "rb")) == _hashes(rules)


def test_writes_are_byte_stable(rules: list[Rule], tmp_path: Path) -> None:
    write_rulebook(rules, tmp_path / "one")
    write_rulebook(list(reversed(rules)), tmp_path / "two")
    write_rulebook(read_rulebook(tmp_path / "one"), tmp_path / "three")
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two") == _tree(tmp_path / "three")
    again = write_rulebook(rules, tmp_path / "one")
    assert again.written == () and again.removed == () and len(again.unchanged) == 6


def test_layout(rules: list[Rule], tmp_path: Path) -> None:
    write_rulebook(rules, tmp_path)
    assert sorted(_tree(tmp_path)) == [
        "constitution/be-safe.md", "process/process-x.md", "rulings/alpha.jsonl", "rulings/beta.jsonl",
        "spec/be-clear.md", "spec/style.md",
    ]
    assert (tmp_path / "constitution/be-safe.md").read_text() == (
        "---\nid: constitution/be-safe\ntitle: Be safe\nauthority: root\nparent: null\nspecificity: 0\n"
        "tags: []\nsource: team\n---\nNever harm.\n")
    beta = (tmp_path / "rulings/beta.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in beta] == ["ruling/new", "ruling/old", "ruling/tie"]
    assert '"text": "A hand-written' in beta[0] and '"text"' not in beta[1]
    assert rule_path(rules[0]) == Path("constitution/be-safe.md")


def test_ruling_text() -> None:
    assert ruling_text("A", "It is kinder.") == "Holding: response A is better. It is kinder."
    assert ruling_text("tie", " ") == "Holding: neither response is better (tie)."


def test_write_rejects_duplicate_ids(rules: list[Rule], tmp_path: Path) -> None:
    with pytest.raises(DuplicateRuleError):
        write_rulebook([*rules, rules[0]], tmp_path)


def test_owned_by_rewrites_only_owned_files(rules: list[Rule], tmp_path: Path) -> None:
    write_rulebook(rules, tmp_path)
    (tmp_path / "README.md").write_text("keep me")
    (tmp_path / "spec/stale.md").write_text(render_rule(rules[1].model_copy(update={"id": "spec/stale"})))
    owned = [r for r in rules if r.source.startswith("openai/model_spec")]
    report = write_rulebook(owned, tmp_path, owned_by="openai/model_spec")
    assert report.removed == (Path("spec/stale.md"),)
    assert (tmp_path / "README.md").read_text() == "keep me"
    assert _hashes(read_rulebook(tmp_path)) == _hashes(rules)

    with pytest.raises(ValueError, match="source does not start with"):
        write_rulebook(rules, tmp_path, owned_by="openai/model_spec")
    squatter = rules[0].model_copy(update={"id": "spec/be-safe", "layer": Layer.SPEC, "authority": None,
                                           "source": "openai/model_spec@abc"})
    (tmp_path / "spec/be-safe.md").write_text(render_rule(squatter).replace("openai/model_spec@abc", "team"))
    with pytest.raises(RulebookError, match="refusing to overwrite"):
        write_rulebook([*owned, squatter], tmp_path, owned_by="openai/model_spec")


def test_writer_without_owner_mirrors_the_rules(rules: list[Rule], tmp_path: Path) -> None:
    write_rulebook(rules, tmp_path)
    report = write_rulebook(rules[:2], tmp_path)
    assert {p.as_posix() for p in report.removed} == {
        "process/process-x.md", "rulings/alpha.jsonl", "rulings/beta.jsonl", "spec/be-clear.md"}
    assert _hashes(read_rulebook(tmp_path)) == _hashes(rules[:2])


def test_reader_skips_docs_and_dotfiles(tmp_path: Path) -> None:
    for name in ("README.md", "NOTICE.md", "LICENSE-x", ".hidden.md", ".git/config"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("not a rule")
    assert read_rulebook(tmp_path) == []


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RulebookParseError, match="does not exist"):
        read_rulebook(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- bad input
GOOD_MD = "---\nid: spec/base\ntitle: Base\nsource: s\n---\nBase text.\n"
GOOD_LINE = ('{"id": "ruling/ok", "title": "Ok", "holding": "A", "rationale": "r", "prompt": "p", '
             '"response_a": "a", "response_b": "b", "cites": ["spec/base"], "source": "s"}')


def _md(front: str, body: str = "Text.\n") -> str:
    return f"---\n{front}---\n{body}"


def _line(**changes: object) -> str:
    obj = json.loads(GOOD_LINE)
    obj.update({"id": "ruling/bad"}, **changes)
    return json.dumps({k: v for k, v in obj.items() if v is not None})


BAD_CASES = [
    # (file, content, line, message fragment)
    ("spec/x.md", "id: spec/x\n---\nText\n", 1, "must start with a '---' line"),
    ("spec/x.md", "---\nid: spec/x\ntitle: X\n", 1, "never closed"),
    ("spec/x.md", _md("id: spec/x\ntitle: a: b\nsource: s\n"), 3, "bad YAML"),
    ("spec/x.md", _md('id: spec/x\ntitle: "open\nsource: s\n'), 4, "quoted scalar on line 3"),
    ("spec/x.md", _md("- just\n- a list\n"), 2, "key: value"),
    ("spec/x.md", _md("id: spec/x\ntitle: X\nsource: s\ncolour: red\n"), 5, "unknown field 'colour'"),
    ("spec/x.md", _md("id: spec/x\nsource: s\n"), 1, "missing field(s) title"),
    ("spec/x.md", _md("id: spec/x\ntitle: X\ntitle: Y\nsource: s\n"), 4, "duplicate field 'title'"),
    ("spec/x.md", _md("id: spec/X Y\ntitle: X\nsource: s\n"), 2, "bad id 'spec/X Y'"),
    ("spec/x.md", _md("id: constitution/x\ntitle: X\nsource: s\n"), 2, "but the file is in the spec/ folder"),
    ("spec/x.md", _md("title: X\nid: spec/y\nsource: s\n"), 3, "expected y.md"),
    ("extra/x.md", _md("id: ruling/x\ntitle: X\nsource: s\n"), 2, "rulings live in rulings/*.jsonl"),
    ("spec/x.md", _md("id: spec/x\ntitle: X\nsource: s\n", "  \n\n"), 6, "is empty"),
    ("spec/x.md", _md("id: spec/x\ntitle: X\nsource: s\nspecificity: three\n"), 5, "must be an integer"),
    ("spec/x.md", _md("id: spec/x\ntitle: X\nsource: s\ntags: process\n"), 5, "must be a list of strings"),
    ("spec/x.md", _md("id: spec/x\ntitle: yes\nsource: s\n"), 3, "must be a string, got True"),
    ("spec/x.md", _md("id: spec/x\ntitle: X\nsource: s\nauthority: boss\n"), 5, "invalid authority"),
    ("spec/x.md", _md("id: spec/x\ntitle: '  '\nsource: s\n"), 3, "invalid title: title must not be empty"),
    ("spec/x.md", _md("id: spec/x\ntitle: X\nsource: s\nspecificity: 1\nparent: spec/gone\n"), 6,
     "parent 'spec/gone' is not a rule"),
    ("spec/x.md", b"---\nid: spec/x\ntitle: X\xff\n", 3, "not UTF-8"),
    ("spec/notes.txt", "hello", None, "unexpected file"),
    ("rulings/r.jsonl", GOOD_LINE + "\n{not json}\n", 2, "invalid JSON"),
    ("rulings/r.jsonl", GOOD_LINE + "\n[1, 2]\n", 2, "must be a JSON object"),
    ("rulings/r.jsonl", GOOD_LINE + "\n\n" + _line(holding=None) + "\n", 3, "missing field(s) holding"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(verdict="A") + "\n", 2, "unknown field(s) verdict"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(id="ruling/Bad Id") + "\n", 2, "bad id"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(id="spec/y") + "\n", 2, "is not a ruling"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(holding="C") + "\n", 2, "invalid holding"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(response_a=5) + "\n", 2, "invalid response_a"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(response_b={"text": "t", "process": {"steps": []}}) + "\n",
     2,
     "invalid response_b.process.steps"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(status="maybe") + "\n", 2, "invalid status"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(title="") + "\n", 2, "invalid title"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(cites=["spec/nope"]) + "\n", 2, "cites 'spec/nope'"),
    ("rulings/r.jsonl", GOOD_LINE + "\n" + _line(overrules=["ruling/nope"]) + "\n", 2,
     "overrules 'ruling/nope'"),
    ("rulings/r.jsonl", GOOD_LINE + '\n{"id": "ruling/a", "id": "ruling/b"}\n', 2, "duplicate key(s) id"),
]


@pytest.mark.parametrize(("rel", "content", "line", "fragment"), BAD_CASES,
                         ids=[f"{i}-{c[3][:30]}" for i, c in enumerate(BAD_CASES)])
def test_bad_input_names_file_and_line(tmp_path: Path, rel: str, content: str | bytes, line: int | None,
                                       fragment: str) -> None:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec/base.md").write_text(GOOD_MD)
    target = tmp_path / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    with pytest.raises(RulebookParseError) as info:
        read_rulebook(tmp_path)
    err = info.value
    assert fragment in str(err)
    assert (err.path, err.line) == (str(target), line)
    assert str(err).startswith(f"{target}:{line}: " if line else f"{target}: ")


def test_duplicate_ids_across_files_name_both_places(tmp_path: Path) -> None:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec/base.md").write_text(GOOD_MD)
    (tmp_path / "process").mkdir()
    (tmp_path / "process/base.md").write_text("---\ntitle: Again\nid: spec/base\nsource: s\n---\nAgain.\n")
    with pytest.raises(RulebookParseError) as info:
        read_rulebook(tmp_path)
    assert info.value.path == str(tmp_path / "spec/base.md") and info.value.line == 2
    assert f"also defined at {tmp_path / 'process/base.md'}:3" in str(info.value)


def test_duplicate_ruling_ids_across_jsonl_files(tmp_path: Path) -> None:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec/base.md").write_text(GOOD_MD)
    (tmp_path / "rulings").mkdir()
    (tmp_path / "rulings/a.jsonl").write_text(GOOD_LINE + "\n")
    (tmp_path / "rulings/b.jsonl").write_text(_line(id="ruling/other") + "\n" + GOOD_LINE + "\n")
    with pytest.raises(RulebookParseError) as info:
        read_rulebook(tmp_path)
    assert (info.value.path, info.value.line) == (str(tmp_path / "rulings/b.jsonl"), 2)
    assert f"also defined at {tmp_path / 'rulings/a.jsonl'}:1" in str(info.value)


def test_hand_written_file_without_optional_fields(tmp_path: Path) -> None:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec/base.md").write_text(GOOD_MD)
    [rule] = read_rulebook(tmp_path)
    assert (rule.authority, rule.parent, rule.specificity, rule.tags) == (None, None, 0, ())
    assert rule.text == "Base text."
    assert rule.status is RuleStatus.ACTIVE
