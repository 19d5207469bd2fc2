"""`judge cases ...` (seed, add, review, list, contamination) and `judge coverage`: test cases per spec entry.

The commands that ask a model (generate, answer, pairs) are in `judge.cli.cases_model_cmd`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from judge.cli import cases_model_cmd
from judge.cli.cases_common import (
    COS_OPT,
    JSON_OPT,
    NGRAM_OPT,
    case_row,
    check_entries,
    duplicate_heads,
    open_store,
    progress_bar,
    read_cases,
)
from judge.cli.common import console, emit_json, err_console, state, table
from judge.cli.helpfmt import App
from judge.errors import CaseReviewError, InputError

app = App(help="Test cases per spec entry: seed, load, add, review (by a person or a check), list, export, "
               "check for contamination.",
          no_args_is_help=True)


@app.command("seed")
def seed(
    ctx: typer.Context,
    data_dir: Path = typer.Argument(Path("data/model_spec"), exists=True, file_okay=False,
                                    help="Extracted Model Spec folder (examples.jsonl, eval_prompts.jsonl)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Seed cases from the Model Spec: examples (accepted, reviewer model-spec) and eval prompts (draft).

    Idempotent. Sections without a spec entry (root-authority sections are constitution rules) are listed.
    """
    from judge.cases.seed import seed_from_dir

    store = open_store(ctx)
    result = seed_from_dir(data_dir, store.entry_ids())
    with progress_bar("embedding cases") as progress:
        report = store.add(result.cases, note=f"seeded from {data_dir}", progress=progress)
    per_entry = result.entries()
    data = {
        "added": len(report.added), "existing": len(report.existing),
        "accepted": sum(c.status.value == "accepted" for c in result.cases),
        "draft": sum(c.status.value == "draft" for c in result.cases),
        "entries_with_cases": len(per_entry), "spec_entries": len(store.entry_ids()),
        "duplicates": result.duplicates,
        "unmapped": [vars(u) for u in result.unmapped],
        "skipped": [{"id": i, "reason": r} for i, r in result.skipped],
    }
    if as_json:
        emit_json(data)
        return
    console.print(f"seeded from {data_dir}: {data['added']} added, {data['existing']} already stored "
                  f"({data['accepted']} accepted examples, {data['draft']} draft eval prompts); "
                  f"{data['entries_with_cases']} of {data['spec_entries']} spec entries have cases",
                  highlight=False, markup=False)
    if result.unmapped:
        out = table(f"{len(result.unmapped)} section(s) with no spec entry: not seeded", "section", "maps to",
                    "examples", "eval prompts", "reason", right=("examples", "eval prompts"))
        for u in result.unmapped:
            out.add_row(escape(u.section), u.rule_id, str(u.examples), str(u.eval_prompts), escape(u.reason))
        console.print(out)
    for record_id, reason in result.skipped:
        console.print(f"skipped {record_id}: {reason}", highlight=False, markup=False)


@app.command("add")
def add(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="JSONL, one test case per line (prompt, entries, provenance, ...)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Add draft cases from a JSONL file (one transaction; cases already stored are left as they are)."""
    located = read_cases(file)
    if not located:
        raise InputError("no cases to add (the file holds no case lines)", path=file)
    store = open_store(ctx)
    check_entries(located, store.entry_ids())
    with progress_bar("embedding cases") as progress:
        report = store.add([case for _, _, case in located], note=f"added from {file}", progress=progress)
    if as_json:
        emit_json({"added": list(report.added), "existing": list(report.existing)})
    else:
        console.print(f"{len(report.added)} case(s) added, {len(report.existing)} already stored",
                      highlight=False, markup=False)


@app.command("load")
def load(
    ctx: typer.Context,
    path: Path = typer.Argument(Path("cases"), exists=True,
                                help="A case file or a folder of them (one JSONL per entry, e.g. the shipped "
                                     "cases/ set); default: ./cases."),
    as_json: bool = JSON_OPT,
) -> None:
    """Load a reviewable case set: drafts and reviewed cases, keeping each case's reviewer and review method.

    One transaction; cases already stored are left as they are (their review moves only through
    `judge cases review` / `judge cases check`).
    """
    from judge.cases.files import read_case_lines

    located = read_case_lines(path)
    if not located:
        raise InputError("no cases to load (the file or folder holds no case lines)", path=path)
    store = open_store(ctx)
    check_entries(located, store.entry_ids())
    cases = [case for _, _, case in located]
    with progress_bar("embedding cases") as progress:
        report = store.add(cases, progress=progress)
    added = set(report.added)
    by_status: dict[str, int] = {}
    for c in cases:
        if c.id in added:
            key = c.status.value if c.review_method is None else f"{c.status.value} ({c.review_method})"
            by_status[key] = by_status.get(key, 0) + 1
    stored = {c.id: c for c in store.list_cases(ids=list(report.existing))} if report.existing else {}
    differ = sorted({c.id for c in cases if c.id in stored
                     and (stored[c.id].status, stored[c.id].review_method) != (c.status, c.review_method)})
    if as_json:
        emit_json({"added": len(report.added), "existing": len(report.existing), "by_status": by_status,
                   "review_differs": differ})
        return
    shown = ", ".join(f"{n} {k}" for k, n in sorted(by_status.items()))
    console.print(f"loaded {path}: {len(report.added)} case(s) added" + (f" ({shown})" if shown else "")
                  + f", {len(report.existing)} already stored", highlight=False, markup=False)
    if differ:
        err_console.print(f"{len(differ)} stored case(s) keep their stored review, which the file gives otherwise "
                          f"(e.g. {differ[0]}); change a review with `judge cases review`", highlight=False,
                          markup=False)


@app.command("check")
def check(
    ctx: typer.Context,
    entry: str | None = typer.Option(None, "--entry", help="Only the drafts testing this spec entry."),
    top_k: int = typer.Option(20, "--top-k", min=1,
                              help="The case's entry must be among this many most similar spec entries."),
    min_expected_words: int = typer.Option(5, "--min-expected-words", min=0,
                                           help="The expected behaviour must have at least this many words."),
    require_tag: list[str] = typer.Option([], "--require-tag", help="A tag every case must carry (repeatable)."),
    benchmark: list[Path] = typer.Option([], "--benchmark", exists=True, dir_okay=False,
                                         help="JSONL of benchmark prompts the cases must not overlap "
                                              "(repeatable)."),
    apply: bool = typer.Option(False, "--apply", help="Record the decisions (reviewer "
                                                       "judge-cases-check-v2, method check)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Review draft cases with automated checks: on topic for their entry, no benchmark overlap, specific.

    Without --apply it only reports. Rejected drafts stay stored as rejected, with the reasons in their
    review log; a gate can require a person's review instead (policy `review_methods`).
    """
    from judge.cases.autoreview import CheckPolicy
    from judge.cases.review_run import review_drafts
    from judge.rules.model import Layer

    cli = state(ctx)
    store = open_store(ctx)
    rules = list(cli.rulebook(with_index=False).rules(Layer.SPEC))
    if entry is not None and entry not in {rule.id for rule in rules}:
        raise InputError(f"no spec entry {entry!r} in the rulebook", field="--entry")
    policy = CheckPolicy(top_k=top_k, min_expected_words=min_expected_words, required_tags=tuple(require_tag))
    with progress_bar("embedding cases and entries") as progress:
        run = review_drafts(store, rules, store.embedder, benchmarks=benchmark, policy=policy, entry=entry,
                            apply=apply, progress=progress)
    rejected = [d for d in run.decisions if d.status.value == "rejected"]
    if as_json:
        emit_json({"checked": len(run.decisions), "accepted": run.accepted, "rejected": run.rejected,
                   "applied": run.applied,
                   "decisions": [{"id": d.case_id, "status": d.status.value, "entry_rank": d.entry_rank,
                                  "reasons": list(d.reasons)} for d in run.decisions]})
        return
    verb = "recorded" if apply else "not recorded (add --apply)"
    console.print(f"{len(run.decisions)} draft(s) checked: {run.accepted} pass, {run.rejected} fail; {verb}",
                  highlight=False, markup=False)
    for d in rejected[:20]:
        console.print(f"  {d.case_id}: {'; '.join(d.reasons)}", highlight=False, markup=False)
    if len(rejected) > 20:
        console.print(f"  ... and {len(rejected) - 20} more (--json lists all)", highlight=False, markup=False)


@app.command("export")
def export(
    ctx: typer.Context,
    folder: Path = typer.Argument(..., file_okay=False, help="Folder to write one JSONL per entry into."),
    status: str | None = typer.Option(None, "--status", help="Only cases with this status."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write the stored cases as a reviewable case set (one JSONL per entry, with each case's review)."""
    from judge.cases.files import write_case_files

    store = open_store(ctx, embed=False)
    cases = store.list_cases(status=status)
    written = write_case_files(cases, folder, notes=store.latest_notes([c.id for c in cases]))
    if as_json:
        emit_json({"files": {str(k): v for k, v in written.items()}, "cases": len(cases)})
        return
    console.print(f"{len(cases)} case(s) written to {len(written)} file(s) in {folder}", highlight=False, markup=False)


@app.command("review")
def review(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help='JSONL of decisions: {"id": ..., "status": "accepted", "reviewer": ..., '
                                     '"review_method": "person"}.'),
    note: str | None = typer.Option(None, "--note", help="Recorded in the review log of every case changed."),
    as_json: bool = JSON_OPT,
) -> None:
    """Accept / reject (or reopen as draft) cases in bulk: all decisions in one transaction, or none."""
    from judge.cases.model import REVIEW_METHODS
    from judge.cases.store import Decision
    from judge.jsonl import read_jsonl

    decisions: dict[str, Decision] = {}
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(file):
        case_id, status, reviewer = obj.get("id"), obj.get("status"), obj.get("reviewer")
        if not isinstance(case_id, str) or not isinstance(status, str):
            raise InputError("each line needs a string id and status", path=file, line=line,
                             field="id" if not isinstance(case_id, str) else "status")
        if reviewer is not None and not isinstance(reviewer, str):
            raise InputError("reviewer must be a string", path=file, line=line, field="reviewer")
        method = obj.get("review_method", "person")
        if method not in REVIEW_METHODS:
            raise InputError(f"review_method must be one of {', '.join(REVIEW_METHODS)}", path=file, line=line,
                             field="review_method")
        if case_id in seen:
            raise InputError(f"case {case_id} is decided twice (lines {seen[case_id]} and {line})", path=file,
                             line=line, field="id")
        seen[case_id] = line
        decisions[case_id] = Decision(status, reviewer, method)
    try:
        report = open_store(ctx, embed=False).review(decisions, note=note)
    except CaseReviewError as exc:  # the store names the case; say where in the file it is decided
        raise InputError(str(exc), path=file, line=seen.get(exc.case_id), field=exc.field) from None
    if as_json:
        emit_json({"changed": list(report.changed), "unchanged": list(report.unchanged)})
    else:
        console.print(f"{len(report.changed)} case(s) changed, {len(report.unchanged)} already so",
                      highlight=False, markup=False)


@app.command("list")
def list_cases(
    ctx: typer.Context,
    entry: str | None = typer.Option(None, "--entry", help="Only cases testing this spec entry."),
    status: str | None = typer.Option(None, "--status", help="Only draft, accepted or rejected cases."),
    provenance: str | None = typer.Option(None, "--provenance", help="Only cases whose provenance starts so."),
    limit: int = typer.Option(0, "--limit", min=0, help="Show at most N cases (0 = all)."),
    cos_threshold: float = COS_OPT,
    ngram_threshold: float = NGRAM_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with duplicate_of, as `judge coverage` "
                                                       "merges near-duplicates) instead of a table."),
) -> None:
    """List test cases, oldest first.

    With --json each accepted case carries ``duplicate_of``: the oldest case of its near-duplicate group in
    every entry it tests (null when it is distinct), so `judge gate --cases` counts it once, as `judge coverage`
    does.
    """
    if as_json:
        from judge.cases.distinct import Thresholds

        store = open_store(ctx)
        cases = store.list_cases(entry=entry, status=status, provenance=provenance, limit=limit or None)
        with progress_bar("embedding cases") as report:
            heads = duplicate_heads(store, cases, Thresholds(cos=cos_threshold, ngram=ngram_threshold), report)
        notes = store.latest_notes([c.id for c in cases])  # the review log's, as `judge cases export` writes
        emit_json([{**case_row(c), "review_note": notes.get(c.id), "duplicate_of": heads.get(c.id)}
                   for c in cases])
        return
    cases = open_store(ctx, embed=False).list_cases(entry=entry, status=status, provenance=provenance,
                                                limit=limit or None)
    out = table(f"{len(cases)} test case(s)", "id", "status", "entries", "provenance", "prompt",
                narrow=("status",))
    for c in cases:
        prompt = " ".join(c.prompt.split())
        out.add_row(c.id, c.status.value, ", ".join(c.entries), escape(c.provenance),
                    escape(prompt[:60] + (" ..." if len(prompt) > 60 else "")))
    console.print(out)


app.command("generate")(cases_model_cmd.generate)
app.command("answer")(cases_model_cmd.answer)
app.command("pairs")(cases_model_cmd.pairs)


@app.command("contamination")
def contamination(
    ctx: typer.Context,
    benchmark: Path = typer.Argument(..., exists=True, dir_okay=False,
                                     help="JSONL of benchmark prompts (any file; source = its `source` field "
                                          "or the file name)."),
    field: str = typer.Option("prompt", "--field", help="Field holding the prompt (text or chat messages)."),
    ngram: int = typer.Option(8, "--ngram", help="Flag cases sharing a run of this many words with a prompt."),
    min_fraction: float = typer.Option(0.0, "--min-fraction",
                                       help="Flag only when this share of the case's n-grams is in one prompt."),
    status: str | None = typer.Option(None, "--status", help="Check only cases with this status."),
    as_json: bool = JSON_OPT,
) -> None:
    """Flag cases whose text overlaps a benchmark's prompts, naming the source and the overlapping text."""
    from judge.cases.contamination import find_contamination, read_benchmark

    prompts = read_benchmark(benchmark, field=field)
    cases = open_store(ctx, embed=False).list_cases(status=status)
    hits = find_contamination(((c.id, c.text()) for c in cases), prompts, n=ngram, min_fraction=min_fraction)
    flagged = len({h.case_id for h in hits})
    if as_json:
        emit_json({"checked": len(cases), "benchmark_prompts": len(prompts), "flagged": flagged,
                   "hits": [vars(h) for h in hits]})
        return
    console.print(f"{flagged} of {len(cases)} case(s) overlap {len(prompts)} prompt(s) of {benchmark}",
                  highlight=False, markup=False)
    if hits:
        out = table(None, "case", "source", "line", "shared", "fraction", "overlapping text",
                    narrow=("line", "shared", "fraction"), right=("line", "shared", "fraction"))
        for h in hits:
            out.add_row(h.case_id, escape(h.source), str(h.line), str(h.shared), f"{h.fraction:.2f}",
                        escape(h.snippet))
        console.print(out)


def coverage(
    ctx: typer.Context,
    minimum: int = typer.Option(100, "--min", min=0, help="Distinct accepted cases every entry should have."),
    cos_threshold: float = COS_OPT,
    ngram_threshold: float = NGRAM_OPT,
    review_method: list[str] = typer.Option([], "--review-method",
                                            help="Count only cases accepted by this method: person, check or "
                                                 "source (repeatable; default all)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Test cases per spec entry: distinct accepted (near-duplicates merged), accepted, draft, rejected."""
    from judge.cases.distinct import Thresholds
    from judge.cases.model import REVIEW_METHODS

    bad = [m for m in review_method if m not in REVIEW_METHODS]
    if bad:
        raise InputError(f"--review-method must be one of {', '.join(REVIEW_METHODS)}, not {bad[0]!r}",
                         field="review_method")
    methods: Any = tuple(review_method) or None
    thresholds = Thresholds(cos=cos_threshold, ngram=ngram_threshold)
    store = open_store(ctx)
    with progress_bar("embedding cases") as progress:
        rows = store.coverage(thresholds, progress=progress, methods=methods)
    reached = sum(r.distinct_accepted >= minimum for r in rows)
    merged = sum(r.accepted - r.distinct_accepted for r in rows)
    if as_json:
        emit_json({"min": minimum, "thresholds": {"cos": thresholds.cos, "ngram": thresholds.ngram},
                   "review_methods": list(methods or REVIEW_METHODS),
                   "entries": [{**vars(r), "needs": max(0, minimum - r.distinct_accepted)} for r in rows],
                   "summary": {"entries": len(rows), "at_min": reached, "below_min": len(rows) - reached,
                               "merged_near_duplicates": merged}})
        return
    counts = ("distinct accepted", "accepted", "draft", "rejected", f"needs (to {minimum})")
    out = table(f"test cases per spec entry: {reached} of {len(rows)} entries have {minimum}+ distinct accepted "
                "cases", "entry", *counts, right=counts)
    for r in rows:
        need = max(0, minimum - r.distinct_accepted)
        out.add_row(r.entry_id, str(r.distinct_accepted), str(r.accepted), str(r.draft), str(r.rejected),
                    f"needs {need} more" if need else "ok")
    console.print(out)
    console.print(f"{len(rows) - reached} of {len(rows)} entries are below {minimum} distinct accepted cases; "
                  f"{merged} accepted near-duplicate(s) merged", highlight=False, markup=False)
