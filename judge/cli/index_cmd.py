"""`judge index ...`: the derived retrieval index."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from judge.cli.common import console, emit_json, err_console, require_rulebook, state
from judge.cli.helpfmt import App
from judge.errors import IndexMismatchError, RetrievalIndexError

app = App(help="The derived retrieval index (rebuildable from the SQL rulebook).", no_args_is_help=True)


@app.command("rebuild")
def rebuild(ctx: typer.Context,
            as_json: bool = typer.Option(False, "--json", help="Print the count as JSON.")) -> None:
    """Drop the index and rebuild it from the SQL rulebook."""
    # An empty rulebook gives an empty index that retrieves nothing: say how to load rules instead.
    settings = state(ctx).settings
    require_rulebook(settings, allow_empty=False, offer_allow_empty=False)
    rb = state(ctx).rulebook(create=False)
    try:
        n = rb.rebuild_index()
    except RetrievalIndexError:
        path = settings.resolved_index_path
        if settings.chroma_url or not (path / "chroma.sqlite3").is_file():
            raise
        # A local index that cannot be opened (a damaged file): it is derived, so it is set aside, not repaired
        aside = path.with_name(f"{path.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        from judge.retrieval.index_layout import forget_local_client

        path.rename(aside)
        forget_local_client(path)
        err_console.print(f"the index at {path} could not be opened; moved it to {aside} and rebuilt it",
                          highlight=False, markup=False)
        rb = state(ctx).rulebook(create=False)
        n = rb.rebuild_index()
    if as_json:
        emit_json({"indexed": n, "rulebook_version": rb.version})
    else:
        console.print(f"indexed {n} rules at rulebook version {rb.version}", highlight=False, markup=False)


@app.command("sync")
def sync(ctx: typer.Context,
         as_json: bool = typer.Option(False, "--json", help="Print the count as JSON.")) -> None:
    """Apply changes the index has not seen yet (incremental)."""
    rb = state(ctx).rulebook(create=False)
    n = rb.sync_index()
    if as_json:
        emit_json({"reindexed": n, "rulebook_version": rb.version})
    else:
        console.print(f"re-indexed {n} rules; index at {rb.version}", highlight=False, markup=False)


@app.command("status")
def status(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Which rulebook version and embedding model the index was built from, and whether it is current (built
    from the rulebook's version with the configured embedding model)."""
    rb = state(ctx).rulebook(create=False)
    st = rb.index.state()
    try:
        rb.index.check_model()
        usable = True
    except IndexMismatchError:
        usable = False
    data = {"index_rulebook_version": st.rulebook_version, "rulebook_version": rb.version,
            "current": usable and st.rulebook_version == rb.version, "embedding_model": st.embedder,
            "configured_embedding_model": rb.index.embedder.name, "count": rb.index.count()}
    if as_json:
        emit_json(data)
    else:
        for k, v in data.items():
            console.print(f"{k}: {v}", highlight=False, markup=False)
