"""Reading JSONL files of objects, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from judge.errors import InputError

__all__ = ["read_jsonl"]


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every non-blank line of a JSONL file.

    Raises:
        InputError: the file is missing, a line is not JSON, or not a JSON object (names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=path)
    number = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"invalid JSON: {exc.msg}", path=path, line=number) from None
                if not isinstance(obj, dict):
                    raise InputError("expected a JSON object", path=path, line=number)
                yield number, obj
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=path, line=number + 1) from None
