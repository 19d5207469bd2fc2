"""`judge rule RESULT_ID`: turn a stored judgment a person disagrees with into a binding ruling."""

from __future__ import annotations

import typer

from judge.cli.common import CHECK_HELP, console, emit_json, parse_checks, state
from judge.cli.rulings_cmd import CONFLICT_OPT
from judge.rules.model import HOLDINGS


def rule(
    ctx: typer.Context,
    result_id: str = typer.Argument(..., help="A stored judgment: its cache key, a unique prefix of it (8+ "
                                              "characters), or a pair id (its latest judgment)."),
    holding: str = typer.Option(..., "--holding", help="The correct holding: A, B or tie (in the judged "
                                                       "pair's slots)."),
    rationale: str = typer.Option(..., "--rationale", help="Why: shown to the judge with the precedent."),
    cites: list[str] = typer.Option([], "--cite", help="Cited rule id (repeatable); must exist. Nothing is "
                                                       "cited by default."),
    overrules: list[str] = typer.Option([], "--overrules",
                                        help="Active ruling this one replaces (repeatable), in the same "
                                             "transaction; needed when the holding contradicts it."),
    checks: list[str] = typer.Option([], "--check", help=CHECK_HELP),
    author: str | None = typer.Option(None, "--author", help="Recorded as the ruling's author."),
    title: str | None = typer.Option(None, "--title", help="Default: from the prompt."),
    conflict_threshold: float | None = CONFLICT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the new ruling as JSON."),
) -> None:
    """Make a ruling from a judged pair: the pair, the correct holding, the rationale, cited rules, author.

    Later verdicts on similar pairs retrieve it as a precedent; with --check the rule-checks method also asks
    its questions of new pairs it is retrieved for (write them from the holding and rationale). A holding that
    contradicts an active ruling on a near-duplicate pair is refused (nothing is written) until --overrules
    names that ruling.
    """
    if holding not in HOLDINGS:
        raise typer.BadParameter(f"must be A, B or tie, not {holding!r}", param_hint="--holding")
    parsed = parse_checks(checks)
    rb = state(ctx).rulebook()
    if conflict_threshold is not None:
        rb.conflict_threshold = conflict_threshold
    ruling = rb.add_ruling_from(result_id, holding=holding, rationale=rationale,
                                cites=cites, overrules=overrules, author=author, title=title, checks=parsed)
    if as_json:
        emit_json({**ruling.model_dump(mode="json"), "rulebook_version": rb.version})
        return
    console.print(f"added {ruling.id} (holding {holding}) from {ruling.source}; rulebook now {rb.version}",
                  highlight=False, markup=False)
    for old in overrules:
        console.print(f"overruled {old}", highlight=False, markup=False)
