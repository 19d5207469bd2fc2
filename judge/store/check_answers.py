"""The check-answer store: every rule check asked of one response is kept (audit), and a successful answer
answers later identical questions (the per-check cache).

Keyed by `judge.judging.checks.check_cache_key`: the endpoint, the model, the checks template version and
the exact messages (instruction, prompt, response or process, question). A re-run, or the same response
judged against another one, asks only the checks that are not stored yet. A reply that was no answer is
recorded with its reason but never returned as an answer: the next run asks again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, func, insert, select

from judge.errors import StoreError
from judge.store.schema import CheckAnswerRow
from judge.verdicts import CheckRecord

__all__ = ["CheckAnswerStore"]

#: Keys per lookup query (well below SQLite's bound-parameter limit).
_CHUNK = 400


class CheckAnswerStore:
    """Append-only check-answer storage on the rulebook's database.

    Args:
        engine: the (migrated) engine of the system of record.
    """

    def __init__(self, engine: Engine, *, write_attempts: int = 4, write_wait_s: float = 0.5) -> None:
        self.engine = engine
        self.write_attempts = write_attempts
        self.write_wait_s = write_wait_s

    def get_many(self, keys: Iterable[str]) -> dict[str, float]:
        """P(yes) of the latest successful answer for each key that has one."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, tuple[int, float]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start:start + _CHUNK]
                query = select(CheckAnswerRow.id, CheckAnswerRow.cache_key, CheckAnswerRow.p_yes).where(
                    CheckAnswerRow.cache_key.in_(chunk), CheckAnswerRow.p_yes.is_not(None))
                for row_id, key, p_yes in conn.execute(query):
                    if p_yes is not None and (key not in found or row_id > found[key][0]):
                        found[key] = (row_id, float(p_yes))
        return {k: p for k, (_, p) in found.items()}

    def put_many(self, answers: Sequence[CheckRecord]) -> None:
        """Record answers and failures (one transaction; a locked database is retried like verdicts are, see
        `judge.store.judgments.JudgmentStore.put`, then the `StoreError` is raised and nothing is half-written)."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        if not answers:
            return
        for attempt in Retrying(stop=stop_after_attempt(max(1, self.write_attempts)), reraise=True,
                                wait=wait_exponential(multiplier=self.write_wait_s, max=8.0),
                                retry=retry_if_exception_type(StoreError)):
            with attempt:
                self._insert(answers)

    def _insert(self, answers: Sequence[CheckRecord]) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(insert(CheckAnswerRow), [
                {"cache_key": a.cache_key, "endpoint": a.endpoint[:255], "model": a.model[:255],
                 "template_version": a.template_version[:32], "p_yes": a.p_yes, "failure": a.failure,
                 "reply": a.reply, "created_at": now} for a in answers])

    def count(self) -> int:
        """How many answers (and failures) are recorded."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(CheckAnswerRow)).scalar_one())
