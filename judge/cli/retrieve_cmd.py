"""`judge retrieve`: the rules that apply to one pair, in precedence order."""

from __future__ import annotations

import typer
from rich.markup import escape

from judge.cli.common import console, emit_json, require_rulebook, response_option, state, table
from judge.rules.model import Pair, as_response


def retrieve(
    ctx: typer.Context,
    prompt: str = typer.Option(..., "--prompt", help="The user prompt (or conversation)."),
    response_a: str = response_option("a"),
    response_b: str = response_option("b"),
    k: int = typer.Option(5, "--k", help="Spec entries to retrieve."),
    k_rulings: int | None = typer.Option(None, "--k-rulings", help="Rulings to retrieve (default: k)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Rule id never to return (repeatable)."),
    explain: bool = typer.Option(False, "--explain",
                                 help="Also say why each rule was retrieved: its rank in every ranking fused "
                                      "(dense and full-text search with each text, the test cases' votes)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Retrieve the constitution, top-k spec entries and top-k rulings for a pair, by precedence."""
    require_rulebook(state(ctx).settings, allow_empty=False, offer_allow_empty=False)
    rb = state(ctx).rulebook()
    pair = Pair(prompt=prompt, response_a=as_response(response_a), response_b=as_response(response_b))
    result = rb.retrieve(pair, k=k, k_rulings=k_rulings, exclude=exclude)
    if as_json:
        emit_json(result.to_json(explain=explain))
        return
    out = table(f"rules for this pair (rulebook {result.rulebook_version})", "#", "id", "layer", "authority",
                "score", "title", narrow=("#", "layer", "authority", "score"), right=("#", "score"))
    for i, r in enumerate(result.rules, 1):
        out.add_row(str(i), r.rule.id, r.rule.layer.value, r.rule.authority.value if r.rule.authority else "-",
                    f"{r.score:.3f}", escape(r.rule.title))
    console.print(out)
    if not explain:
        return
    if not result.rankings:
        console.print("[dim]this retrieval is dense only (JUDGE_RETRIEVAL=dense): rules are ranked by cosine, "
                      "no rankings were fused[/dim]")
        return
    why = table("why: rank in each ranking that listed the rule", "id", "found by")
    for r in result.rules:
        found = result.explain(r.rule.id)
        why.add_row(r.rule.id, escape(", ".join(f"{name} #{rank}" for name, rank in found) or "no ranking"))
    console.print(why)
