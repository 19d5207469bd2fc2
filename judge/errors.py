"""Every error `judge` raises on purpose, in one tree.

```
JudgeError                      base: the CLI prints it as one line and exits 2
 ├── ConfigError                a setting is missing or invalid
 │    ├── ModelPartsMissingError  (judge.backends.local_model) the embedded model's packages are absent
 │    └── CalibratorMismatchError a calibrator fitted for another judge configuration
 ├── InputError                 bad user input (file, line, field)
 │    └── RulebookParseError    a rulebook text file is malformed (file:line)
 ├── RulebookError              a rulebook operation is not allowed
 │    ├── RuleNotFoundError     no rule with that id
 │    ├── UnknownCitationError  a ruling cites ids that do not exist
 │    ├── DuplicateRuleError    adding a rule whose id exists
 │    ├── OverruleError         overruling something that cannot be overruled (cycle, wrong layer, ...)
 │    └── RulingConflictError   a new ruling contradicts an active ruling on a near-duplicate pair
 ├── StoreError                 the SQL system of record failed
 │    ├── SchemaVersionError    DB written by an unknown / newer schema version
 │    └── ConcurrentWriteError  a write lost a race too many times
 ├── RetrievalIndexError        the derived retrieval index cannot be used
 │    ├── IndexStaleError       built from an older rulebook version
 │    ├── IndexMismatchError    built with another embedding model
 │    └── IndexSchemaError      built by a judge with another index layout
 ├── EmbedderError              the embedding model cannot be loaded
 └── BackendError               a judge backend failed
      ├── BackendUnavailableError  429 / 5xx / timeouts / connection errors after every retry
      ├── BackendReplyError        the endpoint answered with something that is not a completion
      ├── StructuredOutputError    the model's structured reply never validated (raw reply kept)
      ├── ModelIntegrityError      (judge.backends.local_model) size / sha256 / GGUF magic mismatch
      └── LocalServerError         (judge.backends.local_server) the embedded server failed
```

Errors carry structured fields so callers can act on them without parsing messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "BackendError",
    "BackendReplyError",
    "BackendUnavailableError",
    "CalibratorMismatchError",
    "CaseReviewError",
    "ConcurrentWriteError",
    "ConfigError",
    "DuplicateRuleError",
    "EmbedderError",
    "IndexError_",
    "IndexMismatchError",
    "IndexSchemaError",
    "IndexStaleError",
    "InputError",
    "JudgeError",
    "NothingScoredError",
    "OverruleError",
    "RetrievalIndexError",
    "RuleNotFoundError",
    "RulebookError",
    "RulebookParseError",
    "RulingConflictError",
    "SchemaVersionError",
    "StoreError",
    "StructuredOutputError",
    "UnknownCitationError",
]


class JudgeError(Exception):
    """Base of every error raised on purpose by `judge`."""


class ConfigError(JudgeError):
    """A setting is missing or invalid."""


class CalibratorMismatchError(ConfigError):
    """A calibrator was fitted for another judge configuration (backend, model, template, rulebook, ...)."""


class InputError(JudgeError):
    """Bad user input; names the file, line and field when known."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        super().__init__(where + message)


class CaseReviewError(InputError):
    """A review decision that cannot be applied; ``case_id`` names the (first) case it is about, so a caller
    reading decisions from a file can name the line."""

    def __init__(self, message: str, *, case_id: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.case_id = case_id


class RulebookParseError(InputError):
    """A rulebook text file (Markdown rule or JSONL ruling) is malformed."""


class RulebookError(JudgeError):
    """A rulebook operation is not allowed."""


class RuleNotFoundError(RulebookError):
    """No rule with the given id exists."""

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        super().__init__(f"no rule with id {rule_id!r}")


class UnknownCitationError(RulebookError):
    """A ruling (or verdict) cites rule ids that do not exist."""

    def __init__(self, unknown: list[str], *, context: str = "") -> None:
        self.unknown = sorted(unknown)
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}cites unknown rule id(s): {', '.join(self.unknown)}")


class DuplicateRuleError(RulebookError):
    """A rule with this id already exists (use amend to change it)."""

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        super().__init__(f"rule {rule_id!r} already exists; amend it instead of adding it again")


class OverruleError(RulebookError):
    """An overrule / supersede request is invalid (cycle, not a ruling, already overruled...)."""


class RulingConflictError(RulebookError):
    """A new ruling's holding contradicts active rulings on near-duplicate pairs; nothing was written.

    Attributes:
        ruling_id: the id the new ruling would have had.
        conflicts: ``(ruling id, its holding in the new pair's A/B slots, similarity)`` per conflicting ruling.
    """

    def __init__(self, ruling_id: str, conflicts: list[tuple[str, str, float]]) -> None:
        self.ruling_id = ruling_id
        self.conflicts = conflicts
        listed = "; ".join(f"{rid} (held {holding} on this pair, similarity {sim:.2f})"
                           for rid, holding, sim in conflicts)
        ids = " ".join(f"--overrules {rid}" for rid, _, _ in conflicts)
        super().__init__(
            f"the new ruling contradicts active ruling(s) on a near-duplicate pair: {listed}. Overrule one or "
            f"the other: add it with {ids} (overrules=[...]) to replace them, or keep them and drop this ruling"
        )


class NothingScoredError(JudgeError):
    """No labelled pair has a verdict that can be scored: every one failed, was escalated or is missing.

    Attributes:
        failed: pairs whose comparison failed (their failures are recorded in the results).
        labelled: labelled pairs.
    """

    def __init__(self, message: str, *, failed: int, labelled: int) -> None:
        super().__init__(message)
        self.failed = failed
        self.labelled = labelled


class StoreError(JudgeError):
    """The SQL system of record failed."""


class SchemaVersionError(StoreError):
    """The database was written by a schema version this `judge` does not know."""

    def __init__(self, found: str | None, known: list[str], url: str) -> None:
        self.found = found
        self.known = known
        self.url = url
        super().__init__(
            f"database {url} has schema revision {found!r}, which this version of judge does not know "
            f"(known: {', '.join(known)}); it was probably written by a newer judge - upgrade judge, "
            "or point --db / JUDGE_DB at another database"
        )


class ConcurrentWriteError(StoreError):
    """A write kept losing races with other writers and gave up."""


class RetrievalIndexError(JudgeError):
    """The derived retrieval index cannot be used as it is."""


#: The former name of `RetrievalIndexError`, kept for code that catches it.
IndexError_ = RetrievalIndexError


class IndexStaleError(RetrievalIndexError):
    """The index was built from another rulebook version than the one in SQL."""

    def __init__(self, index_version: str | None, rulebook_version: str) -> None:
        self.index_version = index_version
        self.rulebook_version = rulebook_version
        super().__init__(
            f"retrieval index is stale: built from rulebook version {index_version!r}, the rulebook is at "
            f"{rulebook_version!r}; run `judge index rebuild` (or `judge index sync`)"
        )


class IndexMismatchError(RetrievalIndexError):
    """The index was built with another embedding model than the one configured."""

    def __init__(self, index_model: str | None, configured_model: str) -> None:
        self.index_model = index_model
        self.configured_model = configured_model
        super().__init__(
            f"retrieval index was built with embedding model {index_model!r} but {configured_model!r} is "
            "configured; run `judge index rebuild` to rebuild it with the configured model"
        )


class IndexSchemaError(RetrievalIndexError):
    """The index was written with another index layout (schema version) than this judge uses."""

    def __init__(self, found: object, expected: int) -> None:
        self.found = found
        self.expected = expected
        super().__init__(
            f"retrieval index has layout version {found!r}, this judge uses {expected}; "
            "run `judge index rebuild` to rebuild it"
        )


class EmbedderError(JudgeError):
    """The embedding model cannot be loaded or used."""


class BackendError(JudgeError):
    """A judge backend failed."""


class BackendUnavailableError(BackendError):
    """The endpoint kept failing (rate limits, server errors, timeouts) after every retry."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        self.status = status
        self.attempts = attempts
        super().__init__(f"{message} (after {attempts} attempt(s))")


class BackendReplyError(BackendError):
    """The endpoint answered with something that is not a usable completion."""

    def __init__(self, message: str, *, raw: str | None = None) -> None:
        self.raw = raw
        super().__init__(message)


class StructuredOutputError(BackendError):
    """The model's structured reply did not validate within the allowed re-asks."""

    def __init__(self, message: str, *, raw: str | None, attempts: int) -> None:
        self.raw = raw
        self.attempts = attempts
        super().__init__(f"{message} (after {attempts} attempt(s))")


def first_validation_error(exc: ValidationError, default: str) -> tuple[str, str]:
    """The first error of a pydantic validation: (dotted field path, or ``default`` for the whole document;
    message)."""
    err = exc.errors()[0]
    return ".".join(str(part) for part in err["loc"]) or default, str(err["msg"])
