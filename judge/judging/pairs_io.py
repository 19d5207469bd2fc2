"""Reading pair files (JSONL) with errors that name the file, the line and the field.

Format, one JSON object per line: ``id`` (optional), ``prompt``, ``response_a``, ``response_b`` (a string,
or an object ``{"text", "process": {"reasoning", "tool_calls": [...]}}``), ``label`` (optional: A, B or
tie), ``source`` and ``meta`` (optional; ``meta`` is never shown to a judge).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from judge.errors import InputError, first_validation_error
from judge.jsonl import read_jsonl
from judge.rules.model import Pair

__all__ = ["MAX_FIELD_CHARS", "PairRecord", "pair_id", "read_pairs"]

#: A prompt or response longer than this is refused (the prompt builder cuts anything above a few KB).
MAX_FIELD_CHARS = 2_000_000


@dataclass(frozen=True)
class PairRecord:
    """One line of a pair file."""

    pair: Pair
    label: Literal["A", "B", "tie"] | None
    source: str | None
    line: int


def pair_id(pair: Pair) -> str:
    """A stable id for a pair without one: a hash of its content."""
    blob = json.dumps(pair.model_dump(mode="json", exclude={"id"}), sort_keys=True, ensure_ascii=False)
    return "sha-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _field_error(exc: ValidationError) -> tuple[str, str]:
    loc, msg = first_validation_error(exc, "(record)")
    return loc, f"field {loc}: {msg}"


def _parse(obj: dict[str, Any], path: Path, line: int) -> PairRecord:
    for name in ("prompt", "response_a", "response_b"):
        if name not in obj:
            raise InputError(f"missing field {name!r}", path=path, line=line, field=name)
    label = obj.get("label")
    if label is not None and label not in ("A", "B", "tie"):
        raise InputError(f"label must be A, B or tie, not {label!r}", path=path, line=line, field="label")
    for name in ("prompt", "response_a", "response_b"):
        value = obj[name]
        text = value.get("text") if isinstance(value, dict) else value
        if isinstance(text, str) and len(text) > MAX_FIELD_CHARS:
            raise InputError(f"{name} is {len(text):,} characters; the limit is {MAX_FIELD_CHARS:,}",
                             path=path, line=line, field=name)
    if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
        raise InputError("prompt must be a non-empty string", path=path, line=line, field="prompt")
    raw_id = obj.get("id")
    try:
        pair = Pair(prompt=obj["prompt"], response_a=obj["response_a"], response_b=obj["response_b"],
                    id=str(raw_id) if raw_id is not None else None)
    except ValidationError as exc:
        fld, msg = _field_error(exc)
        raise InputError(msg, path=path, line=line, field=fld) from exc
    if pair.id is None:
        pair = pair.model_copy(update={"id": pair_id(pair)})
    source = obj.get("source")
    return PairRecord(pair=pair, label=label, source=str(source) if source is not None else None, line=line)


def read_pairs(path: str | Path) -> Iterator[PairRecord]:
    """Stream the records of a JSONL pair file; the first bad line raises `InputError` naming file:line.

    Blank lines are skipped. Duplicate ids are an error (results are keyed by id).
    """
    path = Path(path)
    seen: dict[str, int] = {}
    for line_no, obj in read_jsonl(path):
        record = _parse(obj, path, line_no)
        pid = record.pair.id or ""
        if pid in seen:
            raise InputError(f"duplicate id {pid!r} (first on line {seen[pid]})", path=path, line=line_no,
                             field="id")
        seen[pid] = line_no
        yield record
