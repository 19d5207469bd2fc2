"""Contamination: test cases whose text also appears in a benchmark the user imports.

A case is flagged against a benchmark prompt when they share at least one word 8-gram (lower-cased
``\\w+`` tokens): eight words in a row, in the same order, rarely coincide by chance, while a copied prompt -
even lightly edited, or embedded in a longer one - shares many. A text shorter than 8 words matches only a
text with exactly the same words (a shorter overlap is too weak to call contamination). We chose n-gram
overlap over a Jaccard threshold because contamination is about *copied spans*: a benchmark prompt pasted
into a long case has a low Jaccard with it but is still a leak.

Each hit names the benchmark's source (a record's ``source`` field, else the file name), its line, the
longest overlapping span of the case's text, and the share of the case's 8-grams found in that prompt
(``fraction``), so a reader can tell one shared phrase from a copied prompt; ``min_fraction`` raises the bar.
The core (`find_contamination`) is pure; `read_benchmark` is the small reader at the edge.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judge.cases.distinct import words
from judge.errors import ConfigError, InputError
from judge.jsonl import read_jsonl

__all__ = ["DEFAULT_NGRAM", "BenchmarkPrompt", "ContaminationHit", "find_contamination", "read_benchmark"]

DEFAULT_NGRAM = 8
_SNIPPET_CHARS = 200


@dataclass(frozen=True)
class BenchmarkPrompt:
    """One prompt of an imported benchmark.

    Attributes:
        source: the benchmark it belongs to (the record's ``source`` field, else the file name).
        text: the prompt's text.
        line: its line in the file (0 when not read from a file).
    """

    source: str
    text: str
    line: int = 0


@dataclass(frozen=True)
class ContaminationHit:
    """A case that overlaps a benchmark prompt (the strongest overlap per case and source).

    Attributes:
        case_id: the flagged case.
        source: the benchmark the overlapping prompt comes from.
        line: that prompt's line in the benchmark file.
        snippet: the longest overlapping span, as the case's words (cut to 200 characters).
        shared: how many of the case's n-grams occur in the prompt.
        fraction: ``shared`` over the case's n-gram count (1.0: every n-gram of the case is in the prompt).
    """

    case_id: str
    source: str
    line: int
    snippet: str
    shared: int
    fraction: float


def _prompt_text(value: Any) -> str | None:
    """A prompt field's text: a string, or a chat (list of ``{"content": ...}`` messages) joined by lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        contents = [m.get("content") for m in value]
        if all(isinstance(c, str) for c in contents):
            return "\n".join(contents)
    return None


def read_benchmark(path: str | Path, *, field: str = "prompt") -> list[BenchmarkPrompt]:
    """Read benchmark prompts from any JSONL file: one object per line with the prompt in ``field``.

    The field holds a string or a list of chat messages with ``content``. A record's ``source`` field, when
    it is a non-empty string, names its benchmark; otherwise the file name does.

    Raises:
        InputError: the file is unreadable, or a line lacks the field or holds something else there.
    """
    path = Path(path)
    prompts = []
    for line, obj in read_jsonl(path):
        if field not in obj:
            raise InputError(f"no {field!r} field (choose the prompt field with --field)", path=path, line=line,
                             field=field)
        text = _prompt_text(obj[field])
        if text is None:
            raise InputError(f"field {field!r} is neither text nor a list of messages with text content",
                             path=path, line=line, field=field)
        source = obj.get("source")
        prompts.append(BenchmarkPrompt(source=source if isinstance(source, str) and source.strip() else path.name,
                                       text=text, line=line))
    return prompts


def _grams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    if len(tokens) < n:
        # A short text is one "gram" of all its words, tagged so it can only equal another short text.
        return [("\x00short", *tokens)] if tokens else []
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _longest_run(positions: list[int]) -> tuple[int, int]:
    """The longest run of consecutive positions in a sorted list: (first, last)."""
    best = cur = (positions[0], positions[0])
    for p in positions[1:]:
        cur = (cur[0], p) if p == cur[1] + 1 else (p, p)
        if cur[1] - cur[0] > best[1] - best[0]:
            best = cur
    return best


def find_contamination(cases: Iterable[tuple[str, str]], benchmark: Sequence[BenchmarkPrompt], *,
                       n: int = DEFAULT_NGRAM, min_fraction: float = 0.0) -> list[ContaminationHit]:
    """Flag cases that share word ``n``-grams with benchmark prompts.

    Args:
        cases: ``(case id, text)`` pairs (see `judge.cases.model.TestCase.text`).
        benchmark: the imported prompts.
        n: n-gram length in words.
        min_fraction: flag only when at least this share of the case's n-grams is in one prompt.

    Returns:
        At most one hit per case and source (its strongest prompt), ordered by case id, then source.

    Raises:
        ConfigError: ``n`` < 1 or ``min_fraction`` outside [0, 1].
    """
    if n < 1:
        raise ConfigError(f"contamination n-gram length must be at least 1, got {n}")
    if not 0.0 <= min_fraction <= 1.0:
        raise ConfigError(f"min_fraction must be within [0, 1], got {min_fraction}")
    postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, prompt in enumerate(benchmark):
        for gram in set(_grams(words(prompt.text), n)):
            postings[gram].append(index)
    hits = []
    for case_id, text in cases:
        tokens = words(text)
        grams = _grams(tokens, n)
        matched: dict[int, list[int]] = defaultdict(list)  # prompt index -> positions of shared grams
        for position, gram in enumerate(grams):
            for index in postings.get(gram, ()):
                matched[index].append(position)
        best: dict[str, tuple[int, int, list[int]]] = {}  # source -> (shared, -index, positions)
        for index, positions in matched.items():
            source = benchmark[index].source
            key = (len(positions), -index, positions)
            if source not in best or key[:2] > best[source][:2]:
                best[source] = key
        for source, (shared, neg_index, positions) in sorted(best.items()):
            fraction = shared / len(grams)
            if fraction < min_fraction:
                continue
            first, last = _longest_run(positions)
            span = tokens[first:last + n] if len(tokens) >= n else tokens
            snippet = " ".join(span)
            if len(snippet) > _SNIPPET_CHARS:
                snippet = snippet[:_SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"
            hits.append(ContaminationHit(case_id=case_id, source=source, line=benchmark[-neg_index].line,
                                         snippet=snippet, shared=shared, fraction=round(fraction, 4)))
    return sorted(hits, key=lambda h: (h.case_id, h.source))
