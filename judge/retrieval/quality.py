"""Retrieval quality: does retrieval find the rule that applies?

Given cases whose applicable rule is known (a *gold* rule id, e.g. the Model Spec section a pair was written
for), measure where the gold rule lands:

* per layer (constitution, spec): rank of the gold rule among that layer's retrieved rules;
* ``spec+constitution``: rank among spec entries and constitution rules ranked together by score;
* ``shown``: whether the gold rule is among the rules a judge is shown (`judge.retrieval.shown.select_rules`
  with the judge's default quotas).

Reported as recall@k (share of cases whose gold rule is in the top k) and mean reciprocal rank (MRR; a gold
rule not retrieved counts 0). The arithmetic (`gold_rank`, `summarise`) is pure; `measure_retrieval` runs the
cases through a `Rulebook` and is the one place with I/O.

```python
from judge.retrieval.quality import QualityCase, measure_retrieval
cases = [QualityCase(pair, gold={"spec/avoid-sycophancy"})]
report = measure_retrieval(rulebook, cases)
print(report.rows["spec+constitution"].recall[5])
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judge.errors import InputError, RuleNotFoundError
from judge.records import read_pairs
from judge.retrieval.retriever import Retrieval
from judge.retrieval.shown import RuleSource, shown_rules
from judge.rules.model import Layer, Pair, Rule
from judge.verdicts import JudgeConfig

__all__ = ["DEFAULT_KS", "QualityCase", "QualityReport", "RecallRow", "gold_rank", "measure_file",
           "measure_retrieval", "read_quality_cases", "summarise"]

#: The cut-offs recall is reported at.
DEFAULT_KS = (1, 3, 5, 10)
#: How many spec entries `measure_retrieval` asks for, so that ranks up to 10 are known.
RANK_DEPTH = 10

#: The rules shown to the judge for a pair (given the rule ids to exclude), as a judge would select them.
ShownSelector = Callable[[Pair, Sequence[str]], Sequence[Rule]]


@dataclass(frozen=True)
class QualityCase:
    """One pair and the rule(s) that apply to it.

    Attributes:
        pair: the pair retrieval is asked about.
        gold: ids of the rules that apply (a hit on any counts).
        exclude: rule ids retrieval must not return (e.g. rulings decided on this very pair: leave-one-out).
        id: the case's id, for reports.
    """

    pair: Pair
    gold: frozenset[str]
    exclude: tuple[str, ...] = ()
    id: str | None = None


@dataclass(frozen=True)
class RecallRow:
    """Recall@k and MRR of the gold rule over ``n`` cases (``n`` may be 0: then every figure is None)."""

    n: int
    recall: dict[int, float | None]
    mrr: float | None


@dataclass(frozen=True)
class QualityReport:
    """Recall rows by view (``constitution``, ``spec``, ``spec+constitution``, ``shown``) and the raw ranks.

    Attributes:
        rows: one `RecallRow` per view. A layer's row counts only cases whose gold rule is in that layer.
        ranks: per view, the 1-based rank of the gold rule for each counted case (None: not retrieved).
        shown_sizes: how many constitution + spec rules were shown per case (the ``shown`` view's budget).
    """

    rows: dict[str, RecallRow]
    ranks: dict[str, list[int | None]] = field(repr=False)
    shown_sizes: list[int] = field(repr=False)

    @property
    def ks(self) -> list[int]:
        """The recall cut-offs reported, ascending."""
        return sorted(next(iter(self.rows.values())).recall) if self.rows else []

    @property
    def shown_per_case(self) -> float | None:
        """Mean number of constitution rules and spec entries shown per case (None without cases)."""
        return sum(self.shown_sizes) / len(self.shown_sizes) if self.shown_sizes else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable view: per view, the number of cases, recall@k (keys are k as text) and MRR."""
        return {"views": {name: {"n": row.n, "recall": {str(k): v for k, v in row.recall.items()}, "mrr": row.mrr}
                          for name, row in self.rows.items()},
                "shown_per_case": self.shown_per_case}


def gold_rank(ranked: Sequence[str], gold: Iterable[str]) -> int | None:
    """The 1-based rank of the first gold id in ``ranked``, or None when no gold id was retrieved."""
    wanted = set(gold)
    for position, rule_id in enumerate(ranked, 1):
        if rule_id in wanted:
            return position
    return None


def summarise(ranks: Sequence[int | None], ks: Sequence[int] = DEFAULT_KS) -> RecallRow:
    """Recall@k for each k and MRR over ``ranks`` (None: not retrieved). Empty input gives Nones."""
    n = len(ranks)
    if n == 0:
        return RecallRow(0, dict.fromkeys(ks), None)
    recall: dict[int, float | None] = {k: sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    mrr = sum(1.0 / r for r in ranks if r is not None) / n
    return RecallRow(n, recall, mrr)


def _ranked(retrieval: Retrieval, layers: set[Layer]) -> list[str]:
    """Ids of the retrieved rules of ``layers``, best score first (ties keep precedence order)."""
    scored = [(r.rule.id, r.score) for r in retrieval.rules if r.rule.layer in layers]
    return [rule_id for rule_id, _ in sorted(scored, key=lambda item: -item[1])]


def measure_retrieval(rulebook: RuleSource, cases: Iterable[QualityCase], *, ks: Sequence[int] = DEFAULT_KS,
                      shown: ShownSelector | None = None, depth: int = RANK_DEPTH) -> QualityReport:
    """Retrieve for every case and report where its gold rule lands (see the module docstring).

    Args:
        rulebook: the rulebook to measure (its index built).
        cases: pairs with their gold rule ids.
        ks: recall cut-offs.
        shown: the rules shown to the judge for a pair; default: what `judge.retrieval.shown.shown_rules`
            shows with the default judge configuration.
        depth: spec entries retrieved per case (ranks beyond it count as not retrieved).
    """
    if shown is None:
        config = JudgeConfig(backend="none", model="none", template_version="none")

        def shown(pair: Pair, exclude: Sequence[str]) -> Sequence[Rule]:
            return shown_rules(rulebook, pair, config, exclude).rules

    views = {"constitution": {Layer.CONSTITUTION}, "spec": {Layer.SPEC},
             "spec+constitution": {Layer.CONSTITUTION, Layer.SPEC}}
    ranks: dict[str, list[int | None]] = {name: [] for name in [*views, "shown"]}
    sizes: list[int] = []
    for case in cases:
        retrieval = rulebook.retrieve(case.pair, k=depth, k_rulings=0, exclude=case.exclude)
        gold_layers = {Layer(g.split("/", 1)[0]) for g in case.gold if g.split("/", 1)[0] in Layer.__members__.values()}
        for name, layers in views.items():
            if gold_layers & layers:
                ranks[name].append(gold_rank(_ranked(retrieval, layers), case.gold))
        picked = [r for r in shown(case.pair, case.exclude) if r.layer in (Layer.CONSTITUTION, Layer.SPEC)]
        sizes.append(len(picked))
        ranks["shown"].append(1 if any(r.id in case.gold for r in picked) else None)
    rows = {name: summarise(values, ks) for name, values in ranks.items()}
    return QualityReport(rows, ranks, sizes)


def read_quality_cases(path: str | Path, rulebook: RuleSource) -> list[QualityCase]:
    """The cases of a JSONL pair file whose lines name the rules that apply (``"rules": ["spec/..."]``).

    Raises:
        InputError: a line is not a pair, has no ``rules``, or names a rule the rulebook does not have or one
            that is neither a constitution rule nor a spec entry (file:line and field named); the file holds no
            pair.
    """
    cases: list[QualityCase] = []
    for record in read_pairs(path):
        if not record.rules:
            raise InputError("missing field 'rules' (the ids of the rules that apply to the pair)", path=path,
                             line=record.line, field="rules")
        for rule_id in record.rules:
            try:
                layer = rulebook.get(rule_id).layer
            except RuleNotFoundError:
                raise InputError(f"no rule with id {rule_id!r} in the rulebook", path=path, line=record.line,
                                 field="rules") from None
            if layer not in (Layer.CONSTITUTION, Layer.SPEC):
                raise InputError(f"{rule_id!r} is a {layer.value}: retrieval is measured for constitution rules "
                                 "and spec entries", path=path, line=record.line, field="rules")
        cases.append(QualityCase(record.pair, frozenset(record.rules), id=record.pair.id))
    if not cases:
        raise InputError("no pairs to measure", path=path)
    return cases


def measure_file(rulebook: RuleSource, path: str | Path, *, ks: Sequence[int] = DEFAULT_KS,
                 progress: Callable[[list[QualityCase]], Iterable[QualityCase]] | None = None) -> QualityReport:
    """`measure_retrieval` on the pairs of a JSONL file whose lines name the rules that apply (see
    `read_quality_cases`); ``progress`` wraps the cases (e.g. a progress bar)."""
    cases = read_quality_cases(path, rulebook)
    return measure_retrieval(rulebook, progress(cases) if progress else cases, ks=ks)
