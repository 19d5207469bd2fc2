"""Case files: a reviewable case set as text, one JSONL file per spec entry (like the rulebook's files).

A line is one `judge.cases.model.TestCase` as JSON; reviewed cases carry their ``status``, ``reviewer``,
``review_method`` and ``review_note``, so loading a set restores who accepted or rejected each case and how.
Files are written in a stable order (by id) without timestamps, so a re-export of unchanged cases is the same
text and a diff shows what review changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import ValidationError

from judge._atomic import write_text_atomic
from judge.cases.model import CaseStatus, TestCase, missing_reviewer
from judge.errors import InputError, first_validation_error
from judge.jsonl import read_jsonl

__all__ = ["case_files", "read_case_files", "read_case_lines", "write_case_files"]

_DROPPED = {"created_at"}


def case_files(path: str | Path) -> list[Path]:
    """The ``*.jsonl`` files of a case set: the file itself, or a folder's files (recursively), sorted."""
    root = Path(path)
    if root.is_dir():
        return sorted(root.rglob("*.jsonl"))
    if not root.is_file():
        raise InputError("no such file or folder", path=root)
    return [root]


def read_case_files(path: str | Path) -> list[TestCase]:
    """Every case of a file or folder of case files, validated; reviewed cases keep their review.

    Raises:
        InputError: a line that is not a valid case, naming file, line and field; nothing is returned.
    """
    return [case for _, _, case in read_case_lines(path)]


def read_case_lines(path: str | Path) -> list[tuple[Path, int, TestCase]]:
    """As `read_case_files`, each case with the file and line it was read from (to name them later)."""
    cases: list[tuple[Path, int, TestCase]] = []
    files = case_files(path)
    if not files:
        raise InputError("no *.jsonl case files found", path=Path(path))
    for file in files:
        for line, obj in read_jsonl(file):
            try:
                case = TestCase.model_validate(obj)
            except ValidationError as exc:
                where, msg = first_validation_error(exc, "")
                raise InputError(f"invalid test case: {where + ': ' if where else ''}{msg}", path=file,
                                 line=line, field=where or None) from None
            if missing_reviewer(case):
                raise InputError(f"invalid test case: a {case.status.value} case needs a reviewer (who or which "
                                 "check decided it)", path=file, line=line, field="reviewer")
            cases.append((file, line, case))
    return cases


def _line(case: TestCase, note: str | None) -> str:
    data = case.model_dump(mode="json", exclude=_DROPPED, exclude_defaults=True)
    data["id"] = case.id
    data["entries"] = list(case.entries)
    data["provenance"] = case.provenance
    if case.status is not CaseStatus.DRAFT:
        data["status"] = case.status.value
    note = note or case.review_note
    if note:
        data["review_note"] = note
    return json.dumps(data, ensure_ascii=False, sort_keys=False)


def write_case_files(cases: Iterable[TestCase], folder: str | Path, *,
                     notes: Mapping[str, str] | None = None) -> dict[Path, int]:
    """Write cases to ``folder/<slug>.jsonl`` by their first entry (``spec/<slug>``), sorted by id.

    Each file is written whole to a temporary name and renamed, so a reader never sees half a file.

    Returns:
        Cases written per file.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    by_file: dict[Path, list[TestCase]] = {}
    for case in cases:
        slug = case.entries[0].split("/", 1)[1]
        by_file.setdefault(out / f"{slug}.jsonl", []).append(case)
    written: dict[Path, int] = {}
    for file, members in sorted(by_file.items()):
        members.sort(key=lambda c: c.id)
        text = "".join(_line(c, (notes or {}).get(c.id)) + "\n" for c in members)
        write_text_atomic(file, text)
        written[file] = len(members)
    return written
