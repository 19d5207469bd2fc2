"""Rulings: a new ruling checked against the active ones, the precedents that bind a pair, and a ruling made
from a stored judgment a person disagrees with.

A new ruling is checked against the active rulings on near-duplicate pairs (`judge.rules.conflicts`): a
contradicting holding raises `RulingConflictError` and writes nothing, until the ruling names the one it
``overrules``. Nothing here writes: `judge.Rulebook` commits what `CaseLaw` prepares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from judge.errors import InputError, RulebookError, RulingConflictError
from judge.retrieval.retriever import PRECEDENT_CANDIDATES, Retriever
from judge.rules.conflicts import (
    DEFAULT_CONFLICT_THRESHOLD,
    Candidate,
    Precedent,
    RulingConflict,
    find_conflicts,
    measure_candidates,
    near_duplicates,
)
from judge.rules.model import (
    Check,
    Holding,
    Layer,
    Pair,
    Response,
    Rule,
    RulingCase,
    as_response,
    check_holding,
    slugify,
)
from judge.rules.textio import ruling_text
from judge.store import RulebookStore
from judge.store.judgments import JudgmentStore
from judge.verdicts import Verdict, cache_key

__all__ = ["CONFLICT_CANDIDATES", "CaseLaw"]

#: Nearest active rulings examined for a contradiction when a ruling is added.
CONFLICT_CANDIDATES = 20


class CaseLaw:
    """The rulings of one rulebook as precedents: conflicts, binding precedents, new rulings.

    Args:
        store: the SQL system of record.
        retriever: finds the active rulings nearest a pair (without an index, every active ruling is scanned).
        conflict_threshold: embedding cosine of prompt + responses from which a new ruling's pair is a
            near-duplicate of an active ruling's (see `judge.rules.conflicts`).
    """

    def __init__(self, store: RulebookStore, retriever: Retriever, *,
                 conflict_threshold: float = DEFAULT_CONFLICT_THRESHOLD) -> None:
        if not 0.0 <= conflict_threshold <= 1.0:
            raise RulebookError(f"conflict_threshold must lie in [0, 1], got {conflict_threshold}")
        self.store = store
        self.retriever = retriever
        self.conflict_threshold = conflict_threshold

    def conflicts(self, pair: Pair, holding: Holding, *, ignore: Sequence[str] = ()) -> list[RulingConflict]:
        """Active rulings on near-duplicate pairs whose holding contradicts ``holding`` on ``pair``.

        With an index, the `CONFLICT_CANDIDATES` nearest active rulings are examined and the pairs compared
        by embedding (threshold ``conflict_threshold``); without one, every active ruling is scanned and only
        the same pair (normalised texts, either order) counts.

        Args:
            pair: the pair a new ruling decides.
            holding: its holding, in ``pair``'s slots.
            ignore: ruling ids not to report (the ones the new ruling overrules).
        """
        return find_conflicts(pair, holding, self._candidates(pair, ignore), threshold=self.conflict_threshold)

    def precedents(self, pair: Pair, *, exclude: Sequence[str] = (), threshold: float | None = None
                   ) -> list[Precedent]:
        """Active rulings decided on the same facts as ``pair``, most similar first.

        What binds a later judgment (stare decisis): their holdings are given in ``pair``'s slots. Found as
        for `conflicts`, and stricter: the pairs as wholes *and* each response must match at ``threshold``
        (default ``conflict_threshold``); the reported similarity is the lower of the two.

        Args:
            pair: the pair being judged.
            exclude: ruling ids to leave out (leave-one-out evaluation).
            threshold: embedding cosine of prompt + responses from which a ruling's pair counts as the same.
        """
        threshold = self.conflict_threshold if threshold is None else threshold
        return near_duplicates(pair, self._candidates(pair, exclude, threshold, PRECEDENT_CANDIDATES),
                               threshold=threshold, strict=True)

    def _candidates(self, pair: Pair, exclude: Sequence[str], threshold: float | None = None,
                    n: int = CONFLICT_CANDIDATES) -> list[Candidate]:
        """The active rulings nearest ``pair``, measured for near-duplication (see `conflicts`)."""
        if self.store.count(Layer.RULING, active_only=True) == 0:
            return []  # nothing to compare with (and no need for an index that may never have been built)
        if self.retriever.index is None:
            excluded = set(exclude)
            return [Candidate(r, None) for r in self.store.iter_current(Layer.RULING, active_only=True)
                    if r.id not in excluded]
        query, rulings = self.retriever.nearest_rulings(pair, exclude, n)
        if not rulings:
            return []
        return measure_candidates(self.retriever.embed, pair, query, rulings,
                                  threshold=self.conflict_threshold if threshold is None else threshold)

    def new_ruling(self, *, prompt: str, response_a: str | Response, response_b: str | Response,
                   holding: Holding, rationale: str, cites: Sequence[str] = (), overrules: Sequence[str] = (),
                   rule_id: str | None = None, title: str | None = None, source: str = "human-review",
                   author: str | None = None, tags: Sequence[str] = (), checks: Sequence[Check] = ()) -> Rule:
        """The ruling a case decides, checked against the active rulings (not written; see
        `judge.Rulebook.add_ruling` for the arguments).

        Raises:
            InputError: ``holding`` is not A, B or tie.
            RulingConflictError: the holding contradicts an active ruling on a near-duplicate pair that
                ``overrules`` does not name.
        """
        check_holding(holding)
        case = RulingCase(prompt=prompt, response_a=as_response(response_a), response_b=as_response(response_b),
                    holding=holding, rationale=rationale, cites=tuple(cites), overrules=tuple(overrules))
        title = title or _title_from(prompt)
        rid = rule_id or f"ruling/{slugify(title, max_len=60)}-{_case_digest(case)}"
        conflicts = self.conflicts(case.as_pair(), holding, ignore=overrules)
        if conflicts:
            raise RulingConflictError(rid, [(c.ruling_id, c.holding, c.similarity) for c in conflicts])
        # Unknown citations are refused inside the store's transaction; here they just add no depth.
        specificity = 1 + max((r.specificity for r in self.store.get_many(cites).values()), default=0)
        return Rule(id=rid, layer=Layer.RULING, title=title, text=ruling_text(holding, rationale),
                    specificity=specificity, tags=tuple(tags), source=source, case=case, author=author,
                    checks=tuple(checks))

    @staticmethod
    def judged_pair(result: Verdict | str, pair: Pair | None, judgments: JudgmentStore) -> tuple[Verdict, Pair]:
        """The verdict a ruling corrects and the pair it judged (see `judge.Rulebook.add_ruling_from`).

        Raises:
            InputError: the result id matches nothing or several judgments, the judgment predates stored
                pairs (pass ``pair``), or ``pair`` is not the pair the verdict judged.
        """
        if isinstance(result, str) or pair is None:
            found = judgments.find(result if isinstance(result, str) else result.cache_key)
            verdict = found.verdict
            if pair is None:
                if found.pair is None:
                    raise InputError(f"judgment {verdict.cache_key[:12]} (pair {verdict.pair_id or '-'}) predates "
                                     "stored pairs: judgments recorded before schema revision 0004 kept no pair; "
                                     "add the ruling with `judge rulebook add-ruling` (or pass pair=...)",
                                     field="result_id")
                pair = found.pair
        else:
            verdict = result
        shown = [str(r["id"]) for r in verdict.retrieved]
        if cache_key(pair, verdict.rulebook_version, shown, verdict.config) != verdict.cache_key:
            raise InputError(f"the pair given is not the pair judgment {verdict.cache_key[:12]} judged",
                             field="pair")
        return verdict, pair


def _title_from(prompt: str) -> str:
    words = " ".join(prompt.split())
    return (words[:60].rsplit(" ", 1)[0] if len(words) > 60 else words) or "ruling"


def _case_digest(case: RulingCase) -> str:
    return hashlib.sha256(case.model_dump_json().encode()).hexdigest()[:8]
