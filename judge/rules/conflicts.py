"""Contradicting precedents: would a new ruling's holding contradict an active ruling on a near-duplicate pair?

Pure apart from the embedder handed to `measure_candidates`: the rulebook finds candidate rulings (nearest
by retrieval), these functions measure and decide. A pair may present an earlier case's responses in the
other slots, so holdings are compared by response *text*, not by slot letter: "A" on the new pair
contradicts "A" on the earlier case when the new pair's A is the earlier case's B.

Near-duplicate: the same pair (whitespace- and case-normalised prompt and responses, in either order), or
an embedding cosine of prompt + responses at or above a threshold. The same prompt alone is not enough:
two rulings on one prompt with different responses can both hold. Binding (stare decisis) is stricter: the
same facts - the prompt (with its conversation) and each response, each compared on its own. The same two
responses to another prompt are another case: "yo" may be the better reply to "yooooo" and not to "Hello.".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from judge.rules.model import Holding, Pair, Rule, RulingCase

__all__ = [
    "DEFAULT_CONFLICT_THRESHOLD",
    "Candidate",
    "Precedent",
    "RulingConflict",
    "cosine",
    "find_conflicts",
    "in_slots",
    "measure_candidates",
    "near_duplicates",
    "normalise",
    "same_pair",
    "swapped_slots",
]

#: Cosine of prompt + responses from which two pairs count as near-duplicates.
DEFAULT_CONFLICT_THRESHOLD = 0.95


def normalise(text: str) -> str:
    """Whitespace-collapsed, case-folded text: what "the same text" means here."""
    return " ".join(text.split()).casefold()


def same_pair(pair: Pair, case: RulingCase) -> bool:
    """The same prompt and the same two responses, in either order (normalised texts)."""
    if normalise(pair.prompt) != normalise(case.prompt):
        return False
    new = sorted((normalise(pair.response_a.text), normalise(pair.response_b.text)))
    old = sorted((normalise(case.response_a.text), normalise(case.response_b.text)))
    return new == old


def swapped_slots(pair: Pair, case: RulingCase, response_similarity: tuple[float, float] | None = None) -> bool:
    """Whether ``pair`` shows ``case``'s responses in the other slots (its A is the case's B).

    Exact (normalised) text decides first; otherwise ``response_similarity`` = (A~A + B~B, A~B + B~A)
    decides, and without it the slots are taken as given.
    """
    new_a, new_b = normalise(pair.response_a.text), normalise(pair.response_b.text)
    old_a, old_b = normalise(case.response_a.text), normalise(case.response_b.text)
    if (new_a, new_b) == (old_a, old_b) or new_a == old_a or new_b == old_b:
        return False
    if (new_a, new_b) == (old_b, old_a) or new_a == old_b or new_b == old_a:
        return True
    if response_similarity is None:
        return False
    straight, crossed = response_similarity
    return crossed > straight


def in_slots(holding: Holding, swapped: bool) -> Holding:
    """A holding expressed in the other presentation's slots (a tie stays a tie)."""
    if not swapped or holding == "tie":
        return holding
    return "B" if holding == "A" else "A"


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is zero)."""
    norm = float(np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.dot(u, v) / norm) if norm else 0.0


@dataclass(frozen=True)
class Candidate:
    """An active ruling near a new pair, with the similarities the rulebook measured.

    Attributes:
        rule: the ruling (with its case).
        similarity: cosine of prompt + responses, the better of the case's two presentations; None when
            no embedder is available (only the same pair counts then).
        response_similarity: (A~A + B~B, A~B + B~A) between the pairs' responses, when measured.
        response_min: the lower of the two response cosines in the better-matching presentation, when
            measured: high only when *each* response has a near-identical counterpart.
        prompt_similarity: cosine of the two prompts (with their conversations) on their own, when measured.
    """

    rule: Rule
    similarity: float | None
    response_similarity: tuple[float, float] | None = None
    response_min: float | None = None
    prompt_similarity: float | None = None


@dataclass(frozen=True)
class Precedent:
    """An active ruling decided on a near-duplicate of a pair.

    Attributes:
        ruling_id: the ruling.
        holding: its holding expressed in the pair's slots.
        similarity: how alike the pairs are (1.0 for the same pair).
        swapped: the pair shows the ruling's responses in the other slots.
    """

    ruling_id: str
    holding: Holding
    similarity: float
    swapped: bool


#: A precedent whose holding contradicts a new ruling's (see `find_conflicts`).
RulingConflict = Precedent


def near_duplicates(pair: Pair, candidates: Sequence[Candidate], *,
                    threshold: float = DEFAULT_CONFLICT_THRESHOLD, strict: bool = False) -> list[Precedent]:
    """The candidates decided on a near-duplicate of ``pair``, most similar first, holdings in its slots.

    Rulings that are not active, or carry no case, are ignored. ``strict`` (the same facts, for binding)
    also requires the prompt and each response to match the case's, each on its own, at ``threshold``: two
    rulings on one prompt that share one response are alike as wholes (cosine ~0.99 with MiniLM) yet decide
    different comparisons, and so are the same two responses given to two different prompts. The reported
    similarity is then the lowest of the whole-pair, prompt and response similarities.
    """
    found: list[Precedent] = []
    for candidate in candidates:
        case = candidate.rule.case
        if case is None or not candidate.rule.binds:
            continue
        similarity = 1.0 if same_pair(pair, case) else candidate.similarity
        if similarity is not None and similarity < 1.0 and strict:
            similarity = _same_facts(pair, case, similarity, candidate)
        if similarity is None or similarity < threshold:
            continue
        swapped = swapped_slots(pair, case, candidate.response_similarity)
        found.append(Precedent(candidate.rule.id, in_slots(case.holding, swapped), round(similarity, 4), swapped))
    return sorted(found, key=lambda p: -p.similarity)


def _same_facts(pair: Pair, case: RulingCase, similarity: float, candidate: Candidate) -> float | None:
    """The lowest of the whole-pair, each-response and prompt similarities; None when one was not measured."""
    if candidate.response_min is None:
        return None
    if normalise(pair.prompt) == normalise(case.prompt):
        prompt = 1.0
    elif candidate.prompt_similarity is None:
        return None
    else:
        prompt = candidate.prompt_similarity
    return min(similarity, candidate.response_min, prompt)


def find_conflicts(pair: Pair, holding: Holding, candidates: Sequence[Candidate], *,
                   threshold: float = DEFAULT_CONFLICT_THRESHOLD) -> list[RulingConflict]:
    """The candidates on near-duplicate pairs whose holding differs from ``holding`` (by response text)."""
    return [p for p in near_duplicates(pair, candidates, threshold=threshold) if p.holding != holding]


def measure_candidates(encode: Callable[[list[str]], np.ndarray], pair: Pair, query: np.ndarray,
                       rulings: Sequence[Rule], *, threshold: float) -> list[Candidate]:
    """Measure how alike each ruling's case is to ``pair`` with an embedder's ``encode``.

    Similarity is the cosine between ``query`` (``pair.query_text()`` embedded) and the case's prompt +
    responses, in whichever presentation is closer. Only near-duplicates (at or above ``threshold``) get
    their responses and prompts embedded one by one, to tell which response is which and whether the prompt is
    the same.
    """
    texts: list[str] = []
    cases: list[RulingCase] = []
    for rule in rulings:
        if rule.case is None:
            raise ValueError(f"{rule.id} carries no case")
        case = rule.case
        cases.append(case)
        texts += [case.as_pair().query_text(),
                  Pair(prompt=case.prompt, response_a=case.response_b, response_b=case.response_a).query_text()]
    if not cases:
        return []
    vectors = encode(texts)
    sims = [max(cosine(query, vectors[2 * i]), cosine(query, vectors[2 * i + 1])) for i in range(len(cases))]
    near = [i for i, sim in enumerate(sims) if sim >= threshold]
    responses: dict[int, tuple[float, float]] = {}
    response_min: dict[int, float] = {}
    prompts: dict[int, float] = {}
    if near:
        own = [pair.response_a.text, pair.response_b.text, pair.prompt]
        theirs = [text for i in near
                  for text in (cases[i].response_a.text, cases[i].response_b.text, cases[i].prompt)]
        vecs = encode(own + theirs)
        a, b, p = vecs[0], vecs[1], vecs[2]
        for j, i in enumerate(near):
            old_a, old_b, old_p = vecs[3 + 3 * j], vecs[4 + 3 * j], vecs[5 + 3 * j]
            aa, bb, ab, ba = cosine(a, old_a), cosine(b, old_b), cosine(a, old_b), cosine(b, old_a)
            responses[i] = (aa + bb, ab + ba)
            response_min[i] = min(aa, bb) if aa + bb >= ab + ba else min(ab, ba)
            prompts[i] = cosine(p, old_p)
    return [Candidate(rule, sims[i], responses.get(i), response_min.get(i), prompts.get(i))
            for i, rule in enumerate(rulings)]
