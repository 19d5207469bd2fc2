"""The rulebook as text files, reviewable in a pull request (the format is described in rulebook/README.md).

* ``constitution/<slug>.md``, ``spec/<slug>.md``, ``process/<slug>.md`` (spec rules tagged ``process``):
  YAML front matter (``id, title, authority, parent, specificity, tags, source``) between ``---`` lines,
  then the rule text, byte-exact except for one trailing newline. Other folders may hold such files too.
* ``rulings/<source>.jsonl``: one ruling per line, keys in a fixed order; `Rule.text` is `ruling_text`.
* ``README.md``, ``NOTICE.md``, ``LICENSE*`` and dotfiles are ignored. Versions, timestamps and authors are
  not part of the text: they live in the database.

Reading is all-or-nothing and never writes; every problem is a `RulebookParseError` naming ``file:line``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel, ValidationError

from judge.errors import DuplicateRuleError, InputError, RulebookError, RulebookParseError
from judge.jsonl import check_value, loads
from judge.rules.model import RULE_ID_RE, Check, Layer, Response, Rule, RulingCase, slugify

__all__ = ["WriteReport", "read_rulebook", "render_files", "render_rule", "render_ruling", "rule_path",
           "ruling_text", "write_rulebook"]

RULINGS_DIR = "rulings"
PROCESS_DIR = "process"
_SKIP_NAMES = frozenset({"README.md", "NOTICE.md"})
_FM_KEYS = ("id", "title", "authority", "parent", "specificity", "tags", "source", "checks")
_FM_REQUIRED = ("id", "title", "source")
_FM_TYPES: dict[str, tuple[type, ...]] = {"id": (str,), "title": (str,), "authority": (str, type(None)),
                                          "parent": (str, type(None)), "specificity": (int,), "tags": (list,),
                                          "source": (str,), "checks": (list,)}
#: Written in this order; ``_RULING_EXTRA`` only when they carry information.
_RULING_KEYS = ("id", "title", "status", "holding", "rationale", "prompt", "response_a", "response_b",
                "cites", "overrules", "source", "tags", "specificity")
_RULING_EXTRA = ("parent", "authority", "text", "checks")
_RULING_REQUIRED = ("id", "title", "holding", "rationale", "prompt", "response_a", "response_b", "source")
_CASE_KEYS = ("prompt", "response_a", "response_b", "holding", "rationale", "cites", "overrules")
_RULE_KEYS = ("id", "title", "status", "source", "tags", "specificity", "parent", "authority", "checks")


def ruling_text(holding: str, rationale: str) -> str:
    """The derived `Rule.text` of a ruling: ``"Holding: response A is better. <rationale>"``."""
    head = ("Holding: neither response is better (tie)." if holding == "tie"
            else f"Holding: response {holding} is better.")
    return f"{head} {rationale}" if rationale.strip() else head


def rule_path(rule: Rule) -> Path:
    """Where the writer puts a rule, relative to the rulebook root.

    Rulings go to ``rulings/<slug of the source's last path segment>.jsonl``: ``openai/model_spec-example``
    -> ``rulings/model-spec-example.jsonl``.
    """
    if rule.layer is Layer.RULING:
        return Path(RULINGS_DIR) / (slugify(rule.source.split("@", 1)[0].rsplit("/", 1)[-1]) + ".jsonl")
    folder = PROCESS_DIR if rule.layer is Layer.SPEC and rule.process_rule else rule.layer.value
    return Path(folder) / f"{rule.id.split('/', 1)[1]}.md"


# ------------------------------------------------------------------------------------------------ rendering
def _yaml_str(value: str, *, flow: bool = False) -> str:
    """A YAML scalar that loads back as exactly ``value``: plain when that is safe, else JSON-quoted."""
    def loads_back(rendered: str) -> bool:
        try:
            return bool(yaml.safe_load(f"k: [{rendered}]" if flow else f"k: {rendered}") ==
                        {"k": [value] if flow else value})
        except yaml.YAMLError:
            return False

    candidates = [] if any(c in value for c in "\r\n") else [value]
    candidates += [json.dumps(value, ensure_ascii=False), json.dumps(value)]
    return next((c for c in candidates if loads_back(c)), candidates[-1])


def _yaml_value(value: str | int | list[str] | None) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_str(v, flow=True) for v in value) + "]"
    return "null" if value is None else str(value) if isinstance(value, int) else _yaml_str(value)


def render_rule(rule: Rule) -> str:
    """The Markdown file for a constitution or spec rule."""
    if rule.layer is Layer.RULING:
        raise ValueError(f"{rule.id}: rulings are written as JSONL lines (render_ruling)")
    authority = rule.authority.value if rule.authority else None
    fields = {"id": rule.id, "title": rule.title, "authority": authority, "parent": rule.parent,
              "specificity": rule.specificity, "tags": list(rule.tags), "source": rule.source}
    front = "".join(f"{key}: {_yaml_value(value)}\n" for key, value in fields.items())
    return f"---\n{front}{_render_checks(rule.checks)}---\n{rule.text}\n"


def _render_checks(checks: Sequence[Check]) -> str:
    if not checks:
        return ""
    lines = ["checks:"]
    for check in checks:
        lines.append(f"- question: {_yaml_str(check.question)}")
        lines.append(f'  expect: "{check.expect}"')
        if check.target != "response":
            lines.append(f"  target: {check.target}")
    return "\n".join(lines) + "\n"


def _response_json(response: Response) -> str | dict[str, Any]:
    if response.process is None:
        return response.text
    calls = [{"name": c.name, "arguments": c.arguments, "result": c.result}
             for c in response.process.tool_calls]
    return {"text": response.text, "process": {"reasoning": response.process.reasoning, "tool_calls": calls}}


def render_ruling(rule: Rule) -> str:
    """One JSONL line (without the newline) for a ruling: keys in a fixed order, non-ASCII kept."""
    case = rule.case
    if case is None:
        raise ValueError(f"{rule.id}: only rulings are written as JSONL lines")
    obj: dict[str, Any] = {
        "id": rule.id, "title": rule.title, "status": rule.status.value, "holding": case.holding,
        "rationale": case.rationale, "prompt": case.prompt, "response_a": _response_json(case.response_a),
        "response_b": _response_json(case.response_b), "cites": list(case.cites),
        "overrules": list(case.overrules), "source": rule.source, "tags": list(rule.tags),
        "specificity": rule.specificity,
    }
    extra = {"parent": rule.parent, "authority": rule.authority.value if rule.authority else None,
             "text": rule.text if rule.text != ruling_text(case.holding, case.rationale) else None,
             "checks": [c.model_dump(exclude_defaults=True) for c in rule.checks] or None}
    obj.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(obj, ensure_ascii=False)


def render_files(rules: Iterable[Rule]) -> dict[Path, str]:
    """The text form of ``rules``: relative path -> file content, deterministic (rulings sorted by id).

    Raises:
        DuplicateRuleError: two rules share an id.
    """
    ordered = sorted(rules, key=lambda r: r.id)
    for previous, rule in pairwise(ordered):
        if previous.id == rule.id:
            raise DuplicateRuleError(rule.id)
    files: dict[Path, str] = {}
    for rule in ordered:  # id order, so each JSONL file lists its rulings sorted by id
        text = render_ruling(rule) + "\n" if rule.layer is Layer.RULING else render_rule(rule)
        files[rule_path(rule)] = files.get(rule_path(rule), "") + text
    return dict(sorted(files.items()))


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
    cycle = _overrule_cycle({loc.rule.id: loc.rule.case.overrules for loc in located if loc.rule.case is not None})
    if cycle is not None:
        # Every ruling in a cycle is overruled by another one: all of them would silently stop binding.
        first = by_id[cycle[0]]
        raise _fail(first.path, first.field_lines.get("overrules", first.line),
                    f"overrule cycle: {' -> '.join(cycle)}; a ruling cannot overrule itself, even through others",
                    "overrules")


def _overrule_cycle(overrules: dict[str, tuple[str, ...]]) -> list[str] | None:
    """The first cycle in the "overrules" graph (ids in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: fully explored
    for root in overrules:
        if root in state:
            continue
        path, stack = [root], [iter(overrules[root])]
        state[root] = 1
        while stack:  # iterative depth-first search: a long chain of rulings must not hit the recursion limit
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                state[path.pop()] = 2
            elif state.get(target) == 1:
                return [*path[path.index(target):], target]
            elif target not in state:
                state[target] = 1
                path.append(target)
                stack.append(iter(overrules.get(target, ())))
    return None


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


# -------------------------------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class WriteReport:
    """What `write_rulebook` did, as paths relative to the rulebook root."""

    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    removed: tuple[Path, ...]


def _owned(file: Path, owned_by: str | None) -> bool:
    """Whether every rule in a file has a source starting with ``owned_by`` (False if it does not parse)."""
    if owned_by is None:
        return True
    try:
        if file.suffix == ".md":
            sources = {_parse_front_matter(_read_text(file), file)[0]["source"]}
        else:
            sources = {loc.rule.source for loc in _parse_jsonl(file)}
    except (RulebookParseError, OSError):
        return False
    return bool(sources) and all(s.startswith(owned_by) for s in sources)


def _same(target: Path, text: str) -> bool:
    return target.is_file() and target.read_bytes() == text.encode("utf-8")


def write_rulebook(rules: Iterable[Rule], path: str | Path, *, owned_by: str | None = None) -> WriteReport:
    """Write rules as text under ``path``; ``read_rulebook(path)`` gives the same content back.

    The writer owns the rule files (``*.md`` other than README/NOTICE, and ``*.jsonl``) whose rules all
    have a ``source`` starting with ``owned_by``; every rule file when ``owned_by`` is None. Owned files
    that are not part of the new text are removed; other files are never touched. Unchanged files are not
    rewritten, and every file is replaced atomically.

    Raises:
        ValueError: a rule's source does not start with ``owned_by``.
        DuplicateRuleError: two rules share an id.
        RulebookError: a file to write exists and holds rules the writer does not own.
    """
    root, rules = Path(path), list(rules)
    foreign = sorted(r.id for r in rules if owned_by is not None and not r.source.startswith(owned_by))
    if foreign:
        raise ValueError(f"rules whose source does not start with {owned_by!r}: {', '.join(foreign[:5])}")
    files = render_files(rules)
    stale: list[Path] = []
    for file in (f for f in (_iter_files(root) if root.is_dir() else ()) if f.suffix in (".md", ".jsonl")):
        rel, owned = file.relative_to(root), _owned(file, owned_by)
        if rel in files and not owned:
            raise RulebookError(f"{file} holds rules not owned by {owned_by!r}; refusing to overwrite it")
        if rel not in files and owned:
            stale.append(rel)
    unchanged = [rel for rel, text in files.items() if _same(root / rel, text)]
    written = [rel for rel in files if rel not in unchanged]
    for rel in written:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(files[rel].encode("utf-8"))
        os.replace(tmp, target)  # atomic: a reader never sees half a file
    for rel in stale:
        (root / rel).unlink()
    return WriteReport(tuple(written), tuple(unchanged), tuple(stale))
