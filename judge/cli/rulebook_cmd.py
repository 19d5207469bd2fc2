"""`judge rulebook ...`: import, load, ingest, conflicts, dump, export, list, show, history, impact.

The commands that write rulings and new versions (draft-checks, add-ruling, amend, overrule) are in
`judge.cli.rulings_cmd`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from judge._atomic import atomic_text
from judge.cli import rulings_cmd
from judge.cli.common import console, emit_json, err_console, state, table
from judge.cli.helpfmt import App
from judge.cli.progress import RunProgress
from judge.cli.rulings_cmd import JSON_OPT, rule_json
from judge.errors import InputError, first_validation_error
from judge.jsonl import read_jsonl
from judge.rules.graph import find_cycle
from judge.rules.model import Layer, Rule

if TYPE_CHECKING:
    from judge.caselaw.writes import Contradiction
    from judge.rulebook import Rulebook

app = App(help="Manage the layered rulebook (constitution > spec entries > case rulings).",
          no_args_is_help=True)



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
    data = {"added": report.added, "amended": report.amended, "overruled": report.overruled,
            "not_reinstated": len(report.not_reinstated), "unchanged": report.unchanged,
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


def _check_rules_jsonl(path: Path, stored: Callable[[list[str]], set[str]]) -> list[str]:
    """Check a whole rules JSONL file before anything is written, as `judge rulebook load` checks text.

    Every line is a valid rule; an id appears once; a citation or overruled ruling is a rule earlier in the
    file (it is written in an earlier or the same batch) or already stored; a parent is a rule anywhere in the
    file or stored; what a ruling overrules is a ruling. ``stored`` returns those of the ids given that exist.
    Only ids are kept in memory.

    Returns:
        The ids of the rulings the file gives as active, in file order.

    Raises:
        InputError: the first problem, naming file:line and the field.
    """
    seen: dict[str, int] = {}
    in_store: set[str] = set()  # stored ids already looked up (rulings keep citing the same entries)
    parents: list[tuple[int, str]] = []
    active_rulings: list[str] = []
    parent_of: dict[str, tuple[str]] = {}
    for line, rule in _read_rule_lines(path):
        if rule.id in seen:
            raise InputError(f"duplicate id {rule.id!r}: also on line {seen[rule.id]}", path=path, line=line,
                             field="id")
        refs = [("cites", c) for c in rule.case.cites] + [("overrules", o) for o in rule.case.overrules] \
            if rule.case is not None else []
        unseen = [ref for _, ref in refs if ref not in seen and ref not in in_store]
        in_store |= stored(unseen) if unseen else set()
        for field, ref in refs:
            if field == "overrules" and not ref.startswith(f"{Layer.RULING.value}/"):
                raise InputError(f"overrules {ref!r}, which is not a ruling (only rulings are overruled)",
                                 path=path, line=line, field=field)
            if ref not in seen and ref not in in_store:
                raise InputError(f"{field} {ref!r} is not a rule earlier in this file or in the rulebook",
                                 path=path, line=line, field=field)
        if rule.parent is not None:
            parent_of[rule.id] = (rule.parent,)
            if rule.parent not in seen:
                parents.append((line, rule.parent))
        seen[rule.id] = line
        if rule.case is not None and rule.binds:
            active_rulings.append(rule.id)
    if not seen:
        raise InputError("no rules to ingest (the file holds no rule lines)", path=path)
    cycle = find_cycle(parent_of)
    if cycle is not None:
        raise InputError(f"parent cycle: {' -> '.join(cycle)}; a rule cannot be its own parent, even through "
                         "others", path=path, line=seen[cycle[0]], field="parent")
    missing = {p for _, p in parents if p not in seen}
    missing -= stored(sorted(missing)) if missing else set()
    for line, parent in parents:
        if parent in missing:
            raise InputError(f"parent {parent!r} is not a rule in this file or in the rulebook", path=path,
                             line=line, field="parent")
    return active_rulings


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
    check_conflicts: bool = typer.Option(False, "--check-conflicts",
                                         help="After writing, check the file's active rulings for contradicting "
                                              "rulings on near-duplicate pairs (exit 1 when any)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stream a large rulebook into the DB, one transaction per batch, then update the index.

    Memory stays bounded by the batch size, so this scales to millions of rules where `load` (one
    transaction over reviewable text) does not. Re-running after an interruption continues: stored batches
    are unchanged and add no version. The whole file is checked first (as `load` checks text: valid rules,
    each id once, parents, citations and overruled rulings that exist); a bad line stops the ingest with its
    line number before anything is written. A ruling that names others in `overrules` overrules them, as
    `add-ruling` does; a ruling the file gives as active that the rulebook holds as overruled or superseded
    keeps that status (counted as not_reinstated: a ruling that no longer binds stays so).

    Add-ruling's check for contradicting rulings on near-duplicate pairs is not made while writing (it costs
    an embedding and an index query per ruling): --check-conflicts makes it of the file's active rulings once
    they are stored, as `judge rulebook conflicts` does (exit 1 when any contradict).
    """
    rb = state(ctx).rulebook()
    active_rulings = _check_rules_jsonl(path, rb.store.exists)  # the whole file, before anything is written
    with RunProgress("ingesting", None, console=err_console, unit="rules", transient=True) as bar:
        report = rb.ingest(_rules_from_jsonl(path), batch_size=batch_size, author=author,
                           reason=f"ingested from {path.name}", allow_constitution=constitution,
                           on_batch=lambda t: bar.update(t.added + t.amended + t.unchanged))
    data: dict[str, Any] = dataclasses.asdict(report)
    found: list[Contradiction] = []
    checked = 0
    if check_conflicts:
        found, checked = _contradictions(rb, active_rulings), len(active_rulings)
        data["checked_rulings"] = checked
        data["contradictions"] = [_contradiction_json(c) for c in found]
    if as_json:
        emit_json(data)
    else:
        console.print(f"ingested {path}: " + ", ".join(f"{k}={v}" for k, v in data.items()
                                                       if k not in ("checked_rulings", "contradictions")),
                      highlight=False, markup=False)
        if check_conflicts:
            _print_contradictions(found, checked)
    if found:
        raise typer.Exit(1)


@app.command("conflicts")
def conflicts(
    ctx: typer.Context,
    ruling_ids: list[str] = typer.Argument(None, help="Rulings to check (default: every active ruling)."),
    as_json: bool = JSON_OPT,
) -> None:
    """List active rulings that contradict each other on near-duplicate pairs; exit 1 when any do.

    The check `add-ruling` makes before writing, made of rulings already stored (after `ingest`, or to audit
    a rulebook): each pair of contradicting rulings is listed once, the other's holding given in the first's
    slots. Resolve one with `judge rulebook overrule`, or add a ruling that names them in --overrules.
    """
    rb = state(ctx).rulebook(create=False)
    not_rulings = sorted(i for i in ruling_ids or () if not i.startswith(f"{Layer.RULING.value}/"))
    if not_rulings:
        raise InputError(f"not a ruling id: {', '.join(not_rulings)}")
    unknown = sorted(set(ruling_ids or ()) - rb.store.exists(ruling_ids or ()))
    if unknown:
        raise InputError(f"no such ruling: {', '.join(unknown)}")
    ids = list(dict.fromkeys(ruling_ids)) if ruling_ids else [r.id for r in rb.rules(Layer.RULING, active_only=True)]
    found = _contradictions(rb, ids)
    if as_json:
        emit_json({"checked_rulings": len(ids), "contradictions": [_contradiction_json(c) for c in found]})
    else:
        _print_contradictions(found, len(ids))
    if found:
        raise typer.Exit(1)


def _contradictions(rb: Rulebook, ids: list[str]) -> list[Contradiction]:
    with RunProgress("checking rulings", len(ids), console=err_console, unit="rulings", transient=True) as bar:
        return list(rb.contradictions(ids, on_ruling=bar.advance))


def _contradiction_json(c: Contradiction) -> dict[str, Any]:
    return {"ruling_id": c.ruling_id, "holding": c.holding, "other_id": c.other.ruling_id,
            "other_holding": c.other.holding, "similarity": round(c.other.similarity, 4),
            "swapped": c.other.swapped}


def _print_contradictions(found: list[Contradiction], checked: int) -> None:
    if not found:
        console.print(f"{checked} ruling(s) checked: no contradictions between active rulings", highlight=False,
                      markup=False)
        return
    out = table(f"{len(found)} contradiction(s) among {checked} ruling(s) checked", "ruling", "holding",
                "contradicted by", "its holding", "similarity", narrow=("holding", "its holding", "similarity"),
                right=("similarity",))
    for c in found:
        out.add_row(escape(c.ruling_id), c.holding, escape(c.other.ruling_id), c.other.holding,
                    f"{c.other.similarity:.3f}")
    console.print(out)


@app.command("dump")
def dump(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="JSONL file to write, one rule object per line."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stream the current rulebook (every rule, every status) to JSONL, cited rules first: what `ingest` reads."""
    rb = state(ctx).rulebook(with_index=False, create=False)
    count = 0
    with atomic_text(out) as fh:
        for rule in rb.rules_in_dependency_order():
            fh.write(rule.model_dump_json() + "\n")
            count += 1
    if as_json:
        emit_json({"rules": count, "out": str(out), "rulebook_version": rb.version})
    else:
        console.print(f"{count} rule(s) written to {out} ({rb.version})", highlight=False, markup=False)


@app.command("export")
def export(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="Directory to write the rulebook text into (e.g. rulebook/)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write the rulebook from the DB back to text, so every change can be reviewed as a diff and re-loaded.

    Rule files of rules no longer in the DB are removed; files that are not rule files are never touched.
    """
    report = state(ctx).rulebook(with_index=False, create=False).export(out)
    data = {"written": [str(p) for p in report.written], "unchanged": len(report.unchanged),
            "removed": [str(p) for p in report.removed]}
    if as_json:
        emit_json(data)
    else:
        console.print(f"exported to {out}: {len(report.written)} file(s) written, {len(report.unchanged)} "
                      f"unchanged, {len(report.removed)} removed", highlight=False, markup=False)


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
    for rule in state(ctx).rulebook(with_index=False, create=False).rules(Layer.RULING, active_only=True):
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
        console.print(f"{len(rows)} ruling(s) written to {out} as labelled pairs", highlight=False, markup=False)


@app.command("list")
def list_rules(
    ctx: typer.Context,
    layer: Layer | None = typer.Option(None, "--layer", help="Only this layer."),
    active_only: bool = typer.Option(False, "--active", help="Only rules that bind."),
    limit: int = typer.Option(0, "--limit", min=0, help="Show at most N rules (0 = all)."),
    as_json: bool = JSON_OPT,
) -> None:
    """List the current version of every rule."""
    rb = state(ctx).rules(create=False)
    rules = []
    for i, rule in enumerate(rb.iter_current(layer, active_only=active_only)):
        if limit and i >= limit:
            break
        rules.append(rule)
    if as_json:
        emit_json({"rulebook_version": rb.version, "rules": [
            {"id": r.id, "layer": r.layer.value, "authority": r.authority.value if r.authority else None,
             "title": r.title, "version": r.version, "status": r.status.value} for r in rules]})
        return
    out = table(f"rulebook {rb.version}", "id", "layer", "authority", "v", "status", "title",
                narrow=("layer", "authority", "v", "status"), right=("v",))
    for r in rules:
        out.add_row(r.id, r.layer.value, r.authority.value if r.authority else "-", str(r.version),
                    r.status.value, escape(r.title))
    console.print(out)


@app.command("show")
def show(
    ctx: typer.Context,
    rule_id: str = typer.Argument(..., help="Rule id, e.g. spec/avoid-sycophancy."),
    version: int | None = typer.Option(None, "--version", help="A past version (default: latest)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Show one rule (latest or a given version)."""
    rule = state(ctx).rules(create=False).get(rule_id, version)
    if as_json:
        emit_json(rule_json(rule))
        return
    auth = rule.authority.value if rule.authority else "-"
    console.print(f"[bold]{escape(rule.id)}[/] v{rule.version} ({rule.layer.value}, authority {auth}, "
                  f"{rule.status.value})\n[bold]{escape(rule.title)}[/]\n", highlight=False)
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
    entries = state(ctx).rules(create=False).history(rule_id)
    if as_json:
        emit_json([{"version": r.version, "status": r.status.value, "content_hash": r.content_hash(),
                    "change": c.model_dump(mode="json")} for r, c in entries])
        return
    out = table(f"history of {rule_id}", "v", "kind", "status", "at", "author", "rulebook version", "reason",
                narrow=("v",), right=("v",))
    for r, c in entries:
        out.add_row(str(r.version), c.kind.value, r.status.value, c.at.isoformat(timespec="seconds"),
                    escape(c.author or "-"), c.rulebook_version, escape(c.reason or ""))
    console.print(out)


app.command("draft-checks")(rulings_cmd.draft_checks_cmd)
app.command("add-ruling")(rulings_cmd.add_ruling)
app.command("amend")(rulings_cmd.amend)
app.command("overrule")(rulings_cmd.overrule)


@app.command("impact")
def impact(
    ctx: typer.Context,
    since: str = typer.Option(..., "--since", help="Rulebook version (rb-...) before the changes to assess."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stored judgments whose shown rules changed since a rulebook version (`judge rerun` re-judges them).

    Checks every judgment recorded at VERSION or a later version before the current one: its pair is
    retrieved again with its own settings, and it is listed when a shown rule was added, removed or amended.
    A pair judged again (`judge rerun`) is checked by its newest judgment. Judgments recorded before VERSION
    are not checked: their count is given.
    """
    report = state(ctx).rulebook(create=False).impact(since)
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
                  f"affected, {len(report.unknown)} unknown (no stored pair)", highlight=False, markup=False)
    if report.before_note:
        err_console.print(f"note: {report.before_note}", highlight=False, markup=False)
