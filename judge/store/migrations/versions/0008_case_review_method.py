"""How each test case was reviewed: by a person, by an automated check, or taken from the source.

Existing reviewed cases are backfilled: the Model Spec's own examples (reviewer ``model-spec``) as
``source``, every other reviewed case as ``person``.

Revision ID: 0008_case_review_method
Revises: 0007_rule_fts
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_case_review_method"
down_revision: str | None = "0007_rule_fts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = ("UPDATE {table} SET review_method = CASE WHEN reviewer = 'model-spec' THEN 'source' "
             "ELSE 'person' END WHERE reviewer IS NOT NULL")


def upgrade() -> None:
    for table in ("test_cases", "test_case_reviews"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("review_method", sa.String(16), nullable=True))
        op.execute(_BACKFILL.format(table=table))


def downgrade() -> None:
    for table in ("test_case_reviews", "test_cases"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("review_method")
