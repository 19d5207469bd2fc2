"""Keyset pagination: stream the rows of a statement a page at a time, each page one short read.

A page is the next ``batch_size`` rows with a key greater than the last one read (``WHERE key > :last ORDER BY
key LIMIT :n``): unlike OFFSET it costs the same on the millionth row as on the first, and the database is
never kept busy while the caller works on a page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Engine, Select
from sqlalchemy.orm import Session

__all__ = ["keyset_pages"]

T = TypeVar("T")


def keyset_pages(engine: Engine, stmt: Select[Any], key: ColumnElement[Any], convert: Callable[[Any], T],
                 key_of: Callable[[T], Any], *, batch_size: int, after: Any = None) -> Iterator[T]:
    """Every row of ``stmt`` with ``key`` greater than ``after`` (None: all), in key order, as ``convert(row)``;
    ``key_of`` gives a converted row's key, from which the next page starts."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    while True:
        page_stmt = stmt if after is None else stmt.where(key > after)
        with Session(engine) as session:
            page = [convert(row) for row in session.execute(page_stmt.order_by(key).limit(batch_size))]
        yield from page
        if len(page) < batch_size:
            return
        after = key_of(page[-1])
