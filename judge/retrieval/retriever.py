"""The `Retriever`: which rules apply to a pair, from the derived index kept in step with the SQL store.

It owns everything about the index a rulebook needs: bringing it up to date from the change log
(`sync_index`), rebuilding it (`rebuild_index`), checking it against the rulebook version before a search
and the caches that make a batch cheap (recent embeddings, rules read at one rulebook version), all from
`judge.retrieval.synced.SyncedIndex`; here, small layers held in memory and the search itself. `retrieve`
returns every binding constitution rule, the nearest spec entries and rulings and, for a pair with a
process, process rules, ordered by precedence; `nearest_rulings` gives the case law the active rulings
nearest a pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from judge.retrieval.exemplars import tally, vote
from judge.retrieval.fusion import reciprocal_rank_fusion
from judge.retrieval.index import Hit, LayerTable, RuleIndex
from judge.retrieval.synced import EMBED_MEMO as EMBED_MEMO
from judge.retrieval.synced import RULE_MEMO as RULE_MEMO
from judge.retrieval.synced import SyncedIndex
from judge.rules.conflicts import Precedent, measure_candidates, near_duplicates
from judge.rules.model import Layer, Pair, Rule
from judge.rules.precedence import PrecedenceResult, order_rules

__all__ = ["PRECEDENT_CANDIDATES", "Ranking", "Retrieval", "RetrievedRule", "Retriever"]

#: Nearest active rulings examined for a binding precedent: a near-duplicate is among the very nearest.
PRECEDENT_CANDIDATES = 3
#: Layers of at most this many rules are searched exactly in memory (read once per rulebook version); larger
#: ones by the index. 5,000 unit vectors of 384 floats: 7.7 MB, a search well under a millisecond.
EXACT_LAYER_MAX = 5_000


@dataclass(frozen=True)
class RetrievedRule:
    """A rule retrieved for a pair, with its relevance score (higher is more relevant).

    ``score`` is the reciprocal-rank-fusion score of every ranking the rule appeared in (see
    `judge.retrieval.fusion`), or, with a dense-only configuration, the cosine similarity. ``similarity`` is
    the best cosine of the rule (whole text or passage) to any of the pair's queries, when it was measured.
    """

    rule: Rule
    score: float
    similarity: float | None = None


@dataclass(frozen=True)
class Ranking:
    """One ranking fused into a retrieval: what searched (``dense: prompt``, ``full-text: response A``, ``test
    cases`` ...), over which pool (``rules``: constitution and spec entries; ``rulings``) and the ids it
    ranked, best first."""

    name: str
    pool: Literal["rules", "rulings"]
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Retrieval:
    """The rules that apply to one pair, ordered by precedence, and the rulebook version they came from.

    ``rankings`` are the rankings fused into the scores (fused retrieval only; empty for dense-only), so
    `explain` can say why a rule was retrieved.
    """

    rulebook_version: str
    rules: tuple[RetrievedRule, ...]
    precedence: PrecedenceResult
    precedents: tuple[Precedent, ...] = ()
    rankings: tuple[Ranking, ...] = ()

    def explain(self, rule_id: str) -> list[tuple[str, int]]:
        """Where ``rule_id`` stood in each ranking that listed it: (ranking name, 1-based rank)."""
        return [(r.name, r.ids.index(rule_id) + 1) for r in self.rankings if rule_id in r.ids]

    @property
    def ids(self) -> list[str]:
        """Retrieved rule ids in precedence order."""
        return [r.rule.id for r in self.rules]

    def score(self, rule_id: str) -> float:
        """Similarity score of a retrieved rule."""
        for r in self.rules:
            if r.rule.id == rule_id:
                return r.score
        raise KeyError(rule_id)

    def to_json(self, *, explain: bool = False, why: Sequence[str] = ()) -> dict[str, Any]:
        """A JSON-serialisable view (ids, layers, authority, scores, precedence exclusions); with ``explain``,
        each rule's rank in every ranking that listed it (``found_by``) and the rankings themselves; ``why``:
        the same for the rule ids named, retrieved or not (implies ``explain``)."""
        explain = explain or bool(why)

        def found_by(rule_id: str) -> list[dict[str, Any]]:
            return [{"ranking": name, "rank": rank} for name, rank in self.explain(rule_id)]

        rules = []
        for r in self.rules:
            view: dict[str, Any] = {"id": r.rule.id, "layer": r.rule.layer.value,
                                    "authority": r.rule.authority.value if r.rule.authority else None,
                                    "title": r.rule.title, "score": round(r.score, 4), "version": r.rule.version}
            if explain:
                view["found_by"] = found_by(r.rule.id)
            rules.append(view)
        out: dict[str, Any] = {"rulebook_version": self.rulebook_version, "rules": rules,
                               "excluded": [{"id": e.rule_id, "reason": e.reason} for e in self.precedence.excluded]}
        if explain:
            out["rankings"] = [{"name": r.name, "pool": r.pool, "ids": list(r.ids)} for r in self.rankings]
        if why:
            retrieved = set(self.ids)
            out["why"] = [{"id": rule_id, "retrieved": rule_id in retrieved, "found_by": found_by(rule_id)}
                          for rule_id in dict.fromkeys(why)]
        return out


class Retriever(SyncedIndex):
    """Retrieval for one rulebook: the SQL store it reads and the derived index it searches.

    Args:
        store: the SQL system of record.
        index: the derived retrieval index, or None for a rulebook that is never retrieved from.
        auto_sync: bring a stale (but built) index up to date before retrieving instead of raising.
        config: how `retrieve` searches (default: passages, dense + lexical, split queries, fused).
    """

    def nearest_rulings(self, pair: Pair, exclude: Sequence[str], n: int) -> tuple[np.ndarray, list[Rule]]:
        """The embedded query of ``pair`` and the ``n`` active rulings with a case nearest it (by whole text)."""
        index = self._fresh_index()
        assert self._verified is not None  # set by _fresh_index
        query = self._query_vector(index, pair.query_text())
        hits = self._search(index, self._verified[0], query, Layer.RULING, n, exclude)
        found = self.store.get_many(h.rule_id for h in hits)
        return query, [found[h.rule_id] for h in hits if h.rule_id in found and found[h.rule_id].case is not None]

    def _table(self, index: RuleIndex, version: str, layer: Layer) -> LayerTable | None:
        """``layer`` in memory at ``version`` if it holds at most `EXACT_LAYER_MAX` rules (the constitution
        always), read once per rulebook version; None for a larger layer."""
        tables = self._at(version).tables
        if layer not in tables:
            small = layer is Layer.CONSTITUTION or index.count(layer) <= EXACT_LAYER_MAX
            tables[layer] = index.layer_table(layer) if small else None
        return tables[layer]

    def _not_retrieved(self, version: str, layer: Layer | None, exclude: Sequence[str]) -> Sequence[str]:
        """``exclude`` and, unless the configuration retrieves them, the overview entries (`Rule.overview`)
        when ``layer`` can hold them (None: any layer): rulings are never overview entries, and a longer
        exclusion list makes an index query fetch more."""
        if self.config.overview or layer is Layer.RULING:
            return exclude
        overview = self._overview_at(version)
        return (*exclude, *sorted(overview.difference(exclude))) if overview else exclude

    def _search(self, index: RuleIndex, version: str, vector: np.ndarray, layer: Layer, k: int,
                exclude: Sequence[str], *, process_only: bool = False, use_passages: bool = False) -> list[Hit]:
        """The ``k`` binding rules of ``layer`` nearest ``vector``: scored exactly in memory for a small layer
        (a dot product instead of an index query, ~1 ms less each), else by the index. ``use_passages``
        scores a rule by its best passage too (retrieval); without, by its whole text (precedent matching)."""
        exclude = self._not_retrieved(version, layer, exclude)
        table = self._table(index, version, layer)
        if table is None:
            return index.query_vector(vector, layer=layer, k=k, exclude=exclude,
                                      where_extra={"process": True} if process_only else None,
                                      use_passages=use_passages, binding=self._binding_at(version))
        return table.search(vector, k, exclude=frozenset(exclude), process_only=process_only,
                            use_passages=use_passages)

    def _search_many(self, index: RuleIndex, version: str, vectors: np.ndarray, layer: Layer, k: int,
                     exclude: Sequence[str], *, use_passages: bool) -> list[list[Hit]]:
        """`_search` for every row of ``vectors``: one index query per collection for all of them (a large
        layer), or each scored in memory (a small one). The hits of each vector are those `_search` gives."""
        exclude = self._not_retrieved(version, layer, exclude)
        table = self._table(index, version, layer)
        if table is None:
            return index.query_vectors(vectors, layer=layer, k=k, exclude=exclude, use_passages=use_passages,
                                       binding=self._binding_at(version))
        excluded = frozenset(exclude)
        return [table.search(vector, k, exclude=excluded, use_passages=use_passages) for vector in vectors]

    def retrieve(self, pair: Pair, *, k: int = 5, k_rulings: int | None = None, k_process: int = 3,
                 exclude: Sequence[str] = (), precedent_threshold: float | None = None) -> Retrieval:
        """The rules that apply to a pair: every binding constitution rule, the top-k spec entries and the
        top-k active rulings by similarity, ordered by precedence. When either response carries a process
        (reasoning, tool calls), the top `k_process` process rules are retrieved as well.

        Args:
            pair: the prompt and two responses.
            k: how many spec entries to retrieve.
            k_rulings: how many rulings (default: k).
            k_process: how many process rules to add for a pair with a process.
            exclude: rule ids never to return (leave-one-out when evaluating on a ruling).
            precedent_threshold: also find the binding precedents (see `precedents`) from the same ruling
                search, into ``Retrieval.precedents``.
        """
        index = self._fresh_index()
        assert self._verified is not None  # set by _fresh_index
        version, n_const = self._verified
        config = self.config
        vector = self._query_vector(index, pair.query_text())
        n_rulings = k if k_rulings is None else k_rulings
        wanted = max(n_rulings, PRECEDENT_CANDIDATES) if precedent_threshold is not None else n_rulings
        # The nearest rulings by the whole pair: precedent candidates, and the dense-only ruling ranking.
        ruling_hits = (self._search(index, version, vector, Layer.RULING, wanted, exclude,
                                    use_passages=config.passages and not config.fused) if wanted else [])
        rankings: tuple[Ranking, ...] = ()
        if config.fused:
            scores, similarity, rankings = self._fused(index, version, pair, vector, ruling_hits, k=k,
                                                       n_rulings=n_rulings, n_const=n_const, k_process=k_process,
                                                       exclude=exclude)
        else:
            scores, similarity = self._dense(index, version, pair, vector, ruling_hits, k=k,
                                             n_rulings=n_rulings, n_const=n_const, k_process=k_process,
                                             exclude=exclude)
        rules = self._rules_at(version, [*scores, *(h.rule_id for h in ruling_hits)])
        precedents: tuple[Precedent, ...] = ()
        if precedent_threshold is not None:
            nearest = [rules[h.rule_id] for h in ruling_hits[:PRECEDENT_CANDIDATES] if h.rule_id in rules]
            precedents = tuple(self._bound_by(index, pair, vector, nearest, precedent_threshold))
        precedence = order_rules(r for rid, r in rules.items() if rid in scores)
        ordered = tuple(RetrievedRule(r, scores[r.id], similarity.get(r.id)) for r in precedence.ordered)
        return Retrieval(version, ordered, precedence, precedents, rankings)

    def _dense(self, index: RuleIndex, version: str, pair: Pair, vector: np.ndarray, ruling_hits: list[Hit], *,
               k: int, n_rulings: int, n_const: int, k_process: int, exclude: Sequence[str]
               ) -> tuple[dict[str, float], dict[str, float]]:
        """Scores by cosine to the joint query: every binding constitution rule, the top-k spec entries and
        rulings, and process rules for a pair with a process."""
        passages = self.config.passages
        hits = []
        if n_const > 0:  # every binding constitution rule applies: all of them, scored
            hits.extend(self._search(index, version, vector, Layer.CONSTITUTION, n_const, exclude,
                                     use_passages=passages))
        if k > 0:
            hits.extend(self._search(index, version, vector, Layer.SPEC, k, exclude, use_passages=passages))
        hits.extend(ruling_hits[:n_rulings])
        if pair.has_process() and k_process > 0:
            process_vector = self._query_vector(index, _process_text(pair))
            hits.extend(self._search(index, version, process_vector, Layer.SPEC, k_process, exclude,
                                     process_only=True, use_passages=passages))
        scores: dict[str, float] = {}
        for h in hits:
            scores[h.rule_id] = max(h.score, scores.get(h.rule_id, h.score))
        return scores, dict(scores)

    def _fused(self, index: RuleIndex, version: str, pair: Pair, vector: np.ndarray, ruling_hits: list[Hit], *,
               k: int, n_rulings: int, n_const: int, k_process: int, exclude: Sequence[str]
               ) -> tuple[dict[str, float], dict[str, float], tuple[Ranking, ...]]:
        """Scores by reciprocal rank fusion (see `judge.retrieval.fusion`).

        Rankings: dense search with the joint query and, with ``split_queries``, with the prompt and each
        response alone; lexical search with the same texts; with ``cases`` / ``ruling_votes``, the rules named
        by the decided cases nearest the pair (`_case_votes`). Constitution rules and spec entries are ranked in
        one pool (the constitution scores like any rule, rather than being shown whatever the pair); rulings
        in another. Returns every binding constitution rule (scored, 0 when no ranking listed it), the top-k
        spec entries and top rulings by fused score, the fused and cosine scores, and the rankings fused.
        """
        config = self.config
        joint = pair.query_text()
        labelled = [("prompt" if joint == pair.prompt else "pair", joint)]  # a prompt asked alone is the prompt
        if config.split_queries:
            labelled += [(name, t) for name, t in (("prompt", pair.prompt), ("response A", pair.response_a.text),
                                                   ("response B", pair.response_b.text)) if t.strip()]
        named: dict[str, str] = {}  # text -> what it is; a text repeated is searched once, by its first name
        for name, text in labelled:
            named.setdefault(text, name)
        texts, labels = list(named), list(named.values())
        vectors = [vector, *self._embed_memo(index, texts[1:])] if len(texts) > 1 else [vector]
        depth = max(config.depth, k, n_rulings)
        pool: list[list[str]] = []
        rulings: list[list[str]] = []
        pool_names: list[str] = []
        ruling_names: list[str] = []
        similarity: dict[str, float] = {}
        not_shown = self._not_retrieved(version, None, exclude)  # for the searches that span layers

        def note(hits: list[Hit]) -> list[Hit]:
            for h in hits:
                similarity[h.rule_id] = max(h.score, similarity.get(h.rule_id, h.score))
            return hits

        # One batched search per layer (and collection) for all the query texts, one full-text statement
        # for all the lexical texts: the rankings are those of a search per text, in the same order.
        matrix = np.stack(vectors)
        constitution, spec_hits = (self._search_many(index, version, matrix, layer, depth, exclude,
                                                     use_passages=config.passages)
                                   for layer in (Layer.CONSTITUTION, Layer.SPEC))
        ruling_lists = (self._search_many(index, version, matrix, Layer.RULING, depth, exclude,
                                          use_passages=config.passages) if n_rulings > 0 else [])
        for i in range(len(vectors)):
            found = note([*constitution[i], *spec_hits[i]])
            pool.append([h.rule_id for h in sorted(found, key=lambda h: -h.score)[:depth]])
            pool_names.append(f"dense: {labels[i]}")
            if n_rulings > 0:
                rulings.append([h.rule_id for h in note(ruling_lists[i])])
                ruling_names.append(f"dense: {labels[i]}")
        if config.lexical:
            lexical_texts = texts[1:] if len(texts) > 1 else texts
            lexical_labels = labels[1:] if len(texts) > 1 else labels
            groups: list[tuple[Layer, ...]] = [(Layer.CONSTITUTION, Layer.SPEC)]
            if n_rulings > 0:
                groups.append((Layer.RULING,))
            found_lexically = self.store.lexical_search_many(lexical_texts, groups, depth,
                                                             exclude=not_shown,
                                                             known=self._term_counts_at(version),
                                                             common_fraction=config.common_fraction)
            for label, per_group in zip(lexical_labels, found_lexically, strict=True):
                pool.append([rid for rid, _ in per_group[0]])
                pool_names.append(f"full-text: {label}")
                if n_rulings > 0:
                    rulings.append([rid for rid, _ in per_group[1]])
                    ruling_names.append(f"full-text: {label}")
        if config.cases or config.ruling_votes:
            for name, ranking in self._case_votes(index, version, pair, vector,
                                                  ruling_lists[0] if ruling_lists else None, exclude,
                                                  not_shown, depth):
                pool.append(ranking)
                pool_names.append(name)
        if pair.has_process() and k_process > 0:
            process_vector = self._query_vector(index, _process_text(pair))
            pool.append([h.rule_id for h in note(self._search(index, version, process_vector, Layer.SPEC,
                                                               k_process, exclude, process_only=True,
                                                               use_passages=config.passages))])
            pool_names.append("dense: process")
        pool_scores = reciprocal_rank_fusion(pool, k=config.rrf_k)
        ruling_scores = reciprocal_rank_fusion(rulings, k=config.rrf_k)
        scores: dict[str, float] = {}
        if n_const > 0:
            for h in self._search(index, version, vector, Layer.CONSTITUTION, n_const, exclude):
                scores[h.rule_id] = pool_scores.get(h.rule_id, 0.0)
        spec = sorted(((rid, v) for rid, v in pool_scores.items() if rid not in scores
                       and rid.startswith(Layer.SPEC.value + "/")), key=lambda item: (-item[1], item[0]))
        process_ids = set(pool[-1]) if pair.has_process() and k_process > 0 else set()
        # Process rules judge a process: for a pair without one they are not candidates. Rules are read from
        # SQL a slice at a time, best first, until k entries are taken (not every ranked id).
        candidates: dict[str, Rule] = {}
        taken = read = 0
        for position, (rid, value) in enumerate(spec):
            if rid in process_ids:
                scores[rid] = value
            elif taken < k:
                if position >= read:
                    read = position + max(2 * k, 8)
                    candidates.update(self._rules_at(version, [each for each, _ in spec[position:read]]))
                if rid in candidates and not candidates[rid].process_rule:
                    scores[rid] = value
                    taken += 1
        for rid, value in sorted(ruling_scores.items(), key=lambda item: (-item[1], item[0]))[:n_rulings]:
            scores[rid] = value
        rankings = (*(Ranking(name, "rules", tuple(ids)) for name, ids in zip(pool_names, pool, strict=True)),
                    *(Ranking(name, "rulings", tuple(ids)) for name, ids in zip(ruling_names, rulings, strict=True)))
        return scores, similarity, rankings

    def _case_votes(self, index: RuleIndex, version: str, pair: Pair, vector: np.ndarray,
                    ruling_hits: list[Hit] | None, exclude: Sequence[str], not_voted: Sequence[str],
                    depth: int) -> list[tuple[str, list[str]]]:
        """Rankings from decided cases (see `judge.retrieval.exemplars`): with ``cases``, the spec entries tested
        by the accepted test cases nearest the prompt; with ``ruling_votes``, the spec entries and constitution
        rules cited by the active rulings nearest the pair (``ruling_hits``: those already found with the joint
        query, else searched, without ``exclude``). No vote goes to a rule in ``not_voted``."""
        config = self.config
        rankings: list[tuple[str, list[str]]] = []
        exemplars = self._case_exemplars(index) if config.cases else None
        if exemplars is not None and len(exemplars) and pair.prompt.strip():  # cases are prompts
            prompt_vector = self._embed_memo(index, [pair.prompt])
            voted = vote(exemplars, prompt_vector, k=config.case_k, exclude=not_voted)[0]
            rankings.append(("test cases", voted[:depth]))
        if not config.ruling_votes:
            return rankings
        if ruling_hits is None:
            ruling_hits = self._search(index, version, vector, Layer.RULING, config.case_k, exclude,
                                       use_passages=config.passages)
        nearest = ruling_hits[:config.case_k]
        rulings = self._rules_at(version, [h.rule_id for h in nearest])
        cited = [(h.score, [c for c in rulings[h.rule_id].case.cites  # type: ignore[union-attr]
                            if not c.startswith(Layer.RULING.value + "/")])
                 for h in nearest if h.rule_id in rulings and rulings[h.rule_id].case is not None]
        if cited:
            rankings.append(("rulings' citations", tally(cited, exclude=not_voted)[:depth]))
        return rankings

    def _bound_by(self, index: RuleIndex, pair: Pair, query: np.ndarray, rulings: Sequence[Rule],
                  threshold: float) -> list[Precedent]:
        """`precedents` among ``rulings`` already found nearest to ``query`` (``pair`` embedded)."""
        with_case = [r for r in rulings if r.case is not None]
        if not with_case:
            return []
        candidates = measure_candidates(lambda texts: self._embed_memo(index, texts), pair, query, with_case,
                                        threshold=threshold)
        return near_duplicates(pair, candidates, threshold=threshold, strict=True)


def _process_text(pair: Pair) -> str:
    parts = []
    for response in (pair.response_a, pair.response_b):
        process = response.process
        if process is None:
            continue
        parts.append(process.reasoning or "")
        parts.extend(f"{c.name} {c.arguments} {c.result or ''}" for c in process.tool_calls)
    return "\n".join(parts)
