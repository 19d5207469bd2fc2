"""What the `judge cases` commands share: the case store on the configured rulebook, progress, options."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from judge.cases.files import read_case_lines
from judge.cases.model import CaseStatus
from judge.cli.common import err_console, state
from judge.cli.progress import RunProgress
from judge.errors import InputError

__all__ = ["COS_OPT", "JSON_OPT", "NGRAM_OPT", "case_row", "check_entries", "duplicate_heads", "open_store",
           "progress_bar", "read_cases"]

JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of a table.")
COS_OPT = typer.Option(0.92, "--cos-threshold", help="Embedding cosine at or above which two cases are "
                                                      "near-duplicates (above 1 turns it off).")
NGRAM_OPT = typer.Option(0.6, "--ngram-threshold", help="Word 3-gram Jaccard at or above which two cases are "
                                                         "near-duplicates (above 1 turns it off).")


def open_store(ctx: typer.Context, *, embed: bool = True) -> Any:
    """A `CaseStore` on the configured rulebook's database, checked against its current spec entries (the
    database must exist: cases test the entries of a loaded rulebook)."""
    from judge.errors import RulebookError
    from judge.retrieval.embedder import embedder_for
    from judge.rules.model import Layer

    cli = state(ctx)
    rulebook = cli.rulebook(with_index=False, create=False)
    entry_ids = [r.id for r in rulebook.rules(Layer.SPEC)]
    if not entry_ids:
        raise RulebookError("the rulebook has no spec entries for cases to test; load one first "
                            "(`judge rulebook load rulebook/`)")
    embedder = embedder_for(cli.settings) if embed else None
    return cli.workspace().cases(embedder, entry_ids=entry_ids)


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A ``progress(done, total)`` callback drawing progress on stderr (the total comes with the first call)."""
    with RunProgress(description, None, console=err_console, transient=True) as bar:
        yield lambda done, total: bar.update(done, total)


def read_cases(path: Path) -> list[tuple[Path, int, Any]]:
    """The cases of one file with their file and line, validated as `judge.cases.files.read_case_lines` does;
    every case is a draft."""
    located = read_case_lines(path)
    for file, line, case in located:
        if case.status is not CaseStatus.DRAFT:
            raise InputError(f"cases enter as draft, not {case.status.value}; accept them with "
                             "`judge cases review`", path=file, line=line, field="status")
    return located


def check_entries(located: list[tuple[Path, int, Any]], known: Iterable[str]) -> None:
    """Refuse the first case testing an entry that is not a current spec entry, naming its file and line."""
    current = set(known)
    for file, line, case in located:
        unknown = [entry for entry in case.entries if entry not in current]
        if unknown:
            raise InputError(f"entries: {unknown[0]!r} is not a current spec entry (see `judge rulebook list "
                             "--layer spec`); nothing was stored", path=file, line=line, field="entries")


def case_row(case: Any) -> dict[str, Any]:
    row: dict[str, Any] = case.model_dump(mode="json")
    return row


def duplicate_heads(store: Any, cases: list[Any], thresholds: Any, progress: Any = None) -> dict[str, str]:
    """For each accepted case of ``cases`` that is a near-duplicate, the oldest case of its group.

    Groups are formed within each spec entry, as `judge coverage` forms them; a case testing several entries
    is a duplicate only when it is one in every entry it tests (the one id it can name is the group head of
    its first entry).
    """
    accepted = [c for c in cases if c.status.value == "accepted"]
    entries = sorted({e for c in accepted for e in c.entries})
    head_in: dict[str, dict[str, str]] = {}  # case id -> entry -> head of its group there
    for entry in entries:
        for group in store.groups(entry, thresholds=thresholds, progress=progress):
            for member in group:
                head_in.setdefault(member, {})[entry] = group[0]
    heads = {}
    for case in accepted:
        there = head_in.get(case.id, {})
        if case.entries and all(there.get(e, case.id) != case.id for e in case.entries):
            heads[case.id] = there[case.entries[0]]
    return heads
