"""Reading a rulebook's text files back into rules: all-or-nothing, never writes, every problem a
`RulebookParseError` naming ``file:line`` (the format is described in :mod:`judge.rules.textio`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel, ValidationError

from judge.errors import InputError, RulebookParseError
from judge.jsonl import check_value, loads
from judge.rules.graph import find_cycle
from judge.rules.model import RULE_ID_RE, Layer, Rule, RulingCase
from judge.rules.textformat import _RULING_EXTRA, _RULING_KEYS, RULINGS_DIR, ruling_text

__all__ = ["read_rulebook"]

_SKIP_NAMES = frozenset({"README.md", "NOTICE.md"})
_FM_KEYS = ("id", "title", "authority", "parent", "specificity", "tags", "source", "checks")
_FM_REQUIRED = ("id", "title", "source")
_FM_TYPES: dict[str, tuple[type, ...]] = {"id": (str,), "title": (str,), "authority": (str, type(None)),
                                          "parent": (str, type(None)), "specificity": (int,), "tags": (list,),
                                          "source": (str,), "checks": (list,)}
_RULING_REQUIRED = ("id", "title", "holding", "rationale", "prompt", "response_a", "response_b", "source")
_CASE_KEYS = ("prompt", "response_a", "response_b", "holding", "rationale", "cites", "overrules")
_RULE_KEYS = ("id", "title", "status", "source", "tags", "specificity", "parent", "authority", "checks")


# -------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class _Located:
    rule: Rule
    path: Path
    line: int
    field_lines: dict[str, int]


def _fail(path: Path, line: int | None, message: str, field: str | None = None) -> RulebookParseError:
    return RulebookParseError(message, path=path, line=line, field=field)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")  # bytes, not text mode: keep "\r" so the body stays byte-exact
    except UnicodeDecodeError as exc:
        raise _fail(path, data.count(b"\n", 0, exc.start) + 1, f"not UTF-8 text: {exc.reason}") from None
    return text.removeprefix("\ufeff")  # a byte-order mark some editors write is not content


def _load_yaml(text: str, path: Path) -> tuple[Any, yaml.Node | None]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise _fail(path, 2, "bad YAML in front matter: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        message = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None:
            message += f" ({context} on line {2 + context_mark.line})"
        raise _fail(path, 2 + mark.line if mark else 1, f"bad YAML in front matter: {message}") from None
    finally:
        loader.dispose()
    bad = check_value(data)
    if bad is not None:
        line = next((2 + k.start_mark.line for k, _ in getattr(node, "value", ())
                     if isinstance(k, yaml.ScalarNode) and k.value == bad[0].split(".")[0].split("[")[0]), 2)
        raise _fail(path, line, f"field {bad[0]} {bad[1]}", bad[0])
    return data, node


def _parse_front_matter(text: str, path: Path) -> tuple[dict[str, Any], dict[str, int], str, int]:
    """Split a rule file into (front matter fields, field -> line, body, the body's first line)."""
    lines = text.split("\n")
    if lines[0].rstrip("\r") != "---":
        raise _fail(path, 1, "missing front matter: a rule file must start with a '---' line")
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r") == "---"), None)
    if end is None:
        raise _fail(path, 1, "front matter opened on line 1 is never closed by a '---' line")
    data, node = _load_yaml("\n".join(lines[1:end]), path)
    data = {} if data is None else data
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode | None):
        raise _fail(path, 2, "front matter must be 'key: value' lines")
    key_lines: dict[str, int] = {}
    for key_node, _ in node.value if node is not None else ():
        name, line = str(key_node.value), 2 + key_node.start_mark.line
        if name in key_lines:
            raise _fail(path, line, f"duplicate field {name!r} (first on line {key_lines[name]})", name)
        if name not in _FM_KEYS:
            raise _fail(path, line, f"unknown field {name!r}; known: {', '.join(_FM_KEYS)}", name)
        key_lines[name] = line
    missing = [k for k in _FM_REQUIRED if k not in key_lines]
    if missing:
        raise _fail(path, 1, f"missing field(s) {', '.join(missing)} in the front matter", missing[0])
    for name, value in data.items():
        ok = isinstance(value, _FM_TYPES[name]) and not isinstance(value, bool)
        items_ok = all(isinstance(v, dict if name == "checks" else str) for v in value) if isinstance(
            value, list) else True
        if not ok or not items_ok:
            expected = {"specificity": "an integer", "tags": "a list of strings",
                        "checks": "a list of {question, expect} items"}.get(name, "a string")
            got = repr(value) if isinstance(value, str | int | float | type(None)) else _kind(value)
            raise _fail(path, key_lines[name], f"field {name!r} must be {expected}, got {got}", name)
    body = "\n".join(lines[end + 1:])
    return data, key_lines, body.removesuffix("\r\n" if body.endswith("\r\n") else "\n"), end + 2


def _validate(model: type[BaseModel], data: dict[str, Any], path: Path, lines: dict[str, int],
              default_line: int) -> Any:
    """Validate with pydantic; the first error becomes a parse error naming the field (and its line)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if loc and isinstance(err.get("input"), str | int | float) and len(repr(err["input"])) <= 60:
            msg += f" (got {err['input']!r})"
        field = loc[0] if loc else None
        message = f"invalid {'.'.join(loc)}: {msg}" if loc else msg
        raise _fail(path, lines.get(field or "", default_line), message, field) from None


def _kind(value: object) -> str:
    """What a parsed JSON / YAML value is, in the file's terms (never a Python repr of a structure)."""
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), "a string")


def _layer_of(rule_id: object, path: Path, line: int) -> Layer:
    if not isinstance(rule_id, str):
        raise _fail(path, line, f"field 'id' must be a string like spec/<slug>, got {_kind(rule_id)}", "id")
    if not RULE_ID_RE.match(rule_id):
        raise _fail(path, line, f"bad id {rule_id!r}: must look like constitution/<slug>, spec/<slug> or "
                    "ruling/<slug> (lowercase letters, digits, '.', '_', '-')", "id")
    return Layer(rule_id.split("/", 1)[0])


def _parse_markdown(path: Path, rel: Path) -> _Located:
    fields, lines, body, body_line = _parse_front_matter(_read_text(path), path)
    rule_id, id_line, folder = fields["id"], lines["id"], rel.parts[0] if len(rel.parts) > 1 else None
    layer = _layer_of(rule_id, path, id_line)
    if layer is Layer.RULING:
        raise _fail(path, id_line, f"{rule_id!r} is a ruling: rulings live in {RULINGS_DIR}/*.jsonl", "id")
    if folder in (Layer.CONSTITUTION.value, Layer.SPEC.value) and folder != layer.value:
        raise _fail(path, id_line, f"id {rule_id!r} is in the {layer.value} layer but the file is in the "
                    f"{folder}/ folder", "id")
    slug = rule_id.split("/", 1)[1]
    if path.name != f"{slug}.md":
        raise _fail(path, id_line, f"id {rule_id!r} does not match the file name (expected {slug}.md)", "id")
    if not body.strip():
        raise _fail(path, body_line, "rule text (the body after the front matter) is empty", "text")
    data = {**fields, "layer": layer, "text": body}
    rule = _validate(Rule, data, path, {**lines, "text": body_line}, id_line)
    return _Located(rule, path, id_line, lines)


def _parse_ruling_line(raw: str, path: Path, line: int) -> _Located:
    def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if dupes := sorted({k for k, _ in pairs if [p[0] for p in pairs].count(k) > 1}):
            raise _fail(path, line, f"duplicate key(s) {', '.join(dupes)}", dupes[0])
        return dict(pairs)

    try:
        obj = loads(raw, path=path, line=line, object_pairs_hook=no_duplicate_keys)
    except RulebookParseError:
        raise
    except InputError as exc:
        message = str(exc).removeprefix(f"{path}:{line}: ").replace("malformed JSON", "invalid JSON")
        raise _fail(path, line, message, exc.field) from None
    if not isinstance(obj, dict):
        raise _fail(path, line, "each line must be a JSON object (one ruling)")
    unknown = sorted(set(obj) - set(_RULING_KEYS) - set(_RULING_EXTRA))
    if unknown:
        raise _fail(path, line, f"unknown field(s) {', '.join(unknown)}; known: "
                    f"{', '.join(_RULING_KEYS + _RULING_EXTRA)}", unknown[0])
    missing = [k for k in _RULING_REQUIRED if k not in obj]
    if missing:
        raise _fail(path, line, f"missing field(s) {', '.join(missing)}", missing[0])
    if _layer_of(obj["id"], path, line) is not Layer.RULING:
        raise _fail(path, line, f"id {obj['id']!r} is not a ruling: JSONL files hold ruling/<slug> ids only; "
                    "write constitution and spec rules as Markdown", "id")
    case = _validate(RulingCase, {k: obj[k] for k in _CASE_KEYS if k in obj}, path, {}, line)
    text = obj.get("text", ruling_text(case.holding, case.rationale))
    data = {**{k: obj[k] for k in _RULE_KEYS if k in obj}, "layer": Layer.RULING, "case": case, "text": text}
    return _Located(_validate(Rule, data, path, {}, line), path, line, {})


def _parse_jsonl(path: Path) -> Iterator[_Located]:
    # split on "\n" only: str.splitlines would also split on U+2028 and friends inside JSON strings
    for number, raw in enumerate(_read_text(path).split("\n"), start=1):
        if raw.strip():
            yield _parse_ruling_line(raw, path, number)


def _iter_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith((".", "LICENSE")) and name not in _SKIP_NAMES:
                yield Path(dirpath) / name


def _check_references(located: list[_Located]) -> None:
    by_id: dict[str, _Located] = {}
    for loc in located:
        first = by_id.setdefault(loc.rule.id, loc)
        if first is not loc:
            raise _fail(loc.path, loc.line, f"duplicate id {loc.rule.id!r}: also defined at "
                        f"{first.path}:{first.line}", "id")
    for loc in located:
        refs = [("parent", loc.rule.parent)] if loc.rule.parent is not None else []
        if loc.rule.case is not None:
            refs += [("cites", c) for c in loc.rule.case.cites]
            refs += [("overrules", o) for o in loc.rule.case.overrules]
        for field, ref in refs:
            if ref not in by_id:
                raise _fail(loc.path, loc.field_lines.get(field, loc.line),
                            f"{field} {ref!r} is not a rule in this rulebook", field)
    cycle = find_cycle({loc.rule.id: loc.rule.case.overrules for loc in located if loc.rule.case is not None})
    if cycle is not None:
        # Every ruling in a cycle is overruled by another one: all of them would silently stop binding.
        first = by_id[cycle[0]]
        raise _fail(first.path, first.field_lines.get("overrules", first.line),
                    f"overrule cycle: {' -> '.join(cycle)}; a ruling cannot overrule itself, even through others",
                    "overrules")
    cycle = find_cycle({loc.rule.id: (loc.rule.parent,) for loc in located if loc.rule.parent is not None})
    if cycle is not None:  # a hierarchy has a top: a rule cannot enclose itself
        first = by_id[cycle[0]]
        raise _fail(first.path, first.field_lines.get("parent", first.line),
                    f"parent cycle: {' -> '.join(cycle)}; a rule cannot be its own parent, even through others",
                    "parent")


def read_rulebook(path: str | Path) -> list[Rule]:
    """Parse a rulebook text directory into rules (files in sorted path order, JSONL lines in order).

    Ids must be unique across files, parents, citations and overruled rulings must exist in the tree, and
    no ruling may overrule itself, directly or through a cycle of rulings.

    Raises:
        RulebookParseError: on the first problem, naming the file and line; nothing is returned partially.
    """
    root = Path(path)
    if not root.is_dir():
        raise RulebookParseError("rulebook directory does not exist (or is not a directory)", path=root)
    located: list[_Located] = []
    for file in _iter_files(root):
        if file.suffix == ".md":
            located.append(_parse_markdown(file, file.relative_to(root)))
        elif file.suffix == ".jsonl":
            located.extend(_parse_jsonl(file))
        else:
            raise _fail(file, None, "unexpected file: rules are *.md, rulings *.jsonl (README.md, NOTICE.md, "
                        "LICENSE* and dotfiles are ignored)")
    _check_references(located)
    return [loc.rule for loc in located]

