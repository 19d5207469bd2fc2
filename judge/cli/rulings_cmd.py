"""`judge rulebook draft-checks|add-ruling|amend|overrule`: writing case rulings and new versions of rules."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from judge.cli.common import (
    CHECK_HELP,
    check_url,
    console,
    emit_json,
    err_console,
    parse_checks,
    response_option,
    state,
)
from judge.errors import InputError, first_validation_error
from judge.jsonl import loads
from judge.rules.model import Check, Layer, Rule, check_holding

__all__ = ["CONFLICT_OPT", "JSON_OPT", "add_ruling", "amend", "draft_checks_cmd", "overrule", "rule_json"]

JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of a table.")
CONFLICT_OPT = typer.Option(None, "--conflict-threshold", min=0.0, max=1.0,
                            help="Cosine from which an active ruling's pair is a near-duplicate (default 0.95).")


def rule_json(rule: Rule) -> dict[str, object]:
    """A rule as JSON (every field)."""
    return rule.model_dump(mode="json")


def _checks_from_json(value: object, file: Path | None) -> list[Check]:
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(list[Check]).validate_python(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(f"invalid checks.{where}: {err['msg']}", path=file, field="checks") from None


def draft_checks_cmd(
    ctx: typer.Context,
    ruling_ids: list[str] = typer.Argument(None, help="Rulings to draft checks for (default: every active "
                                                      "ruling without checks, with --all)."),
    all_missing: bool = typer.Option(False, "--all", help="Every active ruling that has no checks yet."),
    backend: str | None = typer.Option(None, "--backend", "-b",
                                       help="local (embedded), local/<path.gguf>, or openai/<model> (default: "
                                            "JUDGE_BACKEND, judge.toml, else local)."),
    base_url: str | None = typer.Option(None, "--base-url", callback=check_url,
                                            help="Endpoint for openai/<model>."),
    apply: bool = typer.Option(False, "--apply", help="Write the drafts as a new version of each ruling (author: "
                                                      "the backend); without it they are only printed."),
    as_json: bool = JSON_OPT,
) -> None:
    """Draft yes/no checks for rulings from their holding and rationale, with a model.

    Drafts are printed for review; --apply amends each ruling with them (versioned, revertible). A ruling
    whose drafting fails is reported and the others go on; the exit code is then 1.
    """
    import asyncio

    from judge.backends.base import release_connections
    from judge.backends.registry import make_backend
    from judge.errors import BackendError, StructuredOutputError
    from judge.judging.draft_checks import draft_checks

    rb = state(ctx).rulebook(with_index=False)
    if all_missing:
        targets = [r for r in rb.rules(Layer.RULING, active_only=True) if not r.checks]
    else:
        if not ruling_ids:
            raise typer.BadParameter("name rulings or give --all", param_hint="RULING_IDS")
        targets = [rb.get(rid) for rid in ruling_ids]
    settings = state(ctx).settings
    made = make_backend(backend or settings.backend, data_dir=settings.data_dir, base_url=base_url or settings.base_url)
    drafted: dict[str, list[Check]] = {}
    failed: dict[str, str] = {}

    async def draft_all() -> None:
        try:
            for rule in targets:
                try:
                    drafted[rule.id] = await draft_checks(made, rule)
                except (InputError, StructuredOutputError, BackendError) as exc:
                    failed[rule.id] = str(exc)
        finally:
            await release_connections(made)

    try:
        asyncio.run(draft_all())
    finally:
        made.close()
    if apply:
        for rid, checks in drafted.items():
            rb.amend(rid, reason=f"checks drafted by {made.name}/{made.model}", author=f"draft:{made.name}",
                     checks=checks)
    if as_json:
        emit_json({"drafted": {k: [c.model_dump(mode="json") for c in v] for k, v in drafted.items()},
                   "failed": failed, "applied": apply})
    else:
        for rid, checks in drafted.items():
            console.print(f"{rid}{' (applied)' if apply else ''}", highlight=False, markup=False)
            for c in checks:
                console.print(f"  - {c.question} -> {c.expect}", highlight=False, markup=False)
        for rid, reason in failed.items():
            err_console.print(f"{rid}: not drafted: {reason}", highlight=False, markup=False)
    if failed:
        raise typer.Exit(1)


def add_ruling(
    ctx: typer.Context,
    file: Path | None = typer.Option(None, "--file", "-f", exists=True,
                                     help="JSON file with prompt, response_a, response_b, holding, rationale, "
                                          "cites, overrules (or give the fields as options)."),
    prompt: str | None = typer.Option(None, "--prompt", help="The decided pair's prompt (or conversation)."),
    response_a: str | None = response_option("a", required=False),
    response_b: str | None = response_option("b", required=False),
    holding: str | None = typer.Option(None, "--holding", help="A, B or tie."),
    rationale: str | None = typer.Option(None, "--rationale", help="Why the holding follows."),
    cites: list[str] = typer.Option([], "--cite", help="Cited rule id (repeatable); must exist."),
    overrules: list[str] = typer.Option([], "--overrules", help="Ruling id this one overrules (repeatable)."),
    checks: list[str] = typer.Option([], "--check", help=CHECK_HELP),
    author: str | None = typer.Option(None, "--author", help="Who made the change (recorded in history)."),
    conflict_threshold: float | None = CONFLICT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Add a case ruling (one transaction: stored whole or not at all).

    A holding that contradicts an active ruling on a near-duplicate pair is refused until --overrules names it.
    """
    fields: dict[str, object] = {}
    if file is not None:
        try:
            fields = loads(file.read_text(encoding="utf-8-sig"), path=file)
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid JSON: invalid UTF-8 at byte {exc.start}", path=file) from None
        except InputError as exc:
            raise InputError(f"not valid JSON: {str(exc).removeprefix(f'{file}: ')}", path=file,
                             field=exc.field) from None
        if not isinstance(fields, dict):
            raise InputError("expected a JSON object", path=file)
    given = {"prompt": prompt, "response_a": response_a, "response_b": response_b, "holding": holding,
             "rationale": rationale}
    fields.update({k: v for k, v in given.items() if v is not None})
    if cites:
        fields["cites"] = cites
    if overrules:
        fields["overrules"] = overrules
    if checks:
        fields["checks"] = parse_checks(checks)
    _check_ruling_types(fields, file)
    missing = [k for k in ("prompt", "response_a", "response_b", "holding", "rationale") if not fields.get(k)]
    if missing:
        raise InputError(f"missing field(s): {', '.join(missing)}", path=file, field=missing[0])
    check_holding(fields["holding"], path=file)
    allowed = {"prompt", "response_a", "response_b", "holding", "rationale", "cites", "overrules", "title",
               "rule_id", "source", "tags", "checks"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(unknown)}", path=file, field=unknown[0])
    if "checks" in fields and not checks:
        fields["checks"] = _checks_from_json(fields["checks"], file)
    rb = state(ctx).rulebook()
    if conflict_threshold is not None:
        rb.conflict_threshold = conflict_threshold
    try:
        rule = rb.add_ruling(author=author, **fields)
    except ValidationError as exc:
        where, message = first_validation_error(exc, "ruling")
        raise InputError(f"invalid {where}: {message}", path=file, field=where) from None
    if as_json:
        emit_json(rule_json(rule))
    else:
        console.print(f"added {rule.id} (holding {rule.case.holding if rule.case else '?'})",
                      highlight=False, markup=False)


def _check_ruling_types(fields: dict[str, object], path: Path | None) -> None:
    """Refuse a ruling field of the wrong JSON type, naming it (a string of cited ids is not a list of them)."""
    for name in ("prompt", "holding", "rationale", "title", "rule_id", "source"):
        if name in fields and not isinstance(fields[name], str):
            raise InputError(f"{name} must be a string, not {type(fields[name]).__name__}", path=path, field=name)
    for name in ("response_a", "response_b"):
        if name in fields and not isinstance(fields[name], str | dict):
            raise InputError(f"{name} must be a string or an object with a text field, not "
                             f"{type(fields[name]).__name__}", path=path, field=name)
    for name in ("cites", "overrules", "tags"):
        value = fields.get(name)
        if value is not None and not (isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)):
            raise InputError(f"{name} must be a list of strings, not {type(value).__name__}", path=path,
                             field=name)


def amend(
    ctx: typer.Context,
    rule_id: str = typer.Argument(..., help="Id of the rule to amend."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in history)."),
    text_file: Path | None = typer.Option(None, "--text-file", exists=True, help="New text (Markdown)."),
    title: str | None = typer.Option(None, "--title", help="New title (default: unchanged)."),
    constitution: bool = typer.Option(False, "--constitution", help="Required to amend a constitution rule."),
    author: str | None = typer.Option(None, "--author", help="Who made the change (recorded in history)."),
    as_json: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
) -> None:
    """Amend a rule: writes a new version; the old one stays in history."""
    text = None
    if text_file is not None:
        try:
            text = text_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text (byte {exc.start})", path=text_file, field="--text-file") from None
    rb = state(ctx).rulebook()
    rule = rb.amend(rule_id, reason=reason, author=author, title=title, text=text, allow_constitution=constitution)
    if as_json:
        emit_json({**rule_json(rule), "rulebook_version": rb.version})
        return
    console.print(f"{rule.id} is now v{rule.version}", highlight=False, markup=False)


def overrule(
    ctx: typer.Context,
    ruling_id: str = typer.Argument(..., help="Id of the ruling."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in history)."),
    supersede: bool = typer.Option(False, "--supersede", help="Mark superseded instead of overruled."),
    author: str | None = typer.Option(None, "--author", help="Who made the change (recorded in history)."),
    as_json: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
) -> None:
    """Overrule (or supersede) a ruling: it stops binding and is no longer retrieved."""
    rb = state(ctx).rulebook()
    fn = rb.supersede if supersede else rb.overrule
    rule = fn(ruling_id, reason=reason, author=author)
    if as_json:
        emit_json({**rule_json(rule), "rulebook_version": rb.version})
        return
    console.print(f"{rule.id} is now {rule.status.value} (v{rule.version})", highlight=False, markup=False)
