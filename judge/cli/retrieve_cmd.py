"""`judge retrieve`: the rules that apply to one pair, in precedence order."""

from __future__ import annotations

import typer
from rich.markup import escape

from judge.cli.common import console, emit_json, require_rulebook, response_option, state, table
from judge.errors import RuleNotFoundError
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
    why_not: list[str] = typer.Option([], "--why",
                                      help="A rule id to explain whether or not it was retrieved (repeatable; "
                                           "implies --explain): where it stood in each ranking."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Retrieve the constitution, top-k spec entries and top-k rulings for a pair, by precedence."""
    require_rulebook(state(ctx).settings, allow_empty=False, offer_allow_empty=False)
    rb = state(ctx).rulebook()
    pair = Pair(prompt=prompt, response_a=as_response(response_a), response_b=as_response(response_b))
    known = rb.store.get_many(why_not) if why_not else {}
    unknown = [rule_id for rule_id in why_not if rule_id not in known]
    if unknown:
        raise RuleNotFoundError(unknown[0])
    result = rb.retrieve(pair, k=k, k_rulings=k_rulings, exclude=exclude)
    explain = explain or bool(why_not)
    retrieved = set(result.ids)
    asked = [rule_id for rule_id in dict.fromkeys(why_not) if rule_id not in retrieved]
    if as_json:
        emit_json(result.to_json(explain=explain, why=why_not))
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
    for rule_id in [*result.ids, *asked]:
        found = ", ".join(f"{name} #{rank}" for name, rank in result.explain(rule_id)) or "no ranking"
        why.add_row(rule_id if rule_id in retrieved else f"{rule_id} (not retrieved)", escape(found))
    console.print(why)
