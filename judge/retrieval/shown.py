"""Which retrieved rules a judge shows the model for a pair, and the binding precedent among them.

`shown_rules` is the one place this is decided: the engine judges with it and impact analysis re-runs it for
stored judgments, so both see exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from judge.retrieval.retriever import Retrieval
from judge.rules.model import Layer, Pair, Rule
from judge.verdicts import JudgeConfig, PrecedentRef

__all__ = ["RuleSource", "Shown", "select_rules", "shown_of", "shown_rules"]


class RuleSource(Protocol):
    """What `shown_rules` reads: retrieval for a pair, and a rule by id (a `judge.Rulebook` is one)."""

    def retrieve(self, pair: Pair, *, k: int = 5, k_rulings: int | None = None, k_process: int = 3,
                 exclude: Sequence[str] = (), precedent_threshold: float | None = None) -> Retrieval:
        """The rules that apply to ``pair``, ordered by precedence."""

    def get(self, rule_id: str, version: int | None = None) -> Rule:
        """A rule's latest (or given) version."""


@dataclass(frozen=True)
class Shown:
    """What a judge retrieves for one pair.

    Attributes:
        rules: the rules listed in the verdict as retrieved, precedence order: the ones shown to the model,
            plus a binding precedent that was not among them.
        scores: similarity of every retrieved rule (a precedent's: its same-facts similarity).
        version: the rulebook version, or None without rules.
        precedent: the ruling on the same facts that binds the pair, with its holding in the pair's slots.
    """

    rules: list[Rule]
    scores: dict[str, float]
    version: str | None
    precedent: tuple[Rule, PrecedentRef] | None = None


def shown_rules(rulebook: RuleSource, pair: Pair, config: JudgeConfig, exclude: Sequence[str] = ()) -> Shown:
    """What a judge with ``config`` retrieves for ``pair``: the rules shown to the model and, when binding
    is on, the binding precedent. Impact analysis re-runs exactly this for stored judgments."""
    bind = config.bind_precedent and config.use_rules
    # As many spec entries as there are slots: ranked together with the constitution, either may fill them all.
    retrieval = rulebook.retrieve(pair, k=config.k_spec + config.n_constitution, k_rulings=config.k_rulings,
                                  exclude=exclude,
                                  precedent_threshold=config.precedent_threshold if bind else None)
    shown = shown_of(retrieval, config)
    scores = {r.rule.id: r.score for r in retrieval.rules}
    if not retrieval.precedents:
        return Shown(shown, scores, retrieval.rulebook_version)
    best = retrieval.precedents[0]
    ruling = rulebook.get(best.ruling_id)
    ref = PrecedentRef(ruling_id=best.ruling_id, holding=best.holding, similarity=best.similarity,
                       swapped=best.swapped)
    if all(r.id != ruling.id for r in shown):
        shown = [*shown, ruling]
        scores[ruling.id] = best.similarity
    return Shown(shown, scores, retrieval.rulebook_version, (ruling, ref))


def shown_of(retrieval: Retrieval, config: JudgeConfig) -> list[Rule]:
    """The rules of ``retrieval`` a judge with ``config`` shows the model (`select_rules` with its quotas)."""
    return select_rules([(r.rule, r.score) for r in retrieval.rules], n_constitution=config.n_constitution,
                        n_spec=config.k_spec, n_rulings=config.k_rulings)


def select_rules(rules: Sequence[tuple[Rule, float]], *, n_constitution: int, n_spec: int,
                 n_rulings: int, pooled: bool = True) -> list[Rule]:
    """Pick the rules to show from retrieval results (in precedence order), keeping precedence order.

    Constitution rules and spec entries are ranked together by score and the best ``n_constitution +
    n_spec`` of them shown, so a pair is shown the constitution rules that apply to it rather than a fixed
    number whatever it is about; ``pooled=False`` takes the best ``n_constitution`` and ``n_spec`` of each
    layer separately. The best ``n_rulings`` rulings are shown. Pooled, every retrieved process rule is shown
    besides (retrieval returns them only for a pair with a process); per layer, they compete as spec entries."""
    if pooled:
        pool = sorted((x for x in rules if x[0].layer in (Layer.CONSTITUTION, Layer.SPEC) and not x[0].process_rule),
                      key=lambda x: -x[1])
        rulings = sorted((x for x in rules if x[0].layer is Layer.RULING), key=lambda x: -x[1])
        best = {r.id for r, _ in pool[: n_constitution + n_spec]} | {r.id for r, _ in rulings[:n_rulings]}
        return [r for r, _ in rules if r.id in best or r.process_rule]
    quota = {Layer.CONSTITUTION: n_constitution, Layer.SPEC: n_spec, Layer.RULING: n_rulings}
    by_layer: dict[Layer, set[str]] = {}
    for layer, n in quota.items():
        in_layer = sorted((x for x in rules if x[0].layer is layer), key=lambda x: -x[1])
        by_layer[layer] = {r.id for r, _ in in_layer[:n]}
    return [r for r, _ in rules if r.id in by_layer[r.layer]]
