"""Judgments keep the pair they judged (and the rule ids excluded), so rulings and re-runs can use them.

Rows written before this revision keep NULL there: they predate stored pairs.

Revision ID: 0004_judgment_pairs
Revises: 0003_test_cases
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_judgment_pairs"
down_revision: str | None = "0003_test_cases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("judgments") as batch:
        batch.add_column(sa.Column("pair", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("exclude", sa.JSON(), nullable=True))
    op.create_index("ix_judgments_pair_id", "judgments", ["pair_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_judgments_pair_id", table_name="judgments")
    with op.batch_alter_table("judgments") as batch:
        batch.drop_column("exclude")
        batch.drop_column("pair")
