"""Reports of an evaluation: a self-contained HTML page, PNG plots and ``metrics.json`` (see :mod:`.html`)."""

from judge.reporting.html import report_files, write_report

__all__ = ["report_files", "write_report"]
