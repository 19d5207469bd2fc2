"""Reading JSONL files of objects, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from judge.errors import InputError

__all__ = ["iter_lines", "read_jsonl"]


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for every non-blank line of a text file, read lazily as bytes so that a
    corrupted line is an error naming it rather than a decoding traceback.

    Raises:
        InputError: a line is not UTF-8 (names file, line and byte).
    """
    path = Path(path)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"invalid UTF-8 at byte {exc.start}", path=path, line=number) from None
            if line.strip():
                yield number, line


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every non-blank line of a JSONL file, read lazily.

    Raises:
        InputError: the file is missing, a line is not UTF-8, not JSON, or not a JSON object (names file and
            line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=path)
    for number, line in iter_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=path, line=number) from None
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", path=path, line=number)
        yield number, obj
