"""Initial schema: append-only rule versions and the hash-chained change log.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rule_versions",
        sa.Column("rule_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layer", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("authority", sa.String(16), nullable=True),
        sa.Column("parent", sa.String(255), nullable=True),
        sa.Column("specificity", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("case", sa.JSON(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("rule_id", "version", name="pk_rule_versions"),
    )
    op.create_index("ix_rule_versions_layer", "rule_versions", ["layer", "rule_id", "version"])
    op.create_table(
        "changes",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rulebook_version", sa.String(32), nullable=False),
        sa.Column("previous_rulebook_version", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_changes"),
        # The optimistic-concurrency guard: two writers extending the same head cannot both commit.
        sa.UniqueConstraint("previous_rulebook_version", name="uq_changes_previous_rulebook_version"),
        sa.UniqueConstraint("rule_id", "version", name="uq_changes_rule_id_version"),
        sa.ForeignKeyConstraint(
            ["rule_id", "version"], ["rule_versions.rule_id", "rule_versions.version"],
            name="fk_changes_rule_id_version_rule_versions",
        ),
    )


def downgrade() -> None:
    op.drop_table("changes")
    op.drop_index("ix_rule_versions_layer", table_name="rule_versions")
    op.drop_table("rule_versions")
