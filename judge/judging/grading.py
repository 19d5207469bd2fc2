"""Asking rule checks of a pair's two responses through a backend.

Each response is graded alone. On a one-slot local server the checks go one after another, all of
response A's first and then all of B's, so the server's prompt cache keeps the shared prefix (instruction,
prompt, response) and prefills only each question; remote endpoints get every check at once. A reply that
is not yes or no is recorded as that check's failure, never guessed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from judge.backends.base import Backend, ChatReply, ChatRequest
from judge.errors import BackendReplyError
from judge.judging.checks import CheckAnswerError, PlannedCheck, check_messages, p_yes_from_top_logprobs
from judge.rules.model import Pair, Response
from judge.verdicts import CheckResult

__all__ = ["Graded", "grade_pair"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Graded:
    """Every planned check's answers for both responses, and what they cost."""

    results: list[CheckResult]
    prompt_tokens: int
    completion_tokens: int
    prefilled_tokens: int | None
    truncated: bool


@dataclass(frozen=True)
class _Answer:
    p_yes: float | None
    failure: str | None
    reply: ChatReply | None
    truncated: bool


async def _ask(backend: Backend, prompt: str, response: Response, planned: PlannedCheck, *,
               top_logprobs: int, max_chars: int) -> _Answer:
    messages, cut = check_messages(prompt, response, planned.check, max_chars=max_chars)
    reply = await backend.achat(ChatRequest(messages=messages, max_tokens=1, temperature=0.0,
                                            top_logprobs=top_logprobs))
    if not reply.first_token_logprobs:
        raise BackendReplyError("the endpoint returned no token logprobs; a check's probability cannot be "
                                "measured", raw=reply.text)
    try:
        p_yes, _ = p_yes_from_top_logprobs(reply.first_token_logprobs)
    except CheckAnswerError as exc:
        log.info("check %r of %s unanswered: %s", planned.check.question, planned.rule_id, exc)
        return _Answer(None, str(exc), reply, cut)
    return _Answer(p_yes, None, reply, cut)


async def grade_pair(backend: Backend, pair: Pair, planned: Sequence[PlannedCheck], *, sequential: bool,
                     top_logprobs: int = 10, max_chars: int = 6000) -> Graded:
    """Ask every planned check of both responses.

    Args:
        backend: where to ask.
        pair: the pair; each response is shown alone with the prompt.
        planned: the checks, in the order to ask them.
        sequential: one request at a time, all of A's checks first (keeps a one-slot server's prompt cache).
        top_logprobs: alternatives to read P(yes) from.
        max_chars: longer texts are cut in the middle with a visible marker.

    Raises:
        BackendError: the endpoint failed (after its retries) or returned no logprobs.
    """
    jobs = [(side, response, p) for side, response in (("A", pair.response_a), ("B", pair.response_b))
            for p in planned]

    if sequential:
        answers = [await _ask(backend, pair.prompt, r, p, top_logprobs=top_logprobs, max_chars=max_chars)
                   for _, r, p in jobs]
    else:
        answers = list(await asyncio.gather(*(_ask(backend, pair.prompt, r, p, top_logprobs=top_logprobs,
                                                   max_chars=max_chars) for _, r, p in jobs)))
    n = len(planned)
    results = []
    for i, p in enumerate(planned):
        a, b = answers[i], answers[n + i]
        failures = [f"response {side}: {x.failure}" for side, x in (("A", a), ("B", b)) if x.failure]
        results.append(CheckResult(rule_id=p.rule_id, question=p.check.question, expect=p.check.expect,
                                   target=p.check.target, p_yes_a=a.p_yes, p_yes_b=b.p_yes,
                                   failure="; ".join(failures) or None))
    replies = [x.reply for x in answers if x.reply is not None]
    prefilled = [r.prefilled_tokens for r in replies]
    known = bool(prefilled) and None not in prefilled  # a total only when every reply said
    return Graded(results=results, prompt_tokens=sum(r.prompt_tokens for r in replies),
                  completion_tokens=sum(r.completion_tokens for r in replies),
                  prefilled_tokens=sum(x or 0 for x in prefilled) if known else None,
                  truncated=any(x.truncated for x in answers))
