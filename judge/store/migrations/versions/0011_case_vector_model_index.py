"""Test case vectors indexed by embedding model: retrieval counts a model's vectors on every search.

Revision ID: 0011_case_vector_model_index
Revises: 0010_judgment_requests
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_case_vector_model_index"
down_revision: str | None = "0010_judgment_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_test_case_vectors_model", "test_case_vectors", ["model", "case_id"])


def downgrade() -> None:
    op.drop_index("ix_test_case_vectors_model", table_name="test_case_vectors")
