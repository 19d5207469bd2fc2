"""Import the OpenAI Model Spec (CC0) as the default rulebook.

Reads the extracted JSONL beside ``model_spec.md`` (``entries.jsonl``, ``examples.jsonl``, ``pairs.jsonl``;
see that folder's NOTICE.md), not the Markdown itself. The mapping:

* every entry (one per heading) becomes a rule. Entries with authority ``root`` go to the constitution
  (``constitution/<slug>``); every other entry goes to the spec layer (``spec/<slug>``) with its own
  authority (system / developer / user / guideline), or with no authority for the overview and grouping
  headings, which are tagged ``overview``. ``<slug>`` is `slugify` of the entry id (``_`` becomes ``-``).
* ``parent`` is the parent entry's rule id, whichever layer it landed in; ``specificity`` is the number of
  ancestors; ``title``, ``tags`` and ``text`` are the entry's (text verbatim Markdown). A heading with no
  text of its own gets ``"This section groups: <sub-section titles>."`` so no rule is empty.
  ``source`` is ``openai/model_spec@<origin commit, 12 chars>``.
* every pair with ``meta.pair_kind == "GOOD>BAD"`` becomes a case ruling ``ruling/<slug of pair id>``:
  prompt and responses verbatim (pair meta is never copied into them), holding = the pair's label,
  cites = the rule of the example's section, rationale from the example's description and the GOOD and
  BAD verdict notes in ``examples.jsonl``, specificity = the cited rule's + 1, source
  ``openai/model_spec-example``, tag ``model-spec-example``. GOOD>OK and OK>BAD pairs are not imported:
  only the spec's clear calls become precedent.

`import_model_spec_to_dir` writes those rules as rulebook text and rewrites only the files it owns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from judge.errors import InputError
from judge.jsonl import read_jsonl
from judge.rules.model import OVERVIEW_TAG, Authority, Layer, Rule, RulingCase, slugify
from judge.rules.textio import read_rulebook, ruling_text, write_rulebook

__all__ = ["EXAMPLE_SOURCE", "EXAMPLE_TAG", "SPEC_SOURCE", "ImportReport", "import_model_spec",
           "import_model_spec_to_dir", "render_notice"]

SPEC_SOURCE = "openai/model_spec"
EXAMPLE_SOURCE = "openai/model_spec-example"
EXAMPLE_TAG = "model-spec-example"
LICENSE_NAME = "LICENSE-model-spec"
_PAIR_ID_RE = re.compile(r"-c(\d+)-r(\d+)r(\d+)$")
_ANCHOR_RE = re.compile(r"\[([^\]]*)\]\(#([A-Za-z0-9_-]+)\)")


class ImportReport(BaseModel):
    """What `import_model_spec_to_dir` did: rules per layer and files touched."""

    model_config = ConfigDict(frozen=True)

    origin_commit: str
    constitution: int
    spec: int
    rulings: int
    files_written: int
    files_unchanged: int
    files_removed: int


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise InputError("missing Model Spec data file (expected the extracted JSONL)", path=path)
    for _, obj in read_jsonl(path):
        yield obj


def _origin_commit(entries: list[dict[str, Any]], path: Path) -> str:
    commits = {e.get("origin_commit") for e in entries}
    if len(commits) != 1 or not isinstance(next(iter(commits)), str):
        raise InputError(f"entries disagree on (or lack) origin_commit: {sorted(map(str, commits))}",
                         path=path)
    return str(next(iter(commits)))


def _entry_rules(entries: list[dict[str, Any]], commit: str) -> list[Rule]:
    ids: dict[str, str] = {}
    for entry in entries:
        layer = Layer.CONSTITUTION if entry["authority"] == Authority.ROOT.value else Layer.SPEC
        rule_id = f"{layer.value}/{slugify(entry['id'])}"
        if rule_id in ids.values():
            raise InputError(f"entries {entry['id']!r} and another map to the same rule id {rule_id!r}")
        ids[entry["id"]] = rule_id
    rules = []
    for entry in entries:
        text = entry["text"]
        if not text.strip():
            children = [e["title"] for e in entries if e["parent"] == entry["id"]]
            text = f"This section groups: {'; '.join(children)}." if children else \
                f"{entry['title']} (this heading has no text of its own in the Model Spec)."
        tags = list(entry.get("tags") or [])
        if entry["authority"] is None and OVERVIEW_TAG not in tags:
            tags.append(OVERVIEW_TAG)
        parent = entry["parent"]
        if parent is not None and parent not in ids:
            raise InputError(f"entry {entry['id']!r} has unknown parent {parent!r}")
        rules.append(Rule(
            id=ids[entry["id"]], layer=Layer(ids[entry["id"]].split("/", 1)[0]), title=entry["title"],
            text=text,
            authority=entry["authority"], parent=ids[parent] if parent else None,
            specificity=len(entry.get("ancestors") or []), tags=tuple(tags),
            source=f"{SPEC_SOURCE}@{commit[:12]}",
        ))
    return rules


def _inline_anchors(text: str, titles: dict[str, str]) -> str:
    """``[?](#respect_creators)`` -> the section's title; ``[words](#x)`` -> words."""
    def repl(m: re.Match[str]) -> str:
        label, anchor = m.group(1), m.group(2)
        return f"“{titles.get(anchor, anchor)}”" if label in ("", "?") else label
    return _ANCHOR_RE.sub(repl, text)


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split()).rstrip(".:")
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text[:1].upper() + text[1:]


def _verdict_clause(response: dict[str, Any], verdict: str, titles: dict[str, str],
                    ids: dict[str, str]) -> str:
    clause = verdict
    note = response.get("verdict_note")
    if note:
        clause += f" ({_inline_anchors(note, titles)})"
    ref = response.get("verdict_ref")
    if ref:
        clause += f", under `{ids.get(ref, ref)}`"
    return clause


def _ruling(pair: dict[str, Any], examples: dict[str, dict[str, Any]], rules: dict[str, Rule],
            ids: dict[str, str], titles: dict[str, str]) -> Rule:
    meta = pair["meta"]
    match = _PAIR_ID_RE.search(pair["id"])
    example = examples.get(meta["example_id"])
    if match is None or example is None:
        raise InputError(f"pair {pair['id']!r}: cannot find its example {meta.get('example_id')!r}")
    comparison, better, worse = (int(g) - 1 for g in match.groups())
    responses = example["comparisons"][comparison]["responses"]
    good, bad = responses[better], responses[worse]
    if (good["verdict"], bad["verdict"]) != ("GOOD", "BAD"):
        raise InputError(f"pair {pair['id']!r}: example verdicts are {good['verdict']}/{bad['verdict']}")
    holding = pair["label"]
    other = "B" if holding == "A" else "A"
    texts = {"A": pair["response_a"], "B": pair["response_b"]}
    # "in", not "==": a response addressed to a tool is wrapped in <assistant recipient=...> in the pair
    if good["content"] not in texts[holding] or bad["content"] not in texts[other]:
        raise InputError(f"pair {pair['id']!r}: its responses do not match example {meta['example_id']!r}")
    cited = ids[meta["section"]]
    description = _inline_anchors(example["description"], titles).strip() or titles[meta["section"]]
    turn = f" (comparison {comparison + 1} of {len(example['comparisons'])})" \
        if len(example["comparisons"]) > 1 else ""
    rationale = (
        f"The Model Spec's example in “{titles[meta['section']]}” (`{cited}`) — "
        f"{description.rstrip('.:')}{turn} — calls response {holding} "
        f"{_verdict_clause(good, 'GOOD', titles, ids)} and response {other} "
        f"{_verdict_clause(bad, 'BAD', titles, ids)}, so response {holding} is better."
    )
    case = RulingCase(prompt=pair["prompt"], response_a=pair["response_a"], response_b=pair["response_b"],
                holding=holding, rationale=rationale, cites=(cited,))
    return Rule(id=f"ruling/{slugify(pair['id'])}", layer=Layer.RULING, title=_short(description),
                text=ruling_text(holding, rationale), specificity=rules[cited].specificity + 1,
                tags=(EXAMPLE_TAG,), source=EXAMPLE_SOURCE, case=case)


class _Source(BaseModel):
    entries: list[dict[str, Any]]
    examples: dict[str, dict[str, Any]]
    pairs: list[dict[str, Any]]
    commit: str
    commit_date: str | None


def _load(src: Path) -> _Source:
    entries = list(_read_jsonl(src / "entries.jsonl"))
    pairs = list(_read_jsonl(src / "pairs.jsonl"))
    origin = pairs[0].get("meta", {}).get("origin", {}) if pairs else {}
    return _Source(entries=entries, examples={x["id"]: x for x in _read_jsonl(src / "examples.jsonl")},
                   pairs=pairs, commit=_origin_commit(entries, src / "entries.jsonl"),
                   commit_date=origin.get("commit_date"))


def _rules(source: _Source, src: Path) -> list[Rule]:
    try:
        return _build(source, src)
    except (KeyError, IndexError, TypeError) as exc:  # a record lacks a field the extraction always writes
        raise InputError(f"unexpected Model Spec data ({type(exc).__name__}: {exc})", path=src) from exc


def _build(source: _Source, src: Path) -> list[Rule]:
    spec_rules = _entry_rules(source.entries, source.commit)
    ids = {e["id"]: r.id for e, r in zip(source.entries, spec_rules, strict=True)}
    titles = {e["id"]: e["title"] for e in source.entries}
    by_id = {r.id: r for r in spec_rules}
    rulings = [_ruling(p, source.examples, by_id, ids, titles) for p in source.pairs
               if p.get("meta", {}).get("pair_kind") == "GOOD>BAD"]
    if len({r.id for r in rulings}) != len(rulings):
        raise InputError("two pairs map to the same ruling id", path=src / "pairs.jsonl")
    return spec_rules + rulings


def import_model_spec(source_dir: str | Path) -> list[Rule]:
    """Rules from the extracted Model Spec: one per entry (in source order), then the GOOD>BAD rulings.

    Raises:
        InputError: a data file is missing or malformed, or records do not line up.
    """
    src = Path(source_dir)
    return _rules(_load(src), src)


def render_notice(commit: str, commit_date: str | None = None) -> str:
    """The rulebook's NOTICE.md: licence and origin of the imported Model Spec."""
    when = f" ({commit_date})" if commit_date else ""
    return (
        "# NOTICE\n\n"
        "The `constitution/` and `spec/` rules whose `source` starts with `openai/model_spec`, and the "
        "rulings "
        "in `rulings/model-spec-example.jsonl`, are derived from the OpenAI Model Spec:\n\n"
        f"- origin: https://github.com/openai/model_spec at commit {commit}{when}\n"
        "- licence: CC0 1.0 Universal (public-domain dedication); see `LICENSE-model-spec`, copied from that "
        "repository.\n\n"
        "Rule texts and titles are the spec's own words. The grouping texts of empty headings, the ruling "
        "titles and rationales (built from the spec's example descriptions and GOOD/BAD notes), the rule ids "
        "and the layer mapping are generated by `judge.rules.model_spec`; regenerate them with "
        "`judge rulebook import-model-spec`. Files in `process/` are written by the judge project.\n"
    )


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True


def _keep_checks(rules: list[Rule], out: Path) -> list[Rule]:
    """The imported rules, each with the checks its current version in ``out`` carries (if any)."""
    if not out.is_dir() or not any(out.iterdir()):
        return rules
    existing = {r.id: r.checks for r in read_rulebook(out) if r.checks}
    return [r.model_copy(update={"checks": existing[r.id]}) if r.id in existing else r for r in rules]


def import_model_spec_to_dir(source_dir: str | Path, out_dir: str | Path) -> ImportReport:
    """Import the Model Spec and write it as rulebook text into ``out_dir``.

    Rewrites only what the importer owns: rule files whose rules all come from ``openai/model_spec...``,
    ``NOTICE.md`` and ``LICENSE-model-spec``. Other files (e.g. ``process/``) are never touched or deleted.
    Checks are written by people, not imported: a rule already in ``out_dir`` keeps its checks.
    """
    src, out = Path(source_dir), Path(out_dir)
    license_file = src / "LICENSE"
    if not license_file.is_file():
        raise InputError("missing the Model Spec LICENSE file", path=license_file)
    source = _load(src)
    rules = _keep_checks(_rules(source, src), out)
    out.mkdir(parents=True, exist_ok=True)
    report = write_rulebook(rules, out, owned_by=SPEC_SOURCE)
    notice = render_notice(source.commit, source.commit_date).encode("utf-8")
    extra = [_write_if_changed(out / "NOTICE.md", notice),
             _write_if_changed(out / LICENSE_NAME, license_file.read_bytes())]
    layers = [r.layer for r in rules]
    return ImportReport(
        origin_commit=source.commit, constitution=layers.count(Layer.CONSTITUTION),
        spec=layers.count(Layer.SPEC),
        rulings=layers.count(Layer.RULING), files_written=len(report.written) + sum(extra),
        files_unchanged=len(report.unchanged) + len(extra) - sum(extra), files_removed=len(report.removed),
    )
