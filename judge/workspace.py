"""The `Workspace`: the one owner of the judge's database.

Opened once from the settings (the database is created and migrated if needed), it hands out every store
on that database: the rulebook, the judgment store (audit + cache), the test-case store and shared-batch
claims. Nothing else opens the database or reaches into its SQLAlchemy engine.

```python
from judge.workspace import Workspace

with Workspace.open() as ws:               # JUDGE_* settings, then defaults
    rulebook = ws.rulebook()
    judgments = ws.judgments()
    report = rulebook.impact(since_version)
```
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from judge.settings import Settings
from judge.store import RulebookStore, open_database
from judge.store.check_answers import CheckAnswerStore
from judge.store.claims import DEFAULT_LEASE_S, WorkClaims
from judge.store.judgments import JudgmentStore

if TYPE_CHECKING:
    from judge.cases.store import CaseStore
    from judge.retrieval.embedder import Embedder
    from judge.retrieval.fusion import RetrievalConfig
    from judge.rulebook import Rulebook

__all__ = ["Workspace"]


class Workspace:
    """The judge's database and the stores on it.

    Args:
        settings: where the database and the retrieval index live.
        engine: the (migrated) engine of the database; use `Workspace.open` to make one.
    """

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self._engine = engine
        self._rules = RulebookStore(engine)
        self._judgments = JudgmentStore(engine)

    @classmethod
    def open(cls, settings: Settings | None = None, *, url: str | None = None, create: bool = True) -> Workspace:
        """Open (creating and migrating if needed) the database at ``url`` or the configured one.

        ``create=False`` refuses a SQLite file that does not exist (`judge.errors.StoreError`) rather than
        creating an empty one: for callers that only read."""
        settings = settings or Settings.from_env()
        return cls(settings, open_database(url or settings.resolved_db_url, create=create))

    @property
    def where(self) -> str:
        """The database URL, password hidden (for messages)."""
        return self._engine.url.render_as_string(hide_password=True)

    def rules(self) -> RulebookStore:
        """The SQL system of record of the rulebook."""
        return self._rules

    def judgments(self) -> JudgmentStore:
        """Every verdict recorded (the audit trail), and the cache identical requests are answered from."""
        return self._judgments

    def check_answers(self) -> CheckAnswerStore:
        """Every rule-check answer asked (the audit trail), and the cache a check is answered from."""
        return CheckAnswerStore(self._engine)

    # The rulebook's retrieval side and the test cases (numpy, the index, the case law) are imported when first
    # asked for: a command that only reads the store (`judge rulebook list`) never loads them.
    def rulebook(self, *, with_index: bool = True, embedder: Embedder | None = None, auto_sync: bool = True,
                 conflict_threshold: float | None = None, retrieval: RetrievalConfig | None = None) -> Rulebook:
        """The rulebook, with its retrieval index (``with_index``, opened on first use) and retrieval
        configuration from the settings (``retrieval`` overrides the latter)."""
        from judge.rulebook import Rulebook

        return Rulebook.on_store(self._rules, self.settings, with_index=with_index, embedder=embedder,
                                 auto_sync=auto_sync, conflict_threshold=conflict_threshold, retrieval=retrieval,
                                 judgments=self._judgments)

    def embedder(self) -> Embedder:
        """The embedder the settings name (loaded on first use of the model)."""
        from judge.retrieval.embedder import embedder_for

        return embedder_for(self.settings)

    def cases(self, embedder: Embedder | None = None, *, entry_ids: Iterable[str] | None = None) -> CaseStore:
        """The test cases per spec entry (see `judge.cases.store.CaseStore`)."""
        from judge.cases.store import CaseStore

        return CaseStore(self._engine, embedder, entry_ids=entry_ids)

    def claims(self, batch_id: str, *, worker_id: str | None = None,
               lease_s: float = DEFAULT_LEASE_S) -> WorkClaims:
        """This worker's handle on a shared batch (see `judge.store.claims.WorkClaims`)."""
        return WorkClaims(self._engine, batch_id, worker_id=worker_id, lease_s=lease_s)

    def close(self) -> None:
        """Close the database's connections (the stores handed out must not be used afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
