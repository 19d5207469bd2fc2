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

A small facade: the store keeps rules and their history, a `judge.retrieval.retriever.Retriever` keeps the
index and retrieves, `judge.caselaw` prepares rulings (conflicts with near-duplicate pairs raise
`RulingConflictError` and write nothing, until the ruling names the one it ``overrules``; both changes then
land in one transaction) and measures the impact of changes on stored judgments.
The rulings side of the facade (add, overrule, supersede, conflicts, precedents) is
`judge.caselaw.writes.RulingWrites`, mixed in.
"""


from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from judge._iter import batched
from judge.caselaw.impact import ImpactReport, impact
from judge.caselaw.rulings import CaseLaw
from judge.caselaw.writes import RulingWrites
from judge.errors import InputError, RulebookError, RulebookParseError, first_validation_error
from judge.retrieval.case_exemplars import exemplar_fingerprint
from judge.retrieval.embedder import Embedder, embedder_for
from judge.retrieval.fusion import RetrievalConfig
from judge.retrieval.index import INDEX_SCHEMA_VERSION, DeferredClient, RuleIndex
from judge.retrieval.retriever import Retrieval, RetrievedRule, Retriever
from judge.rules.conflicts import DEFAULT_CONFLICT_THRESHOLD
from judge.rules.model import Change, ChangeKind, Check, Layer, Pair, Rule
from judge.rules.textio import WriteReport, read_rulebook, write_rulebook
from judge.settings import Settings
from judge.store import PendingChange, RulebookStore, SyncReport, open_database
from judge.store.judgments import JudgmentStore

__all__ = ["IngestReport", "Retrieval", "RetrievedRule", "Rulebook"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    """Running totals of `Rulebook.ingest`: rules added / amended / unchanged over the committed batches, and
    rulings overruled by the ``overrules`` of rulings ingested."""

    added: int
    amended: int
    unchanged: int
    batches: int
    rulebook_version: str
    overruled: int = 0
    not_reinstated: int = 0  # rulings given as active that stay overruled or superseded (see `RulebookStore.sync`)


class Rulebook(RulingWrites):
    """A layered, versioned rulebook stored in SQL and retrieved per pair through a derived index.

    Args:
        store: the SQL system of record.
        index: the derived retrieval index, or None for a rulebook that is never retrieved from.
        auto_sync: bring a stale (but built) index up to date before retrieving instead of raising.
        conflict_threshold: embedding cosine of prompt + responses from which a new ruling's pair is a
            near-duplicate of an active ruling's (see `judge.rules.conflicts`).
        retrieval: how `retrieve` searches (default: passages, dense + lexical, split queries, fused).
        judgments: the judgment store rulings are made from (default: the one in the store's database).
    """

    def __init__(self, store: RulebookStore, index: RuleIndex | None = None, *, auto_sync: bool = True,
                 conflict_threshold: float = DEFAULT_CONFLICT_THRESHOLD,
                 retrieval: RetrievalConfig | None = None, judgments: JudgmentStore | None = None) -> None:
        self.store = store
        self.retriever = Retriever(store, index, auto_sync=auto_sync, config=retrieval)
        self.caselaw = CaseLaw(store, self.retriever, conflict_threshold=conflict_threshold)
        self.judgments = judgments or JudgmentStore.beside(store)

    @classmethod
    def open(cls, url: str | None = None, *, settings: Settings | None = None, with_index: bool = True,
             embedder: Embedder | None = None, auto_sync: bool = True,
             conflict_threshold: float = DEFAULT_CONFLICT_THRESHOLD,
             retrieval: RetrievalConfig | None = None) -> Rulebook:
        """Open (creating and migrating if needed) the rulebook at `url` or the configured database."""
        settings = settings or Settings.from_env()
        return cls.on_store(RulebookStore(open_database(url or settings.resolved_db_url)), settings,
                            with_index=with_index, embedder=embedder, auto_sync=auto_sync,
                            conflict_threshold=conflict_threshold, retrieval=retrieval)

    @classmethod
    def on_store(cls, store: RulebookStore, settings: Settings, *, with_index: bool = True,
                 embedder: Embedder | None = None, auto_sync: bool = True,
                 conflict_threshold: float | None = None, retrieval: RetrievalConfig | None = None,
                 judgments: JudgmentStore | None = None) -> Rulebook:
        """The rulebook on an open store, with the index, embedder and retrieval configuration ``settings`` name
        (``embedder`` and ``retrieval`` override them; ``conflict_threshold`` None: the default). The index is
        opened on first use: a request answered from the judgment store never opens it."""
        index = None
        if with_index:
            index = RuleIndex(DeferredClient(settings), embedder or embedder_for(settings))
        retrieval = retrieval or RetrievalConfig.named(settings.retrieval, common_fraction=settings.full_text_common)
        return cls(store, index, auto_sync=auto_sync, retrieval=retrieval,
                   conflict_threshold=DEFAULT_CONFLICT_THRESHOLD if conflict_threshold is None else conflict_threshold,
                   judgments=judgments)

    @property
    def index(self) -> RuleIndex | None:
        """The derived retrieval index (None: this rulebook is never retrieved from)."""
        return self.retriever.index

    @property
    def conflict_threshold(self) -> float:
        """Embedding cosine from which two rulings' pairs are near-duplicates (see `CaseLaw`)."""
        return self.caselaw.conflict_threshold

    @conflict_threshold.setter
    def conflict_threshold(self, value: float) -> None:
        self.caselaw = CaseLaw(self.store, self.retriever, conflict_threshold=value)

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
    def _writing(self) -> AbstractContextManager[None]:
        """One writer at a time on a local index, across processes (`RuleIndex.writing`)."""
        return self.index.writing() if self.index is not None else nullcontext()

    def _commit(self, items: Sequence[PendingChange], author: str | None) -> list[Change]:
        self.retriever.check_index_model()
        changes = self.store.commit(items, author=author)
        self.sync_index()
        return changes

    def add_rule(self, rule: Rule, *, author: str | None = None, reason: str | None = None) -> Rule:
        """Add a new rule (any layer). Its id must be new."""
        self._commit([PendingChange(rule, ChangeKind.ADD, reason)], author)
        return self.store.get(rule.id)

    def amend(self, rule_id: str, *, reason: str, author: str | None = None, title: str | None = None,
              text: str | None = None, tags: Sequence[str] | None = None, checks: Sequence[Check] | None = None,
              allow_constitution: bool = False) -> Rule:
        """Write a new version of a rule with changed title / text / tags / checks.

        Amending the constitution requires ``allow_constitution=True``.

        Raises:
            InputError: the amended rule is not valid (an empty title or text, a malformed check).
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
        try:
            amended = Rule.model_validate({**current.model_dump(), **update, "author": author})
        except ValidationError as exc:  # an empty title or text, a malformed check: the caller's input
            where, message = first_validation_error(exc, "rule")
            raise InputError(f"amendment of {rule_id}: {message}", field=where) from None
        if amended.content_hash() == current.content_hash():
            raise RulebookError(f"amendment of {rule_id} changes nothing")
        self._commit([PendingChange(amended, ChangeKind.AMEND, reason)], author)
        return self.store.get(rule_id)

    def load(self, path: str | Path, *, author: str | None = None, allow_constitution: bool = False,
             amend: bool = True) -> SyncReport:
        """Load rulebook text (see `judge.rules.textio`) idempotently: unchanged rules add no version.

        Parsing happens before any write; the whole load is one transaction. A directory with no rule in it
        is refused (`RulebookParseError`), as the likely wrong folder. Text that changes an existing
        constitution rule is refused (nothing is written) unless ``allow_constitution`` is True, as for
        `amend`; adding new constitution rules needs no flag. Rulings are loaded as written: reviewed text
        is the record, so no conflict check runs here. With ``amend=False`` only new rules are added: rules
        stored with other text keep it (listed in the report's ``kept``).
        """
        rules = read_rulebook(Path(path))
        if not rules:
            raise RulebookParseError("no rules in the directory (rules are *.md files, rulings *.jsonl lines): "
                                     "is it the rulebook folder?", path=Path(path))
        self.retriever.check_index_model()
        report = self.store.sync(rules, author=author, reason=f"loaded from {path}",
                                 allow_constitution=allow_constitution, amend=amend)
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

        A ruling that names others in ``overrules`` overrules them in its batch's transaction, as
        `add_ruling` does, and a ruling given as active that the rulebook holds as overruled or superseded
        keeps that status (counted in ``not_reinstated``); the check for contradicting rulings on
        near-duplicate pairs that `add_ruling` makes is not run (it needs an embedding and an index query per
        ruling: see `contradictions`).

        Raises:
            RulebookError: a batch is invalid (repeated id, unknown citation, constitution amended without
                ``allow_constitution``); the batches before it stay committed, nothing of it is written.
        """
        if batch_size < 1:
            raise RulebookError(f"batch_size must be at least 1, got {batch_size}")
        self.retriever.check_index_model()
        totals = IngestReport(added=0, amended=0, unchanged=0, batches=0, rulebook_version=self.version)
        for batch in batched(rules, batch_size):
            report = self.store.sync(batch, author=author, reason=reason, allow_constitution=allow_constitution)
            totals = IngestReport(added=totals.added + report.added, amended=totals.amended + report.amended,
                                  overruled=totals.overruled + report.overruled,
                                  not_reinstated=totals.not_reinstated + len(report.not_reinstated),
                                  unchanged=totals.unchanged + report.unchanged, batches=totals.batches + 1,
                                  rulebook_version=report.rulebook_version)
            if on_batch is not None:
                on_batch(totals)
        self.sync_index()
        return totals

    def impact(self, since_version: str, *, store: JudgmentStore | None = None) -> ImpactReport:
        """Stored judgments whose shown rules would differ now, among those recorded at ``since_version``
        or any later version before the current one (see `judge.caselaw.impact.impact`)."""
        return impact(self, store or self.judgments, since_version)

    # ----------------------------------------------------------------- retrieval (see `Retriever`)
    def sync_index(self, *, page_size: int = 1000) -> int:
        """Apply every change the index has not seen yet; returns how many rules were re-indexed."""
        return self.retriever.sync_index(page_size=page_size)

    def rebuild_index(self) -> int:
        """Drop the index and rebuild it from SQL; returns the number of rules indexed."""
        return self.retriever.rebuild_index()

    def retrieval_settings(self) -> dict[str, Any]:
        """What decides what `retrieve` returns besides the pair and the rulebook version, as plain data: the
        retrieval configuration, the embedder, the index layout (the index itself is derived from the
        rulebook version) and, when test cases guide retrieval, the state of the accepted cases. Read without
        opening the index or loading the embedding model."""
        index = self.index
        config = self.retriever.config
        cases = (exemplar_fingerprint(self.store.engine, index.embedder.name)
                 if index is not None and config.fused and config.cases else None)
        return {"config": dataclasses.asdict(config),
                "embedder": index.embedder.name if index is not None else None,
                "collection": index.collection_name if index is not None else None,
                "index_schema": INDEX_SCHEMA_VERSION, "cases": cases}

    def retrieve(self, pair: Pair, *, k: int = 5, k_rulings: int | None = None, k_process: int = 3,
                 exclude: Sequence[str] = (), precedent_threshold: float | None = None) -> Retrieval:
        """The rules that apply to a pair, ordered by precedence (see `Retriever.retrieve`).

        Raises:
            TypeError: ``pair`` is not a `Pair`, or ``exclude`` is one string rather than a sequence of ids.
            ValueError: a negative count.
        """
        if not isinstance(pair, Pair):
            raise TypeError(f"retrieve: expected a judge.Pair, got {type(pair).__name__}")
        if isinstance(exclude, str):
            raise TypeError("retrieve: exclude is a sequence of rule ids, not one string (exclude=[...])")
        if min(k, k_process, 0 if k_rulings is None else k_rulings) < 0:
            raise ValueError("retrieve: k, k_rulings and k_process must not be negative")
        return self.retriever.retrieve(pair, k=k, k_rulings=k_rulings, k_process=k_process, exclude=exclude,
                                       precedent_threshold=precedent_threshold)


def _ruling_refs(rule: Rule) -> tuple[str, ...]:
    return (*rule.case.cites, *rule.case.overrules) if rule.case is not None else ()
