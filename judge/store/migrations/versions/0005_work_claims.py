"""Shared batches: the work queue that lets several `judge run --shared` workers divide one batch.

Revision ID: 0005_work_claims
Revises: 0004_judgment_pairs
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_work_claims"
down_revision: str | None = "0004_judgment_pairs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "work_batches",
        sa.Column("batch_id", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_work_batches"),
    )
    op.create_table(
        "work_claims",
        sa.Column("batch_id", sa.String(255), nullable=False),
        sa.Column("pair_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cache_key", sa.String(64), nullable=True),
        sa.Column("failure_stage", sa.String(16), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("batch_id", "pair_id", name="pk_work_claims"),
        sa.ForeignKeyConstraint(["batch_id"], ["work_batches.batch_id"],
                                name="fk_work_claims_batch_id_work_batches"),
        sa.UniqueConstraint("batch_id", "seq", name="uq_work_claims_batch_id_seq"),
    )
    op.create_index("ix_work_claims_open", "work_claims", ["batch_id", "done_at", "seq"])


def downgrade() -> None:
    op.drop_index("ix_work_claims_open", table_name="work_claims")
    op.drop_table("work_claims")
    op.drop_table("work_batches")
