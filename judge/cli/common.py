"""Shared CLI plumbing: global options, opening the rulebook, output, error handling."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from judge.errors import ConfigError, InputError
from judge.settings import Settings

__all__ = ["CliState", "console", "duration_s", "emit_json", "err_console", "state", "table"]

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliState:
    """Options given before the command (``judge --db URL rulebook list``)."""

    db: str | None = None
    index_path: str | None = None
    chroma_url: str | None = None
    embedding_model: str | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _workspace: Any = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """Settings from the options, then the environment, then defaults."""
        if self._settings is None:
            self._settings = Settings.from_env(db_url=self.db, index_path=self.index_path,
                                               chroma_url=self.chroma_url,
                                               embedding_model=self.embedding_model)
        return self._settings

    def workspace(self, *, create: bool = True) -> Any:
        """The configured database, opened once per command (imported lazily: `--help` must stay fast).

        A command that only reads passes ``create=False``: a SQLite file that does not exist is then an error
        (exit 2) rather than a new empty database at a mistyped path."""
        if self._workspace is None:
            from judge.workspace import Workspace

            self._workspace = Workspace.open(self.settings, create=create)
        return self._workspace

    def rulebook(self, *, with_index: bool = True, create: bool = True) -> Any:
        """Open the configured rulebook (``create``: as `workspace`)."""
        return self.workspace(create=create).rulebook(with_index=with_index)

    def rules(self, *, create: bool = True) -> Any:
        """The configured rulebook's store (`judge.store.RulebookStore`): reading rules and their history
        loads nothing of retrieval (``create``: as `workspace`)."""
        return self.workspace(create=create).rules()


ALLOW_EMPTY_HELP = "Judge even on a missing or empty rulebook (verdicts then cite no rule)."


def response_option(side: str, *, required: bool = True) -> Any:
    """``--response-a`` / ``--response-b`` (``--a`` / ``--b`` still accepted): a response's text."""
    return typer.Option(... if required else None, f"--response-{side.lower()}", f"--{side.lower()}",
                        help=f"Response {side.upper()}'s text.")


def _refuse_short_b(value: str | None) -> None:
    if value is not None:
        raise typer.BadParameter("-b is ambiguous here: write --backend for the judge's backend or --response-b "
                                 "(--b) for response B", param_hint="-b")


#: A hidden ``-b`` for commands that take both responses: it is refused with a message rather than taken as
#: ``--backend`` (``-b y`` was easily meant as response B).
SHORT_B_REFUSED = typer.Option(None, "-b", hidden=True, is_eager=True, callback=_refuse_short_b)


def require_rulebook(settings: Settings, *, allow_empty: bool, use_rules: bool = True,
                     offer_allow_empty: bool = True) -> None:
    """Refuse to judge against a database that does not exist or a rulebook with no rules.

    A mistyped ``--db`` / ``JUDGE_DB`` would otherwise create an empty database and judge silently with no
    rules. Only ``judge init`` and ``judge rulebook load`` create a rulebook.

    Raises:
        ConfigError: the SQLite file is missing, or (``use_rules``) the rulebook holds no rules; the message
            says how to create it and (``offer_allow_empty``) names ``--allow-empty``.
    """
    from sqlalchemy.engine import make_url

    if allow_empty:
        return
    how = "create it with `judge init` or `judge rulebook load rulebook/`" + (
        ", or pass --allow-empty to judge without rules" if offer_allow_empty else "")
    url = make_url(settings.resolved_db_url)
    database = url.database or ""
    where = url.render_as_string(hide_password=True)
    on_disk = url.get_backend_name() == "sqlite" and database not in ("", ":memory:") \
        and not database.startswith("file:")
    if on_disk and not Path(database).expanduser().is_file():
        raise ConfigError(f"no rulebook database at {where} (the file does not exist): {how}")
    if not use_rules:
        return
    from judge.store import RulebookStore, open_engine

    engine = open_engine(settings.resolved_db_url)
    try:
        empty = _count_rules(RulebookStore, engine) == 0
    finally:
        engine.dispose()
    if empty:
        raise ConfigError(f"the rulebook at {where} holds no rules: {how}")


def _count_rules(store_cls: Any, engine: Any) -> int:
    from sqlalchemy import inspect

    if "rule_versions" not in inspect(engine).get_table_names():
        return 0
    return int(store_cls(engine).count())


#: What the judging commands' exit codes mean (shown in their --help).
EXIT_CODES = ("Exit codes: 0 every pair decided; 1 some pairs failed (the count is printed; their failures are "
              "recorded with a reason); 2 bad input or usage.")


def exit_for_failures(failed: int, total: int | None = None) -> None:
    """Exit with code 1 when any pair failed (after the report was printed), so a script can tell."""
    if failed:
        of = f" of {total}" if total is not None else ""
        err_console.print(f"{failed}{of} pair(s) failed: exit code 1", highlight=False, markup=False)
        raise typer.Exit(1)


def table(title: str | None, *columns: str, narrow: tuple[str, ...] = (), right: tuple[str, ...] = ()) -> Table:
    """A table that reads in an 80-column terminal: no cell is ever cut.

    Every column wraps at spaces and folds a longer word (an id stays whole and copyable, over two lines if need
    be); ``narrow`` columns (short values such as a layer or a score) never wrap, so no column collapses to
    nothing; ``right`` columns are right-aligned.
    """
    out = Table(title=title)
    for name in columns:
        out.add_column(name, overflow="fold", no_wrap=name in narrow,
                       justify="right" if name in right else "left")
    return out


def state(ctx: typer.Context) -> CliState:
    """The `CliState` attached to the root context."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):  # pragma: no cover - main() always sets it
        raise RuntimeError("CLI state missing")
    return obj


def option_given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (on the command line or by an environment variable), not defaulted
    (typer's click has its own ``ParameterSource`` enum, so the source is compared by name)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def emit_json(data: Any) -> None:
    """Print JSON to stdout (one document); a NaN or infinite number is written as null (JSON has neither)."""
    sys.stdout.write(json.dumps(_finite(data), ensure_ascii=False, indent=2, default=str, allow_nan=False) + "\n")


def _finite(data: Any) -> Any:
    """``data`` with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def configure_logging(verbose: int) -> None:
    """Log to stderr; -v for INFO, -vv for DEBUG."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose == 0:
        # Third-party chatter (instructor logs every exhausted re-ask at ERROR; the failure is recorded in
        # the result and shown in the table) stays out of the way unless asked for.
        for name in ("instructor", "httpx", "httpx2", "openai", "chromadb"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def duration_s(text: str, option: str) -> float:
    """Seconds in a duration such as ``3600``, ``90m``, ``2h``, ``1h30m`` or ``45s``.

    Raises:
        typer.BadParameter: Anything else (named after ``option``).
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise typer.BadParameter(f"{text!r} is not a duration (e.g. 3600, 90m, 2h, 1h30m)", param_hint=option)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def check_url(value: str | None) -> str | None:
    """Typer callback for ``--base-url``: an http(s) URL with a host, else a usage error (exit 2)."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        ok = False
    if not ok:
        raise typer.BadParameter(f"{value!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
    return value.strip()


def check_out_file(value: Path | None) -> Path | None:
    """Typer callback for an output file option: not a directory, and not under a file (missing folders are
    created by the command)."""
    if value is None:
        return None
    if value.is_dir():
        raise typer.BadParameter(f"{str(value)!r} is a directory; give a file name (e.g. {value / 'results.jsonl'})")
    ancestor = next((p for p in value.parents if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise typer.BadParameter(f"{str(ancestor)!r} is a file, not a folder")
    return value


def refuse_input_as_output(out: Path | None, inputs: Iterable[Path | None], option: str) -> None:
    """Refuse an output path that is one of the command's input files (writing would destroy the input).

    Raises:
        InputError: naming the option and the file (exit code 2).
    """
    if out is None:
        return
    for source in inputs:
        if source is None:
            continue
        same = out.exists() and source.exists() and os.path.samefile(out, source)
        if same or out.resolve() == source.resolve():
            raise InputError(f"{option} {out} is also an input of this command; write to another file",
                             field=option)


CHECK_HELP = ("A yes/no check the ruling carries, as 'QUESTION?=yes|no' (the answer that complies; repeatable), "
              "e.g. --check 'Does the response give a dose?=no'.")


def parse_checks(values: list[str], option: str = "--check") -> list[Any]:
    """`Check`s from ``QUESTION?=yes|no`` strings; a malformed one is a usage error naming the option."""
    from pydantic import ValidationError

    from judge.rules.model import Check

    checks = []
    for value in values:
        question, sep, expect = value.rpartition("=")
        if not sep or expect.strip().lower() not in ("yes", "no"):
            raise typer.BadParameter(f"{value!r}: write QUESTION?=yes or QUESTION?=no", param_hint=option)
        try:
            checks.append(Check.model_validate({"question": question, "expect": expect.strip().lower()}))
        except ValidationError as exc:
            message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise typer.BadParameter(f"{value!r}: {message}", param_hint=option) from None
    return checks
