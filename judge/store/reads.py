"""Reading the current rules of the rulebook: one rule, many, all of them paged by keyset, the lexical index.

`RulebookReads` is the read side of `judge.store.repository.RulebookStore`; every read is a short
transaction of its own, so a long stream never holds the database.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, exists, func, select
from sqlalchemy.orm import Session, aliased

from judge.errors import RuleNotFoundError
from judge.rules.model import Layer, Rule, RuleStatus
from judge.store import lexical
from judge.store.paging import keyset_pages
from judge.store.schema import RULE_VERSIONS, ChangeRow, RuleVersionRow, rule_from_row

__all__ = ["RulebookReads", "latest_versions"]

#: Ids per ``IN (...)`` list: far below every backend's bound-parameter limit.
_CHUNK = 500


def _build_is_latest() -> ColumnElement[bool]:
    newer = aliased(RuleVersionRow)
    return ~exists().where(newer.rule_id == RuleVersionRow.rule_id, newer.version > RuleVersionRow.version)


_IS_LATEST = _build_is_latest()  # SQL expressions are immutable: build once, not per query (~1 ms each)


def _is_latest() -> ColumnElement[bool]:
    """``RuleVersionRow`` is the newest version of its rule (an index lookup on the primary key)."""
    return _IS_LATEST


#: ``RuleVersionRow`` binds (is active); with `_is_latest`, the rule binds now.
_BINDS: ColumnElement[bool] = RuleVersionRow.status == RuleStatus.ACTIVE.value


def latest_versions(session: Session, ids: Iterable[str]) -> dict[str, Rule]:
    """The latest version of each of ``ids`` that exists, read in ``session`` (a writer reads inside its own
    transaction); missing ids are simply absent."""
    found: dict[str, Rule] = {}
    for chunk in _chunks(ids):
        stmt = select(RULE_VERSIONS).where(RuleVersionRow.rule_id.in_(chunk), _is_latest())
        found.update((row.rule_id, rule_from_row(row)) for row in session.execute(stmt))
    return found


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    unique = sorted(set(ids))
    for start in range(0, len(unique), _CHUNK):
        yield unique[start:start + _CHUNK]


class RulebookReads:
    """Reads of the latest rule versions (a mixin of `RulebookStore`, which sets ``engine``)."""

    engine: Engine

    def get(self, rule_id: str, version: int | None = None) -> Rule:
        """One version of a rule (default: the latest).

        Raises:
            RuleNotFoundError: no such rule, or no such version of it.
        """
        stmt = select(RuleVersionRow).where(RuleVersionRow.rule_id == rule_id)
        if version is None:
            stmt = stmt.order_by(RuleVersionRow.version.desc()).limit(1)
        else:
            stmt = stmt.where(RuleVersionRow.version == version)
        with Session(self.engine) as session:
            row = session.scalars(stmt).first()
            if row is None:
                raise RuleNotFoundError(rule_id if version is None else f"{rule_id}@v{version}")
            return rule_from_row(row)

    def get_many(self, ids: Iterable[str]) -> dict[str, Rule]:
        """The latest version of each id that exists (missing ids are simply absent)."""
        with Session(self.engine) as session:
            return latest_versions(session, ids)

    def exists(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` that name stored rules."""
        found: set[str] = set()
        with Session(self.engine) as session:
            for chunk in _chunks(ids):
                stmt = select(RuleVersionRow.rule_id).where(RuleVersionRow.rule_id.in_(chunk)).distinct()
                found.update(session.scalars(stmt))
        return found

    def binding(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` whose latest version binds (is active): primary-key lookups, no ORM (a search
        asks this of every ruling it meets)."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                stmt = select(RuleVersionRow.rule_id).where(RuleVersionRow.rule_id.in_(chunk), _is_latest(), _BINDS)
                found.update(conn.scalars(stmt))
        return found

    def tagged(self, tag: str, layers: Collection[Layer]) -> set[str]:
        """The ids of the binding rules of ``layers`` whose latest version carries ``tag`` (reads ids and tags
        only; meant for the small layers, spec and constitution)."""
        stmt = select(RuleVersionRow.rule_id, RuleVersionRow.tags).where(
            RuleVersionRow.layer.in_([Layer(layer).value for layer in layers]), _is_latest(), _BINDS)
        with self.engine.connect() as conn:
            return {rule_id for rule_id, tags in conn.execute(stmt) if tag in (tags or ())}

    def _current_stmt(self, layer: Layer | None, active_only: bool) -> Select[Any]:
        stmt = select(RULE_VERSIONS).where(_is_latest())
        if layer is not None:
            stmt = stmt.where(RuleVersionRow.layer == Layer(layer).value)
        if active_only:
            stmt = stmt.where(_BINDS)
        return stmt

    def iter_current(self, layer: Layer | None = None, *, active_only: bool = False,
                     batch_size: int = 1000) -> Iterator[Rule]:
        """Stream the latest version of every rule, ordered by id.

        Pages by keyset (``rule_id > last``), one short read per page, so it scales to millions of rules
        and never keeps the database busy while the caller works on a page.

        Args:
            layer: only this layer.
            active_only: skip overruled and superseded rulings.
            batch_size: rules fetched per page.
        """
        return self._paged_rules(self._current_stmt(layer, active_only), batch_size)

    def count(self, layer: Layer | None = None, active_only: bool = False) -> int:
        """How many rules (latest versions) there are, optionally in one layer / binding only."""
        stmt = select(func.count()).select_from(self._current_stmt(layer, active_only).subquery())
        with Session(self.engine) as session:
            return int(session.scalar(stmt) or 0)

    def lexical_search(self, query: str, layers: Collection[Layer], k: int, *,
                       exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` binding rules of ``layers`` whose text best matches the words of ``query``, best first,
        with their lexical score (FTS5 bm25 on SQLite, ts_rank on PostgreSQL; see `judge.store.lexical`)."""
        with self.engine.connect() as conn:
            return lexical.search(conn, query, layers, k, exclude=exclude)

    def lexical_search_many(self, queries: Sequence[str], groups: Sequence[Collection[Layer]], k: int, *,
                            exclude: Collection[str] = (), known: lexical.TermCounts | None = None,
                            common_fraction: float = lexical.COMMON_FRACTION
                            ) -> list[list[list[tuple[str, float]]]]:
        """`lexical_search` of every text in ``queries`` among every group of layers in ``groups``, in one
        statement: ``result[i][g]`` is what ``lexical_search(queries[i], groups[g], k)`` returns. ``known``:
        words' counts kept from earlier searches at the current rulebook version (see `lexical.TermCounts`);
        ``common_fraction``: words in more of the rules are dropped (`lexical.COMMON_FRACTION`)."""
        with self.engine.connect() as conn:
            return lexical.search_many(conn, queries, groups, k, exclude=exclude, known=known,
                                       fraction=common_fraction)


    def rules_changed_since(self, seq: int, *, batch_size: int = 1000) -> Iterator[Rule]:
        """Stream the latest version of every rule changed after change ``seq``, ordered by id.

        What an incremental index update needs: re-embed (or drop, if no longer binding) these rules,
        then record the head's ``seq``.
        """
        changed = select(ChangeRow.rule_id).where(ChangeRow.seq > seq)
        stmt = select(RULE_VERSIONS).where(_is_latest(), RuleVersionRow.rule_id.in_(changed))
        return self._paged_rules(stmt, batch_size)

    def _paged_rules(self, stmt: Select[Any], batch_size: int) -> Iterator[Rule]:
        return keyset_pages(self.engine, stmt, RULE_VERSIONS.c.rule_id, rule_from_row, lambda r: r.id,
                            batch_size=batch_size)

