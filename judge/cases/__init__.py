"""Test cases per spec entry: the model, the store, near-duplicate merging, contamination, seeding.

```python
from judge.cases import Thresholds, seed_from_dir

store = workspace.cases(embedder)                      # entry ids read from the rulebook
store.add(seed_from_dir("data/model_spec", store.entry_ids()).cases)
store.review({"case-...": ("accepted", "alice")})
for row in store.coverage(Thresholds(cos=0.92, ngram=0.6)):
    print(row.entry_id, row.distinct_accepted)
```

Names are imported lazily, so importing one module (e.g. `judge.cases.coverage`) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AddReport",
    "BenchmarkPrompt",
    "CaseStatus",
    "CaseStore",
    "ContaminationHit",
    "EntryCoverage",
    "ReviewEvent",
    "ReviewReport",
    "SeedResult",
    "TestCase",
    "Thresholds",
    "Turn",
    "UnmappedSection",
    "build_seed_cases",
    "find_contamination",
    "near_duplicate_groups",
    "read_benchmark",
    "seed_from_dir",
]

_WHERE = {
    "AddReport": "store", "CaseStore": "store", "ReviewEvent": "store", "ReviewReport": "store",
    "BenchmarkPrompt": "contamination", "ContaminationHit": "contamination", "find_contamination": "contamination",
    "read_benchmark": "contamination",
    "CaseStatus": "model", "TestCase": "model", "Turn": "model",
    "EntryCoverage": "coverage",
    "Thresholds": "distinct", "near_duplicate_groups": "distinct",
    "SeedResult": "seed", "UnmappedSection": "seed", "build_seed_cases": "seed", "seed_from_dir": "seed",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'judge.cases' has no attribute {name!r}")
    return getattr(importlib.import_module(f"judge.cases.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
