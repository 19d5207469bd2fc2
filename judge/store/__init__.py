"""The SQL system of record: versioned rules and the hash-chained change log.

```python
from judge.store import RulebookStore, migrate, open_engine

engine = open_engine("sqlite:///rulebook.db")
migrate(engine)
store = RulebookStore(engine)
store.commit([PendingChange(rule, ChangeKind.ADD, "initial")])
```
"""

from judge.store.engine import (
    alembic_config,
    known_revisions,
    migrate,
    open_database,
    open_engine,
    schema_revision,
)
from judge.store.plan import PendingChange, PlannedChange, plan_batch
from judge.store.repository import RulebookStore, SyncReport

__all__ = [
    "PendingChange",
    "PlannedChange",
    "RulebookStore",
    "SyncReport",
    "alembic_config",
    "known_revisions",
    "migrate",
    "open_database",
    "open_engine",
    "plan_batch",
    "schema_revision",
]
