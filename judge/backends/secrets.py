"""Keeping API keys out of logs: a filter that blanks registered secrets in every record of the libraries a
backend drives (openai, instructor, httpx) and of `judge` itself.

The backends blank keys in what they return and raise; this covers what those libraries log on their own
(request options, a reply that echoes the key, a validation error quoting it), which ends up in log files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["LOGGER_PREFIXES", "SecretFilter", "blank", "protect", "protect_only", "protected"]

#: Loggers (and their children) whose records are scrubbed.
LOGGER_PREFIXES = ("judge", "openai", "instructor", "httpx", "httpx2", "httpcore")


def blank(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret replaced by ``***`` where it stands as a token of its own: not inside a word
    (a placeholder key such as ``x`` or ``EMPTY`` must not garble "exception"; a real key is never part of a
    longer run of letters and digits)."""
    for secret in secrets:
        if secret:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


class SecretFilter(logging.Filter):
    """Replaces every registered secret in a record's formatted message with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record whose arguments do not format: leave it to logging
            return True
        scrubbed = blank(message, self.secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = blank(text, self.secrets)
        return True


_FILTER = SecretFilter()


def protected() -> frozenset[str]:
    """The secrets blanked in log records from now on."""
    return frozenset(_FILTER.secrets)


def protect_only(secrets: Iterable[str]) -> None:
    """Blank exactly ``secrets`` from now on, forgetting any other (a test restores the set it began with)."""
    _FILTER.secrets.clear()
    _FILTER.secrets.update(s for s in secrets if s)


def protect(secret: str | None) -> None:
    """Blank ``secret`` in every record of the `LOGGER_PREFIXES` loggers from now on (idempotent)."""
    if not secret:
        return
    _FILTER.secrets.add(secret)
    names = [n for n in logging.root.manager.loggerDict
             if any(n == p or n.startswith(p + ".") for p in LOGGER_PREFIXES)]
    for name in {*LOGGER_PREFIXES, *names}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
