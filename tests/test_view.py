"""The results viewer: the rows it builds, the page it renders (escaping, filter data, labels), the CLI and
the local server. The page in a real browser is tested in test_view_browser.py."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

import pytest

from judge.errors import InputError
from judge.judging.checks import CheckResult
from judge.judging.pairs_io import read_pairs
from judge.judging.pairwise import Distribution
from judge.judging.verdict import Citation, Failure, JudgeConfig, OrderResult, TraceEntry, Verdict
from judge.rules.model import Layer, Rule
from judge.view import PageServer, pair_views, render_view, rule_info, serve_page
from tests.test_cli import invoke

REPO = Path(__file__).resolve().parent.parent
XSS = '<script>alert(1)</script><img src=x onerror="window.pwned=1">'
CFG = JudgeConfig(backend="fake", model="m", template_version="t")


def _order(first: Literal["A", "B"], p_a: float) -> OrderResult:
    return OrderResult(shown_first=first, distribution=Distribution(a=p_a, tie=0.0, b=1 - p_a), answer_mass=0.99,
                       top_logprobs=[], prompt_tokens=10, completion_tokens=1, latency_s=0.1)


def verdicts() -> list[Verdict]:
    """Four verdicts covering the filters: agreeing orders, disagreeing orders + escalated, a rule-checks
    verdict with a citation and trace, and a failure."""
    checks_cfg = JudgeConfig(backend="fake", model="m", template_version="t", method="checks")
    return [
        Verdict(pair_id="p-agree", winner="A", probabilities=Distribution(a=0.9, tie=0.0, b=0.1), config=CFG,
                cache_key="k1",
                orders=[_order("A", 0.92), _order("B", 0.88)], position_inconsistent=False),
        Verdict(pair_id="p-disagree", winner="B", probabilities=Distribution(a=0.45, tie=0.0, b=0.55), config=CFG,
                cache_key="k2", orders=[_order("A", 0.7), _order("B", 0.2)], position_inconsistent=True,
                escalated=True),
        Verdict(pair_id="p-checks", winner="B", probabilities=Distribution(a=0.3, tie=0.0, b=0.7), config=checks_cfg,
                cache_key="k3", decided_by="rules", deciding_rule="spec/be-honest", rationale=XSS,
                citations=[Citation(rule_id="spec/be-honest", layer="spec", authority="user", version=2,
                                    title="Be honest", excerpt="short excerpt", favours="B", note=XSS)],
                checks=[CheckResult(rule_id="spec/be-honest", question="Does it lie?", expect="no",
                                    p_yes_a=0.8, p_yes_b=0.1),
                        CheckResult(rule_id="holistic", question="Is it better?", expect="yes",
                                    p_yes_a=None, p_yes_b=0.5, failure="reply did not parse")],
                precedence_trace=[TraceEntry(winner="spec/be-honest", loser="spec/style", criterion="layer",
                                             reason="equal layer; more specific")],
                retrieved=[{"id": "spec/be-honest", "layer": "spec", "score": 0.4}]),
        Verdict(pair_id="p-failed", winner=None, probabilities=None, config=CFG, cache_key="k4",
                failure=Failure(stage="verdict", reason="no answer token in the reply", raw=XSS)),
    ]


def pairs_file(tmp_path: Path, *, labels: bool = True) -> Path:
    rows = [
        {"id": "p-agree", "prompt": "Say hi", "response_a": "hi", "response_b": "no", "label": "A"},
        {"id": "p-disagree", "prompt": "2+2?", "response_a": "4", "response_b": "5", "label": "A"},
        {"id": "p-checks", "prompt": XSS, "response_a": XSS, "response_b": "plain <b>text</b>", "label": "B"},
        {"id": "p-failed", "prompt": "x", "response_a": "y", "response_b": "z", "label": "tie"},
    ]
    path = tmp_path / ("labels.jsonl" if labels else "pairs.jsonl")
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if labels or k != "label"}) + "\n"
                            for r in rows))
    return path


class _Rows(HTMLParser):
    """The attributes of every ``tr.pair-row`` and every ``<script>`` element's text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "pair-row" in (a.get("class") or ""):
            self.rows.append(a)
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(page: str) -> _Rows:
    parser = _Rows()
    parser.feed(page)
    return parser


# ---------------------------------------------------------------- rows (pure)
def test_rows_carry_what_the_filters_need(tmp_path: Path) -> None:
    pairs = {r.pair.id or "": r for r in read_pairs(pairs_file(tmp_path))}
    views = {v.pair_id: v for v in pair_views(verdicts(), pairs)}
    assert views["p-agree"].agreement == "agree" and views["p-agree"].correct is True
    assert views["p-disagree"].agreement == "disagree" and views["p-disagree"].escalated
    assert views["p-disagree"].correct is False
    assert views["p-checks"].agreement == "" and views["p-checks"].rule_ids == ["spec/be-honest"]
    check = views["p-checks"].checks[0]
    assert (check.layer, check.favours) == ("spec", "B")  # expects "no": B's lower P(yes) complies better
    assert views["p-checks"].checks[1].favours == "" and views["p-checks"].checks[1].failure
    assert views["p-failed"].failure_stage == "verdict" and views["p-failed"].correct is None
    assert views["p-failed"].confidence is None and views["p-failed"].winner == ""


def test_rows_use_the_rulebook_text_when_given() -> None:
    rule = Rule(id="spec/be-honest", layer=Layer.SPEC, title="Be honest", text="The full text of the rule.")
    [_, _, checked, _] = pair_views(verdicts(), None, rule_info([rule]))
    assert checked.citations[0].text == "The full text of the rule."
    assert checked.retrieved[0].text == "The full text of the rule."
    assert checked.prompt is None  # no pairs given: no texts, said on the page


# ---------------------------------------------------------------- page
def test_texts_from_users_and_models_are_escaped(tmp_path: Path) -> None:
    page = render_view(verdicts(), pairs=pairs_file(tmp_path, labels=False))
    parsed = parse(page)
    assert len(parsed.scripts) == 1  # only the page's own script
    assert "alert(1)" not in parsed.scripts[0]
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "plain &lt;b&gt;text&lt;/b&gt;" in page


def test_the_script_is_the_only_one_the_policy_allows(tmp_path: Path) -> None:
    page = render_view(verdicts())
    script = parse(page).scripts[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    assert f"script-src 'sha256-{digest}'" in policy.group(1) and "default-src 'none'" in policy.group(1)
    assert "http://" not in page and "https://" not in page  # no network asset


def test_filter_data_on_each_row(tmp_path: Path) -> None:
    rows = {r["id"]: r for r in parse(render_view(verdicts())).rows}
    assert [rows[f"row-{i}"]["data-disagree"] for i in range(4)] == ["0", "1", "0", "0"]
    assert [rows[f"row-{i}"]["data-failed"] for i in range(4)] == ["0", "0", "0", "1"]
    assert [rows[f"row-{i}"]["data-escalated"] for i in range(4)] == ["0", "1", "0", "0"]
    assert [rows[f"row-{i}"]["data-rules"] for i in range(4)] == ["", "", "spec/be-honest", ""]
    assert float(rows["row-1"]["data-confidence"] or "nan") == pytest.approx(0.55)
    assert rows["row-3"]["data-confidence"] == ""


def test_labels_add_accuracy_and_the_calibration_plots(tmp_path: Path) -> None:
    page = render_view(verdicts(), pairs_file(tmp_path), n_boot=50)
    rows = {r["id"]: r for r in parse(page).rows}
    assert [rows[f"row-{i}"]["data-wrong"] for i in range(4)] == ["0", "1", "0", "0"]
    metrics = re.search(r'<table id="metrics">(.*?)</table>', page, re.S)
    assert metrics is not None
    accuracy = re.search(r"<td>accuracy</td><td class=\"num\">([0-9.]+)</td>", metrics.group(1))
    # Scored: p-agree and p-checks, both right; the wrong p-disagree is escalated (counted, never scored).
    assert accuracy is not None and float(accuracy.group(1)) == pytest.approx(1.0)
    assert "1 escalated" in page and "1 failed" in page
    assert page.count("data:image/png;base64,") == 3
    assert 'id="f-wrong"' in page
    assert 'id="f-wrong"' not in render_view(verdicts())  # no labels: no "wrong" filter


def test_labels_with_nothing_to_score_still_give_the_page(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every labelled verdict escalated or failed (an uncertified calibrator with --abstain): the verdicts are
    still shown, without metrics, and the log says why (it was a traceback)."""
    unscored = [v for v in verdicts() if v.escalated or v.failure is not None]
    page = render_view(unscored, pairs_file(tmp_path), n_boot=50)
    assert {r["id"] for r in parse(page).rows} == {"row-0", "row-1"}
    assert '<table id="metrics">' not in page and "every labelled verdict failed or was escalated" in caplog.text


def test_a_labels_file_with_an_unlabelled_pair_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        render_view(verdicts(), pairs_file(tmp_path, labels=False))
    assert err.value.line == 1 and err.value.field == "label" and "pairs.jsonl:1" in str(err.value)


@pytest.mark.parametrize("name", ["modelspec-checks.jsonl", "hh-rules.jsonl", "pandalm-bare.jsonl"])
def test_real_result_files_render_one_row_per_pair(name: str) -> None:
    path = REPO / "evals" / "results" / name
    ids = {json.loads(line)["pair_id"] for line in path.read_text().splitlines() if line.strip()}
    page = render_view(path)
    assert len(parse(page).rows) == len(ids)


# ---------------------------------------------------------------- CLI
def _results(tmp_path: Path) -> Path:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(v.model_dump_json() + "\n" for v in verdicts()))
    return path


def test_cli_writes_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    results = _results(tmp_path)
    code, _, err = invoke(["view", str(results), "--labels", str(pairs_file(tmp_path)),
                           "-o", str(tmp_path / "out" / "page.html")], monkeypatch, capsys)
    assert code == 0, err
    page = (tmp_path / "out" / "page.html").read_text()
    assert len(parse(page).rows) == 4 and 'id="metrics"' in page
    code, _out, err = invoke(["view", str(results)], monkeypatch, capsys)
    assert code == 0 and (tmp_path / "results.html").exists()


def test_cli_bad_result_line_exits_2_naming_file_line_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    results = _results(tmp_path)
    lines = results.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["winner"] = "C"
    lines[1] = json.dumps(bad)
    results.write_text("\n".join(lines) + "\n")
    code, _out, err = invoke(["view", str(results)], monkeypatch, capsys)
    assert code == 2
    assert f"{results}:2" in err and "winner" in err and "Traceback" not in err
    assert not (tmp_path / "results.html").exists()


def test_cli_bad_labels_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "p-agree", "prompt": "x", "response_a": "a", "response_b": "b", "label": "A"}\n'
                      '{"id": "p2", "prompt": 3}\n')
    code, _, err = invoke(["view", str(_results(tmp_path)), "--labels", str(labels)], monkeypatch, capsys)
    assert code == 2 and f"{labels}:2" in err and "Traceback" not in err


# ---------------------------------------------------------------- server
def test_server_answers_the_page_and_404_elsewhere() -> None:
    server = PageServer("<p>the page</p>", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(server.url, timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"<p>the page</p>"
            assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + "other", timeout=10)
        assert err.value.code == 404
        err.value.close()
        with urllib.request.urlopen(urllib.request.Request(server.url, method="HEAD"), timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b""
            assert resp.headers["Content-Length"] == str(len(b"<p>the page</p>"))
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(server.url, data=b"x", method="POST"), timeout=10)
        assert err.value.code == 405 and err.value.headers["Allow"] == "GET, HEAD"
        err.value.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_stop_while_a_request_is_dispatched_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM's stop raised while the server hands a request to its thread ends serving (the server swallows
    an Exception raised there, so the stop must not be one)."""
    from judge.view import server as server_mod

    def dispatch(self: PageServer, request: object, client_address: object) -> None:
        raise server_mod._Stop  # what the SIGTERM handler raises, arriving during the dispatch

    monkeypatch.setattr(PageServer, "process_request", dispatch)
    urls: list[str] = []
    thread = threading.Thread(target=serve_page, args=("<p>x</p>",), kwargs={"on_ready": urls.append}, daemon=True)
    thread.start()
    for _ in range(200):
        if urls:
            break
        time.sleep(0.05)
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(urls[0], timeout=10)
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "from judge.cli.main import main; main()", "view",
                             str(_results(tmp_path)), "--serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        assert url is not None, line + proc.stderr.read() if proc.stderr else line
        with urllib.request.urlopen(url.group(1), timeout=30) as resp:
            assert b'id="pairs"' in resp.read()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
