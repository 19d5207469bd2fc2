"""Passages: what of a rule gets its own vector, so that all of what a rule says can be found.

A sentence embedder reads only the first ~256 word pieces of a text, while a Model Spec entry runs to
thousands of characters: embedded whole, most of an entry never reaches its vector. So every rule is also
cut into *passages* - paragraphs, bullet groups (with the sentence that introduces them), worked examples -
each embedded on its own with the rule's title in front, and a rule scores by its best passage.

Rulings are cut by what they decide: the facts (the prompt) and the holding (the rationale).

Pure: text in, passages out.
"""

from __future__ import annotations

import re

from judge.rules.model import Rule

__all__ = ["MAX_PASSAGES", "PASSAGE_CHARS", "passages", "split_text"]

#: A passage aims at this many characters (~150-200 word pieces, inside MiniLM's 256).
PASSAGE_CHARS = 800
#: At most this many passages per rule (a pathological text cannot flood the index).
MAX_PASSAGES = 48

_FENCE = re.compile(r"^\s*(```|~~~)")
_FENCE_ANYWHERE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_EXAMPLE = re.compile(r"^\s*\*\*Example\*\*", re.IGNORECASE)
_FOOTNOTE = re.compile(r"\[\^[\w.-]+\]")
_LINK = re.compile(r"\]\([^)\s]*\)")


def _blocks(text: str) -> list[str]:
    """Blank-line separated blocks; a fenced block (``` or ~~~) stays one block, blank lines and all."""
    blocks: list[str] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            current.append(line)
            continue
        if not fenced and not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _units(blocks: list[str]) -> list[str]:
    """Blocks joined into units that belong together: an example's heading with its fenced block, a lead-in
    sentence ending in ':' with the bullet list after it, and consecutive bullet blocks."""
    units: list[str] = []
    for block in blocks:
        if units:
            last = units[-1]
            last_line = last.rstrip().splitlines()[-1]
            joins = ((_FENCE.match(block) and (_EXAMPLE.match(last) or last.rstrip().endswith(":")))
                     or (_BULLET.match(block) and (last.rstrip().endswith(":") or _BULLET.match(last_line))))
            if joins:
                units[-1] = f"{last}\n\n{block}"
                continue
        units.append(block)
    return units


def _windows(unit: str, limit: int) -> list[str]:
    """A unit longer than ``limit`` cut at line (else word) boundaries; later windows repeat its first line
    (an example's heading, a list's lead-in) so each says what it is part of."""
    if len(unit) <= limit:
        return [unit]
    lines = unit.splitlines()
    head = lines[0][: limit // 4]
    out: list[str] = []
    current = ""
    for line in lines:
        pieces = [line] if len(line) <= limit else [line[i : i + limit] for i in range(0, len(line), limit)]
        for piece in pieces:
            if current and len(current) + len(piece) + 1 > limit:
                out.append(current)
                current = f"{head}\n{piece}"
            else:
                current = f"{current}\n{piece}" if current else piece
    if current.strip():
        out.append(current)
    return out


def split_text(text: str, *, limit: int = PASSAGE_CHARS) -> list[str]:
    """Cut a rule text into passages of about ``limit`` characters along its structure.

    Short neighbouring paragraphs are packed together up to ``limit``; an example or a bullet group is never
    packed with other text; a unit longer than ``limit`` is cut into windows. Footnote markers and link
    targets are dropped (they carry no meaning a query could match).
    """
    clean = _LINK.sub("]", _FOOTNOTE.sub("", text))
    out: list[str] = []
    packable = False
    for unit in _units(_blocks(clean)):
        special = bool(_FENCE_ANYWHERE.search(unit) or _BULLET.match(unit.splitlines()[-1]))
        if out and packable and not special and len(out[-1]) + len(unit) + 2 <= limit:
            out[-1] = f"{out[-1]}\n\n{unit}"
            continue
        windows = _windows(unit, limit)
        out.extend(windows)
        packable = not special and len(windows) == 1
    return [p for p in out if p.strip()]


def passages(rule: Rule, *, limit: int = PASSAGE_CHARS) -> list[str]:
    """The passages embedded for ``rule`` besides its whole text (`Rule.embedding_text`), at most
    `MAX_PASSAGES`: a ruling's facts (prompt) and holding (title and rationale); any other rule's text cut by
    `split_text`, each passage headed by the rule's title."""
    if rule.case is not None:
        found = [rule.case.prompt[: 2 * limit], f"{rule.title}\n\n{rule.case.rationale}"[: 2 * limit]]
    else:
        found = [f"{rule.title}\n\n{p}" for p in split_text(rule.text, limit=limit)]
    return [p for p in found if p.strip()][:MAX_PASSAGES]
