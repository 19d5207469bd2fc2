"""Full-text rows keyed by layer: an FTS5 row id carries the rule's layer in its top bits.

A search among some layers is then a row id range the index restricts to, ranked without reading a stored
column (`judge.store.lexical`). SQLite's ``rule_fts`` is refilled from the current rule versions; PostgreSQL's
table has no row ids and is left as it is.

Revision ID: 0012_rule_fts_layer_rowids
Revises: 0011_case_vector_model_index
Create Date: 2026-12-06
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_rule_fts_layer_rowids"
down_revision: str | None = "0011_case_vector_model_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from sqlalchemy.orm import aliased

    from judge.store import lexical
    from judge.store.schema import RULE_VERSIONS, rule_from_row

    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # The latest version of every rule (written through the same function the store uses afterwards).
    newer = aliased(RULE_VERSIONS)
    latest = sa.select(RULE_VERSIONS).where(~sa.exists().where(newer.c.rule_id == RULE_VERSIONS.c.rule_id,
                                                                  newer.c.version > RULE_VERSIONS.c.version))
    lexical.rebuild(bind, (rule_from_row(row) for row in bind.execute(latest.order_by(RULE_VERSIONS.c.rule_id))))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # Row ids as 0007_rule_fts wrote them: a 63-bit hash of the rule id alone.
    rows = bind.execute(sa.text("SELECT rule_id, layer, body FROM rule_fts")).all()
    bind.execute(sa.text("DELETE FROM rule_fts"))
    if rows:
        bind.execute(sa.text("INSERT INTO rule_fts (rowid, rule_id, layer, body) "
                             "VALUES (:rowid, :rule_id, :layer, :body)"),
                     [{"rowid": int.from_bytes(hashlib.sha256(r.rule_id.encode("utf-8")).digest()[:8], "big") >> 1,
                       "rule_id": r.rule_id, "layer": r.layer, "body": r.body} for r in rows])
