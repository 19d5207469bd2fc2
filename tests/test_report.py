"""`judge report`: the HTML report renders, is self-contained, escapes model text, and its PNGs exist."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from judge.calibration.workflow import evaluate_results
from judge.records import read_pairs, read_results
from judge.reporting import write_report
from tests.test_calibration_evaluate import make

SCRIPT = "<script>alert(1)</script>"
PNGS = ("reliability.png", "confidence_hist.png", "risk_coverage.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collector(HTMLParser):
    """Start tags with their attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    return parser


def _files(tmp: Path, n: int = 60) -> tuple[Path, Path]:
    """An over-confident judge; pair p000 holds markup in its responses and is the most confident error."""
    rng = np.random.default_rng(3)
    pairs, results = tmp / "pairs.jsonl", tmp / "results.jsonl"
    with pairs.open("w") as fp, results.open("w") as fr:
        for i in range(n):
            pid = f"p{i:03d}"
            y = "A" if rng.random() < 0.5 else "B"
            says_a = (y == "A") == (rng.random() < 0.7)
            p_a = 0.6 + 0.35 * rng.random() if says_a else 0.4 - 0.35 * rng.random()
            resp_a, resp_b = "a" * 5, "b" * 9
            if i == 0:
                y, p_a = "B", 0.99
                resp_a, resp_b = f"Try this: {SCRIPT}", "<b>bold</b> & more"
            fp.write(json.dumps({"id": pid, "source": "synthetic" if i % 3 else "other", "prompt": "q <i>?</i>",
                                 "response_a": resp_a, "response_b": resp_b, "label": y}) + "\n")
            fr.write(make(pid, p_a).model_dump_json() + "\n")
    return pairs, results


def _check_report(out: Path) -> str:
    page = (out / "index.html").read_text(encoding="utf-8")
    parsed = _parse(page)
    names = [t for t, _ in parsed.tags]
    assert names[:2] == ["html", "head"] and "body" in names and "table" in names
    assert names.count("script") == 0 and "<script" not in page.lower()
    for _, attrs in parsed.tags:  # nothing is fetched from anywhere: images are data: URIs
        for key in ("src", "href"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (key, value)
    assert "@import" not in page and "url(" not in page
    assert sum(t == "img" and (a.get("src") or "").startswith("data:image/png;base64,") for t, a in parsed.tags) == 3
    for name in PNGS:
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["raw"]["n_scored"] > 0
    assert f"{metrics['raw']['headline']['accuracy']['point']:.3f}" in page
    return page


def test_write_report_renders_escapes_and_embeds(tmp_path: Path) -> None:
    pairs, results = _files(tmp_path)
    ev = evaluate_results(pairs, results, n_boot=50)
    assert ev.recalibrated is not None
    recs = {r.pair.id or "": r for r in read_pairs(pairs)}
    index = write_report(ev, tmp_path / "out", verdicts=read_results(results), pairs=recs, max_examples=5)
    assert index == tmp_path / "out" / "index.html"
    page = _check_report(tmp_path / "out")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;bold&lt;/b&gt; &amp; more" in page
    text = "".join(_parse(page).text)
    assert SCRIPT in text and "<b>bold</b>" in text  # shown to the reader as text
    assert "<b>" not in page  # the template itself uses <strong>; any <b> would be model text
    assert page.count('class="example"') == 5 and "p000" in page
    assert page.index("p000") < page.index('class="example"', page.index("p000"))  # most confident first
    for title in ("Per data source", "Per deciding rule", "Per layer of the deciding rule",
                  "Per top retrieved spec entry"):
        assert title in page
    assert ev.recalibrated.variant in page and "Selective judging" in page
    assert "ECE a perfectly calibrated judge shows at this n" in page and "uniform_15: 0." in page


def test_report_without_recalibration_or_pairs(tmp_path: Path) -> None:
    pairs, results = _files(tmp_path, n=12)  # too few for selective judging
    ev = evaluate_results(pairs, results, recalibrate="none", n_boot=20)
    assert ev.recalibrated is None
    write_report(ev, tmp_path / "out")
    page = _check_report(tmp_path / "out")
    assert "not estimated" in page and "written without the verdicts" in page


def test_report_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = _files(tmp_path)
    out = tmp_path / "rep"
    monkeypatch.setattr("sys.argv", ["judge", "report", str(results), "-l", str(pairs), "-o", str(out),
                                     "--bootstrap", "30", "--recalibrate", "none"])
    from judge.cli.main import main

    main()
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "report written to" in printed and "index.html" in printed
    page = _check_report(out)
    assert "&lt;script&gt;" in page
    assert "ECE (10 bins)" in page  # the breakdowns' bin count, beside the headline's 15
    monkeypatch.setattr("sys.argv", ["judge", "report", str(results), "-l", str(pairs), "-o", str(out),
                                     "--bootstrap", "10", "--recalibrate", "none", "--json"])
    main()
    data = json.loads(capsys.readouterr().out, parse_constant=_not_json)  # strict JSON: no NaN
    assert data["index"] == str(out / "index.html") and "ece_uniform_15" in data["headline"]["raw"]


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def test_json_output_writes_null_for_numbers_json_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    from judge.cli.common import emit_json

    emit_json({"a": math.nan, "b": [math.inf, 1.5, (-math.inf,)], "c": {"d": float("nan")}, "e": "NaN"})
    assert json.loads(capsys.readouterr().out, parse_constant=_not_json) == {
        "a": None, "b": [None, 1.5, [None]], "c": {"d": None}, "e": "NaN"}
