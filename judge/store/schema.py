"""The SQL tables of the system of record, and the one place rows turn into rules and back.

The rulebook is two append-only tables (Alembic's ``alembic_version`` tracks the schema revision):

* ``rule_versions`` - one row per version of a rule, primary key ``(rule_id, version)``;
* ``changes`` - the change log, one row per rule version, ordered by ``seq``. Each change extends the
  rulebook's hash chain; ``previous_rulebook_version`` is UNIQUE, so two writers that extend the same head
  cannot both commit (the optimistic-concurrency guard, see `judge.store.repository`).

Beside them: ``judgments`` (every verdict, the audit trail and cache), the test-case tables, and the shared
work queue of ``judge run --shared`` (``work_batches`` and ``work_claims``, see `judge.store.claims`).

Everything here is portable SQL (JSON, timezone-aware timestamps, plain strings for enums), so the same
schema runs on SQLite and PostgreSQL. The tables are frozen in ``migrations/versions``; change them only
together with a new migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from judge.rules.model import Authority, Change, ChangeKind, Check, Layer, Rule, RuleStatus, RulingCase

__all__ = [
    "CASES",
    "CASE_ENTRIES",
    "CASE_REVIEWS",
    "CASE_VECTORS",
    "CHANGES",
    "RULE_VERSIONS",
    "Base",
    "ChangeRow",
    "CheckAnswerRow",
    "RuleVersionRow",
    "WorkBatchRow",
    "WorkClaimRow",
    "change_from_row",
    "rule_from_row",
    "rule_values",
]

#: Longest rule id the model allows is ``constitution/`` + 200 characters.
ID_LEN = 255
HASH_LEN = 64
VERSION_LEN = 32

# Named constraints keep migrations reproducible across dialects.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RuleVersionRow(Base):
    """One version of one rule. Rows are only ever inserted."""

    __tablename__ = "rule_versions"
    __table_args__ = (
        # Leading on layer serves `WHERE layer = ?` and keyset pagination by rule id within a layer.
        Index("ix_rule_versions_layer", "layer", "rule_id", "version"),
    )

    rule_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    layer: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    authority: Mapped[str | None] = mapped_column(String(16))
    parent: Mapped[str | None] = mapped_column(String(ID_LEN))
    specificity: Mapped[int] = mapped_column(Integer)
    tags: Mapped[list[str]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    case: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    author: Mapped[str | None] = mapped_column(Text)


class ChangeRow(Base):
    """One entry of the append-only change log; ``seq`` orders the hash chain."""

    __tablename__ = "changes"
    __table_args__ = (
        UniqueConstraint("previous_rulebook_version"),
        UniqueConstraint("rule_id", "version"),
        ForeignKeyConstraint(["rule_id", "version"], ["rule_versions.rule_id", "rule_versions.version"]),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(String(ID_LEN))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rulebook_version: Mapped[str] = mapped_column(String(VERSION_LEN))
    previous_rulebook_version: Mapped[str] = mapped_column(String(VERSION_LEN))


#: The Core tables, for bulk inserts and column-row reads that skip the ORM's per-object bookkeeping.
RULE_VERSIONS: Table = RuleVersionRow.__table__  # type: ignore[assignment]
CHANGES: Table = ChangeRow.__table__  # type: ignore[assignment]


def _utc(value: datetime) -> datetime:
    """SQLite drops the zone (we always write UTC); PostgreSQL returns the session's zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rule_values(rule: Rule, content_hash: str | None = None) -> dict[str, Any]:
    """The column values storing this version of ``rule`` (its version, time and author as given).

    Plain dicts, not ORM objects: batches are written with one executemany, which is many times faster.
    """
    return {
        "rule_id": rule.id,
        "version": rule.version,
        "layer": rule.layer.value,
        "title": rule.title,
        "text": rule.text,
        "authority": rule.authority.value if rule.authority is not None else None,
        "parent": rule.parent,
        "specificity": rule.specificity,
        "tags": list(rule.tags),
        "source": rule.source,
        "status": rule.status.value,
        "case": rule.case.model_dump(mode="json") if rule.case is not None else None,
        "checks": [c.model_dump(mode="json") for c in rule.checks] or None,
        "content_hash": content_hash or rule.content_hash(),
        "created_at": _utc(rule.created_at),
        "author": rule.author,
    }


def rule_from_row(row: RuleVersionRow | Row[Any]) -> Rule:
    """The `Rule` a row stores (validated again, so a corrupt row fails loudly).

    Takes an ORM row or a Core row of ``RULE_VERSIONS`` columns (the fast path for streaming reads).
    """
    return Rule(
        id=row.rule_id,
        layer=Layer(row.layer),
        title=row.title,
        text=row.text,
        authority=Authority(row.authority) if row.authority is not None else None,
        parent=row.parent,
        specificity=row.specificity,
        tags=tuple(row.tags or ()),
        source=row.source,
        status=RuleStatus(row.status),
        case=RulingCase.model_validate(row.case) if row.case is not None else None,
        checks=tuple(Check.model_validate(c) for c in row.checks or ()),
        version=row.version,
        created_at=_utc(row.created_at),
        author=row.author,
    )


def change_from_row(row: ChangeRow | Row[Any]) -> Change:
    """The `Change` a change-log row stores."""
    return Change(
        seq=row.seq,
        rule_id=row.rule_id,
        version=row.version,
        kind=ChangeKind(row.kind),
        reason=row.reason,
        author=row.author,
        at=_utc(row.at),
        rulebook_version=row.rulebook_version,
        previous_rulebook_version=row.previous_rulebook_version,
    )


class JudgmentRow(Base):
    """One verdict (or recorded failure), kept forever: the audit trail and the cache."""

    __tablename__ = "judgments"
    __table_args__ = (
        Index("ix_judgments_cache_key", "cache_key", "id"),
        Index("ix_judgments_rulebook_version", "rulebook_version"),
        Index("ix_judgments_pair_id", "pair_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cache_key: Mapped[str] = mapped_column(String(HASH_LEN))
    pair_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    rulebook_version: Mapped[str | None] = mapped_column(String(VERSION_LEN))
    backend: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(255))
    template_version: Mapped[str] = mapped_column(String(32))
    winner: Mapped[str | None] = mapped_column(String(8))
    failure_stage: Mapped[str | None] = mapped_column(String(16))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The pair judged (prompt, both responses with processes) and the rule ids it was kept from seeing: a
    # ruling or a re-run can be made from the stored judgment alone. NULL on rows written before 0004.
    pair: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    exclude: Mapped[list[str] | None] = mapped_column(JSON)


class JudgmentRequestRow(Base):
    """Which judgment a request resolved to, kept forever: the request key (`judge.verdicts.request_key`: the
    pair, the rulebook version, the retrieval settings and embedder, the judge configuration) and the cache key
    its retrieval gave. A repeated request finds its stored verdict here without retrieving (since 0010)."""

    __tablename__ = "judgment_requests"
    __table_args__ = (Index("ix_judgment_requests_request_key", "request_key", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_key: Mapped[str] = mapped_column(String(HASH_LEN))
    cache_key: Mapped[str] = mapped_column(String(HASH_LEN))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CheckAnswerRow(Base):
    """One rule check asked of one response (or its recorded failure), kept forever: the audit trail and the
    per-check cache. Keyed by `judge.judging.checks.check_cache_key` (endpoint, model, template version and
    the exact messages: instruction, prompt, response or process, question)."""

    __tablename__ = "check_answers"
    __table_args__ = (Index("ix_check_answers_cache_key", "cache_key", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cache_key: Mapped[str] = mapped_column(String(HASH_LEN))
    endpoint: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(255))
    template_version: Mapped[str] = mapped_column(String(32))
    p_yes: Mapped[float | None] = mapped_column(Float)
    failure: Mapped[str | None] = mapped_column(Text)
    # The first token's alternatives and the reply text, as the endpoint gave them.
    reply: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ----------------------------------------------------------------------------- test cases (judge.cases)
# A case row is written once (its id is its content hash); only its review status moves, and every move
# is also appended to ``test_case_reviews`` in the same transaction, so the row's status is always the
# log's latest entry (stored, not derived, so filtering and coverage need no window query).


class TestCaseRow(Base):
    """One test case (`judge.cases.model.TestCase`); content columns are never updated."""

    __test__ = False  # not a pytest test class
    __tablename__ = "test_cases"
    __table_args__ = (Index("ix_test_cases_status", "status", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    prompt_role: Mapped[str] = mapped_column(String(16))
    conversation: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    process: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expected: Mapped[str | None] = mapped_column(Text)
    reference_answers: Mapped[list[str]] = mapped_column(JSON)
    provenance: Mapped[str] = mapped_column(Text)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str | None] = mapped_column(Text)
    review_method: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TestCaseEntryRow(Base):
    """Which spec entries a case tests (validated against the rulebook when the case is added)."""

    __test__ = False
    __tablename__ = "test_case_entries"
    __table_args__ = (
        ForeignKeyConstraint(["case_id"], ["test_cases.id"]),
        Index("ix_test_case_entries_entry_id", "entry_id", "case_id"),
    )

    case_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)


class TestCaseReviewRow(Base):
    """Append-only log of review status: one row per status a case was given (its creation included)."""

    __test__ = False
    __tablename__ = "test_case_reviews"
    __table_args__ = (
        ForeignKeyConstraint(["case_id"], ["test_cases.id"]),
        Index("ix_test_case_reviews_case_id", "case_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str | None] = mapped_column(Text)
    review_method: Mapped[str | None] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)


class TestCaseVectorRow(Base):
    """A case's embedding under one model (derived data: float32 bytes, recomputable at any time)."""

    __test__ = False
    __tablename__ = "test_case_vectors"
    __table_args__ = (
        ForeignKeyConstraint(["case_id"], ["test_cases.id"]),
        Index("ix_test_case_vectors_model", "model", "case_id"),
    )

    case_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(255), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


#: The case tables as Core tables, for the case store's bulk writes and reads and for retrieval's exemplars.
CASES: Table = TestCaseRow.__table__  # type: ignore[assignment]
CASE_ENTRIES: Table = TestCaseEntryRow.__table__  # type: ignore[assignment]
CASE_REVIEWS: Table = TestCaseReviewRow.__table__  # type: ignore[assignment]
CASE_VECTORS: Table = TestCaseVectorRow.__table__  # type: ignore[assignment]


# ----------------------------------------------------------------------------- shared batches (judge.store.claims)
# One row per pair of a batch judged by several workers. A claim is taken with a conditional UPDATE whose
# row count says who won; ``result`` is written once, in the same statement that sets ``done_at``.


class WorkBatchRow(Base):
    """A batch that several `judge run --shared` workers divide: its pairs and judge, as a fingerprint."""

    __tablename__ = "work_batches"

    batch_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(HASH_LEN))
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkClaimRow(Base):
    """One pair of a shared batch: who holds it until when, and its verdict once done."""

    __tablename__ = "work_claims"
    __table_args__ = (
        ForeignKeyConstraint(["batch_id"], ["work_batches.batch_id"]),
        UniqueConstraint("batch_id", "seq"),
        # The open pairs of a batch in input order: what a worker looks through for the next claim.
        Index("ix_work_claims_open", "batch_id", "done_at", "seq"),
    )

    batch_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    #: How many times the pair was claimed: more than 1 means a lease expired and another worker took over.
    claims: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cache_key: Mapped[str | None] = mapped_column(String(HASH_LEN))
    failure_stage: Mapped[str | None] = mapped_column(String(16))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
