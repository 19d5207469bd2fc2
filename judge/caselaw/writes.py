"""The case-law side of `judge.rulebook.Rulebook`: add rulings (from a pair or a stored judgment) after the
conflict check, find conflicting rulings and binding precedents, overrule and supersede rulings.

`RulingWrites` is a mixin: the `Rulebook` provides the store, the `CaseLaw`, the judgment store and its one
write path (`_writing` and `_commit`: commit, then bring the index up to date).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from judge._iter import batched
from judge.caselaw.rulings import CaseLaw
from judge.errors import InputError, OverruleError, RuleNotFoundError
from judge.rules.conflicts import Precedent, RulingConflict
from judge.rules.model import Change, ChangeKind, Check, Holding, Layer, Pair, Response, Rule, RuleStatus
from judge.store import PendingChange, RulebookStore
from judge.store.judgments import JudgmentStore
from judge.store.plan import overrule_change
from judge.verdicts import Verdict

__all__ = ["Contradiction", "RulingWrites"]


@dataclass(frozen=True)
class Contradiction:
    """Two active rulings decided on near-duplicate pairs with contradicting holdings.

    Attributes:
        ruling_id: the ruling checked.
        holding: its holding, in its own pair's slots.
        other: the active ruling that contradicts it, its holding given in ``ruling_id``'s slots.
    """

    ruling_id: str
    holding: Holding
    other: RulingConflict

#: The verb of a status change, for messages.
_VERB = {RuleStatus.OVERRULED: "overrule", RuleStatus.SUPERSEDED: "supersede"}


class RulingWrites:
    """Rulings written and looked up through `CaseLaw` (a mixin of `Rulebook`, which sets the attributes)."""

    store: RulebookStore
    caselaw: CaseLaw
    judgments: JudgmentStore

    if TYPE_CHECKING:
        def _writing(self) -> AbstractContextManager[None]: ...

        def _commit(self, items: Sequence[PendingChange], author: str | None) -> list[Change]: ...

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
        with self._writing():  # the conflict check sees every ruling written before, none half-written
            ruling = self.caselaw.new_ruling(prompt=prompt, response_a=response_a, response_b=response_b,
                                             holding=holding, rationale=rationale, cites=cites,
                                             overrules=overrules, rule_id=rule_id, title=title, source=source,
                                             author=author, tags=tags, checks=checks)
            items = [PendingChange(ruling, ChangeKind.ADD, None)]
            items += [overrule_change(self._still_binding(target, RuleStatus.OVERRULED), ruling)
                      for target in overrules]
            self._commit(items, author)
        return self.store.get(ruling.id)

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
            store: where judgments are stored (default: `judgments`).
            checks: the ruling's yes/no checks (see `add_ruling`).

        Raises:
            InputError: the result id matches nothing or several judgments, the judgment predates stored
                pairs (pass ``pair``), or ``pair`` is not the pair the verdict judged.
            RulingConflictError, UnknownCitationError: as in `add_ruling`; nothing is written.
        """
        verdict, pair = self.caselaw.judged_pair(result, pair, store or self.judgments)
        return self.add_ruling(prompt=pair.prompt, response_a=pair.response_a, response_b=pair.response_b,
                               holding=holding, rationale=rationale, cites=cites, overrules=overrules,
                               title=title, source=f"judgment:{verdict.cache_key}", author=author, tags=tags,
                               checks=checks)

    def conflicts(self, pair: Pair, holding: Holding, *, ignore: Sequence[str] = ()) -> list[RulingConflict]:
        """Active rulings on near-duplicate pairs contradicting ``holding`` (see `CaseLaw.conflicts`)."""
        return self.caselaw.conflicts(pair, holding, ignore=ignore)

    def contradictions(self, ruling_ids: Iterable[str] | None = None, *,
                       on_ruling: Callable[[], None] | None = None) -> Iterator[Contradiction]:
        """Active rulings that contradict each other on near-duplicate pairs, each pair of rulings once.

        The check `add_ruling` makes before writing, made of rulings already stored: after a bulk `ingest`
        (which does not make it) or to audit a rulebook. Each ruling costs what `conflicts` costs (an
        embedding of its pair and an index query), so pass the ids to check when only some are new.

        Args:
            ruling_ids: the rulings to check (an overruled, superseded or unknown id, or a rule that is not
                a ruling, is skipped); None checks every active ruling.
            on_ruling: called after each ruling checked (progress bars).
        """
        ids = (rule.id for rule in self.store.iter_current(Layer.RULING, active_only=True)) \
            if ruling_ids is None else iter(ruling_ids)
        reported: set[frozenset[str]] = set()
        for chunk in batched(ids, 200):
            found = self.store.get_many(chunk)
            for rule_id in chunk:
                rule = found.get(rule_id)
                if rule is not None and rule.binds and rule.case is not None:
                    for other in self.conflicts(rule.case.as_pair(), rule.case.holding, ignore=[rule.id]):
                        key = frozenset((rule.id, other.ruling_id))
                        if key not in reported:
                            reported.add(key)
                            yield Contradiction(rule.id, rule.case.holding, other)
                if on_ruling is not None:
                    on_ruling()

    def precedents(self, pair: Pair, *, exclude: Sequence[str] = (), threshold: float | None = None
                   ) -> list[Precedent]:
        """Active rulings decided on the same facts as ``pair`` (see `CaseLaw.precedents`)."""
        return self.caselaw.precedents(pair, exclude=exclude, threshold=threshold)

    def overrule(self, ruling_id: str, *, reason: str, author: str | None = None) -> Rule:
        """Mark an active ruling overruled (a new version); it no longer binds or is retrieved."""
        self._commit([self._status_change(ruling_id, RuleStatus.OVERRULED, reason)], author)
        return self.store.get(ruling_id)

    def supersede(self, ruling_id: str, *, reason: str, author: str | None = None) -> Rule:
        """Mark an active ruling superseded (a new version); it no longer binds or is retrieved."""
        self._commit([self._status_change(ruling_id, RuleStatus.SUPERSEDED, reason)], author)
        return self.store.get(ruling_id)

    def _status_change(self, ruling_id: str, status: RuleStatus, reason: str) -> PendingChange:
        if not isinstance(reason, str) or not reason.strip():
            raise InputError(f"cannot {_VERB[status]} {ruling_id!r} without a reason: it is recorded in the "
                             "ruling's history", field="reason")
        current = self._still_binding(ruling_id, status)
        kind = ChangeKind.OVERRULE if status is RuleStatus.OVERRULED else ChangeKind.SUPERSEDE
        return PendingChange(current.model_copy(update={"status": status}), kind, reason)

    def _still_binding(self, ruling_id: str, status: RuleStatus) -> Rule:
        """The latest version of a ruling that can be given ``status``: it exists, is a ruling and binds."""
        try:
            current = self.store.get(ruling_id)
        except RuleNotFoundError as exc:
            raise OverruleError(f"cannot {_VERB[status]} {ruling_id!r}: no such ruling") from exc
        if current.layer is not Layer.RULING:
            raise OverruleError(f"cannot {_VERB[status]} {ruling_id!r}: only rulings can be; amend "
                                "constitution and spec entries instead")
        if not current.binds:
            raise OverruleError(f"{ruling_id!r} is already {current.status.value}")
        return current

