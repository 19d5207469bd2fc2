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
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Retrieve the constitution, top-k spec entries and top-k rulings for a pair, by precedence."""
    require_rulebook(state(ctx).settings, allow_empty=False, offer_allow_empty=False)
    rb = state(ctx).rulebook()
    pair = Pair(prompt=prompt, response_a=as_response(response_a), response_b=as_response(response_b))
    result = rb.retrieve(pair, k=k, k_rulings=k_rulings, exclude=exclude)
    if as_json:
        emit_json(result.to_json())
        return
    out = table(f"rules for this pair (rulebook {result.rulebook_version})", "#", "id", "layer", "authority",
                "score", "title", narrow=("#", "layer", "authority", "score"), right=("#", "score"))
    for i, r in enumerate(result.rules, 1):
        out.add_row(str(i), r.rule.id, r.rule.layer.value, r.rule.authority.value if r.rule.authority else "-",
                    f"{r.score:.3f}", escape(r.rule.title))
    console.print(out)
