"""The rulebook as text files, reviewable in a pull request (the format is described in rulebook/README.md).

* ``constitution/<slug>.md``, ``spec/<slug>.md``, ``process/<slug>.md`` (spec rules tagged ``process``):
  YAML front matter (``id, title, authority, parent, specificity, tags, source``) between ``---`` lines,
  then the rule text, byte-exact except for one trailing newline. Other folders may hold such files too.
* ``rulings/<source>.jsonl``: one ruling per line, keys in a fixed order; `Rule.text` is `ruling_text`.
* ``README.md``, ``NOTICE.md``, ``LICENSE*`` and dotfiles are ignored. Versions, timestamps and authors are
  not part of the text: they live in the database.

Reading is all-or-nothing and never writes; every problem is a `RulebookParseError` naming ``file:line``.

Rendering lives in :mod:`judge.rules.textformat` and reading in :mod:`judge.rules.textread` (both re-exported
here); this module writes the files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from judge._atomic import write_text_atomic
from judge.errors import RulebookError, RulebookParseError
from judge.rules.model import Rule
from judge.rules.textformat import render_files, render_rule, render_ruling, rule_path, ruling_text
from judge.rules.textread import _iter_files, _parse_front_matter, _parse_jsonl, _read_text, read_rulebook

__all__ = ["WriteReport", "read_rulebook", "render_files", "render_rule", "render_ruling", "rule_path",
           "ruling_text", "write_rulebook"]


# -------------------------------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class WriteReport:
    """What `write_rulebook` did, as paths relative to the rulebook root."""

    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    removed: tuple[Path, ...]


def _owned(file: Path, owned_by: str | None) -> bool:
    """Whether a file holds rules, every one with a source starting with ``owned_by`` (any source when None);
    False for a file that does not parse as rules (a results file, a case file, notes)."""
    try:
        if file.suffix == ".md":
            sources = {_parse_front_matter(_read_text(file), file)[0]["source"]}
        else:
            sources = {loc.rule.source for loc in _parse_jsonl(file)}
    except (RulebookParseError, OSError):
        return False
    return bool(sources) and all(owned_by is None or s.startswith(owned_by) for s in sources)


def _same(target: Path, text: str) -> bool:
    return target.is_file() and target.read_bytes() == text.encode("utf-8")


def write_rulebook(rules: Iterable[Rule], path: str | Path, *, owned_by: str | None = None) -> WriteReport:
    """Write rules as text under ``path``; ``read_rulebook(path)`` gives the same content back.

    The writer owns the rule files (``*.md`` other than README/NOTICE, and ``*.jsonl``, that parse as rules)
    whose rules all have a ``source`` starting with ``owned_by``; every rule file when ``owned_by`` is None.
    Owned files that are not part of the new text are removed (a rule no longer in the rulebook); files that
    are not rule files (results, cases, notes) are never touched. Unchanged files are not rewritten, and every
    file is replaced atomically.

    Raises:
        ValueError: a rule's source does not start with ``owned_by``.
        DuplicateRuleError: two rules share an id.
        RulebookError: a file to write exists and holds rules the writer does not own.
    """
    root, rules = Path(path), list(rules)
    foreign = sorted(r.id for r in rules if owned_by is not None and not r.source.startswith(owned_by))
    if foreign:
        raise ValueError(f"rules whose source does not start with {owned_by!r}: {', '.join(foreign[:5])}")
    files = render_files(rules)
    stale: list[Path] = []
    for file in (f for f in (_iter_files(root) if root.is_dir() else ()) if f.suffix in (".md", ".jsonl")):
        rel = file.relative_to(root)
        if rel in files:
            if owned_by is not None and not _owned(file, owned_by):
                raise RulebookError(f"{file} holds rules not owned by {owned_by!r}; refusing to overwrite it")
        elif _owned(file, owned_by):
            stale.append(rel)
    unchanged = [rel for rel, text in files.items() if _same(root / rel, text)]
    written = [rel for rel in files if rel not in unchanged]
    for rel in written:
        write_text_atomic(root / rel, files[rel])  # a reader never sees half a file
    for rel in stale:
        (root / rel).unlink()
    return WriteReport(tuple(written), tuple(unchanged), tuple(stale))
