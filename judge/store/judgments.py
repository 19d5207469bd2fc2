"""The judgment store: every verdict is kept (audit), and a successful one answers later identical
requests (cache). Keyed by `judge.judging.engine.cache_key`, which covers the pair, the rulebook version,
the rules shown, the backend, model, template and parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import Engine, func, insert, select

from judge.judging.verdict import Verdict
from judge.store.schema import JudgmentRow

__all__ = ["JudgmentStore"]

_TABLE = JudgmentRow.__table__


class JudgmentStore:
    """Append-only verdict storage on the rulebook's database.

    Args:
        engine: the (migrated) engine of the system of record.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, verdict: Verdict) -> None:
        """Record a verdict or failure (one transaction, one row)."""
        with self.engine.begin() as conn:
            conn.execute(insert(JudgmentRow).values(
                cache_key=verdict.cache_key, pair_id=verdict.pair_id, rulebook_version=verdict.rulebook_version,
                backend=verdict.config.backend, model=verdict.config.model,
                template_version=verdict.config.template_version, winner=verdict.winner,
                failure_stage=verdict.failure.stage if verdict.failure else None,
                result=verdict.model_dump(mode="json"), created_at=datetime.now(UTC)))

    def get(self, cache_key: str) -> Verdict | None:
        """The latest successful verdict with this cache key, if any."""
        query = (select(JudgmentRow.result).where(JudgmentRow.cache_key == cache_key,
                                                  JudgmentRow.failure_stage.is_(None))
                 .order_by(JudgmentRow.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return Verdict.model_validate(row[0]) if row else None

    def count(self) -> int:
        """How many judgments are recorded."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())

    def iter_all(self, *, batch_size: int = 500) -> Iterator[Verdict]:
        """Every recorded judgment, oldest first (streamed)."""
        last = 0
        while True:
            query = (select(JudgmentRow.id, JudgmentRow.result).where(JudgmentRow.id > last)
                     .order_by(JudgmentRow.id).limit(batch_size))
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield Verdict.model_validate(row[1])
            last = rows[-1][0]
