"""Planning a batch of changes: version numbers, validation and the hash chain, as pure functions.

The repository reads what it needs (the chain's head, the latest version of every id the batch touches
or cites) and hands it here; `plan_batch` returns the exact rule versions and change-log entries to
insert, or raises a `judge.errors.RulebookError`. No session, no clock: the time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from judge.errors import (
    DuplicateRuleError,
    OverruleError,
    RulebookError,
    RuleNotFoundError,
    UnknownCitationError,
)
from judge.rules.model import ChangeKind, Layer, Rule, RuleStatus, next_rulebook_version

__all__ = ["Existing", "PendingChange", "PlannedChange", "overrule_change", "overrules_to_apply", "plan_batch",
           "referenced_ids"]


class PendingChange(NamedTuple):
    """A change to commit: the new content of a rule, why it changed, and an optional reason.

    The store assigns the version number, time and (when given to `commit`) the author.
    """

    rule: Rule
    kind: ChangeKind
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Existing:
    """What the store knows about the latest stored version of one rule id."""

    version: int
    layer: Layer
    content_hash: str
    status: RuleStatus = RuleStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One rule version and its change-log entry, ready to insert (``seq`` is assigned by the DB)."""

    rule: Rule
    content_hash: str
    kind: ChangeKind
    reason: str | None
    author: str | None
    at: datetime
    previous_rulebook_version: str
    rulebook_version: str


_STATUS_FOR_KIND = {ChangeKind.OVERRULE: RuleStatus.OVERRULED, ChangeKind.SUPERSEDE: RuleStatus.SUPERSEDED}


def referenced_ids(items: Iterable[PendingChange]) -> set[str]:
    """Every id a batch touches, cites or overrules: what the repository must look up first."""
    ids: set[str] = set()
    for item in items:
        ids.add(item.rule.id)
        if item.rule.case is not None:
            ids.update(item.rule.case.cites)
            ids.update(item.rule.case.overrules)
    return ids


def plan_batch(
    items: Sequence[PendingChange],
    *,
    head: str,
    existing: Mapping[str, Existing],
    at: datetime,
    author: str | None = None,
    forward_refs: bool = False,
) -> list[PlannedChange]:
    """Assign versions, validate and extend the hash chain for a batch of changes.

    Args:
        items: the changes, applied in order.
        head: the rulebook version before the batch.
        existing: the latest stored version of (at least) every id in `referenced_ids(items)`.
        at: the commit time, used for every change and rule version of the batch.
        author: overrides each rule's own ``author`` when given.
        forward_refs: let rulings cite and overrule rules that come later in the same batch (used when
            loading a whole rulebook from text, where file order is arbitrary).

    Raises:
        DuplicateRuleError: an ADD for an id that exists (stored or earlier in the batch).
        RuleNotFoundError: an AMEND/OVERRULE/SUPERSEDE for an id that does not exist.
        UnknownCitationError: a ruling cites or overrules ids that do not exist.
        OverruleError: overruling/superseding a non-ruling, a ruling overruling itself or a non-ruling,
            a kind that disagrees with the rule's status, or a change that makes an overruled or superseded
            ruling active again (one that no longer binds stays so; a new ruling decides instead).
        RulebookError: an amendment changes a rule's layer.
    """
    latest: dict[str, Existing] = dict(existing)
    batch_ids = {item.rule.id for item in items} if forward_refs else set()
    planned: list[PlannedChange] = []
    previous = head
    for item in items:
        rule, kind = item.rule, ChangeKind(item.kind)
        version = _next_version(rule, kind, latest.get(rule.id))
        _check_status(rule, kind)
        _check_not_reinstated(rule, latest.get(rule.id))
        _check_references(rule, latest, batch_ids)
        stored = rule.model_copy(update={"version": version, "created_at": at,
                                         "author": author if author is not None else rule.author})
        rule_hash = stored.content_hash()
        rulebook_version = next_rulebook_version(previous, rule.id, version, rule_hash)
        planned.append(PlannedChange(
            rule=stored, content_hash=rule_hash, kind=kind, reason=item.reason, author=stored.author, at=at,
            previous_rulebook_version=previous, rulebook_version=rulebook_version,
        ))
        latest[rule.id] = Existing(version=version, layer=rule.layer, content_hash=rule_hash, status=rule.status)
        previous = rulebook_version
    return planned


def _next_version(rule: Rule, kind: ChangeKind, current: Existing | None) -> int:
    if kind is ChangeKind.ADD:
        if current is not None:
            raise DuplicateRuleError(rule.id)
        return 1
    if current is None:
        raise RuleNotFoundError(rule.id)
    if current.layer is not rule.layer:
        raise RulebookError(
            f"rule {rule.id!r} is in layer {current.layer.value!r}; an amendment cannot move it to "
            f"{rule.layer.value!r}"
        )
    return current.version + 1


def _check_status(rule: Rule, kind: ChangeKind) -> None:
    wanted = _STATUS_FOR_KIND.get(kind)
    if wanted is None:
        return
    if rule.layer is not Layer.RULING:
        raise OverruleError(f"only rulings can be overruled or superseded; {rule.id!r} is a {rule.layer.value}")
    if rule.status is not wanted:
        raise OverruleError(
            f"a {kind.value} change must set {rule.id!r} to status {wanted.value!r}, not {rule.status.value!r}"
        )


def _check_not_reinstated(rule: Rule, current: Existing | None) -> None:
    if current is not None and current.status is not RuleStatus.ACTIVE and rule.status is RuleStatus.ACTIVE:
        raise OverruleError(
            f"{rule.id!r} is {current.status.value}; a change cannot make it active again (a ruling that no "
            "longer binds stays so: a new ruling decides such pairs instead)"
        )


def overrule_change(target: Rule, by: Rule) -> PendingChange:
    """The change by which ruling ``by`` overrules ``target`` (its latest version): a new version, overruled,
    with the reason "overruled by <id>" and ``by``'s author (the overrule is the new ruling's author's act,
    never recorded under the old ruling's author). `judge.Rulebook.add_ruling` and a bulk load both build it
    here."""
    return PendingChange(target.model_copy(update={"status": RuleStatus.OVERRULED, "author": by.author}),
                         ChangeKind.OVERRULE, f"overruled by {by.id}")


def overrules_to_apply(items: Sequence[PendingChange], existing: Mapping[str, Existing]) -> dict[str, str]:
    """The rulings a batch's rulings overrule that would still be active after it: target id -> the ruling
    that names it (the first, in batch order).

    `judge.Rulebook.add_ruling` overrules the rulings a new ruling names in the same transaction; a bulk load
    (`judge.store.RulebookStore.sync`) does the same with these, so a ruling that names another in
    ``overrules`` never leaves it binding. ``existing`` holds the stored latest version of the targets.
    """
    final: dict[str, RuleStatus] = {rid: e.status for rid, e in existing.items()}
    for item in items:
        final[item.rule.id] = item.rule.status
    targets: dict[str, str] = {}
    for item in items:
        if item.rule.case is None:
            continue
        for target in item.rule.case.overrules:
            if final.get(target) is RuleStatus.ACTIVE and target not in targets:
                targets[target] = item.rule.id
    return targets


def _check_references(rule: Rule, latest: Mapping[str, Existing], batch_ids: set[str]) -> None:
    if rule.case is None:
        return
    unknown = [cid for cid in rule.case.cites if cid not in latest and cid not in batch_ids]
    if unknown:
        raise UnknownCitationError(unknown, context=f"ruling {rule.id!r}")
    missing = [oid for oid in rule.case.overrules if oid not in latest and oid not in batch_ids]
    if missing:
        raise UnknownCitationError(missing, context=f"ruling {rule.id!r} overrules")
    for oid in rule.case.overrules:
        if oid == rule.id:
            raise OverruleError(f"ruling {rule.id!r} cannot overrule itself")
        if not oid.startswith(Layer.RULING.value + "/"):
            raise OverruleError(f"ruling {rule.id!r} overrules {oid!r}, which is not a ruling")
