"""Which pairs does a ruling bind? Precision and recall of the same-facts match, no model needed.

With the default rulebook (Model Spec rulings) and the real MiniLM embedder:

* recall - for N random active rulings, its pair reworded ("Quick question: " before the prompt), the responses
  swapped and whitespace-normalised: is it bound, by its own ruling (or by another with the same holding for
  these responses), with the holding mapped to the swapped slots?
* false binding - M pairs of a labelled set that shares no prompt with the rulebook (e.g. PandaLM): how many
  would a ruling bind?
* false binding on the rulebook's own pairs (``--gold``) - every pair of the Model Spec gold set, leave-one-out
  (the rulings decided on its own prompt held out, as ``judge run --holdout-same-prompt`` does): how many are
  bound by a ruling decided on another prompt (target 0), and how many of those against the pair's label?

    python benchmarks/precedent_matching.py --unrelated data/dev/pandalm_test.jsonl --n 60 --m 100 \
        --gold data/model_spec/pairs.jsonl
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judge.records import read_pairs  # noqa: E402
from judge.rulebook import Rulebook  # noqa: E402
from judge.rules.conflicts import in_slots  # noqa: E402
from judge.rules.model import Layer, Pair  # noqa: E402
from judge.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unrelated", type=Path, required=True, help="labelled pairs JSONL not from the rulebook")
    ap.add_argument("--n", type=int, default=60, help="rulings to reword and re-present")
    ap.add_argument("--m", type=int, default=100, help="unrelated pairs")
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gold", type=Path, help="the rulebook's own labelled pairs, judged leave-one-out")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rb = Rulebook.open(settings=Settings.from_env(db_url=f"sqlite:///{tmp}/rb.db", index_path=Path(tmp) / "ix"))
        rb.load(ROOT / "rulebook")
        rulings = [r for r in rb.rules(Layer.RULING, active_only=True) if r.case is not None]
        random.Random(args.seed).shuffle(rulings)
        own = sibling = wrong_holding = unbound = 0
        sims: list[float] = []
        for rule in rulings[: args.n]:
            case = rule.case
            assert case is not None
            pair = Pair(prompt=f"Quick question: {case.prompt}",
                        response_a=" ".join(case.response_b.text.split()),
                        response_b=" ".join(case.response_a.text.split()))
            found = rb.precedents(pair, threshold=args.threshold)
            if not found:
                unbound += 1
                continue
            best = found[0]
            if best.holding != in_slots(case.holding, True):
                wrong_holding += 1
                print(f"  wrong holding: {rule.id} bound by {best.ruling_id} ({best.similarity})")
            elif best.ruling_id == rule.id:
                own += 1
                sims.append(best.similarity)
            else:
                sibling += 1
                print(f"  {rule.id} bound by {best.ruling_id} (same holding, similarity {best.similarity})")
        records = list(islice(read_pairs(args.unrelated), args.m))
        false_bound = sum(bool(rb.precedents(r.pair, threshold=args.threshold)) for r in records)
        gold: list[str] = []
        if args.gold is not None:
            by_prompt = rb.rulings_by_prompt()
            gold_records = list(read_pairs(args.gold))
            other_prompt = against_label = 0
            for record in gold_records:
                held_out = by_prompt.get(" ".join(record.pair.prompt.split()), [])
                found = rb.precedents(record.pair, exclude=held_out, threshold=args.threshold)
                if found:
                    other_prompt += 1
                    against_label += found[0].holding != record.label
                    print(f"  {record.pair.id} bound by {found[0].ruling_id} ({found[0].similarity})")
            gold.append(f"{len(gold_records)} gold pairs ({args.gold.name}), leave-one-out: bound by a ruling on "
                        f"another prompt {other_prompt} (against the label {against_label})")
    n = min(args.n, len(rulings))
    print(f"threshold {args.threshold}; {n} reworded, swapped rulings: bound by their own ruling {own}, by another "
          f"ruling with the same holding {sibling}, with a wrong holding {wrong_holding}, not bound {unbound}; "
          f"own-ruling similarity {min(sims, default=0):.3f}-{max(sims, default=0):.3f}")
    print(f"{len(records)} unrelated pairs ({args.unrelated.name}): bound by a ruling {false_bound}")
    for line in gold:
        print(line)


if __name__ == "__main__":
    main()
