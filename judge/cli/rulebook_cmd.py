"""`judge rulebook ...`: import, load, ingest, dump, export, list, show, history, add-ruling, amend, overrule."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table

from judge.cli.common import CHECK_HELP, check_url, console, emit_json, err_console, parse_checks, state
from judge.cli.progress import RunProgress
from judge.errors import InputError, first_validation_error
from judge.jsonl import loads, read_jsonl
from judge.rules.model import Check, Layer, Rule, check_holding

app = typer.Typer(help="Manage the layered rulebook (constitution > spec entries > case rulings).",
                  no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of a table.")
CONFLICT_OPT = typer.Option(None, "--conflict-threshold", min=0.0, max=1.0,
                            help="Embedding cosine of prompt + responses from which an active ruling's pair is a "
                                 "near-duplicate (default 0.95); a contradicting holding must overrule it.")


def _rule_json(rule: Rule) -> dict[str, object]:
    return rule.model_dump(mode="json")


@app.command("import-model-spec")
def import_model_spec(
    source: Path = typer.Option(Path("data/model_spec"), "--source", exists=True, file_okay=False,
                                help="Directory with the extracted Model Spec (entries/examples/pairs JSONL)."),
    out: Path = typer.Option(Path("rulebook"), "--out", help="Rulebook text directory to (re)write."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write the OpenAI Model Spec (CC0) into rulebook text files (only the files the importer owns)."""
    from judge.rules.model_spec import import_model_spec_to_dir

    data = import_model_spec_to_dir(source, out).model_dump(mode="json")
    if as_json:
        emit_json(data)
    else:
        console.print(f"imported Model Spec into {out}: " + ", ".join(f"{k}={v}" for k, v in data.items()))


@app.command("load")
def load(
    ctx: typer.Context,
    path: Path = typer.Argument(..., exists=True, help="Rulebook text directory (e.g. rulebook/)."),
    author: str | None = typer.Option(None, "--author", help="Recorded as the author of new versions."),
    constitution: bool = typer.Option(False, "--constitution",
                                      help="Required when the text amends an existing constitution rule."),
    as_json: bool = JSON_OPT,
) -> None:
    """Load rulebook text into the DB idempotently (unchanged files add no version) and update the index."""
    rb = state(ctx).rulebook()
    report = rb.load(path, author=author, allow_constitution=constitution)
    data = {"added": report.added, "amended": report.amended, "unchanged": report.unchanged,
            "rulebook_version": report.rulebook_version}
    if as_json:
        emit_json(data)
    else:
        console.print(f"loaded {path}: " + ", ".join(f"{k}={v}" for k, v in data.items()))


def _read_rule_lines(path: Path) -> Iterator[tuple[int, Rule]]:
    for line, obj in read_jsonl(path):
        try:
            yield line, Rule.model_validate(obj)
        except ValidationError as exc:
            where, msg = first_validation_error(exc, "rule")
            raise InputError(f"invalid rule: {where}: {msg.removeprefix('Value error, ')}", path=path, line=line,
                             field=where) from None


def _check_rules_jsonl(path: Path, stored: Callable[[list[str]], set[str]]) -> None:
    """Check a whole rules JSONL file before anything is written, as `judge rulebook load` checks text.

    Every line is a valid rule; an id appears once; a citation or overruled ruling is a rule earlier in the
    file (it is written in an earlier or the same batch) or already stored; a parent is a rule anywhere in the
    file or stored. ``stored`` returns those of the ids given that exist. Only ids are kept in memory.

    Raises:
        InputError: the first problem, naming file:line and the field.
    """
    seen: dict[str, int] = {}
    in_store: set[str] = set()  # stored ids already looked up (rulings keep citing the same entries)
    parents: list[tuple[int, str]] = []
    for line, rule in _read_rule_lines(path):
        if rule.id in seen:
            raise InputError(f"duplicate id {rule.id!r}: also on line {seen[rule.id]}", path=path, line=line,
                             field="id")
        refs = [("cites", c) for c in rule.case.cites] + [("overrules", o) for o in rule.case.overrules] \
            if rule.case is not None else []
        unseen = [ref for _, ref in refs if ref not in seen and ref not in in_store]
        in_store |= stored(unseen) if unseen else set()
        for field, ref in refs:
            if ref not in seen and ref not in in_store:
                raise InputError(f"{field} {ref!r} is not a rule earlier in this file or in the rulebook",
                                 path=path, line=line, field=field)
        if rule.parent is not None and rule.parent not in seen:
            parents.append((line, rule.parent))
        seen[rule.id] = line
    missing = {p for _, p in parents if p not in seen}
    missing -= stored(sorted(missing)) if missing else set()
    for line, parent in parents:
        if parent in missing:
            raise InputError(f"parent {parent!r} is not a rule in this file or in the rulebook", path=path,
                             line=line, field="parent")


def _rules_from_jsonl(path: Path) -> Iterator[Rule]:
    """Rules from a JSONL file of rule objects (as `judge rulebook dump` writes), read lazily."""
    for _line, rule in _read_rule_lines(path):
        yield rule


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="JSONL file, one rule object per line (the format `dump` writes)."),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, help="Rules per transaction."),
    author: str | None = typer.Option(None, "--author", help="Recorded as the author of new versions."),
    constitution: bool = typer.Option(False, "--constitution",
                                      help="Required when the file amends an existing constitution rule."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stream a large rulebook into the DB, one transaction per batch, then update the index.

    Memory stays bounded by the batch size, so this scales to millions of rules where `load` (one
    transaction over reviewable text) does not. Re-running after an interruption continues: stored batches
    are unchanged and add no version. The whole file is checked first (as `load` checks text: valid rules,
    each id once, parents, citations and overruled rulings that exist); a bad line stops the ingest with its
    line number before anything is written.
    """
    rb = state(ctx).rulebook()
    _check_rules_jsonl(path, rb.store.exists)  # the whole file, before the first batch is written
    with RunProgress("ingesting", None, console=err_console, unit="rules", transient=True) as bar:
        report = rb.ingest(_rules_from_jsonl(path), batch_size=batch_size, author=author,
                           reason=f"ingested from {path.name}", allow_constitution=constitution,
                           on_batch=lambda t: bar.update(t.added + t.amended + t.unchanged))
    data = dataclasses.asdict(report)
    if as_json:
        emit_json(data)
    else:
        console.print(f"ingested {path}: " + ", ".join(f"{k}={v}" for k, v in data.items()), highlight=False)


@app.command("dump")
def dump(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="JSONL file to write, one rule object per line."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stream the current rulebook (every rule, every status) to JSONL, cited rules first: what `ingest` reads."""
    rb = state(ctx).rulebook(with_index=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    count = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for rule in rb.rules_in_dependency_order():
            fh.write(rule.model_dump_json() + "\n")
            count += 1
    tmp.replace(out)
    if as_json:
        emit_json({"rules": count, "out": str(out), "rulebook_version": rb.version})
    else:
        console.print(f"{count} rule(s) written to {out} ({rb.version})", highlight=False)


@app.command("export")
def export(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="Directory to write the rulebook text into (e.g. rulebook/)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write the rulebook from the DB back to text, so every change can be reviewed as a diff and re-loaded."""
    report = state(ctx).rulebook(with_index=False).export(out)
    data = {"written": [str(p) for p in report.written], "unchanged": len(report.unchanged),
            "removed": [str(p) for p in report.removed]}
    if as_json:
        emit_json(data)
    else:
        console.print(f"exported to {out}: {len(report.written)} file(s) written, {len(report.unchanged)} "
                      f"unchanged, {len(report.removed)} removed", highlight=False)


@app.command("rulings-as-pairs")
def rulings_as_pairs(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="Labelled pairs JSONL to write (label = the ruling's holding)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write the active rulings as labelled pairs, to evaluate the judge on its own case law.

    `judge eval OUT --holdout-same-prompt` then lists the rulings the calibrated judge most confidently
    disagrees with (often wrongly decided or wrongly labelled rulings) for review.
    """
    rows = []
    for rule in state(ctx).rulebook(with_index=False).rules(Layer.RULING, active_only=True):
        if rule.case is None:
            continue
        rows.append({"id": rule.id, "source": rule.source, "prompt": rule.case.prompt,
                     "response_a": rule.case.response_a.model_dump(mode="json", exclude_none=True),
                     "response_b": rule.case.response_b.model_dump(mode="json", exclude_none=True),
                     "label": rule.case.holding})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    if as_json:
        emit_json({"pairs": len(rows), "out": str(out)})
    else:
        console.print(f"{len(rows)} ruling(s) written to {out} as labelled pairs", highlight=False)


@app.command("list")
def list_rules(
    ctx: typer.Context,
    layer: Layer | None = typer.Option(None, "--layer", help="Only this layer."),
    active_only: bool = typer.Option(False, "--active", help="Only rules that bind."),
    limit: int = typer.Option(0, "--limit", help="Show at most N rules (0 = all)."),
    as_json: bool = JSON_OPT,
) -> None:
    """List the current version of every rule."""
    rb = state(ctx).rulebook(with_index=False)
    rules = []
    for i, rule in enumerate(rb.rules(layer, active_only=active_only)):
        if limit and i >= limit:
            break
        rules.append(rule)
    if as_json:
        emit_json({"rulebook_version": rb.version, "rules": [
            {"id": r.id, "layer": r.layer.value, "authority": r.authority.value if r.authority else None,
             "title": r.title, "version": r.version, "status": r.status.value} for r in rules]})
        return
    table = Table(title=f"rulebook {rb.version}")
    for col in ("id", "layer", "authority", "v", "status", "title"):
        table.add_column(col)
    for r in rules:
        table.add_row(r.id, r.layer.value, r.authority.value if r.authority else "-", str(r.version),
                      r.status.value, r.title[:60])
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    rule_id: str = typer.Argument(..., help="Rule id, e.g. spec/avoid-sycophancy."),
    version: int | None = typer.Option(None, "--version", help="A past version (default: latest)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Show one rule (latest or a given version)."""
    rule = state(ctx).rulebook(with_index=False).get(rule_id, version)
    if as_json:
        emit_json(_rule_json(rule))
        return
    auth = rule.authority.value if rule.authority else "-"
    console.print(f"[bold]{rule.id}[/] v{rule.version} ({rule.layer.value}, authority {auth}, "
                  f"{rule.status.value})\n[bold]{rule.title}[/]\n", highlight=False)
    console.print(rule.text, markup=False, highlight=False)
    if rule.case is not None:
        console.print(f"\nholding: {rule.case.holding}; cites: {', '.join(rule.case.cites) or '-'}",
                      markup=False)


@app.command("history")
def history(
    ctx: typer.Context,
    rule_id: str = typer.Argument(..., help="Rule id."),
    as_json: bool = JSON_OPT,
) -> None:
    """Every version of a rule, oldest first, with the change that wrote it."""
    entries = state(ctx).rulebook(with_index=False).history(rule_id)
    if as_json:
        emit_json([{"version": r.version, "status": r.status.value, "content_hash": r.content_hash(),
                    "change": c.model_dump(mode="json")} for r, c in entries])
        return
    table = Table(title=f"history of {rule_id}")
    for col in ("v", "kind", "status", "at", "author", "rulebook version", "reason"):
        table.add_column(col)
    for r, c in entries:
        table.add_row(str(r.version), c.kind.value, r.status.value, c.at.isoformat(timespec="seconds"),
                      c.author or "-", c.rulebook_version, c.reason or "")
    console.print(table)


def _checks_from_json(value: object, file: Path | None) -> list[Check]:
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(list[Check]).validate_python(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(f"invalid checks.{where}: {err['msg']}", path=file, field="checks") from None


@app.command("draft-checks")
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


@app.command("add-ruling")
def add_ruling(
    ctx: typer.Context,
    file: Path | None = typer.Option(None, "--file", "-f", exists=True,
                                     help="JSON file with prompt, response_a, response_b, holding, rationale, "
                                          "cites, overrules (or give the fields as options)."),
    prompt: str | None = typer.Option(None, "--prompt"),
    response_a: str | None = typer.Option(None, "--a", help="Response A text."),
    response_b: str | None = typer.Option(None, "--b", help="Response B text."),
    holding: str | None = typer.Option(None, "--holding", help="A, B or tie."),
    rationale: str | None = typer.Option(None, "--rationale"),
    cites: list[str] = typer.Option([], "--cite", help="Cited rule id (repeatable); must exist."),
    overrules: list[str] = typer.Option([], "--overrules", help="Ruling id this one overrules (repeatable)."),
    checks: list[str] = typer.Option([], "--check", help=CHECK_HELP),
    author: str | None = typer.Option(None, "--author"),
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
    rule = rb.add_ruling(author=author, **fields)
    if as_json:
        emit_json(_rule_json(rule))
    else:
        console.print(f"added {rule.id} (holding {rule.case.holding if rule.case else '?'})", highlight=False)


@app.command("amend")
def amend(
    ctx: typer.Context,
    rule_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in history)."),
    text_file: Path | None = typer.Option(None, "--text-file", exists=True, help="New text (Markdown)."),
    title: str | None = typer.Option(None, "--title"),
    constitution: bool = typer.Option(False, "--constitution", help="Required to amend a constitution rule."),
    author: str | None = typer.Option(None, "--author"),
) -> None:
    """Amend a rule: writes a new version; the old one stays in history."""
    text = text_file.read_text(encoding="utf-8") if text_file else None
    rule = state(ctx).rulebook().amend(rule_id, reason=reason, author=author, title=title, text=text,
                                       allow_constitution=constitution)
    console.print(f"{rule.id} is now v{rule.version}", highlight=False)


@app.command("overrule")
def overrule(
    ctx: typer.Context,
    ruling_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason"),
    supersede: bool = typer.Option(False, "--supersede", help="Mark superseded instead of overruled."),
    author: str | None = typer.Option(None, "--author"),
) -> None:
    """Overrule (or supersede) a ruling: it stops binding and is no longer retrieved."""
    rb = state(ctx).rulebook()
    fn = rb.supersede if supersede else rb.overrule
    rule = fn(ruling_id, reason=reason, author=author)
    console.print(f"{rule.id} is now {rule.status.value} (v{rule.version})", highlight=False)


@app.command("impact")
def impact(
    ctx: typer.Context,
    since: str = typer.Option(..., "--since", help="Rulebook version (rb-...) before the changes to assess."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stored judgments whose shown rules changed since a rulebook version (`judge rerun` re-judges them).

    Checks every judgment recorded at VERSION or a later version before the current one: its pair is
    retrieved again with its own settings, and it is listed when a shown rule was added, removed or amended.
    """
    report = state(ctx).rulebook().impact(since)
    if as_json:
        emit_json(report.to_json())
        return
    if report.affected:
        table = Table(title=f"judgments affected since {report.since_version} (now {report.current_version})")
        for col in ("result id", "pair", "judged at", "added", "removed", "amended"):
            table.add_column(col, overflow="fold")
        for e in report.affected:
            table.add_row(e.cache_key[:12], e.pair_id or "-", e.rulebook_version or "-",
                          "\n".join(e.diff.added) or "-", "\n".join(e.diff.removed) or "-",
                          "\n".join(f"{i} v{old}->v{new}" for i, old, new in e.diff.changed) or "-")
        console.print(table)
    for u in report.unknown:
        console.print(f"{u.cache_key[:12]} (pair {u.pair_id or '-'}, judged at {u.rulebook_version}): {u.reason}",
                      markup=False, highlight=False)
    console.print(f"checked {report.checked} judgment(s) since {report.since_version}: {len(report.affected)} "
                  f"affected, {len(report.unknown)} unknown (no stored pair)", highlight=False)
