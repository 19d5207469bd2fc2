"""`judge cases generate|answer|pairs`: the commands that ask a model (write cases, answer them) and turn the
answers into release pairs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from judge._atomic import write_text_atomic
from judge.cli.cases_common import JSON_OPT, open_store, progress_bar
from judge.cli.common import check_out_file, check_url, console, emit_json, refuse_input_as_output, state
from judge.errors import InputError

__all__ = ["answer", "generate", "pairs"]


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
        with progress_bar("generating") as report:
            asyncio.run(generate_all(report))
    finally:
        made.close()
    if as_json:
        emit_json({"added": added})
    else:
        for entry_id, count in added.items():
            console.print(f"{entry_id}: {count} draft case(s) added", highlight=False, markup=False)


def answer(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", dir_okay=False,
                             help="Answers JSONL to append to (resumable: answered cases are skipped)."),
    backend: str = typer.Option("local", "--backend", "-b",
                                help="The answering model (the candidate, not the judge: JUDGE_BACKEND and "
                                     "judge.toml do not apply): local (embedded), local/<path.gguf>, or "
                                     "openai/<model>."),
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
        with progress_bar("answering") as report:
            run = answer_cases(made, cases, out, system=system, max_tokens=max_tokens, progress=report)
    finally:
        made.close()
    if as_json:
        emit_json({"cases": len(cases), "answered": run.answered, "already": run.skipped, "failed": run.failed,
                   "out": str(out)})
    else:
        console.print(f"{len(cases)} case(s): {run.answered} answered now, {run.skipped} already answered, "
                      f"{run.failed} failed -> {out}", highlight=False, markup=False)
    if run.failed:
        raise typer.Exit(1)


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

    refuse_input_as_output(out, [candidate, baseline], "--out")
    cases = open_store(ctx, embed=False).list_cases(entry=entry, status="accepted")
    answers = read_answers(candidate)
    plan = build_pairs(cases, answers, read_answers(baseline) if baseline else None)
    unknown = sorted(set(answers) - {c.id for c in cases})
    if not plan.pairs:
        reasons = Counter(reason for _, reason in plan.skipped)
        why = "; ".join(f"{n} case(s): {reason}" for reason, n in reasons.most_common())
        raise InputError(f"no pair to write from {len(cases)} accepted case(s)" + (f" ({why})" if why else "")
                         + (f"; {len(unknown)} answer(s) name no accepted case, e.g. {unknown[0]}" if unknown else "")
                         + ("; give --baseline (another model's answers) when the cases have no reference answer"
                            if not baseline and any("no reference answer" in r for r in reasons) else ""),
                         path=candidate)
    write_text_atomic(out, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in plan.pairs))
    if as_json:
        emit_json({"pairs": len(plan.pairs), "out": str(out),
                   "skipped": [{"case_id": c, "reason": r} for c, r in plan.skipped], "unknown_answers": unknown})
        return
    console.print(f"{len(plan.pairs)} pair(s) written to {out} from {len(cases)} accepted case(s); "
                  f"{len(plan.skipped)} skipped" + (f"; {len(unknown)} answer(s) name no accepted case"
                                                      if unknown else ""), highlight=False, markup=False)
    for cid, reason in plan.skipped[:20]:
        console.print(f"  skipped {cid}: {reason}", highlight=False, markup=False)
