"""`judge retrieve`: the rules that apply to one pair, in precedence order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from judge.cli.common import (
    console,
    emit_json,
    err_console,
    option_given,
    require_rulebook,
    response_option,
    state,
    table,
)
from judge.cli.progress import RunProgress
from judge.errors import RuleNotFoundError
from judge.rules.model import Pair, as_response
from judge.verdicts import JudgeConfig

if TYPE_CHECKING:
    from judge.retrieval.retriever import Retrieval


def retrieve(
    ctx: typer.Context,
    prompt: str | None = typer.Option(None, "--prompt", help="The user prompt (or conversation)."),
    response_a: str | None = response_option("a", required=False),
    response_b: str | None = response_option("b", required=False),
    measure: Path | None = typer.Option(
        None, "--measure", exists=True, dir_okay=False, readable=True,
        help="Measure retrieval instead: a JSONL pair file whose lines name the rules that apply "
             "(\"rules\": [ids]); prints recall@1/3/5/10 and MRR per layer and among the rules a judge is shown."),
    k: int = typer.Option(5, "--k", min=0, help="Spec entries to retrieve."),
    k_rulings: int | None = typer.Option(None, "--k-rulings", min=0, help="Rulings to retrieve (default: k)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Rule id never to return (repeatable)."),
    explain: bool = typer.Option(False, "--explain",
                                 help="Also say why each rule was retrieved: its rank in every ranking fused "
                                      "(dense and full-text search with each text, the test cases' votes)."),
    why_not: list[str] = typer.Option([], "--why",
                                      help="A rule id to explain whether or not it was retrieved (repeatable; "
                                           "implies --explain): where it stood in each ranking."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Retrieve the constitution, top-k spec entries and top-k rulings for a pair, by precedence (or, with
    --measure, how often retrieval finds the rules labelled pairs name)."""
    if measure is not None:
        if prompt is not None or response_a is not None or response_b is not None:
            raise typer.BadParameter("give either --measure or a pair (--prompt, --a, --b), not both",
                                     param_hint="--measure")
        given = [f"--{name.replace('_', '-')}" for name in ("k", "k_rulings", "exclude", "explain", "why_not")
                 if option_given(ctx, name)]
        if given:
            raise typer.BadParameter(f"{given[0].replace('--why-not', '--why')} does not apply to --measure (it "
                                     "measures what a judge with the default configuration retrieves)",
                                     param_hint="--measure")
        _measure(ctx, measure, as_json)
        return
    for value, option in ((prompt, "--prompt"), (response_a, "--response-a"), (response_b, "--response-b")):
        if value is None:
            raise typer.BadParameter(f"{option} is required (or --measure FILE)", param_hint=option)
    assert prompt is not None and response_a is not None and response_b is not None
    if not prompt.strip():
        raise typer.BadParameter("must be a non-empty string", param_hint="--prompt")
    require_rulebook(state(ctx).settings, allow_empty=False, offer_allow_empty=False)
    rb = state(ctx).rulebook()
    pair = Pair(prompt=prompt, response_a=as_response(response_a), response_b=as_response(response_b))
    named = [*why_not, *exclude]  # a misspelt --exclude would leave the rule in without a word
    known = rb.store.get_many(named) if named else {}
    unknown = [rule_id for rule_id in named if rule_id not in known]
    if unknown:
        raise RuleNotFoundError(unknown[0])
    result = rb.retrieve(pair, k=k, k_rulings=k_rulings, exclude=exclude)
    explain = explain or bool(why_not)
    retrieved = set(result.ids)
    asked = [rule_id for rule_id in dict.fromkeys(why_not) if rule_id not in retrieved]
    shown = _shown(result)
    if as_json:
        payload = result.to_json(explain=explain, why=why_not)
        for view in payload["rules"]:
            view["shown"] = view["id"] in shown
        emit_json(payload)
        return
    out = table(f"rules for this pair (rulebook {result.rulebook_version})", "#", "id", "layer", "authority",
                "score", "title", narrow=("#", "layer", "authority", "score"), right=("#", "score"))
    for i, r in enumerate(result.rules, 1):
        out.add_row(str(i) + ("*" if r.rule.id in shown else ""), r.rule.id, r.rule.layer.value,
                    r.rule.authority.value if r.rule.authority else "-", f"{r.score:.3f}", escape(r.rule.title))
    console.print(out)
    console.print(f"* shown to the model by a judge with the default configuration ({len(shown)} of "
                  f"{len(result.rules)})", highlight=False, markup=False)
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


def _measure(ctx: typer.Context, path: Path, as_json: bool) -> None:
    """Recall of the rules each labelled pair of ``path`` names, as `judge.retrieval.quality.measure_file`."""
    from judge.retrieval.quality import QualityCase, measure_file  # the retrieval stack, loaded when used

    require_rulebook(state(ctx).settings, allow_empty=False, offer_allow_empty=False)
    rb = state(ctx).rulebook()

    def progress(cases: list[QualityCase]) -> Iterator[QualityCase]:
        with RunProgress("retrieving", len(cases), console=err_console, transient=True) as bar:
            for case in cases:
                yield case
                bar.advance()

    report = measure_file(rb, path, progress=progress)
    if as_json:
        emit_json(report.to_json())
        return
    ks = report.ks
    out = table(f"retrieval on {escape(path.name)} (rulebook {rb.version})", "view", "pairs",
                *(f"R@{k}" for k in ks), "MRR", narrow=("pairs",), right=("pairs", *(f"R@{k}" for k in ks), "MRR"))
    for name, row in report.rows.items():
        if name == "shown":
            continue
        out.add_row(name, str(row.n), *(_fmt(row.recall[k]) for k in ks), _fmt(row.mrr))
    console.print(out)
    shown = report.rows["shown"]
    per_case = report.shown_per_case
    console.print(f"among the rules a judge is shown: {_fmt(shown.recall[1])} of {shown.n} pairs"
                  + (f" ({per_case:.1f} constitution rules and spec entries shown per pair)" if per_case else ""))


def _shown(result: Retrieval) -> set[str]:
    """Ids of the retrieved rules a judge with the default configuration shows the model (as
    `judge.retrieval.shown.shown_rules` picks them from the same retrieval)."""
    from judge.retrieval.shown import shown_of  # the retrieval stack, loaded when used

    return {rule.id for rule in shown_of(result, JudgeConfig())}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
