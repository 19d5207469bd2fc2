"""Judge quality on labelled pairs, several configurations in one run.

Configurations:
  (a) bare   - "which response is better", one order
  (b) bare2  - (a) in both orders, probabilities averaged
  (c) rules2 - rules retrieved (leave-one-out for Model Spec pairs), both orders
  (d) rules2+slot - (c) with the label-free slot-preference correction estimated over the batch

Prints accuracy (non-tie labels), position consistency, failure rate and seconds per comparison.

    python benchmarks/judge_quality.py --set model_spec --n 40 --backend local
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
import time
from pathlib import Path

from judge.backends.registry import make_backend
from judge.judging.engine import Judge, bare_config
from judge.judging.prompts import TEMPLATE_VERSION
from judge.judging.slot import correct_batch
from judge.records import read_pairs
from judge.rulebook import Rulebook
from judge.rules.model import Layer, slugify
from judge.settings import Settings
from judge.verdicts import JudgeConfig, Verdict

SETS = {"model_spec": "model_spec/pairs.jsonl", "pandalm": "dev/pandalm_test.jsonl",
        "hh": "dev/hh_rlhf_harmless_test.jsonl"}
EXAMPLE_RE = re.compile(r"-c\d+-r\d+r\d+$")


def leave_one_out(rulebook: Rulebook):
    """Rule ids a Model Spec gold pair must not retrieve: every ruling made from the same worked example."""
    rulings = [r.id for r in rulebook.rules(Layer.RULING)]

    def exclude(pair_id: str) -> list[str]:
        prefix = "ruling/" + slugify(EXAMPLE_RE.sub("", pair_id), max_len=200)
        return [r for r in rulings if r.startswith(prefix)]

    return exclude


def accuracy(verdicts: list[Verdict], labels: dict[str, str]) -> tuple[float, int]:
    scored = [(v.winner, labels[v.pair_id or ""]) for v in verdicts if v.failure is None
              and labels[v.pair_id or ""] != "tie"]
    if not scored:
        return math.nan, 0
    return sum(w == y for w, y in scored) / len(scored), len(scored)


def wilson(acc: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0 or math.isnan(acc):
        return math.nan, math.nan
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def slot_corrected(verdicts: list[Verdict]) -> list[Verdict]:
    return correct_batch(verdicts)[0]


def first_order_only(v: Verdict) -> Verdict:
    if v.failure is not None:
        return v
    first = next(o for o in v.orders if o.shown_first == "A")
    return v.model_copy(update={"orders": [first], "probabilities": first.distribution,
                                "winner": first.distribution.winner, "position_inconsistent": None})


async def run(judge: Judge, records: list, exclude_fn) -> list[Verdict]:
    results = []
    try:
        for rec in records:
            results.append(await judge.acompare(rec.pair, exclude=exclude_fn(rec.pair.id) if exclude_fn else ()))
    finally:
        await judge.release()  # close pooled connections before this event loop ends
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=sorted(SETS), default="model_spec")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="local")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "data",
                    help="folder holding model_spec/ and dev/ (default: the checkout's data/)")
    ap.add_argument("--configs", default="bare2,rules2")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--k-rulings", type=int, default=2)
    ap.add_argument("--n-constitution", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write every verdict (JSONL) here")
    args = ap.parse_args()

    records = [r for r in read_pairs(args.data / SETS[args.set]) if r.label in ("A", "B")]
    random.Random(args.seed).shuffle(records)
    records = records[: args.n]
    labels = {r.pair.id or "": r.label or "" for r in records}
    settings = Settings.from_env()
    backend = make_backend(args.backend, data_dir=settings.data_dir)
    rulebook = Rulebook.open(settings=settings)
    exclude_fn = leave_one_out(rulebook) if args.set == "model_spec" else None
    rows = []
    try:
        for name in args.configs.split(","):
            if name == "bare":
                cfg = bare_config(backend, both_orders=False)
            elif name == "bare2":
                cfg = bare_config(backend)
            elif name == "rules2":
                cfg = JudgeConfig(backend=backend.name, model=backend.model, template_version=TEMPLATE_VERSION,
                                  explain=False, k_spec=args.k, k_rulings=args.k_rulings,
                                  n_constitution=args.n_constitution)
            else:
                sys.exit(f"unknown config {name}")
            judge = Judge(backend, rulebook if cfg.use_rules else None, config=cfg, concurrent_orders=False)
            start = time.perf_counter()
            verdicts = asyncio.run(run(judge, records, exclude_fn))
            per = (time.perf_counter() - start) / len(records)
            if args.out:
                with args.out.open("a", encoding="utf-8") as fh:
                    for v in verdicts:
                        fh.write(json.dumps({"config": name, **v.model_dump(mode="json")}) + "\n")
            variants = [(name, verdicts)]
            if name == "bare2":
                # (a) one order = the first order of (b): same requests, no second run needed
                variants.insert(0, ("bare (1 order)", [first_order_only(v) for v in verdicts]))
            if cfg.both_orders:
                variants.append((name + "+slot", slot_corrected(verdicts)))
            for label, vs in variants:
                acc, n = accuracy(vs, labels)
                both = [v for v in vs if v.position_inconsistent is not None]
                consistent = sum(not v.position_inconsistent for v in both) / len(both) if both else math.nan
                failed = sum(v.failure is not None for v in vs) / len(vs)
                rows.append((label, acc, n, consistent, failed, per))
                print(f"{label:14s} acc={acc:.3f} (n={n}) consistency={consistent:.2f} "
                      f"failures={failed:.2%} s/cmp={per:.1f}", flush=True)
    finally:
        backend.close()
    print(f"\nset={args.set} n={len(records)} seed={args.seed} backend={args.backend}")
    print("| config | accuracy (95% Wilson CI) | n | orders agree | failures | s per comparison |")
    print("|---|---|---|---|---|---|")
    for label, acc, n, cons, failed, per in rows:
        lo, hi = wilson(acc, n)
        print(f"| {label} | {acc:.3f} ({lo:.2f}-{hi:.2f}) | {n} | {cons:.2f} | {failed:.1%} | {per:.1f} |")


if __name__ == "__main__":
    main()
