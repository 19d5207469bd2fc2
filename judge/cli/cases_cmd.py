"""`judge cases ...` (seed, add, review, list, contamination) and `judge coverage`: test cases per spec entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from judge.cli.common import check_out_file, check_url, console, emit_json, err_console, state
from judge.cli.progress import RunProgress

app = typer.Typer(help="Test cases per spec entry: seed, load, add, review (by a person or a check), list, export, "
                       "check for contamination.",
                  no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of a table.")
COS_OPT = typer.Option(0.92, "--cos-threshold", help="Embedding cosine at or above which two cases are "
                                                      "near-duplicates (above 1 turns it off).")
NGRAM_OPT = typer.Option(0.6, "--ngram-threshold", help="Word 3-gram Jaccard at or above which two cases are "
                                                         "near-duplicates (above 1 turns it off).")


def open_store(ctx: typer.Context, *, embed: bool = True) -> Any:
    """A `CaseStore` on the configured rulebook's database, checked against its current spec entries."""
    from judge.errors import RulebookError
    from judge.retrieval.embedder import make_embedder
    from judge.rules.model import Layer

    cli = state(ctx)
    rulebook = cli.rulebook(with_index=False)
    entry_ids = [r.id for r in rulebook.rules(Layer.SPEC)]
    if not entry_ids:
        raise RulebookError("the rulebook has no spec entries for cases to test; load one first "
                            "(`judge rulebook load rulebook/`)")
    embedder = make_embedder(cli.settings.embedding_model) if embed else None
    return cli.workspace().cases(embedder, entry_ids=entry_ids)


@contextmanager
def _progress(description: str) -> Iterator[Any]:
    """A ``progress(done, total)`` callback drawing progress on stderr (the total comes with the first call)."""
    with RunProgress(description, None, console=err_console, transient=True) as bar:
        yield lambda done, total: bar.update(done, total)


def _read_cases(path: Path) -> list[Any]:
    from pydantic import ValidationError

    from judge.cases.model import CaseStatus, TestCase
    from judge.errors import InputError, first_validation_error
    from judge.jsonl import read_jsonl

    cases = []
    for line, obj in read_jsonl(path):
        try:
            case = TestCase.model_validate(obj)
        except ValidationError as exc:
            where, msg = first_validation_error(exc, "")
            raise InputError(f"invalid test case: {where + ': ' if where else ''}{msg}", path=path,
                             line=line, field=where or None) from None
        if case.status is not CaseStatus.DRAFT:
            raise InputError(f"cases enter as draft, not {case.status.value}; accept them with "
                             "`judge cases review`", path=path, line=line, field="status")
        cases.append(case)
    return cases


def _case_row(case: Any) -> dict[str, Any]:
    row: dict[str, Any] = case.model_dump(mode="json")
    return row


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
    with _progress("embedding cases") as progress:
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
                  f"{data['entries_with_cases']} of {data['spec_entries']} spec entries have cases", highlight=False)
    if result.unmapped:
        table = Table(title=f"{len(result.unmapped)} section(s) with no spec entry: not seeded")
        for col in ("section", "maps to", "examples", "eval prompts", "reason"):
            table.add_column(col)
        for u in result.unmapped:
            table.add_row(u.section, u.rule_id, str(u.examples), str(u.eval_prompts), u.reason)
        console.print(table)
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
    cases = _read_cases(file)
    store = open_store(ctx)
    with _progress("embedding cases") as progress:
        report = store.add(cases, note=f"added from {file}", progress=progress)
    if as_json:
        emit_json({"added": list(report.added), "existing": list(report.existing)})
    else:
        console.print(f"{len(report.added)} case(s) added, {len(report.existing)} already stored", highlight=False)


@app.command("load")
def load(
    ctx: typer.Context,
    path: Path = typer.Argument(Path("cases"), exists=True,
                                help="A case file or a folder of them (one JSONL per entry, e.g. the shipped "
                                     "cases/ set)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Load a reviewable case set: drafts and reviewed cases, keeping each case's reviewer and review method.

    One transaction; cases already stored are left as they are (their review moves only through
    `judge cases review` / `judge cases check`).
    """
    from judge.cases.files import read_case_files

    cases = read_case_files(path)
    store = open_store(ctx)
    with _progress("embedding cases") as progress:
        report = store.add(cases, note=f"loaded from {path}", progress=progress)
    by_status: dict[str, int] = {}
    for c in cases:
        key = c.status.value if c.review_method is None else f"{c.status.value} ({c.review_method})"
        by_status[key] = by_status.get(key, 0) + 1
    if as_json:
        emit_json({"added": len(report.added), "existing": len(report.existing), "by_status": by_status})
        return
    shown = ", ".join(f"{n} {k}" for k, n in sorted(by_status.items()))
    console.print(f"loaded {path}: {len(report.added)} case(s) added, {len(report.existing)} already stored "
                  f"({shown})", highlight=False)


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
    policy = CheckPolicy(top_k=top_k, min_expected_words=min_expected_words, required_tags=tuple(require_tag))
    with _progress("embedding cases and entries") as progress:
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
                  highlight=False)
    for d in rejected[:20]:
        console.print(f"  {d.case_id}: {'; '.join(d.reasons)}", highlight=False, markup=False)
    if len(rejected) > 20:
        console.print(f"  ... and {len(rejected) - 20} more (--json lists all)", highlight=False)


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
    console.print(f"{len(cases)} case(s) written to {len(written)} file(s) in {folder}", highlight=False)


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
    from judge.errors import InputError
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
    report = open_store(ctx, embed=False).review(decisions, note=note)
    if as_json:
        emit_json({"changed": list(report.changed), "unchanged": list(report.unchanged)})
    else:
        console.print(f"{len(report.changed)} case(s) changed, {len(report.unchanged)} already so", highlight=False)


@app.command("list")
def list_cases(
    ctx: typer.Context,
    entry: str | None = typer.Option(None, "--entry", help="Only cases testing this spec entry."),
    status: str | None = typer.Option(None, "--status", help="Only draft, accepted or rejected cases."),
    provenance: str | None = typer.Option(None, "--provenance", help="Only cases whose provenance starts so."),
    limit: int = typer.Option(0, "--limit", help="Show at most N cases (0 = all)."),
    as_json: bool = JSON_OPT,
) -> None:
    """List test cases, oldest first."""
    cases = open_store(ctx, embed=False).list_cases(entry=entry, status=status, provenance=provenance,
                                                limit=limit or None)
    if as_json:
        emit_json([_case_row(c) for c in cases])
        return
    table = Table(title=f"{len(cases)} test case(s)")
    for col in ("id", "status", "entries", "provenance", "prompt"):
        table.add_column(col)
    for c in cases:
        prompt = " ".join(c.prompt.split())
        table.add_row(c.id, c.status.value, ", ".join(c.entries), c.provenance,
                      prompt[:60] + ("…" if len(prompt) > 60 else ""))
    console.print(table)


@app.command("generate")
def generate(
    ctx: typer.Context,
    entry: list[str] = typer.Option(..., "--entry", "-e", help="Spec entry to write cases for (repeatable)."),
    n: int = typer.Option(8, "--n", help="Cases to ask for per entry."),
    backend: str | None = typer.Option(None, "--backend", "-b",
                                       help="local (embedded), local/<path.gguf>, or openai/<model> (default: "
                                            "JUDGE_BACKEND, judge.toml, else local)."),
    base_url: str | None = typer.Option(None, "--base-url", callback=check_url,
                                            help="Endpoint for openai/<model>."),
    as_json: bool = JSON_OPT,
) -> None:
    """Generate draft test cases per spec entry with a model; review them with `judge cases review`."""
    import asyncio

    from judge.backends.base import release_connections
    from judge.backends.registry import make_backend
    from judge.cases.generate import generate_cases
    from judge.errors import InputError

    store = open_store(ctx)
    rulebook = state(ctx).rulebook(with_index=False)
    unknown = [e for e in entry if e not in store.entry_ids()]
    if unknown:
        raise InputError(f"not spec entries of the rulebook: {', '.join(unknown)}", field="entry")
    settings = state(ctx).settings
    made = make_backend(backend or settings.backend, data_dir=settings.data_dir, base_url=base_url or settings.base_url)
    added: dict[str, int] = {}
    async def generate_all(progress: Any) -> None:  # one event loop for every entry: connections stay valid
        try:
            for i, entry_id in enumerate(entry):
                existing = [c.prompt for c in store.list_cases(entry=entry_id)]
                cases = await generate_cases(made, rulebook.get(entry_id), n, avoid=existing)
                added[entry_id] = len(store.add(cases).added)
                progress(i + 1, len(entry))
        finally:
            await release_connections(made)

    try:
        with _progress("generating") as progress:
            asyncio.run(generate_all(progress))
    finally:
        made.close()
    if as_json:
        emit_json({"added": added})
    else:
        for entry_id, count in added.items():
            console.print(f"{entry_id}: {count} draft case(s) added", highlight=False)


@app.command("answer")
def answer(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", dir_okay=False,
                             help="Answers JSONL to append to (resumable: answered cases are skipped)."),
    backend: str = typer.Option("local", "--backend", "-b",
                                help="The answering model: local (embedded), local/<path.gguf>, or openai/<model>."),
    base_url: str | None = typer.Option(None, "--base-url", help="Endpoint for openai/<model>."),
    entry: list[str] = typer.Option([], "--entry", "-e", help="Only cases testing this spec entry (repeatable)."),
    per_entry: int = typer.Option(0, "--per-entry", min=0, help="At most N cases per entry (0 = all)."),
    system: str | None = typer.Option(None, "--system", help="A system prompt sent before every case."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="Generation cap per answer."),
    as_json: bool = JSON_OPT,
) -> None:
    """Answer the accepted cases with a model: a candidate's or a baseline's responses for `judge cases pairs`.

    Exit code 1 when some cases could not be answered (they are written as failures and asked again on the
    next run).
    """
    from judge.backends.registry import make_backend
    from judge.cases.answer import answer_cases

    store = open_store(ctx, embed=False)
    cases = []
    for entry_id in entry or [None]:  # type: ignore[list-item]
        chosen = store.list_cases(entry=entry_id, status="accepted")
        cases.extend(sorted(chosen, key=lambda c: c.id)[:per_entry or None])
    cases = list({c.id: c for c in cases}.values())
    made = make_backend(backend, data_dir=state(ctx).settings.data_dir, base_url=base_url)
    try:
        with _progress("answering") as progress:
            run = answer_cases(made, cases, out, system=system, max_tokens=max_tokens, progress=progress)
    finally:
        made.close()
    if as_json:
        emit_json({"cases": len(cases), "answered": run.answered, "already": run.skipped, "failed": run.failed,
                   "out": str(out)})
    else:
        console.print(f"{len(cases)} case(s): {run.answered} answered now, {run.skipped} already answered, "
                      f"{run.failed} failed -> {out}", highlight=False)
    if run.failed:
        raise typer.Exit(1)


@app.command("pairs")
def pairs(
    ctx: typer.Context,
    candidate: Path = typer.Option(..., "--candidate", exists=True, dir_okay=False,
                                   help="JSONL of the candidate model's answers: case_id, response."),
    out: Path = typer.Option(..., "--out", "-o", callback=check_out_file,
                             help="Pairs JSONL to write (then `judge run` it)."),
    baseline: Path | None = typer.Option(None, "--baseline", exists=True, dir_okay=False,
                                         help="JSONL of a baseline model's answers (head-to-head); without it "
                                              "each case's reference answer is response B."),
    entry: str | None = typer.Option(None, "--entry", help="Only cases testing this spec entry."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write release pairs: candidate (A) vs baseline or reference (B), one per accepted case."""
    from judge.cases.pairs import build_pairs, read_answers

    cases = open_store(ctx, embed=False).list_cases(entry=entry, status="accepted")
    plan = build_pairs(cases, read_answers(candidate), read_answers(baseline) if baseline else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in plan.pairs), encoding="utf-8")
    if as_json:
        emit_json({"pairs": len(plan.pairs), "out": str(out),
                   "skipped": [{"case_id": c, "reason": r} for c, r in plan.skipped]})
        return
    console.print(f"{len(plan.pairs)} pair(s) written to {out} from {len(cases)} accepted case(s); "
                  f"{len(plan.skipped)} skipped", highlight=False)
    for cid, reason in plan.skipped[:20]:
        console.print(f"  skipped {cid}: {reason}", highlight=False)


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
                  highlight=False)
    if hits:
        table = Table()
        for col in ("case", "source", "line", "shared", "fraction", "overlapping text"):
            table.add_column(col)
        for h in hits:
            table.add_row(h.case_id, h.source, str(h.line), str(h.shared), f"{h.fraction:.2f}", h.snippet)
        console.print(table)


def coverage(
    ctx: typer.Context,
    minimum: int = typer.Option(100, "--min", help="Distinct accepted cases every entry should have."),
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
    from judge.errors import InputError

    bad = [m for m in review_method if m not in REVIEW_METHODS]
    if bad:
        raise InputError(f"--review-method must be one of {', '.join(REVIEW_METHODS)}, not {bad[0]!r}",
                         field="review_method")
    methods: Any = tuple(review_method) or None
    thresholds = Thresholds(cos=cos_threshold, ngram=ngram_threshold)
    store = open_store(ctx)
    with _progress("embedding cases") as progress:
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
    table = Table(title=f"test cases per spec entry: {reached} of {len(rows)} entries have {minimum}+ distinct "
                        "accepted cases")
    for col in ("entry", "distinct accepted", "accepted", "draft", "rejected", f"needs (to {minimum})"):
        table.add_column(col, justify="left" if col == "entry" else "right")
    for r in rows:
        need = max(0, minimum - r.distinct_accepted)
        table.add_row(r.entry_id, str(r.distinct_accepted), str(r.accepted), str(r.draft), str(r.rejected),
                      f"needs {need} more" if need else "ok")
    console.print(table)
    console.print(f"{len(rows) - reached} of {len(rows)} entries are below {minimum} distinct accepted cases; "
                  f"{merged} accepted near-duplicate(s) merged", highlight=False)
