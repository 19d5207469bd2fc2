"""Answer test cases with a model: the candidate's (or a baseline's) responses for a release gate.

Each accepted case is sent as a chat - an optional system prompt, the case's conversation, then its prompt -
and the reply is appended to a JSONL file as ``{"case_id", "response", "model", ...}``, the format
`judge cases pairs` reads, with the setup it was asked with (``requested_model``, ``system``, ``max_tokens``,
``temperature``): a file is one setup's answers, and going on in it with another is refused. The file is the
checkpoint: a run cut short goes on where it stopped (cases already answered are skipped), and a case the model
could not answer is written as ``{"case_id", "failure"}`` - never as a response - and asked again on the next
run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judge.backends.base import Backend, ChatRequest
from judge.cases.model import TestCase
from judge.errors import BackendError, ConfigError
from judge.jsonl import read_jsonl

__all__ = ["AnswerRun", "answer_cases", "answered_ids", "case_messages"]

log = logging.getLogger(__name__)

#: Chat roles a case's turns map to (a developer message is a system message to an OpenAI-style endpoint).
_ROLE = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "user"}


@dataclass(frozen=True)
class AnswerRun:
    """What `answer_cases` did."""

    answered: int
    skipped: int
    failed: int


def case_messages(case: TestCase, system: str | None = None) -> list[dict[str, str]]:
    """The chat a model answers for ``case``: the system prompt, the conversation, then the prompt."""
    messages = [{"role": "system", "content": system}] if system else []
    for turn in (*case.conversation, None):
        role, content = (turn.role, turn.content) if turn is not None else (case.prompt_role, case.prompt)
        if role == "tool":
            content = f"[tool result]\n{content}"
        messages.append({"role": _ROLE[role], "content": content})
    return messages


def _check_same_setup(path: Path, setup: dict[str, Any]) -> None:
    """Refuse to go on in ``path`` when a line in it was answered with another model, system prompt, token cap
    or temperature (lines written before answers recorded their setup are not compared)."""
    if not path.exists():
        return
    for line, obj in read_jsonl(path):
        if "requested_model" not in obj:
            continue
        diff = [f"{k} {obj.get(k)!r} (this run: {v!r})" for k, v in setup.items() if obj.get(k) != v]
        if diff:
            raise ConfigError(f"{path}:{line}: these answers were written with another setup ({'; '.join(diff)}); "
                              "going on would mix two setups' answers in one file - write to a new file, or run "
                              "with the same settings")


def answered_ids(path: Path) -> set[str]:
    """Case ids already answered in ``path`` (failures are not: they are asked again)."""
    if not path.exists():
        return set()
    return {str(obj["case_id"]) for _, obj in read_jsonl(path)
            if isinstance(obj.get("response"), str) and obj.get("case_id") is not None}


def answer_cases(backend: Backend, cases: Sequence[TestCase], out: Path, *, system: str | None = None,
                 max_tokens: int = 256, temperature: float = 0.0,
                 progress: Callable[[int, int], None] | None = None) -> AnswerRun:
    """Answer every case not yet answered in ``out``, appending one line per case as it is answered.

    Args:
        backend: the model answering (the candidate or the baseline).
        cases: the cases, in the order to answer them.
        out: the answers file (created if missing; appended to).
        system: a system prompt sent before each case.
        max_tokens: the generation cap per answer.
        temperature: sampling temperature (0: greedy, reproducible).
        progress: called with (done, total) after each case.
    """
    setup = {"requested_model": backend.model, "system": system, "max_tokens": max_tokens,
             "temperature": temperature}
    _check_same_setup(out, setup)
    done = answered_ids(out)
    todo = [c for c in cases if c.id not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    answered = failed = 0
    with out.open("a", encoding="utf-8") as fh:
        for i, case in enumerate(todo):
            record: dict[str, Any] = {"case_id": case.id, **setup}
            try:
                reply = backend.chat(ChatRequest(messages=tuple(case_messages(case, system)), max_tokens=max_tokens,
                                                 temperature=temperature))
            except BackendError as exc:
                record["failure"] = f"{type(exc).__name__}: {exc}"
            else:
                if reply.text.strip():
                    record.update(response=reply.text, model=reply.model, completion_tokens=reply.completion_tokens,
                                  finish_reason=reply.finish_reason)
                else:
                    record["failure"] = "the model returned an empty answer"
            if "failure" in record:
                failed += 1
                log.warning("case %s not answered: %s", case.id, record["failure"])
            else:
                answered += 1
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            if progress is not None:
                progress(i + 1, len(todo))
    return AnswerRun(answered=answered, skipped=len(cases) - len(todo), failed=failed)
