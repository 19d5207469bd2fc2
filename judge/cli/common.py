"""Shared CLI plumbing: global options, opening the rulebook, output, error handling."""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console

from judge.settings import Settings

__all__ = ["CliState", "console", "duration_s", "emit_json", "err_console", "state"]

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

    @property
    def settings(self) -> Settings:
        """Settings from the options, then the environment, then defaults."""
        if self._settings is None:
            self._settings = Settings.from_env(db_url=self.db, index_path=self.index_path,
                                               chroma_url=self.chroma_url,
                                               embedding_model=self.embedding_model)
        return self._settings

    def rulebook(self, *, with_index: bool = True) -> Any:
        """Open the configured rulebook (imported lazily: `--help` must stay fast)."""
        from judge.rulebook import Rulebook

        return Rulebook.open(settings=self.settings, with_index=with_index)


def state(ctx: typer.Context) -> CliState:
    """The `CliState` attached to the root context."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):  # pragma: no cover - main() always sets it
        raise RuntimeError("CLI state missing")
    return obj


def emit_json(data: Any) -> None:
    """Print JSON to stdout (one document)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


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
            checks.append(Check(question=question, expect=expect.strip().lower()))  # type: ignore[arg-type]
        except ValidationError as exc:
            message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise typer.BadParameter(f"{value!r}: {message}", param_hint=option) from None
    return checks
