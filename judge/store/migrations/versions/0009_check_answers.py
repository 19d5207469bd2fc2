"""Check answers: every rule check asked of one response (audit), looked up by cache key.

Revision ID: 0009_check_answers
Revises: 0008_case_review_method
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_check_answers"
down_revision: str | None = "0008_case_review_method"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "check_answers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("template_version", sa.String(32), nullable=False),
        sa.Column("p_yes", sa.Float(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("reply", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_check_answers"),
    )
    op.create_index("ix_check_answers_cache_key", "check_answers", ["cache_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_check_answers_cache_key", table_name="check_answers")
    op.drop_table("check_answers")
