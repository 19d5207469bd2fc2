"""Pairs to judge for a release: the candidate's answer to each case against a baseline or a reference.

The gate's convention: the CANDIDATE is response A; response B is the baseline model's answer to the same
case (head-to-head) or, without a baseline, the case's first reference answer. The pair id is the case id
(and ``meta.case_id`` says so too), so `judge gate` can count each verdict for the case's spec entries.
Pure: cases and answers in, pair records and the cases that could not be paired (with why) out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judge.cases.model import TestCase
from judge.errors import InputError
from judge.jsonl import read_jsonl

__all__ = ["PairPlan", "build_pairs", "read_answers"]


@dataclass(frozen=True)
class PairPlan:
    """Pairs ready for `judge run`, and the cases left out with the reason."""

    pairs: list[dict[str, Any]]
    skipped: list[tuple[str, str]]


def build_pairs(cases: Iterable[TestCase], candidate: Mapping[str, str],
                baseline: Mapping[str, str] | None = None) -> PairPlan:
    """One pair per case the candidate answered: candidate (A) vs baseline or reference (B)."""
    pairs: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for case in cases:
        answer = candidate.get(case.id)
        if answer is None:
            skipped.append((case.id, "the candidate has no answer for this case"))
            continue
        if baseline is not None:
            other = baseline.get(case.id)
            if other is None:
                skipped.append((case.id, "the baseline has no answer for this case"))
                continue
            against = "baseline"
        elif case.references:
            other, against = case.references[0], "reference"
        else:
            skipped.append((case.id, "no baseline given and the case has no reference answer"))
            continue
        pairs.append({"id": case.id, "source": case.provenance, "prompt": case.render_prompt(),
                      "response_a": answer, "response_b": other,
                      "meta": {"case_id": case.id, "entries": list(case.entries), "b_is": against}})
    return PairPlan(pairs, skipped)


def read_answers(path: str | Path, *, field: str = "response") -> dict[str, str]:
    """Answers by case id from JSONL lines ``{"case_id" (or "id"), "<field>"}``.

    Lines ``{"case_id", "failure"}`` (a case the model could not answer, as `judge cases answer` writes them)
    are skipped: the case has no answer unless a later line gives one.

    Raises:
        InputError: a line lacks the case id or the answer, or a case is answered twice.
    """
    answers: dict[str, str] = {}
    for line, obj in read_jsonl(path):
        cid = obj.get("case_id", obj.get("id"))
        text = obj.get(field)
        if not isinstance(cid, str) or not cid:
            raise InputError("missing case_id (or id)", path=path, line=line, field="case_id")
        if text is None and isinstance(obj.get("failure"), str):
            continue
        if not isinstance(text, str):
            raise InputError(f"missing {field!r} text", path=path, line=line, field=field)
        if cid in answers:
            raise InputError(f"case {cid} is answered twice", path=path, line=line, field="case_id")
        answers[cid] = text
    return answers
