"""Write an evaluation as a self-contained HTML report, PNG plots and ``metrics.json``.

:func:`write_report` takes an :class:`~judge.calibration.workflow.Evaluation` (raw and, when present,
cross-fitted recalibrated metrics) and writes into one directory:

* ``metrics.json`` — the full evaluation;
* ``reliability.png`` — accuracy against mean confidence per equal-width bin, the diagonal, and bin counts;
* ``confidence_hist.png`` — how many verdicts fall in each confidence bin, split into right and wrong;
* ``risk_coverage.png`` — error rate among the verdicts kept against the share kept;
* ``index.html`` — headline metrics with intervals, counts, selective judging, signal AUROCs, breakdowns, the
  plots (embedded as ``data:`` URIs, so the page opens offline with no external resource) and the most
  confident wrong verdicts. Every piece of model or data text is HTML-escaped by the template engine.

The plots are drawn by :mod:`judge.reporting.plots` (re-exported here).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, StrictUndefined

from judge.calibration.evaluate import GROUP_ECE_BINS
from judge.calibration.workflow import evaluate_results
from judge.records import read_pairs, read_results
from judge.reporting.plots import _fmt, confidence_hist_png, reliability_png, risk_coverage_png

if TYPE_CHECKING:
    from judge.calibration.evaluate import EvalReport, GroupMetrics
    from judge.calibration.workflow import Evaluation
    from judge.records import PairRecord
    from judge.verdicts import Verdict

__all__ = ["MAX_TEXT_CHARS", "confidence_hist_png", "reliability_png", "risk_coverage_png", "write_report"]

log = logging.getLogger(__name__)

#: Prompts and responses shown in the report are cut to this many characters.
MAX_TEXT_CHARS = 2_000

_BREAKDOWNS = {
    "by_source": "Per data source",
    "by_deciding_rule": "Per deciding rule",
    "by_layer": "Per layer of the deciding rule",
    "by_top_spec_entry": "Per top retrieved spec entry",
}


# ---------------------------------------------------------------- page content
def _headline_rows(reports: Sequence[EvalReport]) -> list[dict[str, Any]]:
    rows = []
    for name in reports[0].headline:
        cells = []
        for rep in reports:
            e = rep.headline.get(name)
            cells.append({"point": "-", "ci": ""} if e is None else
                         {"point": _fmt(e.point), "ci": f"[{_fmt(e.low, 2)}, {_fmt(e.high, 2)}]"})
        rows.append({"name": name, "cells": cells})
    return rows


def _count_rows(reports: Sequence[EvalReport]) -> list[dict[str, Any]]:
    def wah(r: EvalReport) -> str:
        w = r.wrong_at_high
        return f"{int(w['n_wrong'])} wrong of {int(w['n_confident'])} at confidence >= {w['threshold']:g}"

    getters = (
        ("labelled", lambda r: str(r.n_labelled)),
        ("scored", lambda r: str(r.n_scored)),
        ("failed", lambda r: str(r.n_failed) + (" (" + ", ".join(f"{k}: {v}" for k, v in
                                                                  sorted(r.failures_by_stage.items())) + ")"
                                                 if r.failures_by_stage else "")),
        ("escalated", lambda r: str(r.n_escalated)),
        ("missing (no verdict)", lambda r: str(r.n_missing)),
        ("ties among labels", lambda r: str(r.n_ties_labelled)),
        ("wrong at high confidence", wah),
        ("ECE a perfectly calibrated judge shows at this n (mean / p95; p-value of this ECE)",
         lambda r: r.ece_floor_text()),
        ("judge picks longer / labels do", lambda r: f"{_fmt(r.length_preference.get('judge_longer'), 2)} / "
                                                     f"{_fmt(r.length_preference.get('label_longer'), 2)}"),
    )
    return [{"name": name, "cells": [get(r) for r in reports]} for name, get in getters]


def _selective_line(report: EvalReport) -> str:
    sel = report.selective
    if not sel:
        return f"{report.variant}: not estimated (fewer than 20 scored verdicts)"
    return (f"{report.variant}: keeping the verdicts above a threshold chosen on held-out folds keeps "
            f"{_fmt(sel.get('coverage'), 2)} of them ({sel.get('n_kept')} kept, {sel.get('n_escalated')} "
            f"escalated) at agreement {_fmt(sel.get('agreement'), 3)}; with 95% exact intervals: "
            f"{report.selective_text()} (target {sel.get('target')}, "
            f"delta {sel.get('delta')}; {sel.get('certified_folds')}/{len(sel.get('fold_thresholds') or [])} "
            "folds certified a threshold)")


def _signal_rows(reports: Sequence[EvalReport]) -> list[dict[str, Any]]:
    names: list[str] = []
    for rep in reports:
        names += [k for k in rep.signal_auroc if k not in names]
    return [{"name": n, "cells": [_fmt(rep.signal_auroc.get(n)) for rep in reports]} for n in names]


def _breakdown_tables(reports: Sequence[EvalReport]) -> list[dict[str, Any]]:
    names = list(_BREAKDOWNS) + sorted({k for r in reports for k in r.breakdowns} - set(_BREAKDOWNS))
    tables = []
    for name in names:
        groups: list[GroupMetrics] = reports[0].breakdowns.get(name, [])
        others = [{g.key: g for g in rep.breakdowns.get(name, [])} for rep in reports[1:]]
        rows = []
        for g in groups:
            cells = []
            for gm in [g] + [o.get(g.key) for o in others]:
                cells += ([_fmt(gm.accuracy), _fmt(gm.mean_confidence), _fmt(gm.ece), _fmt(gm.brier)]
                          if gm is not None else ["-"] * 4)
            rows.append({"key": g.key, "n": g.n, "cells": cells})
        tables.append({"name": name, "title": _BREAKDOWNS.get(name, name), "rows": rows})
    return tables


def _clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit:,} more characters not shown]"


def _confident_wrong(verdicts: Sequence[Verdict], pairs: Mapping[str, PairRecord] | None,
                     max_examples: int) -> list[dict[str, Any]]:
    if not pairs or max_examples <= 0:
        return []
    wrong = []
    for v in verdicts:
        rec = pairs.get(v.pair_id or "")
        if rec is None or rec.label is None or v.failure is not None or v.winner is None:
            continue
        if v.winner != rec.label:
            wrong.append((v, rec))
    wrong.sort(key=lambda vr: (-(vr[0].confidence or 0.0), vr[0].pair_id or ""))
    out = []
    for v, rec in wrong[:max_examples]:
        p = v.probabilities
        out.append({
            "pair_id": v.pair_id, "source": rec.source or "", "label": rec.label, "winner": v.winner,
            "confidence": _fmt(v.confidence),
            "probabilities": "" if p is None else f"A {p.a:.3f} · tie {p.tie:.3f} · B {p.b:.3f}",
            "escalated": v.escalated, "deciding_rule": v.deciding_rule or "", "rationale": v.rationale or "",
            "prompt": _clip(rec.pair.prompt), "response_a": _clip(rec.pair.response_a.text),
            "response_b": _clip(rec.pair.response_b.text),
        })
    return out


_TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Judge report: {{ ev.results }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 75rem;
       padding: 0 1rem; color: #1d232a; line-height: 1.4; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #d5dbe1; }
h3 { font-size: 1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d5dbe1; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f1f4f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { color: #6b7785; font-size: 0.8rem; }
.muted { color: #6b7785; }
img { max-width: 100%; height: auto; border: 1px solid #e3e7eb; margin: 0.4rem 0; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f7f8fa; border: 1px solid #e3e7eb;
      padding: 0.5rem; margin: 0.2rem 0; font-size: 0.82rem; max-height: 24rem; overflow-y: auto; }
.example { border: 1px solid #d5dbe1; border-radius: 4px; padding: 0.6rem 0.9rem; margin: 1rem 0; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 0.8rem; }
.tag { display: inline-block; background: #fde2e0; color: #8a1c13; border-radius: 3px; padding: 0 0.35rem; }
</style>
</head>
<body>
<h1>Judge report</h1>
<p>Results <code>{{ ev.results }}</code> against labels <code>{{ ev.labelled }}</code>.
<span class="muted">Generated {{ generated }}.</span></p>
<table>
<tr><th colspan="2">judge configuration</th></tr>
{% for k, v in judge_rows %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>
{% endfor %}
</table>
{% if recalibration %}<p>Recalibration: {{ recalibration }}</p>{% endif %}
{% if ev.unlabelled_results %}
<p>{{ ev.unlabelled_results }} results are for pairs without a label (ignored).</p>
{% endif %}

<h2>Headline</h2>
<p class="muted">Point estimates with 95% bootstrap intervals. Failed, escalated and missing verdicts are
counted, never scored.</p>
<table>
<tr><th>metric</th>{% for r in reports %}<th>{{ r.variant }}</th>{% endfor %}</tr>
{% for row in headline %}<tr><td>{{ row.name }}</td>{% for c in row.cells %}<td class="num">{{ c.point }}
<span class="ci">{{ c.ci }}</span></td>{% endfor %}</tr>
{% endfor %}
</table>
<h3>Counts</h3>
<table>
<tr><th></th>{% for r in reports %}<th>{{ r.variant }}</th>{% endfor %}</tr>
{% for row in counts %}<tr><td>{{ row.name }}</td>{% for c in row.cells %}<td class="num">{{ c }}</td>{% endfor %}</tr>
{% endfor %}
</table>
<h3>Confusion (rows: label, columns: judge)</h3>
{% for r in reports %}
<table>
<tr><th>{{ r.variant }}</th><th>A</th><th>tie</th><th>B</th></tr>
{% for name, row in confusion[loop.index0] %}<tr><th>{{ name }}</th>
{% for c in row %}<td class="num">{{ c }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endfor %}

<h2>Selective judging</h2>
<ul>{% for line in selective %}<li>{{ line }}</li>{% endfor %}</ul>

<h2>Calibration</h2>
<h3>Reliability diagram</h3>
<img alt="reliability diagram" src="data:image/png;base64,{{ images.reliability }}">
<h3>Confidence histogram</h3>
<img alt="confidence histogram" src="data:image/png;base64,{{ images.confidence_hist }}">
<h3>Risk-coverage</h3>
<img alt="risk-coverage curve" src="data:image/png;base64,{{ images.risk_coverage }}">

<h2>Signals</h2>
<p class="muted">AUROC of each signal for whether the verdict is right (0.5: no information).</p>
<table>
<tr><th>signal</th>{% for r in reports %}<th>{{ r.variant }}</th>{% endfor %}</tr>
{% for row in signals %}<tr><td>{{ row.name }}</td>{% for c in row.cells %}<td class="num">{{ c }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% if notes %}<ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}

<h2>Breakdowns</h2>
{% for t in breakdowns %}
<h3 id="{{ t.name }}">{{ t.title }}</h3>
{% if t.rows %}
<table>
<tr><th rowspan="2">key</th><th rowspan="2">n</th>
{% for r in reports %}<th colspan="4">{{ r.variant }}</th>{% endfor %}</tr>
<tr>{% for r in reports %}<th>accuracy</th><th>mean confidence</th><th>ECE ({{ group_ece_bins }} bins)</th>
<th>Brier</th>{% endfor %}</tr>
{% for row in t.rows %}<tr><td>{{ row.key }}</td><td class="num">{{ row.n }}</td>
{% for c in row.cells %}<td class="num">{{ c }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% else %}<p class="muted">No groups.</p>{% endif %}
{% endfor %}

<h2>Most confident wrong verdicts</h2>
{% if not have_pairs %}
<p class="muted">Not shown: the report was written without the verdicts and their pairs.</p>
{% elif not examples %}
<p class="muted">No wrong verdict.</p>
{% else %}
<p class="muted">Up to {{ max_examples }}, most confident first (the judge's own probabilities); text cut at
{{ max_chars }} characters.</p>
{% for e in examples %}
<div class="example">
<p><strong>{{ e.pair_id }}</strong>{% if e.source %} <span class="muted">({{ e.source }})</span>{% endif %}:
label <strong>{{ e.label }}</strong>, judge said <strong>{{ e.winner }}</strong> with confidence
<strong>{{ e.confidence }}</strong> <span class="muted">({{ e.probabilities }})</span>
{% if e.escalated %}<span class="tag">escalated</span>{% endif %}</p>
{% if e.deciding_rule %}
<p>Deciding rule: <code>{{ e.deciding_rule }}</code>{% if e.rationale %}: {{ e.rationale }}{% endif %}</p>
{% endif %}
<p>Prompt</p>
<pre>{{ e.prompt }}</pre>
<div class="pair">
<div><p>Response A</p><pre>{{ e.response_a }}</pre></div>
<div><p>Response B</p><pre>{{ e.response_b }}</pre></div>
</div>
</div>
{% endfor %}
{% endif %}
</body>
</html>
"""

_ENV = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)


def _recalibration_text(ev: Evaluation) -> str:
    return ev.recalibration.describe()


def write_report(
    evaluation: Evaluation,
    out_dir: Path,
    *,
    verdicts: Sequence[Verdict] = (),
    pairs: Mapping[str, PairRecord] | None = None,
    max_examples: int = 50,
) -> Path:
    """Write ``index.html``, ``metrics.json`` and the PNG plots of an evaluation into a directory.

    Args:
        evaluation: Raw and (optionally) recalibrated reports, as from
            :func:`~judge.calibration.workflow.evaluate_results`.
        out_dir: The directory to write into (created if needed; files of the same name are replaced).
        verdicts: The verdicts evaluated; with ``pairs``, the most confident wrong ones are shown.
        pairs: The labelled pairs by pair id (their prompt, responses and label).
        max_examples: At most this many wrong verdicts are shown.

    Returns:
        The path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = [evaluation.raw] + ([evaluation.recalibrated] if evaluation.recalibrated is not None else [])

    (out_dir / "metrics.json").write_text(evaluation.model_dump_json(indent=2), encoding="utf-8")
    images: dict[str, str] = {}
    for name, draw in (("reliability", reliability_png), ("confidence_hist", confidence_hist_png),
                       ("risk_coverage", risk_coverage_png)):
        png = draw(reports)
        (out_dir / f"{name}.png").write_bytes(png)
        images[name] = base64.b64encode(png).decode("ascii")

    outcomes = ("A", "tie", "B")
    notes = list(dict.fromkeys(n for rep in reports for n in rep.notes))
    page = _ENV.from_string(_TEMPLATE).render(
        ev=evaluation,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        judge_rows=sorted((str(k), str(v)) for k, v in evaluation.judge.items()),
        recalibration=_recalibration_text(evaluation),
        reports=reports,
        headline=_headline_rows(reports),
        counts=_count_rows(reports),
        confusion=[list(zip(outcomes, rep.confusion, strict=False)) for rep in reports],
        selective=[_selective_line(rep) for rep in reports],
        images=images,
        signals=_signal_rows(reports),
        notes=notes,
        breakdowns=_breakdown_tables(reports), group_ece_bins=GROUP_ECE_BINS,
        have_pairs=bool(verdicts) and pairs is not None,
        examples=_confident_wrong(verdicts, pairs, max_examples),
        max_examples=max_examples,
        max_chars=MAX_TEXT_CHARS,
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    log.info("report written to %s", index)
    return index


def report_files(results: str | Path, labels: str | Path, out: str | Path, *, recalibrate: str | None = "auto",
                 seed: int = 0, n_boot: int = 1000) -> tuple[Evaluation, Path]:
    """The report of a results file against its labelled pairs, written into the folder ``out`` (``judge
    report``, `judge.report`): `judge.calibration.workflow.evaluate_results`, then `write_report` with the
    verdicts and pairs, so the most confident wrong verdicts are shown.

    Returns:
        The evaluation and the path of ``index.html``.
    """
    evaluation = evaluate_results(labels, results, recalibrate=recalibrate, seed=seed, n_boot=n_boot)
    pairs = {record.pair.id or "": record for record in read_pairs(labels)}
    index = write_report(evaluation, Path(out), verdicts=read_results(results), pairs=pairs)
    return evaluation, index
