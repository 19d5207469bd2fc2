"""A test case: a prompt the judge must handle, the spec entries it tests, and what is expected of it.

Pure values (frozen pydantic models); no I/O. A case's ``id`` is a hash of what it tests - the prompt, the
conversation before it, the process, the entries, the expected behaviour and the reference answers - so
the same case added twice is the same row, and any edit is a new case. Provenance, tags, review status,
reviewer and creation time are *about* the case and do not change its id.

Review status moves draft -> accepted / rejected (and back) through `judge.cases.store.CaseStore.review`;
every move is logged there, append-only.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from judge.rules.model import FrozenModel, Process

__all__ = ["CASE_ID_RE", "REVIEW_METHODS", "CaseStatus", "ReviewMethod", "Role", "TestCase", "Turn", "case_id",
           "missing_reviewer"]

Role = Literal["system", "developer", "user", "assistant", "tool"]

#: How a case's status was decided: by a ``person``, by an automated ``check`` (`judge cases check`), or taken
#: from an authoritative ``source`` (the Model Spec's own worked examples).
ReviewMethod = Literal["person", "check", "source"]
REVIEW_METHODS: tuple[ReviewMethod, ...] = ("person", "check", "source")

CASE_ID_RE = re.compile(r"^case-[0-9a-f]{20}\Z")
_SPEC_ID_RE = re.compile(r"^spec/[a-z0-9][a-z0-9._-]{0,199}\Z")

#: The fields a case's id hashes (everything else is metadata about the case).
_HASHED = ("prompt", "prompt_role", "conversation", "process", "entries", "expected", "references")


class CaseStatus(StrEnum):
    """Where a case is in review. Only accepted cases count towards coverage."""

    DRAFT = "draft"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Turn(FrozenModel):
    """One message of the conversation before the prompt.

    Attributes:
        role: who wrote it.
        content: its text.
        recipient: the tool an assistant message is addressed to, if any.
    """

    role: Role
    content: str
    recipient: str | None = None


class TestCase(FrozenModel):
    """One test case for one or more spec entries.

    Attributes:
        id: ``case-<20 hex>``, the content hash (computed when omitted; checked when given).
        prompt: the final message the judged response answers (usually the user's request).
        prompt_role: who sent ``prompt`` (a developer-only or tool-result prompt is not a user's).
        conversation: the messages before ``prompt``, oldest first.
        process: a process (reasoning, tool calls) to judge, for process rules.
        entries: the spec entries (``spec/<slug>``) the case tests; at least one, stored sorted.
        expected: the expected behaviour, in words.
        references: reference answers (good responses).
        provenance: where the case came from (a dataset, a generator, a person).
        tags: free-form labels, e.g. ``topic``, ``language``, ``difficulty``, ``adversarial``.
        status: review status.
        reviewer: who last set the status (None for an unreviewed draft): a person's name or a check's name.
        review_method: how the status was decided (``person``, ``check`` or ``source``); None for a draft.
        review_note: why (e.g. the check that rejected the case); kept in the review log, not hashed.
        created_at: when the case was written.
    """

    __test__ = False  # not a pytest test class, despite its name

    id: str = ""
    prompt: str
    prompt_role: Role = "user"
    conversation: tuple[Turn, ...] = ()
    process: Process | None = None
    entries: tuple[str, ...] = Field(min_length=1)
    expected: str | None = None
    references: tuple[str, ...] = ()
    provenance: str
    tags: dict[str, str | int | float | bool] = Field(default_factory=dict)
    status: CaseStatus = CaseStatus.DRAFT
    reviewer: str | None = None
    review_method: ReviewMethod | None = None
    review_note: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
        return value

    @field_validator("provenance")
    @classmethod
    def _check_provenance(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("provenance must not be empty: say where the case came from")
        return value.strip()

    @field_validator("entries")
    @classmethod
    def _check_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in value if not _SPEC_ID_RE.match(e)]
        if bad:
            raise ValueError(f"entries must be spec entry ids like spec/<slug>, got {bad}")
        # Sorted and unique, so the id does not depend on the order entries were listed in.
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _check_id(self) -> TestCase:
        computed = case_id(self)
        if not self.id:
            object.__setattr__(self, "id", computed)
        elif self.id != computed:
            raise ValueError(f"id {self.id!r} does not match the case's content (expected {computed!r}); "
                             "omit the id to have it computed")
        if self.status is not CaseStatus.DRAFT and self.reviewer is not None and self.review_method is None:
            object.__setattr__(self, "review_method", "person")  # a named reviewer is a person unless said
        if self.created_at.tzinfo is None:
            object.__setattr__(self, "created_at", self.created_at.replace(tzinfo=UTC))
        return self

    def text(self) -> str:
        """What distinctness and contamination compare: the conversation's contents, then the prompt."""
        return "\n".join([*(t.content for t in self.conversation), self.prompt])

    def render_prompt(self) -> str:
        """The prompt as a judge sees it: plain when alone, else the whole conversation in the Model Spec's
        ``<role>...</role>`` rendering (the format of the imported rulings' prompts)."""
        if not self.conversation and self.prompt_role == "user":
            return self.prompt
        turns = [*self.conversation, Turn(role=self.prompt_role, content=self.prompt)]
        parts = []
        for turn in turns:
            attrs = f' recipient="{turn.recipient}"' if turn.recipient else ""
            parts.append(f"<{turn.role}{attrs}>\n{turn.content}\n</{turn.role}>")
        return "\n".join(parts)


def missing_reviewer(case: TestCase) -> bool:
    """Whether ``case`` is accepted or rejected without a reviewer (who or which check decided it).

    Such a case is refused where cases come in (case files, `judge.cases.store.CaseStore.add`) and not
    counted by coverage: the release gate counts *reviewed* cases. The model itself accepts it, so a store
    written before that check still reads.
    """
    return case.status is not CaseStatus.DRAFT and not (case.reviewer or "").strip()


def case_id(case: TestCase) -> str:
    """``case-`` + the first 20 hex digits of sha256 over the case's content in canonical JSON."""
    payload = case.model_dump(mode="json", include=set(_HASHED))
    payload["entries"] = sorted(set(payload["entries"]))
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "case-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]

