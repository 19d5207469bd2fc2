"""Judgments: every verdict ever produced (audit), looked up by cache key.

Revision ID: 0002_judgments
Revises: 0001_initial
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_judgments"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "judgments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("pair_id", sa.String(255), nullable=True),
        sa.Column("rulebook_version", sa.String(32), nullable=True),
        sa.Column("backend", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("template_version", sa.String(32), nullable=False),
        sa.Column("winner", sa.String(8), nullable=True),
        sa.Column("failure_stage", sa.String(16), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_judgments"),
    )
    op.create_index("ix_judgments_cache_key", "judgments", ["cache_key", "id"])
    op.create_index("ix_judgments_rulebook_version", "judgments", ["rulebook_version"])


def downgrade() -> None:
    op.drop_index("ix_judgments_rulebook_version", table_name="judgments")
    op.drop_index("ix_judgments_cache_key", table_name="judgments")
    op.drop_table("judgments")
