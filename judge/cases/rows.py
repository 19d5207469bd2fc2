"""How a test case is stored: the case tables, a case as row values and back, statuses parsed from input.

Shared by the write side (`judge.cases.store.CaseStore`) and the read side (`judge.cases.queries`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from judge.cases.model import CaseStatus, TestCase
from judge.errors import InputError

_CHUNK = 500


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _case_values(case: TestCase, now: datetime) -> dict[str, Any]:
    return {
        "id": case.id, "prompt": case.prompt, "prompt_role": case.prompt_role,
        "conversation": [t.model_dump(mode="json") for t in case.conversation],
        "process": case.process.model_dump(mode="json") if case.process is not None else None,
        "expected": case.expected, "reference_answers": list(case.references), "provenance": case.provenance,
        "tags": dict(case.tags), "status": case.status.value, "reviewer": case.reviewer,
        "review_method": case.review_method, "created_at": _utc(case.created_at), "status_at": now,
    }


def _case_from_row(row: Any, entries: Sequence[str]) -> TestCase:
    """The `TestCase` a row stores; validated again (the id is re-hashed), so a corrupt row fails loudly."""
    return TestCase.model_validate({
        "id": row.id, "prompt": row.prompt, "prompt_role": row.prompt_role, "conversation": row.conversation,
        "process": row.process, "entries": tuple(entries), "expected": row.expected,
        "references": tuple(row.reference_answers or ()), "provenance": row.provenance, "tags": row.tags or {},
        "status": row.status, "reviewer": row.reviewer, "review_method": row.review_method,
        "created_at": _utc(row.created_at),
    })


def _parse_status(value: CaseStatus | str, case_id: str) -> CaseStatus:
    try:
        return CaseStatus(value)
    except ValueError:
        raise InputError(f"case {case_id}: status must be one of "
                         f"{', '.join(s.value for s in CaseStatus)}, not {value!r}", field="status") from None

