"""Test cases per spec entry: cases, their entries, the append-only review log, cached embeddings.

Revision ID: 0003_test_cases
Revises: 0002_judgments
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_test_cases"
down_revision: str | None = "0002_judgments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "test_cases",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("prompt_role", sa.String(16), nullable=False),
        sa.Column("conversation", sa.JSON(), nullable=False),
        sa.Column("process", sa.JSON(), nullable=True),
        sa.Column("expected", sa.Text(), nullable=True),
        sa.Column("reference_answers", sa.JSON(), nullable=False),
        sa.Column("provenance", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_test_cases"),
    )
    op.create_index("ix_test_cases_status", "test_cases", ["status", "id"])
    op.create_table(
        "test_case_entries",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("entry_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "entry_id", name="pk_test_case_entries"),
        sa.ForeignKeyConstraint(["case_id"], ["test_cases.id"], name="fk_test_case_entries_case_id_test_cases"),
    )
    op.create_index("ix_test_case_entries_entry_id", "test_case_entries", ["entry_id", "case_id"])
    op.create_table(
        "test_case_reviews",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_test_case_reviews"),
        sa.ForeignKeyConstraint(["case_id"], ["test_cases.id"], name="fk_test_case_reviews_case_id_test_cases"),
    )
    op.create_index("ix_test_case_reviews_case_id", "test_case_reviews", ["case_id", "seq"])
    op.create_table(
        "test_case_vectors",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "model", name="pk_test_case_vectors"),
        sa.ForeignKeyConstraint(["case_id"], ["test_cases.id"], name="fk_test_case_vectors_case_id_test_cases"),
    )


def downgrade() -> None:
    op.drop_table("test_case_vectors")
    op.drop_index("ix_test_case_reviews_case_id", table_name="test_case_reviews")
    op.drop_table("test_case_reviews")
    op.drop_index("ix_test_case_entries_entry_id", table_name="test_case_entries")
    op.drop_table("test_case_entries")
    op.drop_index("ix_test_cases_status", table_name="test_cases")
    op.drop_table("test_cases")
