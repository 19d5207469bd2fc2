"""Stare decisis on real data: does a ruling made from a judged failure bind the judge on a near-identical pair,
and leave unrelated pairs alone?

1. From a results file of the judge on labelled Model Spec gold pairs (run with --holdout-same-prompt), take
   N pairs it got wrong and M other pairs (different prompts).
2. Near-identical pair: the same responses presented swapped, whitespace normalised, and the prompt lightly
   reworded ("Quick question: " in front), so it is not the same text and must be matched by embedding.
3. Judge the near-identical and the unrelated pairs; then add, for each wrong pair, the ruling a reviewer would
   add ("every failure found becomes a case": the pair, the label as holding); judge them all again.
   The seeded rulings decided on the same prompt stay held out throughout, so only the new ruling can bind.
4. Report how many near-identical verdicts now follow the ruling (and how many a precedent bound, with the
   similarities), and how many unrelated verdicts and retrieved rule sets are unchanged (none may be bound).

    python benchmarks/stare_decisis.py --pairs data/model_spec/pairs.jsonl \\
        --results evals/results/modelspec-rules.jsonl --n 8 --m 8
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judge.records import read_pairs, read_results  # noqa: E402
from judge.rulebook import Rulebook  # noqa: E402
from judge.rules.model import Pair, Response  # noqa: E402
from judge.runs import build_judge  # noqa: E402
from judge.settings import Settings  # noqa: E402

REWORD = "Quick question: "


def near_identical(pair: Pair) -> Pair:
    """The same pair presented swapped, whitespace normalised, the prompt lightly reworded."""
    def norm(r: Response) -> Response:
        return r.model_copy(update={"text": " ".join(r.text.split())})

    return Pair(prompt=f"{REWORD}{pair.prompt}", response_a=norm(pair.response_b),
                response_b=norm(pair.response_a), id=f"{pair.id}-swapped")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--n", type=int, default=8, help="wrongly judged pairs to make rulings from")
    ap.add_argument("--m", type=int, default=8, help="unrelated pairs to check")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    records = {r.pair.id: r for r in read_pairs(args.pairs)}
    verdicts = {v.pair_id: v for v in read_results(args.results) if v.failure is None}
    wrong = [pid for pid, v in verdicts.items() if pid in records and records[pid].label in ("A", "B")
             and v.winner != records[pid].label]
    random.Random(args.seed).shuffle(wrong)
    chosen = wrong[: args.n]
    prompts = {records[p].pair.prompt for p in chosen}
    others = [pid for pid in verdicts if pid in records and records[pid].pair.prompt not in prompts]
    random.Random(args.seed + 1).shuffle(others)
    unrelated = others[: args.m]
    print(f"{len(wrong)} wrongly judged pairs in {args.results}; using {len(chosen)}, and {len(unrelated)} "
          "unrelated pairs", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(db_url=f"sqlite:///{tmp}/rb.db", index_path=Path(tmp) / "index")
        rb = Rulebook.open(settings=settings)
        rb.load(ROOT / "rulebook")
        seeded = rb.rulings_by_prompt()
        judge = build_judge(args.backend, settings=settings, explain=False, use_cache=False)

        def exclude(pair: Pair) -> list[str]:  # the seeded rulings on the (original) prompt
            return seeded.get(" ".join(pair.prompt.removeprefix(REWORD).split()), [])

        def judge_all(pairs: list[Pair]) -> dict[str, tuple[str | None, frozenset[str], float | None]]:
            out = {}
            for p in pairs:
                v = judge.compare(p, exclude=exclude(p))
                bound = v.precedent.similarity if v.precedent is not None else None
                out[p.id or ""] = (v.winner, frozenset(r["id"] for r in v.retrieved), bound)
            return out

        start = time.perf_counter()
        try:
            targets = [near_identical(records[p].pair) for p in chosen]
            unrelated_pairs = [records[p].pair for p in unrelated]
            before = judge_all(targets + unrelated_pairs)
            new_ids = {}
            for pid in chosen:
                rec = records[pid]
                ruling = rb.add_ruling(prompt=rec.pair.prompt, response_a=rec.pair.response_a,
                                       response_b=rec.pair.response_b, holding=rec.label or "A",
                                       rationale=f"Reviewed: response {rec.label} is the better answer here.",
                                       source="benchmark:stare-decisis", author="reviewer")
                new_ids[pid] = ruling.id
            judge.rulebook = rb  # the rulebook that holds the new rulings (its index is synced by add_ruling)
            after = judge_all(targets + unrelated_pairs)
        finally:
            judge.backend.close()
        elapsed = time.perf_counter() - start

    follows_before = follows_after = retrieved_new = 0
    for pid, target in zip(chosen, targets, strict=True):
        expected = {"A": "B", "B": "A"}[records[pid].label or "A"]  # swapped presentation
        follows_before += before[target.id or ""][0] == expected
        follows_after += after[target.id or ""][0] == expected
        retrieved_new += new_ids[pid] in after[target.id or ""][1]
    same_verdict = sum(before[p][0] == after[p][0] for p in unrelated)
    same_rules = sum(before[p][1] == after[p][1] for p in unrelated)
    bound = [after[t.id or ""][2] for t in targets if after[t.id or ""][2] is not None]
    wrongly_bound = sum(after[p][2] is not None for p in unrelated)
    print(f"\nnear-identical pairs: the new ruling was retrieved for {retrieved_new}/{len(chosen)}; verdict follows "
          f"the ruling's holding {follows_before}/{len(chosen)} before -> {follows_after}/{len(chosen)} after; "
          f"bound by precedent {len(bound)}/{len(chosen)} (similarity {min(bound, default=0):.3f}-"
          f"{max(bound, default=0):.3f})")
    print(f"unrelated pairs: retrieved rules unchanged {same_rules}/{len(unrelated)}, verdict unchanged "
          f"{same_verdict}/{len(unrelated)}, bound by a precedent {wrongly_bound}/{len(unrelated)}")
    print(f"{2 * (len(chosen) + len(unrelated))} comparisons in {elapsed:.0f} s (backend {args.backend})")


if __name__ == "__main__":
    main()
