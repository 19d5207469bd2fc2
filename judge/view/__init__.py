"""The results viewer: verdicts, their pairs and labels as one self-contained HTML page, served locally."""

from judge.view.page import DEFAULT_LOW_CONFIDENCE, render_view
from judge.view.rows import PairView, pair_views, rule_info
from judge.view.server import PageServer, serve_page

__all__ = ["DEFAULT_LOW_CONFIDENCE", "PageServer", "PairView", "pair_views", "render_view", "rule_info", "serve_page"]
