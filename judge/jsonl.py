"""Reading JSON and JSONL files of objects, with errors that name the file, line and field.

Every JSON value read from a user's file passes `check_value`: text that cannot be encoded (a lone UTF-16
surrogate such as ``"\\udc80"``, which JSON allows but UTF-8 cannot store or send) and nesting deeper than
`MAX_DEPTH` are refused where they are read, naming the field, rather than failing later mid-run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from judge.errors import InputError, first_validation_error

__all__ = ["MAX_DEPTH", "check_value", "iter_lines", "loads", "read_json_model", "read_jsonl", "text_problem"]

M = TypeVar("M", bound=BaseModel)

#: Deepest nesting of arrays / objects accepted in an input value (pairs, rulings, results, gate files).
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_BOM = "\ufeff"


def text_problem(text: str) -> str | None:
    """What makes ``text`` unusable as stored or sent text (a lone surrogate), or None."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return f"holds a lone UTF-16 surrogate \\u{ord(found.group()):04x} at character {found.start()}: not valid text"


def check_value(value: Any, *, max_depth: int = MAX_DEPTH) -> tuple[str, str] | None:
    """The first ``(field path, problem)`` in a parsed JSON / YAML value, or None when it is usable.

    Problems: a string (value or key) holding a lone surrogate, nesting deeper than ``max_depth``. Walked
    without recursion, so a hostile depth cannot exhaust the stack here.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return where or "(value)", problem
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return where or "(value)", f"nested more than {max_depth} levels deep"
            if isinstance(item, dict):
                for key, child in item.items():
                    name = f"{where}.{key}" if where else str(key)
                    if isinstance(key, str) and (problem := text_problem(key)) is not None:
                        return where or "(value)", f"a key {problem}"
                    stack.append((child, name, depth + 1))
            else:
                for i, child in enumerate(item):
                    stack.append((child, f"{where}[{i}]", depth + 1))
    return None


def loads(text: str, *, path: str | Path | None = None, line: int | None = None,
          object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """Parse one JSON document from a user's file and `check_value` it.

    Raises:
        InputError: malformed JSON, nesting too deep, or text that is not valid (names path, line, field).
    """
    try:
        # Trailing whitespace (a line's newline) dropped: an unfinished document is reported where it ends,
        # not at the start of a line after it.
        obj = json.loads(text.rstrip(), object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as exc:
        # a line of a JSONL file is named by the caller; a whole document by the line the parser stopped on
        raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=path,
                         line=line if line is not None else exc.lineno) from None
    except RecursionError:
        raise InputError(f"malformed JSON: nested more than {MAX_DEPTH} levels deep", path=path,
                         line=line) from None
    bad = check_value(obj)
    if bad is not None:
        raise InputError(f"field {bad[0]} {bad[1]}", path=path, line=line, field=bad[0])
    return obj


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for every non-blank line of a text file, read lazily as bytes so that a
    corrupted line is an error naming it rather than a decoding traceback.

    Raises:
        InputError: the file is missing or a folder, or a line is not UTF-8 (names file, line and byte).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("a folder, not a file", path=path)
    if not path.exists():
        raise InputError("no such file", path=path)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"invalid UTF-8 at byte {exc.start}", path=path, line=number) from None
            if number == 1 and line.startswith(_BOM):  # a byte-order mark some editors write: not content
                line = line[1:]
            if line.strip():
                yield number, line


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every non-blank line of a JSONL file, read lazily.

    Raises:
        InputError: the file is missing, a line is not UTF-8, not JSON, or not a JSON object (names file and
            line).
    """
    path = Path(path)
    for number, line in iter_lines(path):
        obj = loads(line, path=path, line=number)
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", path=path, line=number)
        yield number, obj


def read_json_model(path: str | Path, model: type[M], what: str, kind: str) -> M:
    """Read a JSON file holding one ``model`` (a calibrator, a fitted weighting ...): ``what`` names the file
    in a read error ("the calibrator"), ``kind`` the content it must hold ("a judge calibrator").

    Raises:
        InputError: the file cannot be read, or is not a valid ``what`` (naming the first bad field).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what}: {exc}", path=path) from exc
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        where, msg = first_validation_error(exc, "(document)")
        raise InputError(f"not {kind} ({where}: {msg})", path=path, field=where) from exc
