"""The results viewer's page: one self-contained HTML file (inline CSS, JS and plots; no network asset).

`render_view` takes verdicts (or a results file) and, optionally, the judged pairs, their labels and the
rulebook, and returns the page as a string. Every text from a user, a rule or a model goes through the
template engine's autoescaping; the page's one script is a file shipped with the package, allowed by its
hash in the page's Content-Security-Policy, so nothing else on the page can run even if it got in.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge.errors import InputError
from judge.view.rows import PairView, RuleInfo, pair_views, rule_info

if TYPE_CHECKING:
    from judge.calibration.evaluate import EvalReport
    from judge.judging.pairs_io import PairRecord
    from judge.judging.verdict import Verdict
    from judge.rules.model import Rule

__all__ = ["DEFAULT_LOW_CONFIDENCE", "render_view"]

logger = logging.getLogger(__name__)

#: The page's low-confidence filter starts at this threshold (the reader can change it on the page).
DEFAULT_LOW_CONFIDENCE = 0.6

_TEMPLATES = "judge.view"


def _num(x: Any, digits: int = 3) -> str:
    """A number for the page: ``-`` for None or NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return str(x) if isinstance(x, int) else f"{x:.{digits}f}"


def _read_template(name: str) -> str:
    return resources.files(_TEMPLATES).joinpath("templates", name).read_text(encoding="utf-8")


def _verdicts(results: str | Path | Iterable[Verdict]) -> tuple[list[Verdict], str]:
    from judge.judging.runner import read_results

    if isinstance(results, str | Path):
        return read_results(results), str(results)
    latest: dict[str, Verdict] = {}
    for i, v in enumerate(results):
        latest[v.pair_id or f"#{i}"] = v
    return list(latest.values()), "(verdicts)"


def _records(source: str | Path | Iterable[PairRecord] | None) -> tuple[list[PairRecord], str | None]:
    from judge.judging.pairs_io import read_pairs

    if source is None:
        return [], None
    if isinstance(source, str | Path):
        return list(read_pairs(source)), str(source)
    return list(source), None


def _rules(rulebook: str | Path | Sequence[Rule] | None) -> dict[str, RuleInfo]:
    if rulebook is None:
        return {}
    if isinstance(rulebook, str | Path):
        from judge.rules.textio import read_rulebook

        return rule_info(read_rulebook(rulebook))
    return rule_info(rulebook)


def _evaluation(verdicts: Sequence[Verdict], labelled: Sequence[PairRecord], labels_name: str | None, *,
                n_boot: int, seed: int) -> EvalReport | None:
    from judge.calibration.evaluate import PairLabel, evaluate, join

    truths: dict[str, PairLabel] = {}
    for rec in labelled:
        if rec.label is None:
            raise InputError(f"pair {rec.pair.id!r} has no label (A, B or tie)", path=labels_name,
                             line=rec.line, field="label")
        truths[rec.pair.id or ""] = PairLabel(rec.label, rec.source or "(no source)", len(rec.pair.response_a.text),
                                              len(rec.pair.response_b.text))
    joined = join(verdicts, truths)
    if not joined.rows:
        raise InputError(f"none of the {len(verdicts)} results is for a pair in the labels",
                         path=labels_name, field="id")
    if all(row.verdict.failure is not None or row.verdict.escalated for row in joined.rows):
        # The verdicts are still worth browsing; there is just nothing to measure agreement on.
        logger.warning("no metrics on the page: every labelled verdict failed or was escalated (%d)",
                       len(joined.rows))
        return None
    return evaluate(joined.rows, n_missing=len(joined.missing), n_boot=n_boot, seed=seed)


def _plots(report: EvalReport) -> dict[str, str]:
    from judge.reporting.html import confidence_hist_png, reliability_png, risk_coverage_png

    return {name: base64.b64encode(draw([report])).decode("ascii") for name, draw in (
        ("reliability", reliability_png), ("confidence_hist", confidence_hist_png),
        ("risk_coverage", risk_coverage_png))}


def _summary(views: Sequence[PairView]) -> list[tuple[str, int]]:
    return [
        ("pairs", len(views)),
        ("failed", sum(1 for v in views if v.failure_stage)),
        ("escalated", sum(1 for v in views if v.escalated)),
        ("orders disagree", sum(1 for v in views if v.agreement == "disagree")),
        ("with a deciding rule", sum(1 for v in views if v.deciding_rule)),
        ("pair text shown", sum(1 for v in views if v.prompt is not None)),
    ]


def render_view(
    results: str | Path | Iterable[Verdict],
    labels: str | Path | Iterable[PairRecord] | None = None,
    *,
    pairs: str | Path | Iterable[PairRecord] | None = None,
    rulebook: str | Path | Sequence[Rule] | None = None,
    low_confidence: float = DEFAULT_LOW_CONFIDENCE,
    title: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> str:
    """The results viewer page for a set of verdicts, as one self-contained HTML document.

    Args:
        results: Verdicts, or a results JSONL file (`judge run` output; the last line per pair wins).
        labels: Labelled pairs (id, prompt, response_a, response_b, label), or their JSONL file: the page then
            marks every verdict right or wrong and shows accuracy, calibration metrics and the plots of
            `judge report`. Their texts are shown too.
        pairs: The judged pairs without labels (or their file), for the prompt and responses of each pair.
        rulebook: The rules (or a rulebook directory) for the text of every checked or cited rule.
        low_confidence: Where the page's low-confidence filter starts.
        title: The page title (default: the results file's name).
        n_boot, seed: Bootstrap replicates and seed of the metrics' intervals (with labels).

    Raises:
        InputError: A file that cannot be read as results / pairs / a rulebook (naming file:line and field),
            a labelled pair without a label, or labels none of the results belongs to.
    """
    if not 0.0 <= low_confidence <= 1.0:
        raise InputError(f"low_confidence must be between 0 and 1, got {low_confidence}", field="low_confidence")
    from jinja2 import Environment, StrictUndefined

    verdicts, results_name = _verdicts(results)
    pair_records, pairs_name = _records(pairs)
    label_records, labels_name = _records(labels)
    by_id: dict[str, PairRecord] = {rec.pair.id or "": rec for rec in pair_records}
    by_id.update({rec.pair.id or "": rec for rec in label_records})
    views = pair_views(verdicts, by_id, _rules(rulebook))
    report = _evaluation(verdicts, label_records, labels_name, n_boot=n_boot, seed=seed) if labels else None

    script = _read_template("view.js")
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    template = env.from_string(_read_template("view.html.j2"))
    all_rules = sorted({rid for v in views for rid in v.rule_ids})
    headline = ([] if report is None else
                [(name, e.point, e.low, e.high) for name, e in report.headline.items()])
    return template.render(
        title=title or Path(results_name).name,
        results_name=results_name,
        labels_name=labels_name or ("(labelled pairs)" if labels else None),
        pairs_name=pairs_name,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        views=views,
        summary=_summary(views),
        all_rules=all_rules,
        low_confidence=low_confidence,
        labelled=report is not None,
        report=report,
        headline=headline,
        images=_plots(report) if report is not None else {},
        script=script,
        script_hash=script_hash,
    )

