"""Reports of an evaluation: a self-contained HTML page, PNG plots and ``metrics.json`` (see :mod:`.html`)."""

from judge.reporting.html import write_report

__all__ = ["write_report"]
