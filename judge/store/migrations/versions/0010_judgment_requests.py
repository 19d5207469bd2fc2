"""Judgment requests: the request key of a comparison and the cache key its retrieval gave.

Revision ID: 0010_judgment_requests
Revises: 0009_check_answers
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_judgment_requests"
down_revision: str | None = "0009_check_answers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "judgment_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_judgment_requests"),
    )
    op.create_index("ix_judgment_requests_request_key", "judgment_requests", ["request_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_judgment_requests_request_key", table_name="judgment_requests")
    op.drop_table("judgment_requests")
