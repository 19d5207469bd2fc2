"""One comparison: retrieve -> order by precedence -> prompt both orders -> combine -> explain -> cite.

`Judge.acompare` never turns a failure into a score: a reply that does not parse, an explanation that
never validates, or an endpoint that keeps failing gives a `Verdict` with ``failure`` set and no winner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Literal

from judge.backends.base import Backend, ChatReply, ChatRequest, release_connections
from judge.calibration.apply import calibrate_verdict, mark_escalated
from judge.calibration.recalibrate import ESCALATE_ALL, Calibrator, check_compatible
from judge.errors import BackendError, BackendReplyError, JudgeError, StructuredOutputError
from judge.judging.check_verdict import check_citations, check_rationale, decide_by_checks
from judge.judging.citations import point_mass, precedent_citation, with_explanation
from judge.judging.grading import CheckCache
from judge.judging.pairwise import VerdictTokenError, combine, distribution_from_top_logprobs, swap
from judge.judging.prompts import (
    BARE_TEMPLATE_VERSION,
    TEMPLATE_VERSION,
    PromptLimits,
    RenderedPrompt,
    explanation_messages,
    verdict_messages,
)
from judge.judging.verdict import Explanation, explanation_model
from judge.retrieval.shown import Shown, shown_rules
from judge.rulebook import Rulebook
from judge.rules.model import Pair, Rule
from judge.store.judgments import JudgmentStore
from judge.verdicts import (
    Distribution,
    Failure,
    JudgeConfig,
    OrderResult,
    PrecedentRef,
    TraceEntry,
    Verdict,
    cache_key,
    request_key,
)

__all__ = ["EXPLANATION_MAX_TOKENS", "Judge", "Shown", "cache_key", "shown_rules"]

#: Room for the structured explanation. The schema bounds it (at most 3 rules, 150-character notes, a
#: 400-character rationale: about 350 tokens), so running out means a runaway reply, recorded as a failure.
EXPLANATION_MAX_TOKENS = 800

log = logging.getLogger(__name__)


class Judge:
    """Decides pairs with a backend under a rulebook.

    Args:
        backend: any `Backend` (OpenAI-compatible, embedded, fake).
        rulebook: where rules are retrieved from; required unless ``config.use_rules`` is False.
        config: what to ask and how; defaults derive from the backend.
        limits: prompt size limits.
        price_per_mtok: (prompt, completion) USD per million tokens, for the cost estimate; None: unknown.
        store: where every judgment is recorded (audit) and identical requests are answered from (cache).
        concurrent_orders: send both orders at once (remote endpoints). False sends the swapped order first
            and then the original one, whose prompt the explanation continues: on a one-slot local server
            the shared prefix (instructions + rules) stays cached.
        use_cache: answer from the store when an identical request was judged before (and, with
            ``check_cache``, each rule check from there).
        check_cache: where the rule-checks method records every check answer and looks answers up, so a
            re-run or the same response against another one asks only the checks not answered before.
    """

    def __init__(self, backend: Backend, rulebook: Rulebook | None = None, *, config: JudgeConfig | None = None,
                 limits: PromptLimits | None = None,
                 price_per_mtok: tuple[float, float] | None = None, store: JudgmentStore | None = None,
                 concurrent_orders: bool = True, use_cache: bool = True, calibrator: Calibrator | None = None,
                 escalate_below: float | None = None, allow_rulebook_change: bool = False,
                 check_cache: CheckCache | None = None) -> None:
        self.backend = backend
        self.rulebook = rulebook
        self.config = config or JudgeConfig(backend=backend.name, model=backend.model,
                                            template_version=TEMPLATE_VERSION)
        if self.config.use_rules and rulebook is None:
            raise JudgeError("a Judge that uses rules needs a rulebook (or config.use_rules=False)")
        self.limits = limits or PromptLimits()
        self.price_per_mtok = price_per_mtok
        self.store = store
        self.concurrent_orders = concurrent_orders
        self.use_cache = use_cache
        self.check_cache = check_cache
        if calibrator is not None:
            check_compatible(calibrator, self.config, rulebook.version if rulebook is not None else None,
                             allow_rulebook_change=allow_rulebook_change)
        if escalate_below is not None and not (0.0 <= escalate_below <= 1.0 or escalate_below == ESCALATE_ALL):
            raise JudgeError(f"escalate_below must lie in [0, 1], got {escalate_below}")
        self.calibrator = calibrator
        self.escalate_below = escalate_below

    # ------------------------------------------------------------------ rules
    def rules_for(self, pair: Pair, exclude: Sequence[str] = ()) -> Shown:
        """What this judge retrieves for the pair: rules shown to the model, scores, version, precedent."""
        if not self.config.use_rules or self.rulebook is None:
            return Shown([], {}, None)
        return shown_rules(self.rulebook, pair, self.config, exclude)

    def request_key(self, pair: Pair, exclude: Sequence[str] = (), rulebook_version: str | None = None) -> str:
        """The pair's request key under this judge (`judge.verdicts.request_key`) at ``rulebook_version``
        (default: the current one)."""
        rb = self.rulebook if self.config.use_rules else None
        return request_key(pair, None if rb is None else rulebook_version or rb.version, exclude, self.config,
                           None if rb is None else rb.retrieval_settings())

    # ------------------------------------------------------------------ one order
    async def ask_order(self, pair: Pair, rules: list[Rule], shown_first: Literal["A", "B"], *,
                        bare: bool | None = None) -> tuple[RenderedPrompt, OrderResult]:
        """Ask the pairwise question in one order (``bare``: without rules; default: as configured).

        Raises:
            VerdictTokenError: the reply's first token is no answer (carries the reply text as ``raw``).
            BackendError: the endpoint failed or returned no logprobs.
        """
        bare = not self.config.use_rules if bare is None else bare
        rendered = verdict_messages(pair, rules, shown_first=shown_first, limits=self.limits,
                                    bare=bare, allow_tie=self.config.allow_tie)
        reply: ChatReply = await self.backend.achat(ChatRequest(
            messages=rendered.messages, max_tokens=1, temperature=self.config.temperature,
            top_logprobs=self.config.top_logprobs))
        if not reply.first_token_logprobs:
            raise BackendReplyError("the endpoint returned no token logprobs; the verdict's probability "
                                    "cannot be measured", raw=reply.text)
        try:
            dist, mass = distribution_from_top_logprobs(reply.first_token_logprobs,
                                                        allow_tie=self.config.allow_tie)
        except VerdictTokenError as exc:
            raise _VerdictParseError(str(exc), reply.text) from exc
        mapped = dist if shown_first == "A" else swap(dist)
        return rendered, OrderResult(shown_first=shown_first, distribution=mapped, answer_mass=mass,
                                     top_logprobs=list(reply.first_token_logprobs),
                                     prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                                     latency_s=reply.latency_s)

    # ------------------------------------------------------------------ compare
    async def acompare(self, pair: Pair, *, exclude: Sequence[str] = ()) -> Verdict:
        """Judge one pair (both orders unless ``config.both_orders`` is False).

        With a store, an identical earlier request (same cache key) is answered from it, and every new
        verdict or failure is recorded together with the pair (so it can become a ruling or be re-run).
        Calling it from your own event loop, end with ``await judge.release()`` before that loop closes
        (`compare`, `run_pairs` and the CLI do this themselves).
        """
        start = time.perf_counter()
        if self.store is not None and self.use_cache:
            # A repeated request: answered before anything is embedded or the index is opened.
            hit = self.store.get_requested(self.request_key(pair, exclude))
            if hit is not None:
                return self._finish(hit.model_copy(update={"pair_id": pair.id, "cached": True}), pair)
        shown = self.rules_for(pair, exclude)
        rules, scores, version = shown.rules, shown.scores, shown.version
        key = cache_key(pair, version, [r.id for r in rules], self.config)
        # Recorded at the version retrieval read (a writer may have moved it since the lookup above).
        request = self.request_key(pair, exclude, version)
        if self.store is not None and self.use_cache:
            hit = self.store.get(key)
            if hit is not None:
                self.store.note_request(request, key)
                return self._finish(hit.model_copy(update={"pair_id": pair.id, "cached": True}), pair)
        if shown.precedent is not None:
            verdict = self._bound(pair, *shown.precedent, rules, scores, version, key, start)
        elif self.config.method == "checks":
            verdict = await self._decide_checks(pair, rules, scores, version, key, start)
        else:
            verdict = await self._decide(pair, rules, scores, version, key, start)
        if self.store is not None:
            self.store.put(verdict, pair, exclude=exclude, request_key=request)
        return self._finish(verdict, pair)

    def _finish(self, verdict: Verdict, pair: Pair) -> Verdict:
        """Calibrate and apply the abstention threshold (after the store: it keeps the judge's own verdict).

        A precedent-bound verdict is not recalibrated: the calibrator was fitted on the model's probabilities.
        """
        if self.calibrator is not None and verdict.precedent is None:
            verdict = calibrate_verdict(verdict, self.calibrator, pair)
        if self.escalate_below is not None:
            verdict = mark_escalated(verdict, self.escalate_below)
        return verdict

    # ------------------------------------------------------------------ precedent
    def _bound(self, pair: Pair, ruling: Rule, ref: PrecedentRef, rules: list[Rule], scores: dict[str, float],
               version: str | None, key: str, start: float) -> Verdict:
        """The verdict a binding precedent decides: its holding, with ``precedent_confidence``."""
        dist = point_mass(ref.holding, self.config.precedent_confidence, allow_tie=self.config.allow_tie)
        citation = precedent_citation(ruling, ref)
        log.info("pair %s bound by precedent %s (similarity %.3f)", pair.id, ruling.id, ref.similarity)
        return Verdict(**self._base(pair, rules, scores, version, key), winner=ref.holding,
                       probabilities=dist, citations=[citation], deciding_rule=ruling.id, precedent=ref,
                       decided_by="precedent",
                       rationale=f"Bound by {ruling.id}: {ruling.text}"[:400],
                       latency_s=time.perf_counter() - start)

    def _base(self, pair: Pair, rules: list[Rule], scores: dict[str, float], version: str | None,
              key: str) -> dict[str, object]:
        return {"pair_id": pair.id, "config": self.config, "cache_key": key, "rulebook_version": version,
                "retrieved": [{"id": r.id, "layer": r.layer.value, "score": round(scores.get(r.id, 0.0), 4),
                               "version": r.version} for r in rules]}

    async def _decide(self, pair: Pair, rules: list[Rule], scores: dict[str, float], version: str | None,
                      key: str, start: float) -> Verdict:
        cfg = self.config
        base = self._base(pair, rules, scores, version, key)

        def failed(stage: str, reason: str, raw: str | None = None, **extra: object) -> Verdict:
            return Verdict(**base, **extra, winner=None, probabilities=None,
                           failure=Failure(stage=stage, reason=reason, raw=raw),
                           latency_s=time.perf_counter() - start)

        orders_wanted: list[Literal["A", "B"]] = ["A", "B"] if cfg.both_orders else ["A"]
        try:
            if self.concurrent_orders:
                results = list(await asyncio.gather(*(self.ask_order(pair, rules, o) for o in orders_wanted)))
            else:
                results = [await self.ask_order(pair, rules, o) for o in reversed(orders_wanted)][::-1]
        except _VerdictParseError as exc:
            return failed("verdict", f"reply is not a verdict: {exc}", exc.raw)
        except BackendError as exc:
            return failed("backend", str(exc), getattr(exc, "raw", None))
        orders = [r for _, r in results]
        tokens_in = sum(o.prompt_tokens for o in orders)
        tokens_out = sum(o.completion_tokens for o in orders)
        if len(orders) == 2:
            combined = combine(orders[0].distribution, orders[1].distribution)
            dist, inconsistent = combined.distribution, combined.position_inconsistent
        else:
            dist, inconsistent = orders[0].distribution, None
        extra: dict[str, object] = {"orders": orders, "position_inconsistent": inconsistent,
                                    "truncated": any(p.truncated for p, _ in results),
                                    "prompt_tokens": tokens_in, "completion_tokens": tokens_out}

        explanation = None
        if cfg.explain:
            try:
                explanation, used_in, used_out = await self._explain(results[0][0], dist, rules)
            except StructuredOutputError as exc:
                return failed("explanation", str(exc), exc.raw, **extra)
            except BackendError as exc:
                return failed("backend", str(exc), getattr(exc, "raw", None), **extra)
            extra["prompt_tokens"] = tokens_in + used_in
            extra["completion_tokens"] = tokens_out + used_out
        verdict = Verdict(**base, **extra, winner=dist.winner, probabilities=dist,
                          decided_by="model", latency_s=time.perf_counter() - start)
        if explanation is not None:
            verdict = with_explanation(verdict, explanation, rules, scores)
        return self._priced(verdict)

    def _priced(self, verdict: Verdict) -> Verdict:
        if self.price_per_mtok is None:
            return verdict
        p_in, p_out = self.price_per_mtok
        return verdict.model_copy(update={
            "cost_usd": (verdict.prompt_tokens * p_in + verdict.completion_tokens * p_out) / 1e6})

    async def _decide_checks(self, pair: Pair, rules: list[Rule], scores: dict[str, float], version: str | None,
                             key: str, start: float) -> Verdict:
        """The rule-checks method: grade both responses alone, then apply precedence (`judge.judging.decide`)."""
        decision, extra, failure = await decide_by_checks(self, pair, rules, scores)
        base = self._base(pair, rules, scores, version, key)
        if failure is not None:
            return Verdict(**base, **extra, winner=None, probabilities=None,
                           failure=failure, latency_s=time.perf_counter() - start)
        assert decision is not None
        dist = Distribution(a=decision.p_a, tie=0.0, b=1.0 - decision.p_a)
        verdict = Verdict(**base, **extra, winner=dist.winner, probabilities=dist,
                          citations=check_citations(decision, dist.winner, scores),
                          deciding_rule=decision.cited[0].rule.id if decision.cited else None,
                          rationale=check_rationale(decision, dist.winner),
                          precedence_trace=[TraceEntry(winner=w, loser=lo, criterion=c, reason=r)
                                            for w, lo, c, r in decision.trace],
                          decided_by=decision.decided_by, latency_s=time.perf_counter() - start)
        return self._priced(verdict)

    async def release(self) -> None:
        """Close the backend's pooled connections (before the event loop that opened them ends)."""
        await release_connections(self.backend)

    def compare(self, pair: Pair, *, exclude: Sequence[str] = ()) -> Verdict:
        """Synchronous `acompare` (the backend's connections are released before its event loop ends)."""

        async def once() -> Verdict:
            try:
                return await self.acompare(pair, exclude=exclude)
            finally:
                await self.release()

        return asyncio.run(once())

    async def _explain(self, first_order: RenderedPrompt, dist: Distribution,
                       rules: list[Rule]) -> tuple[Explanation, int, int]:
        letter: Literal["A", "B", "T"] = "T" if dist.winner == "tie" else dist.winner  # first order shows A first
        messages = explanation_messages(first_order, letter)
        ids = [r.id for r in rules]
        reply = await self.backend.astructured(messages, explanation_model(ids), context={"retrieved_ids": ids},
                                               max_retries=self.config.max_retries, max_tokens=EXPLANATION_MAX_TOKENS)
        return reply.value, reply.prompt_tokens, reply.completion_tokens


class _VerdictParseError(VerdictTokenError):
    def __init__(self, message: str, raw: str | None) -> None:
        super().__init__(message)
        self.raw = raw


def bare_config(backend: Backend, *, both_orders: bool = True) -> JudgeConfig:
    """The rule-free baseline configuration ("which response is better", one letter A/B)."""
    return JudgeConfig(backend=backend.name, model=backend.model, template_version=BARE_TEMPLATE_VERSION,
                       both_orders=both_orders, explain=False, use_rules=False)
