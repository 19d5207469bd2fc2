"""The rulebook's data model: layers, authority levels, rules, rulings, versions.

Pure values (frozen pydantic models); no I/O. Three layers, in order of precedence:

* ``constitution`` - few, overriding principles (ids ``constitution/<slug>``);
* ``spec`` - the model spec's concrete entries, each with an authority level (ids ``spec/<slug>``);
* ``ruling`` - decided pairs: prompt, response A, response B, holding, rationale, cited rules
  (ids ``ruling/<slug>``).

Every rule is versioned: amending, overruling or superseding adds a new version; nothing is rewritten.
The rulebook as a whole has a version, a hash chain over every change, so a judgment can name the exact
rulebook it used.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from judge.errors import InputError

__all__ = [
    "AUTHORITY_RANK",
    "EMPTY_RULEBOOK_VERSION",
    "HOLDINGS",
    "LAYER_RANK",
    "OVERVIEW_TAG",
    "Authority",
    "Case",
    "Change",
    "ChangeKind",
    "Check",
    "Holding",
    "Layer",
    "Pair",
    "Process",
    "Response",
    "Rule",
    "RuleStatus",
    "RulingCase",
    "ToolCall",
    "as_response",
    "check_holding",
    "content_hash",
    "next_rulebook_version",
    "slugify",
]

#: The tag of an overview or grouping entry (a heading that introduces the entries under it): the rulebook keeps
#: it and its text, but retrieval does not show it to the judge as a rule a pair is judged by (see
#: `judge.retrieval.fusion.RetrievalConfig.overview`).
OVERVIEW_TAG = "overview"

Holding = Literal["A", "B", "tie"]
#: Every holding a ruling (or a pair's label) can have.
HOLDINGS: tuple[Holding, ...] = ("A", "B", "tie")

#: ``\Z``, not ``$``: ``$`` also matches before a trailing newline ("spec/x\n").
RULE_ID_RE = re.compile(r"^(constitution|spec|ruling)/[a-z0-9][a-z0-9._-]{0,199}\Z")
EMPTY_RULEBOOK_VERSION = "rb-000000000000"


class Layer(StrEnum):
    """The three layers of the rulebook, highest precedence first."""

    CONSTITUTION = "constitution"
    SPEC = "spec"
    RULING = "ruling"


#: Lower rank = higher precedence.
LAYER_RANK: dict[Layer, int] = {Layer.CONSTITUTION: 0, Layer.SPEC: 1, Layer.RULING: 2}


class Authority(StrEnum):
    """The Model Spec's levels of authority, highest first."""

    ROOT = "root"
    SYSTEM = "system"
    DEVELOPER = "developer"
    USER = "user"
    GUIDELINE = "guideline"


#: Lower rank = higher authority. A rule without an authority ranks below ``guideline``.
AUTHORITY_RANK: dict[Authority | None, int] = {
    Authority.ROOT: 0,
    Authority.SYSTEM: 1,
    Authority.DEVELOPER: 2,
    Authority.USER: 3,
    Authority.GUIDELINE: 4,
    None: 5,
}


class RuleStatus(StrEnum):
    """Whether a rule binds. Only rulings can be overruled or superseded."""

    ACTIVE = "active"
    OVERRULED = "overruled"
    SUPERSEDED = "superseded"


class ChangeKind(StrEnum):
    """Why a new version of a rule was written."""

    ADD = "add"
    AMEND = "amend"
    OVERRULE = "overrule"
    SUPERSEDE = "supersede"


def slugify(text: str, *, max_len: int = 80) -> str:
    """Turn a title or spec anchor into an id slug: lowercase, ``[a-z0-9-]``, hyphen separated."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "rule"


class FrozenModel(BaseModel):
    """An immutable model that refuses unknown fields: the base of every value the rulebook and cases hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(FrozenModel):
    """One tool call made while producing a response."""

    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    result: str | None = None


class Process(FrozenModel):
    """How a response was produced: reasoning text and tool calls. Judged by process rules."""

    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    def is_empty(self) -> bool:
        """True when there is neither reasoning nor any tool call."""
        return not (self.reasoning and self.reasoning.strip()) and not self.tool_calls


class Response(FrozenModel):
    """A response to judge: its final text and, optionally, its process."""

    text: str
    process: Process | None = None


def as_response(value: str | Response) -> Response:
    """A `Response` from plain text (or the response itself)."""
    return Response(text=value) if isinstance(value, str) else value


class Pair(FrozenModel):
    """A prompt and two responses to compare. ``id`` is the caller's, if any."""

    prompt: str
    response_a: Response
    response_b: Response
    id: str | None = None

    @field_validator("response_a", "response_b", mode="before")
    @classmethod
    def _coerce_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    def query_text(self) -> str:
        """The text retrieval embeds for this pair: the prompt and the responses, those without text left out (a
        prompt asked alone is its own query text, and searched once)."""
        return "\n\n".join(t for t in (self.prompt, self.response_a.text, self.response_b.text) if t.strip())

    def has_process(self) -> bool:
        """True when either response carries a non-empty process."""
        return any(r.process is not None and not r.process.is_empty() for r in (self.response_a, self.response_b))


class RulingCase(FrozenModel):
    """The decided pair inside a case ruling."""

    prompt: str
    response_a: Response
    response_b: Response
    holding: Holding
    rationale: str
    cites: tuple[str, ...] = ()
    overrules: tuple[str, ...] = ()

    @field_validator("response_a", "response_b", mode="before")
    @classmethod
    def _coerce_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    def as_pair(self) -> Pair:
        """The case's prompt and responses as a `Pair`."""
        return Pair(prompt=self.prompt, response_a=self.response_a, response_b=self.response_b)


#: The former name of `RulingCase`, kept for code that imports it.
Case = RulingCase


class Check(FrozenModel):
    """A yes/no question asked of one response alone, and the answer that complies with its rule.

    Checks make a rule gradable by a small judge: "Does the response give methods for self-harm?" -> no.
    ``target`` is ``process`` for questions about a response's reasoning and tool calls.
    """

    question: str = Field(min_length=3, max_length=400)
    expect: Literal["yes", "no"]
    target: Literal["response", "process"] = "response"

    @field_validator("question")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value.endswith("?"):
            raise ValueError("a check is a question: it must end with '?'")
        return value

    @field_validator("expect", mode="before")
    @classmethod
    def _yes_no(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare yes/no as a boolean
        if isinstance(value, bool):
            return "yes" if value else "no"
        return value.strip().lower() if isinstance(value, str) else value


class Rule(FrozenModel):
    """One version of one rule, in any layer.

    ``specificity`` is the rule's depth in its layer's hierarchy (0 = a top-level principle); deeper rules
    are more specific. ``case`` is set exactly for rulings.
    """

    id: str
    layer: Layer
    title: str
    text: str
    authority: Authority | None = None
    parent: str | None = None
    specificity: int = Field(default=0, ge=0, le=1_000_000, description="Depth in the layer's hierarchy (0: top).")
    tags: tuple[str, ...] = ()
    source: str = "user"
    status: RuleStatus = RuleStatus.ACTIVE
    case: RulingCase | None = None
    checks: tuple[Check, ...] = Field(default=(), max_length=8,
                                      description="Yes/no questions that grade one response against the rule.")
    version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    author: str | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not RULE_ID_RE.match(value):
            raise ValueError(
                f"rule id {value!r} must look like constitution/<slug>, spec/<slug> or ruling/<slug> "
                "(lowercase letters, digits, '.', '_', '-')"
            )
        return value

    @field_validator("title")
    @classmethod
    def _check_title(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("title must not be empty")
        return value.strip()

    @model_validator(mode="after")
    def _check_layer(self) -> Rule:
        prefix = self.id.split("/", 1)[0]
        if prefix != self.layer.value:
            raise ValueError(f"rule id {self.id!r} does not match its layer {self.layer.value!r}")
        if (self.layer is Layer.RULING) != (self.case is not None):
            raise ValueError("rulings (and only rulings) carry a case: prompt, responses, holding, rationale")
        if self.layer is not Layer.RULING and self.status is not RuleStatus.ACTIVE:
            raise ValueError("only rulings can be overruled or superseded; amend other rules instead")
        if not self.text.strip():
            raise ValueError(f"rule {self.id!r} has empty text")
        if self.version < 1:
            raise ValueError("version starts at 1")
        return self

    @property
    def binds(self) -> bool:
        """Whether the rule binds: overruled and superseded rulings do not."""
        return self.status is RuleStatus.ACTIVE

    @property
    def overview(self) -> bool:
        """Overview and grouping entries (tagged `OVERVIEW_TAG`) introduce other entries."""
        return OVERVIEW_TAG in self.tags

    @property
    def process_rule(self) -> bool:
        """Rules tagged ``process`` judge a response's reasoning and tool calls."""
        return "process" in self.tags

    def content_hash(self) -> str:
        """Hash of what the rule says (not of its version number, time or author)."""
        return content_hash(self)

    def embedding_text(self) -> str:
        """The text the retrieval index embeds for this rule."""
        if self.case is not None:
            return "\n\n".join([self.case.prompt, self.case.response_a.text, self.case.response_b.text,
                                self.case.rationale])
        return f"{self.title}\n\n{self.text}"


def content_hash(rule: Rule) -> str:
    """sha256 of a rule's content fields in canonical JSON (version, time and author excluded)."""
    payload = rule.model_dump(mode="json", exclude={"version", "created_at", "author"})
    if not payload["checks"]:
        del payload["checks"]  # a rule without checks hashes as it did before checks existed
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def next_rulebook_version(previous: str, rule_id: str, version: int, rule_hash: str) -> str:
    """The rulebook version after one change: a hash chain over every change ever made."""
    blob = f"{previous}\n{rule_id}\n{version}\n{rule_hash}".encode()
    return "rb-" + hashlib.sha256(blob).hexdigest()[:12]


class Change(FrozenModel):
    """One entry of the append-only change log."""

    seq: int
    rule_id: str
    version: int
    kind: ChangeKind
    reason: str | None = None
    author: str | None = None
    at: datetime
    rulebook_version: str
    previous_rulebook_version: str


def check_holding(value: object, *, field: str = "holding", path: str | Path | None = None,
                  line: int | None = None) -> Holding:
    """``value`` as a holding (A, B or tie).

    Raises:
        InputError: anything else, naming ``field`` (and the file and line when given).
    """
    for holding in HOLDINGS:
        if value == holding:
            return holding
    raise InputError(f"{field} must be A, B or tie, not {value!r}", path=path, line=line, field=field)
