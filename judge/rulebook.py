"""The `Rulebook`: the public face of the rulebook - SQL store + derived retrieval index + precedence.

```python
import judge
rb = judge.Rulebook.open()                 # default SQLite file + embedded Chroma index in the data dir
rb.load("rulebook/")                       # idempotent: unchanged text adds no version
hits = rb.retrieve(judge.Pair(prompt=..., response_a=..., response_b=...), k=5)
rb.add_ruling(prompt=..., response_a=..., response_b=..., holding="B", rationale=..., cites=[...])
rb.add_ruling_from("3f9a0c1e", holding="B", rationale=...)   # from a stored judgment a person disagrees with
rb.impact(since_version)                   # stored judgments whose shown rules changed since then
rb.history("spec/avoid-sycophancy")
```

Every write goes through the store's single transactional write path, then brings the index up to date
incrementally (the index is derived: `rebuild_index()` recreates it from SQL at any time).

A new ruling is checked against the active rulings on near-duplicate pairs (`judge.rules.conflicts`): a
contradicting holding raises `RulingConflictError` and writes nothing, until the ruling names the one it
``overrules`` (both changes then land in one transaction).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from judge._iter import batched
from judge.errors import (
    IndexSchemaError,
    IndexStaleError,
    InputError,
    OverruleError,
    RulebookError,
    RuleNotFoundError,
    RulingConflictError,
)
from judge.retrieval.embedder import Embedder, make_embedder
from judge.retrieval.fusion import RetrievalConfig, reciprocal_rank_fusion
from judge.retrieval.index import Hit, LayerTable, RuleIndex, make_client
from judge.rules.conflicts import (
    DEFAULT_CONFLICT_THRESHOLD,
    Candidate,
    Precedent,
    RulingConflict,
    find_conflicts,
    measure_candidates,
    near_duplicates,
)
from judge.rules.model import (
    EMPTY_RULEBOOK_VERSION,
    Case,
    Change,
    ChangeKind,
    Check,
    Holding,
    Layer,
    Pair,
    Response,
    Rule,
    RuleStatus,
    as_response,
    slugify,
)
from judge.rules.precedence import PrecedenceResult, order_rules
from judge.rules.textio import WriteReport, read_rulebook, ruling_text, write_rulebook
from judge.settings import Settings
from judge.store import PendingChange, RulebookStore, SyncReport, migrate, open_engine

if TYPE_CHECKING:
    from judge.judging.impact import ImpactReport
    from judge.judging.verdict import Verdict
    from judge.store.judgments import JudgmentStore

__all__ = ["Retrieval", "RetrievedRule", "Rulebook"]

log = logging.getLogger(__name__)

#: Nearest active rulings examined for a contradiction when a ruling is added.
CONFLICT_CANDIDATES = 20
#: Nearest active rulings examined for a binding precedent: a near-duplicate is among the very nearest.
PRECEDENT_CANDIDATES = 3
#: Embeddings remembered per Rulebook (queries and the cases of nearby rulings), least recently used dropped.
EMBED_MEMO = 2048
#: Layers of at most this many rules are searched exactly in memory (read once per rulebook version); larger
#: ones by the index. 5,000 unit vectors of 384 floats: 7.7 MB, a search well under a millisecond.
EXACT_LAYER_MAX = 5_000
#: Rules remembered per rulebook version by `Rulebook.retrieve` (cleared when the version moves or it fills).
RULE_MEMO = 20_000


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
class Retrieval:
    """The rules that apply to one pair, ordered by precedence, and the rulebook version they came from."""

    rulebook_version: str
    rules: tuple[RetrievedRule, ...]
    precedence: PrecedenceResult
    precedents: tuple[Precedent, ...] = ()

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

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable view (ids, layers, authority, scores, precedence exclusions)."""
        return {
            "rulebook_version": self.rulebook_version,
            "rules": [
                {"id": r.rule.id, "layer": r.rule.layer.value,
                 "authority": r.rule.authority.value if r.rule.authority else None,
                 "title": r.rule.title, "score": round(r.score, 4), "version": r.rule.version}
                for r in self.rules
            ],
            "excluded": [{"id": e.rule_id, "reason": e.reason} for e in self.precedence.excluded],
        }


@dataclass(frozen=True)
class IngestReport:
    """Running totals of `Rulebook.ingest`: rules added / amended / unchanged over the committed batches."""

    added: int
    amended: int
    unchanged: int
    batches: int
    rulebook_version: str


class Rulebook:
    """A layered, versioned rulebook stored in SQL and retrieved per pair through a derived index.

    Args:
        store: the SQL system of record.
        index: the derived retrieval index, or None for a rulebook that is never retrieved from.
        auto_sync: bring a stale (but built) index up to date before retrieving instead of raising.
        conflict_threshold: embedding cosine of prompt + responses from which a new ruling's pair is a
            near-duplicate of an active ruling's (see `judge.rules.conflicts`).
        retrieval: how `retrieve` searches (default: passages, dense + lexical, split queries, fused).
    """

    def __init__(self, store: RulebookStore, index: RuleIndex | None = None, *, auto_sync: bool = True,
                 conflict_threshold: float = DEFAULT_CONFLICT_THRESHOLD,
                 retrieval: RetrievalConfig | None = None) -> None:
        if not 0.0 <= conflict_threshold <= 1.0:
            raise RulebookError(f"conflict_threshold must lie in [0, 1], got {conflict_threshold}")
        self.store = store
        self.index = index
        self.auto_sync = auto_sync
        self.conflict_threshold = conflict_threshold
        self.retrieval = retrieval or RetrievalConfig()
        # The rulebook version the index was last verified against, and its binding constitution size:
        # re-checked only when the version in SQL moves (any writer, any process, changes it).
        self._verified: tuple[str, int] | None = None
        # Recent embeddings by text: a pair's query is embedded once for retrieval and the precedent check,
        # and the rulings nearest many pairs of a batch have their cases embedded once.
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        # Rules read at one rulebook version (contents cannot change without the version changing).
        self._rules_seen: tuple[str, dict[str, Rule]] = ("", {})
        # Small layers held in memory at one rulebook version (None: the layer is searched in the index).
        self._tables: dict[Layer, tuple[str, LayerTable | None]] = {}

    @classmethod
    def open(cls, url: str | None = None, *, settings: Settings | None = None, with_index: bool = True,
             embedder: Embedder | None = None, auto_sync: bool = True,
             conflict_threshold: float = DEFAULT_CONFLICT_THRESHOLD,
             retrieval: RetrievalConfig | None = None) -> Rulebook:
        """Open (creating and migrating if needed) the rulebook at `url` or the configured database."""
        settings = settings or Settings.from_env()
        engine = open_engine(url or settings.resolved_db_url)
        migrate(engine)
        store = RulebookStore(engine)
        index = None
        if with_index:
            index = RuleIndex(make_client(settings), embedder or make_embedder(settings.embedding_model))
        return cls(store, index, auto_sync=auto_sync, conflict_threshold=conflict_threshold, retrieval=retrieval)

    # ----------------------------------------------------------------- reading
    @property
    def version(self) -> str:
        """The rulebook version: changes whenever any rule changes."""
        return self.store.version

    def get(self, rule_id: str, version: int | None = None) -> Rule:
        """A rule's latest (or given) version."""
        return self.store.get(rule_id, version)

    def history(self, rule_id: str) -> list[tuple[Rule, Change]]:
        """Every version of a rule with the change that wrote it, oldest first."""
        return self.store.history(rule_id)

    def rules(self, layer: Layer | None = None, *, active_only: bool = False) -> Iterable[Rule]:
        """Stream the current version of every rule (optionally one layer / binding only)."""
        return self.store.iter_current(layer, active_only=active_only)

    def rules_in_dependency_order(self, *, page_size: int = 1000) -> Iterator[Rule]:
        """Stream every current rule, each after the rules it cites or overrules: the order `ingest` needs.

        Constitution and spec entries first (they cite nothing), then rulings by id; a ruling that cites or
        overrules another ruling is held back until that one is out. Memory holds only the held-back ids.
        """
        yield from self.rules(Layer.CONSTITUTION)
        yield from self.rules(Layer.SPEC)
        emitted: set[str] = set()
        waiting: dict[str, set[str]] = {}
        for rule in self.rules(Layer.RULING):
            needs = {ref for ref in _ruling_refs(rule) if ref.startswith(Layer.RULING.value + "/")}
            if needs:
                waiting[rule.id] = needs
            else:
                emitted.add(rule.id)
                yield rule
        while waiting:
            ready = sorted(rid for rid, needs in waiting.items() if not needs & waiting.keys())
            if not ready:  # a cycle the store never lets in; write the rest rather than lose them
                ready = sorted(waiting)
            for chunk in batched(ready, page_size):
                found = self.store.get_many(chunk)
                for rid in chunk:
                    emitted.add(rid)
                    del waiting[rid]
                    yield found[rid]

    def export(self, path: str | Path) -> WriteReport:
        """Write the current rulebook as reviewable text under ``path`` (every rule, every status).

        ``load`` of the exported directory into the same rulebook adds no version: a rulebook change can be
        reviewed as a text diff in a pull request and re-imported without change.
        """
        return write_rulebook(self.rules(), path)

    def rulings_by_prompt(self) -> dict[str, list[str]]:
        """Ids of the current rulings, grouped by their case's prompt (whitespace-normalised).

        Evaluation on pairs the rulebook was seeded from uses it to hold out the precedent decided on the very
        prompt being judged (leave-one-out). Reads every ruling once: O(rulings).
        """
        grouped: dict[str, list[str]] = {}
        for rule in self.rules(Layer.RULING):
            if rule.case is not None:
                grouped.setdefault(" ".join(rule.case.prompt.split()), []).append(rule.id)
        return grouped

    # ----------------------------------------------------------------- writing
    def _commit(self, items: Sequence[PendingChange], author: str | None) -> list[Change]:
        changes = self.store.commit(items, author=author)
        self.sync_index()
        return changes

    def add_rule(self, rule: Rule, *, author: str | None = None, reason: str | None = None) -> Rule:
        """Add a new rule (any layer). Its id must be new."""
        self._commit([PendingChange(rule, ChangeKind.ADD, reason)], author)
        return self.store.get(rule.id)

    def add_ruling(self, *, prompt: str, response_a: str | Response, response_b: str | Response,
                   holding: Holding, rationale: str, cites: Sequence[str] = (),
                   overrules: Sequence[str] = (), rule_id: str | None = None, title: str | None = None,
                   source: str = "human-review", author: str | None = None,
                   tags: Sequence[str] = (), checks: Sequence[Check] = ()) -> Rule:
        """Add a case ruling; rulings it overrules get a new, overruled version in the same transaction.

        ``checks`` are the ruling's yes/no questions (from its holding and rationale) that let the rule-checks
        method apply it to new pairs; a ruling without checks still binds as a precedent on the same facts.

        Raises:
            RulingConflictError: the holding contradicts an active ruling on a near-duplicate pair that
                ``overrules`` does not name; nothing is written.
            UnknownCitationError: ``cites`` or ``overrules`` name rules that do not exist.
        """
        if holding not in ("A", "B", "tie"):
            raise InputError(f"holding must be A, B or tie, not {holding!r}", field="holding")
        case = Case(prompt=prompt, response_a=as_response(response_a), response_b=as_response(response_b),
                    holding=holding, rationale=rationale, cites=tuple(cites), overrules=tuple(overrules))
        title = title or _title_from(prompt)
        rid = rule_id or f"ruling/{slugify(title, max_len=60)}-{_case_digest(case)}"
        conflicts = self.conflicts(case.as_pair(), holding, ignore=overrules)
        if conflicts:
            raise RulingConflictError(rid, [(c.ruling_id, c.holding, c.similarity) for c in conflicts])
        # Unknown citations are refused inside the store's transaction; here they just add no depth.
        specificity = 1 + max((r.specificity for r in self.store.get_many(cites).values()), default=0)
        ruling = Rule(id=rid, layer=Layer.RULING, title=title, text=ruling_text(holding, rationale),
                      specificity=specificity, tags=tuple(tags), source=source, case=case, author=author,
                      checks=tuple(checks))
        items = [PendingChange(ruling, ChangeKind.ADD, None)]
        for target in overrules:
            items.append(self._status_change(target, RuleStatus.OVERRULED, f"overruled by {rid}"))
        self._commit(items, author)
        return self.store.get(rid)

    def add_ruling_from(self, result: Verdict | str, *, holding: Holding, rationale: str,
                        pair: Pair | None = None, cites: Sequence[str] = (), overrules: Sequence[str] = (),
                        author: str | None = None, title: str | None = None, tags: Sequence[str] = (),
                        store: JudgmentStore | None = None, checks: Sequence[Check] = ()) -> Rule:
        """Make a ruling from a judged pair: the pair, the correct holding, the rationale and cited rules.

        The ruling's source is ``judgment:<cache key>``. Nothing is cited unless ``cites`` says so: the
        rules the judge cited argued for the verdict the person is correcting, so they are not assumed to
        support the holding. Conflicts are checked as in `add_ruling`.

        Args:
            result: the `Verdict`, or a result id (cache key, unique cache-key prefix of 8+ characters,
                or pair id) looked up in the judgment store.
            holding: the correct holding, in the judged pair's A/B slots.
            rationale: why.
            pair: the pair judged; by default the pair stored with the judgment. A pair given with a
                `Verdict` must be the one it judged (checked against its cache key).
            cites: rule ids the ruling cites (must exist).
            overrules: active rulings this one replaces (in the same transaction).
            author: recorded on the change.
            title: default: from the prompt.
            tags: tags of the ruling.
            store: where judgments are stored (default: the judgment store on this rulebook's database).
            checks: the ruling's yes/no checks (see `add_ruling`).

        Raises:
            InputError: the result id matches nothing or several judgments, the judgment predates stored
                pairs (pass ``pair``), or ``pair`` is not the pair the verdict judged.
            RulingConflictError, UnknownCitationError: as in `add_ruling`; nothing is written.
        """
        from judge.judging.engine import cache_key
        from judge.store.judgments import JudgmentStore

        if isinstance(result, str) or pair is None:
            found = (store or JudgmentStore(self.store.engine)).find(
                result if isinstance(result, str) else result.cache_key)
            verdict = found.verdict
            if pair is None:
                if found.pair is None:
                    raise InputError(f"judgment {verdict.cache_key[:12]} (pair {verdict.pair_id or '-'}) predates "
                                     "stored pairs: judgments recorded before schema revision 0004 kept no pair; "
                                     "add the ruling with `judge rulebook add-ruling` (or pass pair=...)",
                                     field="result_id")
                pair = found.pair
        else:
            verdict = result
        shown = [str(r["id"]) for r in verdict.retrieved]
        if cache_key(pair, verdict.rulebook_version, shown, verdict.config) != verdict.cache_key:
            raise InputError(f"the pair given is not the pair judgment {verdict.cache_key[:12]} judged",
                             field="pair")
        return self.add_ruling(prompt=pair.prompt, response_a=pair.response_a, response_b=pair.response_b,
                               holding=holding, rationale=rationale, cites=cites, overrules=overrules,
                               title=title, source=f"judgment:{verdict.cache_key}", author=author, tags=tags,
                               checks=checks)

    def conflicts(self, pair: Pair, holding: Holding, *, ignore: Sequence[str] = ()) -> list[RulingConflict]:
        """Active rulings on near-duplicate pairs whose holding contradicts ``holding`` on ``pair``.

        With an index, the `CONFLICT_CANDIDATES` nearest active rulings are examined and the pairs compared
        by embedding (threshold ``conflict_threshold``); without one, every active ruling is scanned and only
        the same pair (normalised texts, either order) counts.

        Args:
            pair: the pair a new ruling decides.
            holding: its holding, in ``pair``'s slots.
            ignore: ruling ids not to report (the ones the new ruling overrules).
        """
        return find_conflicts(pair, holding, self._candidates(pair, ignore), threshold=self.conflict_threshold)

    def precedents(self, pair: Pair, *, exclude: Sequence[str] = (), threshold: float | None = None
                   ) -> list[Precedent]:
        """Active rulings decided on the same facts as ``pair``, most similar first.

        What binds a later judgment (stare decisis): their holdings are given in ``pair``'s slots. Found as
        for `conflicts`, and stricter: the pairs as wholes *and* each response must match at ``threshold``
        (default ``conflict_threshold``); the reported similarity is the lower of the two.

        Args:
            pair: the pair being judged.
            exclude: ruling ids to leave out (leave-one-out evaluation).
            threshold: embedding cosine of prompt + responses from which a ruling's pair counts as the same.
        """
        threshold = self.conflict_threshold if threshold is None else threshold
        return near_duplicates(pair, self._candidates(pair, exclude, threshold, PRECEDENT_CANDIDATES),
                               threshold=threshold, strict=True)

    def _bound_by(self, index: RuleIndex, pair: Pair, query: np.ndarray, rulings: Sequence[Rule],
                  threshold: float) -> list[Precedent]:
        """`precedents` among ``rulings`` already found nearest to ``query`` (``pair`` embedded)."""
        with_case = [r for r in rulings if r.case is not None]
        if not with_case:
            return []
        candidates = measure_candidates(lambda texts: self._embed_memo(index, texts), pair, query, with_case,
                                        threshold=threshold)
        return near_duplicates(pair, candidates, threshold=threshold, strict=True)

    def _candidates(self, pair: Pair, exclude: Sequence[str], threshold: float | None = None,
                    n: int = CONFLICT_CANDIDATES) -> list[Candidate]:
        """The active rulings nearest ``pair``, measured for near-duplication (see `conflicts`)."""
        if self.store.count(Layer.RULING, active_only=True) == 0:
            return []  # nothing to compare with (and no need for an index that may never have been built)
        if self.index is None:
            excluded = set(exclude)
            return [Candidate(r, None) for r in self.rules(Layer.RULING, active_only=True) if r.id not in excluded]
        index = self._fresh_index()
        assert self._verified is not None  # set by _fresh_index
        query = self._query_vector(index, pair.query_text())
        hits = self._search(index, self._verified[0], query, Layer.RULING, n, exclude)
        found = self.store.get_many(h.rule_id for h in hits)
        rulings = [found[h.rule_id] for h in hits if h.rule_id in found and found[h.rule_id].case is not None]
        if not rulings:
            return []
        return measure_candidates(lambda texts: self._embed_memo(index, texts), pair, query, rulings,
                                  threshold=self.conflict_threshold if threshold is None else threshold)

    def amend(self, rule_id: str, *, reason: str, author: str | None = None, title: str | None = None,
              text: str | None = None, tags: Sequence[str] | None = None, checks: Sequence[Check] | None = None,
              allow_constitution: bool = False) -> Rule:
        """Write a new version of a rule with changed title / text / tags / checks.

        Amending the constitution requires ``allow_constitution=True``.
        """
        current = self.store.get(rule_id)
        if current.layer is Layer.CONSTITUTION and not allow_constitution:
            raise RulebookError(f"{rule_id} is in the constitution; amending it requires an explicit flag "
                                "(allow_constitution=True / --constitution)")
        update: dict[str, Any] = {}
        if title is not None:
            update["title"] = title
        if text is not None:
            update["text"] = text
        if tags is not None:
            update["tags"] = tuple(tags)
        if checks is not None:
            update["checks"] = tuple(checks)
        amended = Rule.model_validate({**current.model_dump(), **update, "author": author})
        if amended.content_hash() == current.content_hash():
            raise RulebookError(f"amendment of {rule_id} changes nothing")
        self._commit([PendingChange(amended, ChangeKind.AMEND, reason)], author)
        return self.store.get(rule_id)

    def overrule(self, ruling_id: str, *, reason: str, author: str | None = None) -> Rule:
        """Mark an active ruling overruled (a new version); it no longer binds or is retrieved."""
        self._commit([self._status_change(ruling_id, RuleStatus.OVERRULED, reason)], author)
        return self.store.get(ruling_id)

    def supersede(self, ruling_id: str, *, reason: str, author: str | None = None) -> Rule:
        """Mark an active ruling superseded (a new version); it no longer binds or is retrieved."""
        self._commit([self._status_change(ruling_id, RuleStatus.SUPERSEDED, reason)], author)
        return self.store.get(ruling_id)

    def _status_change(self, ruling_id: str, status: RuleStatus, reason: str) -> PendingChange:
        try:
            current = self.store.get(ruling_id)
        except RuleNotFoundError as exc:
            raise OverruleError(f"cannot {status.value[:-2]}e {ruling_id!r}: no such ruling") from exc
        if current.layer is not Layer.RULING:
            raise OverruleError(f"cannot {status.value[:-2]}e {ruling_id!r}: only rulings can be; amend "
                                "constitution and spec entries instead")
        if not current.binds:
            raise OverruleError(f"{ruling_id!r} is already {current.status.value}")
        kind = ChangeKind.OVERRULE if status is RuleStatus.OVERRULED else ChangeKind.SUPERSEDE
        return PendingChange(current.model_copy(update={"status": status}), kind, reason)

    def load(self, path: str | Path, *, author: str | None = None, allow_constitution: bool = False) -> SyncReport:
        """Load rulebook text (see `judge.rules.textio`) idempotently: unchanged rules add no version.

        Parsing happens before any write; the whole load is one transaction. Text that changes an existing
        constitution rule is refused (nothing is written) unless ``allow_constitution`` is True, as for
        `amend`; adding new constitution rules needs no flag. Rulings are loaded as written: reviewed text
        is the record, so no conflict check runs here.
        """
        rules = read_rulebook(Path(path))
        report = self.store.sync(rules, author=author, reason=f"loaded from {path}",
                                 allow_constitution=allow_constitution)
        self.sync_index()
        return report

    def ingest(self, rules: Iterable[Rule], *, batch_size: int = 5000, author: str | None = None,
               reason: str | None = None, allow_constitution: bool = False,
               on_batch: Callable[[IngestReport], None] | None = None) -> IngestReport:
        """Load a stream of rules of any size, one transaction per batch, then update the index.

        For rulebooks too large for `load` (which parses everything, then writes it in one transaction):
        ``rules`` is consumed lazily and at most one batch is held in memory. Each batch is idempotent like
        `load` (new ids added, changed ones amended, unchanged ones skipped), so re-running an interrupted
        ingest continues where it stopped. A ruling may cite rules in its own or an earlier batch.

        Args:
            rules: rules in any order that puts cited rules no later than the batch citing them.
            batch_size: rules per transaction.
            author: recorded on every change.
            reason: recorded on every change.
            allow_constitution: as for `load`.
            on_batch: called with the running totals after each committed batch (progress bars).

        Raises:
            RulebookError: a batch is invalid (repeated id, unknown citation, constitution amended without
                ``allow_constitution``); the batches before it stay committed, nothing of it is written.
        """
        if batch_size < 1:
            raise RulebookError(f"batch_size must be at least 1, got {batch_size}")
        totals = IngestReport(added=0, amended=0, unchanged=0, batches=0, rulebook_version=self.version)
        for batch in batched(rules, batch_size):
            report = self.store.sync(batch, author=author, reason=reason, allow_constitution=allow_constitution)
            totals = IngestReport(added=totals.added + report.added, amended=totals.amended + report.amended,
                                  unchanged=totals.unchanged + report.unchanged, batches=totals.batches + 1,
                                  rulebook_version=report.rulebook_version)
            if on_batch is not None:
                on_batch(totals)
        self.sync_index()
        return totals

    def impact(self, since_version: str, *, store: JudgmentStore | None = None) -> ImpactReport:
        """Stored judgments whose shown rules would differ now, among those recorded at ``since_version``
        or any later version before the current one (see `judge.judging.impact.impact`)."""
        from judge.judging.impact import impact
        from judge.store.judgments import JudgmentStore

        return impact(self, store or JudgmentStore(self.store.engine), since_version)

    # ----------------------------------------------------------------- retrieval
    def _require_index(self) -> RuleIndex:
        if self.index is None:
            raise RulebookError("this Rulebook was opened without a retrieval index")
        return self.index

    def sync_index(self, *, page_size: int = 1000) -> int:
        """Apply every change the index has not seen yet; returns how many rules were re-indexed.

        Streams the change log a page at a time (memory bounded by ``page_size``, whatever the rulebook's
        size); a rule changed in two pages is re-indexed twice and counted twice.
        """
        if self.index is None:
            return 0
        index = self.index
        state = index.state()
        head = self.store.head()
        if head is None:
            return 0
        if state.seq is not None and state.seq >= head.seq:
            return 0
        done = 0
        for changes in batched(self.store.changes_since(state.seq or 0, batch_size=page_size), page_size):
            ids = sorted({c.rule_id for c in changes})
            done += index.upsert(self.store.get_many(ids).values())
        index.mark(head.rulebook_version, head.seq)
        log.info("index synced: %d rule(s) re-indexed up to %s", done, head.rulebook_version)
        return done

    def rebuild_index(self) -> int:
        """Drop the index and rebuild it (and the lexical index) from SQL; returns the number of rules indexed."""
        index = self._require_index()
        head = self.store.head()
        version = head.rulebook_version if head else self.store.version
        index.rebuild(self.store.iter_current(), version, head.seq if head else 0)
        self.store.rebuild_lexical()
        self._tables.clear()
        self._verified = None
        return index.count()

    def _fresh_index(self) -> RuleIndex:
        """The index, checked (or synced) against the current rulebook version."""
        index = self._require_index()
        version = self.store.version
        if self._verified is None or self._verified[0] != version:
            try:
                index.check(version)
            except IndexSchemaError:
                # Built by a judge with another layout (e.g. before passages): rebuilt whole, never mixed.
                if not self.auto_sync:
                    raise
                log.warning("the retrieval index has an older layout; rebuilding it from the rulebook")
                self.rebuild_index()
            except IndexStaleError:
                never_built = index.state().seq is None
                if never_built and version == EMPTY_RULEBOOK_VERSION:
                    self.rebuild_index()  # nothing to index: an empty index is current (judging with no rules)
                elif not self.auto_sync or never_built:
                    raise
                else:
                    self.sync_index()
            self._verified = (version, self.store.count(Layer.CONSTITUTION, active_only=True))
        return index

    def _table(self, index: RuleIndex, version: str, layer: Layer) -> LayerTable | None:
        """``layer`` in memory at ``version`` if it holds at most `EXACT_LAYER_MAX` rules (the constitution
        always), read once per rulebook version; None for a larger layer."""
        cached = self._tables.get(layer)
        if cached is None or cached[0] != version:
            small = layer is Layer.CONSTITUTION or index.count(layer) <= EXACT_LAYER_MAX
            cached = self._tables[layer] = (version, index.layer_table(layer) if small else None)
        return cached[1]

    def _search(self, index: RuleIndex, version: str, vector: np.ndarray, layer: Layer, k: int,
                exclude: Sequence[str], *, process_only: bool = False, use_passages: bool = False) -> list[Hit]:
        """The ``k`` binding rules of ``layer`` nearest ``vector``: scored exactly in memory for a small layer
        (a dot product instead of an index query, ~1 ms less each), else by the index. ``use_passages``
        scores a rule by its best passage too (retrieval); without, by its whole text (precedent matching)."""
        table = self._table(index, version, layer)
        if table is None:
            return index.query_vector(vector, layer=layer, k=k, exclude=exclude,
                                      where_extra={"process": True} if process_only else None,
                                      use_passages=use_passages)
        return table.search(vector, k, exclude=frozenset(exclude), process_only=process_only,
                            use_passages=use_passages)

    def _rules_at(self, version: str, ids: Sequence[str]) -> dict[str, Rule]:
        """`RulebookStore.get_many`, remembering what was read at ``version`` (every retrieval fetches the
        same constitution; a batch keeps meeting the same entries)."""
        seen_version, seen = self._rules_seen
        if seen_version != version or len(seen) > RULE_MEMO:
            seen = {}
            self._rules_seen = (version, seen)
        missing = [rule_id for rule_id in ids if rule_id not in seen]
        if missing:
            seen.update(self.store.get_many(missing))
        return {rule_id: seen[rule_id] for rule_id in ids if rule_id in seen}

    def _query_vector(self, index: RuleIndex, text: str) -> np.ndarray:
        vector: np.ndarray = self._embed_memo(index, [text])[0]
        return vector

    def _embed_memo(self, index: RuleIndex, texts: list[str]) -> np.ndarray:
        """Embed ``texts``, answering the recently embedded ones from the memo (exact text match)."""
        memo = self._vectors
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            for text, vector in zip(missing, index.embedder.encode(missing), strict=True):
                memo[text] = vector
        out = np.stack([memo[t] for t in texts])
        for text in texts:
            memo.move_to_end(text)
        while len(memo) > EMBED_MEMO:
            memo.popitem(last=False)
        return out

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
        config = self.retrieval
        vector = self._query_vector(index, pair.query_text())
        n_rulings = k if k_rulings is None else k_rulings
        wanted = max(n_rulings, PRECEDENT_CANDIDATES) if precedent_threshold is not None else n_rulings
        # The nearest rulings by the whole pair: precedent candidates, and the dense-only ruling ranking.
        ruling_hits = (self._search(index, version, vector, Layer.RULING, wanted, exclude,
                                    use_passages=config.passages and not config.fused) if wanted else [])
        if config.fused:
            scores, similarity = self._fused(index, version, pair, vector, ruling_hits, k=k, n_rulings=n_rulings,
                                             n_const=n_const, k_process=k_process, exclude=exclude)
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
        return Retrieval(version, ordered, precedence, precedents)

    def _dense(self, index: RuleIndex, version: str, pair: Pair, vector: np.ndarray, ruling_hits: list[Hit], *,
               k: int, n_rulings: int, n_const: int, k_process: int, exclude: Sequence[str]
               ) -> tuple[dict[str, float], dict[str, float]]:
        """Scores by cosine to the joint query: every binding constitution rule, the top-k spec entries and
        rulings, and process rules for a pair with a process."""
        passages = self.retrieval.passages
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
               ) -> tuple[dict[str, float], dict[str, float]]:
        """Scores by reciprocal rank fusion (see `judge.retrieval.fusion`).

        Rankings: dense search with the joint query and, with ``split_queries``, with the prompt and each
        response alone; lexical search with the same texts. Constitution rules and spec entries are ranked in
        one pool (the constitution scores like any rule, rather than being shown whatever the pair); rulings
        in another. Returns every binding constitution rule (scored, 0 when no ranking listed it), the top-k
        spec entries and top rulings by fused score, and the fused and cosine scores.
        """
        config = self.retrieval
        texts = [pair.query_text()]
        if config.split_queries:
            texts += [t for t in (pair.prompt, pair.response_a.text, pair.response_b.text) if t.strip()]
        texts = list(dict.fromkeys(texts))
        vectors = [vector, *self._embed_memo(index, texts[1:])] if len(texts) > 1 else [vector]
        depth = max(config.depth, k, n_rulings)
        pool: list[list[str]] = []
        rulings: list[list[str]] = []
        similarity: dict[str, float] = {}

        def note(hits: list[Hit]) -> list[Hit]:
            for h in hits:
                similarity[h.rule_id] = max(h.score, similarity.get(h.rule_id, h.score))
            return hits

        for each in vectors:
            found = note([hit for layer in (Layer.CONSTITUTION, Layer.SPEC) for hit in self._search(
                index, version, each, layer, depth, exclude, use_passages=config.passages)])
            pool.append([h.rule_id for h in sorted(found, key=lambda h: -h.score)[:depth]])
            if n_rulings > 0:
                rulings.append([h.rule_id for h in note(self._search(index, version, each, Layer.RULING, depth,
                                                                       exclude, use_passages=config.passages))])
        if config.lexical:
            lexical_texts = texts[1:] if len(texts) > 1 else texts
            for text in lexical_texts:
                pool.append([rid for rid, _ in self.store.lexical_search(
                    text, (Layer.CONSTITUTION, Layer.SPEC), depth, exclude=exclude)])
                if n_rulings > 0:
                    rulings.append([rid for rid, _ in self.store.lexical_search(text, (Layer.RULING,), depth,
                                                                                exclude=exclude)])
        if pair.has_process() and k_process > 0:
            process_vector = self._query_vector(index, _process_text(pair))
            pool.append([h.rule_id for h in note(self._search(index, version, process_vector, Layer.SPEC,
                                                               k_process, exclude, process_only=True,
                                                               use_passages=config.passages))])
        pool_scores = reciprocal_rank_fusion(pool, k=config.rrf_k)
        ruling_scores = reciprocal_rank_fusion(rulings, k=config.rrf_k)
        scores: dict[str, float] = {}
        if n_const > 0:
            for h in self._search(index, version, vector, Layer.CONSTITUTION, n_const, exclude):
                scores[h.rule_id] = pool_scores.get(h.rule_id, 0.0)
        spec = sorted(((rid, v) for rid, v in pool_scores.items() if rid not in scores
                       and rid.startswith(Layer.SPEC.value + "/")), key=lambda item: (-item[1], item[0]))
        process_ids = set(pool[-1]) if pair.has_process() and k_process > 0 else set()
        # Process rules judge a process: for a pair without one they are not candidates.
        candidates = self._rules_at(version, [rid for rid, _ in spec])
        taken = 0
        for rid, value in spec:
            if rid in process_ids:
                scores[rid] = value
            elif taken < k and rid in candidates and not candidates[rid].process_rule:
                scores[rid] = value
                taken += 1
        for rid, value in sorted(ruling_scores.items(), key=lambda item: (-item[1], item[0]))[:n_rulings]:
            scores[rid] = value
        return scores, similarity

def _ruling_refs(rule: Rule) -> tuple[str, ...]:
    return (*rule.case.cites, *rule.case.overrules) if rule.case is not None else ()


def _process_text(pair: Pair) -> str:
    parts = []
    for response in (pair.response_a, pair.response_b):
        process = response.process
        if process is None:
            continue
        parts.append(process.reasoning or "")
        parts.extend(f"{c.name} {c.arguments} {c.result or ''}" for c in process.tool_calls)
    return "\n".join(parts)


def _title_from(prompt: str) -> str:
    words = " ".join(prompt.split())
    return (words[:60].rsplit(" ", 1)[0] if len(words) > 60 else words) or "ruling"


def _case_digest(case: Case) -> str:
    return hashlib.sha256(case.model_dump_json().encode()).hexdigest()[:8]
