"""Lexical search: ``rule_fts``, the binding rules' searchable text (SQLite FTS5 / PostgreSQL tsvector + GIN).

Filled here from the current rule versions; `judge.store.lexical` keeps it in step with every write.

Revision ID: 0007_rule_fts
Revises: 0006_rule_checks
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_rule_fts"
down_revision: str | None = "0006_rule_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from sqlalchemy.orm import aliased

    from judge.store import lexical
    from judge.store.schema import RULE_VERSIONS, rule_from_row

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE rule_fts USING fts5(rule_id UNINDEXED, layer, body, "
                   "tokenize = 'porter unicode61 remove_diacritics 2')")
    else:
        op.execute("CREATE TABLE rule_fts (rule_id VARCHAR(255) NOT NULL, layer VARCHAR(16) NOT NULL, "
                   "body TEXT NOT NULL, tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED, "
                   "CONSTRAINT pk_rule_fts PRIMARY KEY (rule_id))")
        op.execute("CREATE INDEX ix_rule_fts_tsv ON rule_fts USING gin (tsv)")
        op.execute("CREATE INDEX ix_rule_fts_layer ON rule_fts (layer)")
    # The latest version of every rule (written through the same function the store uses afterwards).
    newer = aliased(RULE_VERSIONS)
    latest = sa.select(RULE_VERSIONS).where(~sa.exists().where(newer.c.rule_id == RULE_VERSIONS.c.rule_id,
                                                                  newer.c.version > RULE_VERSIONS.c.version))
    rules = [rule_from_row(row) for row in bind.execute(latest.order_by(RULE_VERSIONS.c.rule_id))]
    lexical.rebuild(bind, rules)


def downgrade() -> None:
    op.execute("DROP TABLE rule_fts")
