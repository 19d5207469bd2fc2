"""The rulebook's text format written down: where each rule goes, and a rule rendered as its file's text.

See :mod:`judge.rules.textio` for the format; rendering is pure (rules in, text out).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from judge.errors import DuplicateRuleError
from judge.rules.model import Check, Layer, Response, Rule, slugify

__all__ = ["render_files", "render_rule", "render_ruling", "rule_path", "ruling_text"]

RULINGS_DIR = "rulings"
PROCESS_DIR = "process"
#: Written in this order; ``_RULING_EXTRA`` only when they carry information.
_RULING_KEYS = ("id", "title", "status", "holding", "rationale", "prompt", "response_a", "response_b",
                "cites", "overrules", "source", "tags", "specificity")
_RULING_EXTRA = ("parent", "authority", "text", "checks")


def ruling_text(holding: str, rationale: str) -> str:
    """The derived `Rule.text` of a ruling: ``"Holding: response A is better. <rationale>"``."""
    head = ("Holding: neither response is better (tie)." if holding == "tie"
            else f"Holding: response {holding} is better.")
    return f"{head} {rationale}" if rationale.strip() else head


def rule_path(rule: Rule) -> Path:
    """Where the writer puts a rule, relative to the rulebook root.

    Rulings go to ``rulings/<slug of the source's last path segment>.jsonl``: ``openai/model_spec-example``
    -> ``rulings/model-spec-example.jsonl``.
    """
    if rule.layer is Layer.RULING:
        return Path(RULINGS_DIR) / (slugify(rule.source.split("@", 1)[0].rsplit("/", 1)[-1]) + ".jsonl")
    folder = PROCESS_DIR if rule.layer is Layer.SPEC and rule.process_rule else rule.layer.value
    return Path(folder) / f"{rule.id.split('/', 1)[1]}.md"


# ------------------------------------------------------------------------------------------------ rendering
def _yaml_str(value: str, *, flow: bool = False) -> str:
    """A YAML scalar that loads back as exactly ``value``: plain when that is safe, else JSON-quoted."""
    def loads_back(rendered: str) -> bool:
        try:
            return bool(yaml.safe_load(f"k: [{rendered}]" if flow else f"k: {rendered}") ==
                        {"k": [value] if flow else value})
        except yaml.YAMLError:
            return False

    candidates = [] if any(c in value for c in "\r\n") else [value]
    candidates += [json.dumps(value, ensure_ascii=False), json.dumps(value)]
    return next((c for c in candidates if loads_back(c)), candidates[-1])


def _yaml_value(value: str | int | list[str] | None) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_str(v, flow=True) for v in value) + "]"
    return "null" if value is None else str(value) if isinstance(value, int) else _yaml_str(value)


def render_rule(rule: Rule) -> str:
    """The Markdown file for a constitution or spec rule."""
    if rule.layer is Layer.RULING:
        raise ValueError(f"{rule.id}: rulings are written as JSONL lines (render_ruling)")
    authority = rule.authority.value if rule.authority else None
    fields = {"id": rule.id, "title": rule.title, "authority": authority, "parent": rule.parent,
              "specificity": rule.specificity, "tags": list(rule.tags), "source": rule.source}
    front = "".join(f"{key}: {_yaml_value(value)}\n" for key, value in fields.items())
    return f"---\n{front}{_render_checks(rule.checks)}---\n{rule.text}\n"


def _render_checks(checks: Sequence[Check]) -> str:
    if not checks:
        return ""
    lines = ["checks:"]
    for check in checks:
        lines.append(f"- question: {_yaml_str(check.question)}")
        lines.append(f'  expect: "{check.expect}"')
        if check.target != "response":
            lines.append(f"  target: {check.target}")
    return "\n".join(lines) + "\n"


def _response_json(response: Response) -> str | dict[str, Any]:
    if response.process is None:
        return response.text
    calls = [{"name": c.name, "arguments": c.arguments, "result": c.result}
             for c in response.process.tool_calls]
    return {"text": response.text, "process": {"reasoning": response.process.reasoning, "tool_calls": calls}}


def render_ruling(rule: Rule) -> str:
    """One JSONL line (without the newline) for a ruling: keys in a fixed order, non-ASCII kept."""
    case = rule.case
    if case is None:
        raise ValueError(f"{rule.id}: only rulings are written as JSONL lines")
    obj: dict[str, Any] = {
        "id": rule.id, "title": rule.title, "status": rule.status.value, "holding": case.holding,
        "rationale": case.rationale, "prompt": case.prompt, "response_a": _response_json(case.response_a),
        "response_b": _response_json(case.response_b), "cites": list(case.cites),
        "overrules": list(case.overrules), "source": rule.source, "tags": list(rule.tags),
        "specificity": rule.specificity,
    }
    extra = {"parent": rule.parent, "authority": rule.authority.value if rule.authority else None,
             "text": rule.text if rule.text != ruling_text(case.holding, case.rationale) else None,
             "checks": [c.model_dump(exclude_defaults=True) for c in rule.checks] or None}
    obj.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(obj, ensure_ascii=False)


def render_files(rules: Iterable[Rule]) -> dict[Path, str]:
    """The text form of ``rules``: relative path -> file content, deterministic (rulings sorted by id).

    Raises:
        DuplicateRuleError: two rules share an id.
    """
    ordered = sorted(rules, key=lambda r: r.id)
    for previous, rule in pairwise(ordered):
        if previous.id == rule.id:
            raise DuplicateRuleError(rule.id)
    files: dict[Path, str] = {}
    for rule in ordered:  # id order, so each JSONL file lists its rulings sorted by id
        text = render_ruling(rule) + "\n" if rule.layer is Layer.RULING else render_rule(rule)
        files[rule_path(rule)] = files.get(rule_path(rule), "") + text
    return dict(sorted(files.items()))


