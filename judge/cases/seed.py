"""Seed cases from the OpenAI Model Spec (CC0): its worked examples and its evaluation prompts.

Reads ``examples.jsonl`` and ``eval_prompts.jsonl`` from the extracted Model Spec folder (see its
NOTICE.md). The mapping:

* a record's ``section`` becomes the entry ``spec/<slugify(section)>`` - the id `judge.rules.model_spec`
  gives that section's spec rule. A section with no such spec entry in the rulebook is *reported* with its
  record counts (sections of ``root`` authority are constitution rules, ``constitution/<slug>``, not spec
  entries), never dropped silently.
* every comparison of an example becomes one case: the messages before the responses are the conversation,
  the last of them the prompt; the GOOD responses are the reference answers; the expected behaviour is the
  example's description and the spec's notes on each verdict. These cases are **accepted**, reviewer
  ``model-spec``: the spec's authors wrote the prompt *and* judged the responses, which is the review a
  case needs. Provenance ``openai/model_spec example``.
* every evaluation prompt becomes one **draft** case (provenance ``openai/model_spec eval_prompts``): the
  spec ships these prompts without responses or verdicts, so what counts as good on them is still unwritten
  and a reviewer must accept them.

A record that cannot become a case (no messages, an unknown role) is listed in ``skipped`` with the reason.
`build_seed_cases` is pure (records and the clock's reading in, cases out); `seed_from_dir` reads the files.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from judge.cases.model import CaseStatus, Role, TestCase, Turn
from judge.jsonl import read_jsonl
from judge.rules.model import slugify

__all__ = [
    "EVAL_PROMPT_PROVENANCE",
    "EXAMPLE_PROVENANCE",
    "SEED_REVIEWER",
    "SeedResult",
    "UnmappedSection",
    "build_seed_cases",
    "section_entry_id",
    "seed_from_dir",
]

EXAMPLE_PROVENANCE = "openai/model_spec example"
EVAL_PROMPT_PROVENANCE = "openai/model_spec eval_prompts"
SEED_REVIEWER = "model-spec"

_ROLES = frozenset(get_args(Role))
_ANCHOR_RE = re.compile(r"\[([^\]]*)\]\(#([A-Za-z0-9_-]+)\)")


@dataclass(frozen=True)
class UnmappedSection:
    """A Model Spec section whose records could not become cases: the rulebook has no spec entry for it.

    Attributes:
        section: the section id in the Model Spec data.
        rule_id: the rule the section maps to (``constitution/<slug>`` for root authority, else the missing
            ``spec/<slug>``).
        reason: why no case was made.
        examples: example comparisons left out.
        eval_prompts: evaluation prompts left out.
    """

    section: str
    rule_id: str
    reason: str
    examples: int
    eval_prompts: int


@dataclass(frozen=True)
class SeedResult:
    """What seeding produced.

    Attributes:
        cases: the cases, one per id (first record wins).
        unmapped: sections with no spec entry, with how many records each left out.
        skipped: ``(record id, reason)`` for records that could not become a case.
        duplicates: records whose case was identical to an earlier record's (counted once).
    """

    cases: tuple[TestCase, ...]
    unmapped: tuple[UnmappedSection, ...]
    skipped: tuple[tuple[str, str], ...]
    duplicates: int

    def entries(self) -> Counter[str]:
        """Cases per entry id."""
        return Counter(e for c in self.cases for e in c.entries)


def section_entry_id(section: str) -> str:
    """The spec entry id of a Model Spec section (the importer's mapping: ``spec/`` + `slugify` of the id)."""
    return f"spec/{slugify(section)}"


class _Skip(Exception):
    """A record that cannot become a case (the message says why)."""


def _turns(messages: Iterable[dict[str, Any]]) -> list[Turn]:
    turns = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise _Skip(f"message role {role!r} is not one of {', '.join(sorted(_ROLES))}")
        if not isinstance(content, str):
            raise _Skip(f"a {role} message has no text content")
        recipient = (message.get("attrs") or {}).get("recipient")
        turns.append(Turn(role=role, content=content, recipient=recipient if isinstance(recipient, str) else None))
    if not turns:
        raise _Skip("no messages before the responses")
    if not turns[-1].content.strip():
        raise _Skip("the last message is empty")
    return turns


def _inline_anchors(text: str) -> str:
    """``[?](#respect_creators)`` -> “respect creators”; ``[words](#x)`` -> words."""
    def repl(m: re.Match[str]) -> str:
        label, anchor = m.group(1), m.group(2)
        return f"“{anchor.replace('_', ' ')}”" if label in ("", "?") else label
    return _ANCHOR_RE.sub(repl, text)


def _expected(example: dict[str, Any], responses: list[dict[str, Any]]) -> str:
    lines = [" ".join(_inline_anchors(str(example.get("description") or "")).split())
             or f"The Model Spec's example in “{example.get('section_title') or example['section']}”."]
    for response in responses:
        note, ref = response.get("verdict_note"), response.get("verdict_ref")
        if not note and not ref:
            continue
        line = f"{response.get('verdict', '?')} response"
        if note:
            line += f": {' '.join(_inline_anchors(note).split())}"
        if ref:
            line += f" (see “{str(ref).replace('_', ' ')}”)"
        lines.append(line)
    return "\n".join(lines)


def _commit_tag(record: dict[str, Any]) -> dict[str, str]:
    commit = record.get("origin_commit")
    return {"origin_commit": commit[:12]} if isinstance(commit, str) else {}


def _example_cases(example: dict[str, Any], entry: str, now: datetime) -> list[TestCase]:
    comparisons = example.get("comparisons") or []
    if not comparisons:
        raise _Skip("an illustration without responses to compare")
    cases = []
    for number, comparison in enumerate(comparisons, start=1):
        turns = _turns(comparison.get("context") or [])
        responses = comparison.get("responses") or []
        tags: dict[str, str | int | float | bool] = {"source_id": example["id"], **_commit_tag(example)}
        if len(comparisons) > 1:
            tags["comparison"] = number
        if example.get("description"):
            tags["description"] = " ".join(_inline_anchors(example["description"]).split())
        cases.append(TestCase(
            prompt=turns[-1].content, prompt_role=turns[-1].role, conversation=tuple(turns[:-1]),
            entries=(entry,), expected=_expected(example, responses),
            references=tuple(r["content"] for r in responses
                             if r.get("verdict") == "GOOD" and isinstance(r.get("content"), str)),
            provenance=EXAMPLE_PROVENANCE, tags=tags, status=CaseStatus.ACCEPTED, reviewer=SEED_REVIEWER,
            review_method="source", created_at=now))
    return cases


def _eval_case(record: dict[str, Any], entry: str, now: datetime) -> TestCase:
    turns = _turns(record.get("messages") or [])
    tags: dict[str, str | int | float | bool] = {"source_id": record["id"], **_commit_tag(record)}
    if record.get("description"):
        tags["description"] = " ".join(str(record["description"]).split())
    return TestCase(prompt=turns[-1].content, prompt_role=turns[-1].role, conversation=tuple(turns[:-1]),
                    entries=(entry,), provenance=EVAL_PROMPT_PROVENANCE, tags=tags, created_at=now)


def build_seed_cases(examples: Iterable[dict[str, Any]], eval_prompts: Iterable[dict[str, Any]],
                     spec_ids: Collection[str], *, now: datetime) -> SeedResult:
    """Cases from Model Spec example and evaluation-prompt records (pure).

    Args:
        examples: records of ``examples.jsonl``.
        eval_prompts: records of ``eval_prompts.jsonl``.
        spec_ids: the rulebook's current spec entry ids.
        now: the cases' creation time.
    """
    cases: dict[str, TestCase] = {}
    duplicates = 0
    skipped: list[tuple[str, str]] = []
    missing: dict[str, dict[str, Any]] = {}

    def keep(new: Iterable[TestCase]) -> None:
        nonlocal duplicates
        for case in new:
            if case.id in cases:
                duplicates += 1
            else:
                cases[case.id] = case

    for kind, records in (("examples", examples), ("eval_prompts", eval_prompts)):
        for record in records:
            record_id = str(record.get("id", "?"))
            section = record.get("section")
            if not isinstance(section, str) or not section:
                skipped.append((record_id, "no section"))
                continue
            entry = section_entry_id(section)
            if entry not in spec_ids:
                root = record.get("authority") == "root"
                info = missing.setdefault(section, {
                    "rule_id": f"constitution/{slugify(section)}" if root else entry,
                    "reason": "root authority: a constitution rule, not a spec entry" if root
                    else "the rulebook has no such spec entry",
                    "examples": 0, "eval_prompts": 0})
                info[kind] += max(1, len(record.get("comparisons") or [])) if kind == "examples" else 1
                continue
            try:
                keep(_example_cases(record, entry, now) if kind == "examples" else [_eval_case(record, entry, now)])
            except _Skip as exc:
                skipped.append((record_id, str(exc)))
    unmapped = tuple(UnmappedSection(section=s, **v) for s, v in sorted(missing.items()))
    return SeedResult(cases=tuple(cases.values()), unmapped=unmapped, skipped=tuple(skipped), duplicates=duplicates)


def seed_from_dir(data_dir: str | Path, spec_ids: Collection[str]) -> SeedResult:
    """`build_seed_cases` on ``examples.jsonl`` and ``eval_prompts.jsonl`` in ``data_dir``.

    Raises:
        InputError: a file is missing or malformed (names file and line).
    """
    root = Path(data_dir)
    examples = [obj for _, obj in read_jsonl(root / "examples.jsonl")]
    prompts = [obj for _, obj in read_jsonl(root / "eval_prompts.jsonl")]
    return build_seed_cases(examples, prompts, spec_ids, now=datetime.now(UTC))
