"""What the test cases' votes cost a retrieve: `Rulebook.retrieve` with and without `RetrievalConfig.cases`.

The default rulebook and its test cases (``cases/``) in a temporary SQLite store, embedded with the hash
embedder (384 dimensions; no model, so the figure is retrieval's own work, not embedding), then the first
``--queries`` Model Spec eval prompts retrieved with the votes off and on, alternating ``--rounds`` times in
one process; every query's embedding is made before timing. Prints ms per retrieve for each round.

Usage::

    python benchmarks/case_votes.py
    python benchmarks/case_votes.py --queries 200 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from judge.cases.files import read_case_files
from judge.cases.store import CaseStore
from judge.retrieval.fusion import RetrievalConfig
from judge.rulebook import Rulebook
from judge.rules.model import Pair
from judge.testing import hash_rulebook

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    prompts = [json.loads(line)["prompt"]
               for line in (ROOT / "data" / "model_spec" / "eval_prompts.jsonl").read_text().splitlines()
               if line.strip()][: args.queries]
    pairs = [Pair(prompt=prompt, response_a="", response_b="") for prompt in prompts]
    with tempfile.TemporaryDirectory(prefix="judge-cv-") as tmp:
        base = hash_rulebook(f"sqlite:///{tmp}/rules.db", ROOT / "rulebook", dim=384)
        assert base.index is not None
        added = CaseStore(base.store.engine, base.index.embedder).add(read_case_files(ROOT / "cases"))
        print(f"default rulebook, {len(added.added)} test cases, {len(pairs)} eval prompts, hash embedder")
        for round_ in range(1, args.rounds + 1):
            for name, config in (("votes off", RetrievalConfig(cases=False)), ("votes on", RetrievalConfig())):
                rulebook = Rulebook(base.store, base.index, retrieval=config)
                rulebook.retrieve(pairs[0])  # reads the small layers (and the cases) once
                for pair in pairs:
                    rulebook.retriever.embed([pair.query_text(), pair.prompt])
                started = time.perf_counter()
                for pair in pairs:
                    rulebook.retrieve(pair)
                elapsed = time.perf_counter() - started
                print(f"  round {round_}  {name:<9}  {1000 * elapsed / len(pairs):6.1f} ms per retrieve")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
