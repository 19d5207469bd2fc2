"""Asking rule checks of a pair's two responses through a backend.

Each response is graded alone. On a one-slot local server the checks go one after another, all of
response A's first and then all of B's, so the server's prompt cache keeps the shared prefix (instruction,
prompt, response) and prefills only each question; remote endpoints get every check at once. A reply that
is not yes or no is recorded as that check's failure, never guessed.

With a check cache, each question is looked up first and only the unanswered ones are asked: a re-run, or
the same response judged against another one, costs only the checks not seen before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from judge.backends.base import Backend, ChatReply, ChatRequest
from judge.errors import BackendReplyError
from judge.judging.checks import (
    CHECKS_TEMPLATE_VERSION,
    CheckAnswerError,
    CheckRecord,
    PlannedCheck,
    check_cache_key,
    check_messages,
    p_yes_from_top_logprobs,
)
from judge.rules.model import Pair, Response
from judge.verdicts import CheckResult

__all__ = ["CheckCache", "Graded", "endpoint_of", "grade_pair"]

log = logging.getLogger(__name__)


class CheckCache(Protocol):
    """Where check answers are recorded and looked up (`judge.store.check_answers.CheckAnswerStore`)."""

    def get_many(self, keys: Iterable[str]) -> Mapping[str, float]:
        """P(yes) of the latest successful answer for each key that has one."""
        ...

    def put_many(self, answers: Sequence[CheckRecord]) -> None:
        """Record answers and failures."""
        ...


def endpoint_of(backend: Backend) -> str:
    """Where a backend asks, for the check cache key: the embedded backend's name (its server's port changes
    from run to run; the model file is in the name or the model), else the client's base URL."""
    if backend.name.startswith("local"):
        return backend.name
    client = getattr(backend, "client", None)
    base_url = getattr(client, "base_url", None)
    return str(base_url) if base_url is not None else backend.name


@dataclass(frozen=True)
class Graded:
    """Every planned check's answers for both responses, and what they cost.

    ``asked`` counts the requests sent to the backend; ``cached`` the answers taken from the check cache
    (a question asked twice in one pair - the same check on identical responses, or two rules' same
    question - is asked once and counted once).
    """

    results: list[CheckResult]
    prompt_tokens: int
    completion_tokens: int
    prefilled_tokens: int | None
    truncated: bool
    asked: int = 0
    cached: int = 0


@dataclass(frozen=True)
class _Answer:
    p_yes: float | None
    failure: str | None
    reply: ChatReply | None
    truncated: bool


@dataclass(frozen=True)
class _Job:
    response: Response
    planned: PlannedCheck
    messages: tuple[dict[str, str], ...]
    cut: bool
    key: str


async def _ask(backend: Backend, job: _Job, *, top_logprobs: int) -> _Answer:
    reply = await backend.achat(ChatRequest(messages=job.messages, max_tokens=1, temperature=0.0,
                                            top_logprobs=top_logprobs))
    if not reply.first_token_logprobs:
        raise BackendReplyError("the endpoint returned no token logprobs; a check's probability cannot be "
                                "measured", raw=reply.text)
    try:
        p_yes, _ = p_yes_from_top_logprobs(reply.first_token_logprobs)
    except CheckAnswerError as exc:
        log.info("check %r of %s unanswered: %s", job.planned.check.question, job.planned.rule_id, exc)
        return _Answer(None, str(exc), reply, job.cut)
    return _Answer(p_yes, None, reply, job.cut)


def _record(job: _Job, answer: _Answer, *, endpoint: str, model: str, template_version: str) -> CheckRecord:
    reply = answer.reply
    return CheckRecord(cache_key=job.key, endpoint=endpoint, model=model, template_version=template_version,
                       p_yes=answer.p_yes, failure=answer.failure,
                       reply={"text": reply.text if reply else None,
                              "top_logprobs": [list(t) for t in (reply.first_token_logprobs or ())] if reply else [],
                              "prompt_tokens": reply.prompt_tokens if reply else 0})


async def grade_pair(backend: Backend, pair: Pair, planned: Sequence[PlannedCheck], *, sequential: bool,
                     top_logprobs: int = 10, max_chars: int = 6000, cache: CheckCache | None = None,
                     use_cached: bool = True, endpoint: str = "",
                     template_version: str = CHECKS_TEMPLATE_VERSION) -> Graded:
    """Ask every planned check of both responses (only those not already answered in ``cache``).

    Args:
        backend: where to ask.
        pair: the pair; each response is shown alone with the prompt.
        planned: the checks, in the order to ask them.
        sequential: one request at a time, all of A's checks first (keeps a one-slot server's prompt cache).
        top_logprobs: alternatives to read P(yes) from.
        max_chars: longer texts are cut in the middle with a visible marker.
        cache: where answers are looked up before asking and recorded after (failures are recorded too,
            but never answer a later request).
        use_cached: answer from ``cache`` (False: ask everything again, and still record it).
        endpoint: the endpoint's identity for the cache key (its base URL, or the embedded backend's name).
        template_version: the checks template version (part of the cache key).

    Raises:
        BackendError: the endpoint failed (after its retries) or returned no logprobs.
    """
    jobs: list[_Job] = []
    for response in (pair.response_a, pair.response_b):
        for p in planned:
            messages, cut = check_messages(pair.prompt, response, p.check, max_chars=max_chars)
            jobs.append(_Job(response, p, messages, cut, check_cache_key(
                endpoint, backend.model, template_version, messages, top_logprobs=top_logprobs)))
    unique = list({j.key: j for j in jobs}.values())  # first occurrence of each question, A's first
    known = dict(cache.get_many(j.key for j in unique)) if cache is not None and use_cached else {}
    missing = [j for j in unique if j.key not in known]
    if sequential:
        asked = [await _ask(backend, j, top_logprobs=top_logprobs) for j in missing]
    else:
        asked = list(await asyncio.gather(*(_ask(backend, j, top_logprobs=top_logprobs) for j in missing)))
    if cache is not None and missing:
        cache.put_many([_record(j, a, endpoint=endpoint, model=backend.model, template_version=template_version)
                        for j, a in zip(missing, asked, strict=True)])
    by_key = {j.key: a for j, a in zip(missing, asked, strict=True)}
    by_key.update({j.key: _Answer(known[j.key], None, None, j.cut) for j in unique if j.key in known})
    answers = [by_key[j.key] for j in jobs]
    n = len(planned)
    results = []
    for i, p in enumerate(planned):
        a, b = answers[i], answers[n + i]
        failures = [f"response {side}: {x.failure}" for side, x in (("A", a), ("B", b)) if x.failure]
        results.append(CheckResult(rule_id=p.rule_id, question=p.check.question, expect=p.check.expect,
                                   target=p.check.target, p_yes_a=a.p_yes, p_yes_b=b.p_yes,
                                   failure="; ".join(failures) or None))
    replies = [x.reply for x in asked if x.reply is not None]
    prefilled = [r.prefilled_tokens for r in replies]
    known_prefill = None not in prefilled  # a total only when every reply said (0 when nothing was asked)
    return Graded(results=results, prompt_tokens=sum(r.prompt_tokens for r in replies),
                  completion_tokens=sum(r.completion_tokens for r in replies),
                  prefilled_tokens=sum(x or 0 for x in prefilled) if known_prefill else None,
                  truncated=any(j.cut for j in jobs), asked=len(missing), cached=len(unique) - len(missing))
