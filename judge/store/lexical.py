"""Lexical search of the rulebook in the system of record: SQLite FTS5 (bm25) or PostgreSQL full text (ts_rank).

The table ``rule_fts`` (migration ``0007_rule_fts``) holds one row per *binding* rule: its id, layer and a
searchable body (`lexical_body`: title and text; a ruling's title, prompt and rationale). It is written in the
same transaction as the rule versions (`RulebookStore` calls `replace_rows`), so it never lags the rulebook,
and it is derived: `rebuild` recreates it from the current rule versions.

* SQLite: an FTS5 table with the Porter stemmer; the row id is a 63-bit hash of the rule id, so a rule's row
  is replaced by key, never by a scan. Ranked by ``bm25``.
* PostgreSQL: a table with a generated ``tsvector`` (English configuration) and a GIN index; ranked by
  ``ts_rank``.

Queries are the distinct content words of a text (English stop words dropped, at most `MAX_TERMS`), OR-ed:
a rule matching more and rarer words ranks higher.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, text

from judge.rules.model import Layer, Rule

__all__ = ["MAX_TERMS", "fts_rowid", "lexical_body", "query_terms", "rebuild", "replace_rows", "search",
           "table_exists"]

#: At most this many words of a query text are searched for (bounds the cost of a long response).
MAX_TERMS = 32
_WORD = re.compile(r"[^\W_]{2,}")


@functools.cache
def _stop_words() -> frozenset[str]:
    # Imported at the first query, not with the module: scikit-learn takes seconds to import, and commands
    # that never search (`judge rulebook list`, `judge --help`) must not pay for it.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def lexical_body(title: str, body: str, case: dict[str, Any] | None) -> str:
    """The searchable text of a rule from its stored columns: title and text, or for a ruling (``case``
    set) its title, prompt and rationale (its facts and holding)."""
    if case is not None:
        return f"{title}\n{case.get('prompt', '')}\n{case.get('rationale', '')}"
    return f"{title}\n{body}"


def fts_rowid(rule_id: str) -> int:
    """A stable 63-bit row id for a rule's FTS5 row (collisions: ~n^2 / 2^64, i.e. none in practice)."""
    return int.from_bytes(hashlib.sha256(rule_id.encode("utf-8")).digest()[:8], "big") >> 1


def query_terms(query: str, limit: int = MAX_TERMS) -> list[str]:
    """The distinct content words of ``query`` in order of appearance, lower-cased, at most ``limit``."""
    seen: dict[str, None] = {}
    stop = _stop_words()
    for word in _WORD.findall(query.lower()):
        if word not in stop and not word.isdigit():
            seen.setdefault(word, None)
            if len(seen) >= limit:
                break
    return list(seen)


def table_exists(conn: Connection) -> bool:
    """Whether ``rule_fts`` exists (a database migrated to ``0007_rule_fts`` or later)."""
    from sqlalchemy import inspect

    return bool(inspect(conn).has_table("rule_fts"))


def replace_rows(conn: Connection, rules: Sequence[Rule]) -> None:
    """Make ``rule_fts`` reflect the given (latest) versions: drop their rows, re-insert the binding ones."""
    if not rules:
        return
    rows = [{"rowid": fts_rowid(r.id), "rule_id": r.id, "layer": r.layer.value,
             "body": lexical_body(r.title, r.text, r.case.model_dump(mode="json") if r.case else None)}
            for r in rules]
    binding = [row for row, rule in zip(rows, rules, strict=True) if rule.binds]
    if conn.dialect.name == "sqlite":
        conn.execute(text("DELETE FROM rule_fts WHERE rowid = :rowid"), [{"rowid": row["rowid"]} for row in rows])
        if binding:
            conn.execute(text("INSERT INTO rule_fts (rowid, rule_id, layer, body) "
                              "VALUES (:rowid, :rule_id, :layer, :body)"), binding)
    else:
        conn.execute(text("DELETE FROM rule_fts WHERE rule_id = :rule_id"), [{"rule_id": r["rule_id"]} for r in rows])
        if binding:
            conn.execute(text("INSERT INTO rule_fts (rule_id, layer, body) VALUES (:rule_id, :layer, :body)"),
                         [{k: row[k] for k in ("rule_id", "layer", "body")} for row in binding])


def rebuild(conn: Connection, rules: Iterable[Rule], *, batch: int = 1000) -> int:
    """Empty ``rule_fts`` and refill it from ``rules`` (the current versions); returns the rows written."""
    conn.execute(text("DELETE FROM rule_fts"))
    total = 0
    chunk: list[Rule] = []
    for rule in rules:
        chunk.append(rule)
        if len(chunk) >= batch:
            replace_rows(conn, chunk)
            total += sum(1 for r in chunk if r.binds)
            chunk = []
    replace_rows(conn, chunk)
    return total + sum(1 for r in chunk if r.binds)


def search(conn: Connection, query: str, layers: Collection[Layer], k: int, *,
           exclude: Collection[str] = ()) -> list[tuple[str, float]]:
    """The ``k`` binding rules of ``layers`` that best match the words of ``query``, best first, as
    ``(rule id, score)`` with higher scores better (negated bm25 on SQLite, ts_rank on PostgreSQL)."""
    terms = query_terms(query)
    if k <= 0 or not terms or not layers:
        return []
    fetch = k + len(exclude)
    names = sorted(Layer(layer).value for layer in layers)
    if conn.dialect.name == "sqlite":
        words = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        in_layers = " OR ".join(f'"{name}"' for name in names)
        match = f"layer : ({in_layers}) AND body : ({words})"
        result = conn.execute(text("SELECT rule_id, bm25(rule_fts, 0.0, 0.0, 1.0) AS score FROM rule_fts "
                                   "WHERE rule_fts MATCH :match ORDER BY score, rule_id LIMIT :fetch"),
                              {"match": match, "fetch": fetch})
        found = [(row.rule_id, -float(row.score)) for row in result]
    else:
        tsquery = " | ".join(terms)
        result = conn.execute(text("SELECT rule_id, ts_rank(tsv, q) AS score FROM rule_fts, "
                                   "to_tsquery('english', :q) AS q WHERE layer IN :layers AND tsv @@ q "
                                   "ORDER BY score DESC, rule_id LIMIT :fetch").bindparams(
                                       _expanding("layers")),
                              {"q": tsquery, "layers": names, "fetch": fetch})
        found = [(row.rule_id, float(row.score)) for row in result]
    excluded = set(exclude)
    return [hit for hit in found if hit[0] not in excluded][:k]


def _expanding(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)
