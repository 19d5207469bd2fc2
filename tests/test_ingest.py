"""Streaming ingest of large rulebooks: batches, bounded memory, idempotent re-runs, dump/ingest round trip."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from judge.errors import UnknownCitationError
from judge.rulebook import IngestReport, Rulebook
from judge.rules.model import Layer, Pair, Response, Rule, RulingCase
from tests.test_cli import run_cli


def _rules(n: int) -> list[Rule]:
    rules = [Rule(id=f"spec/rule-{i:04d}", layer=Layer.SPEC, title=f"Rule {i}",
                  text=f"Rule number {i} says responses about topic {i % 7} must be accurate.") for i in range(n)]
    rules.append(Rule(id="ruling/late", layer=Layer.RULING, title="A ruling", text="B is accurate.",
                      case=RulingCase(prompt="topic 3?", response_a=Response(text="wrong"),
                                response_b=Response(text="right"), holding="B", rationale="B is accurate.",
                                cites=("spec/rule-0003",))))
    return rules


class _Counting:
    """An iterator over rules that records how far the consumer has pulled it."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.pulled = 0

    def __iter__(self) -> Iterator[Rule]:
        for rule in self.rules:
            self.pulled += 1
            yield rule


def test_ingest_streams_batches_and_indexes_everything(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    source = _Counting(_rules(23))
    seen: list[tuple[int, int]] = []

    def on_batch(totals: IngestReport) -> None:
        # when batch k is committed, the source has been read at most to the end of batch k
        seen.append((totals.batches, source.pulled))

    report = rb.ingest(source, batch_size=5, on_batch=on_batch)
    assert (report.added, report.amended, report.unchanged, report.batches) == (24, 0, 0, 5)
    assert all(pulled <= batches * 5 for batches, pulled in seen)
    assert report.rulebook_version == rb.version
    assert rb.store.count() == 24
    assert rb.index is not None and rb.index.count() == 24
    got = rb.retrieve(Pair(prompt="topic 3?", response_a="wrong", response_b="right"), k=3)
    assert "ruling/late" in got.ids


def test_ingest_rerun_adds_no_version_and_amends_only_changes(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    rb.ingest(_rules(10), batch_size=4)
    version = rb.version
    again = rb.ingest(_rules(10), batch_size=3)
    assert (again.added, again.amended, again.unchanged) == (0, 0, 11)
    assert rb.version == version
    changed = _rules(10)
    changed[2] = changed[2].model_copy(update={"text": "Rule two now says something else entirely."})
    third = rb.ingest(changed, batch_size=4)
    assert (third.added, third.amended, third.unchanged) == (0, 1, 10)
    assert rb.get("spec/rule-0002").version == 2


def test_ingest_stops_at_a_bad_batch_and_keeps_the_ones_before(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    rules = _rules(6)
    bad = Rule(id="ruling/cites-nothing", layer=Layer.RULING, title="bad", text="x",
               case=RulingCase(prompt="p", response_a=Response(text="a"), response_b=Response(text="b"), holding="A",
                         rationale="x", cites=("spec/does-not-exist",)))
    with pytest.raises(UnknownCitationError, match="spec/does-not-exist"):
        rb.ingest([*rules[:4], bad, *rules[4:]], batch_size=4)
    assert rb.store.count() == 4  # the first batch landed whole, the failing one not at all
    assert rb.store.exists(["ruling/cites-nothing"]) == set()


def test_sync_index_pages_through_the_change_log(hash_rulebook: Rulebook) -> None:
    rb = Rulebook(hash_rulebook.store, hash_rulebook.index)
    rb.store.commit([(rule, "add") for rule in _rules(12)])  # straight to SQL: the index is behind
    assert rb.index is not None and rb.index.count() == 0
    assert rb.sync_index(page_size=5) == 13
    assert rb.index.count() == 13
    assert rb.sync_index(page_size=5) == 0  # up to date


def test_cli_dump_then_ingest_round_trips(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    source_db, target_db = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    code, _, _ = run_cli(["rulebook", "load", str(Path(__file__).parent.parent / "rulebook")], monkeypatch, capsys,
                         source_db)
    assert code == 0
    dumped = tmp_path / "rules.jsonl"
    code, out, _ = run_cli(["rulebook", "dump", str(dumped), "--json"], monkeypatch, capsys, source_db)
    assert code == 0
    summary = json.loads(out)
    assert summary["rules"] == len(dumped.read_text(encoding="utf-8").splitlines()) > 250
    code, out, _ = run_cli(["rulebook", "ingest", str(dumped), "--batch-size", "50", "--json"], monkeypatch,
                           capsys, target_db)
    assert code == 0, out
    report = json.loads(out)
    assert report["added"] == summary["rules"] and report["batches"] == -(-summary["rules"] // 50)
    code, out, _ = run_cli(["rulebook", "dump", str(tmp_path / "again.jsonl"), "--json"], monkeypatch, capsys,
                           target_db)
    assert (tmp_path / "again.jsonl").read_text(encoding="utf-8").count("\n") == summary["rules"]


def test_cli_ingest_names_the_bad_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "rules.jsonl"
    good = [rule.model_dump_json() for rule in _rules(3)[:3]]
    path.write_text("\n".join([*good, json.dumps({"id": "spec/x", "layer": "spec"})]) + "\n", encoding="utf-8")
    code, _, err = run_cli(["rulebook", "ingest", str(path), "--batch-size", "2"], monkeypatch, capsys, sqlite_url)
    assert code != 0
    assert "rules.jsonl" in err and ":4" in err and "title" in err


def test_dependency_order_puts_overruled_and_cited_rulings_first(hash_rulebook: Rulebook, sqlite_url: str,
                                                                  tmp_path: Path) -> None:
    rb = hash_rulebook
    rb.ingest(_rules(4))
    rb.add_ruling(prompt="Is 2+2 5?", response_a="yes", response_b="no", holding="A", rationale="first take",
                  rule_id="ruling/z-old")
    rb.add_ruling(prompt="Is 2+2 5?", response_a="yes", response_b="no", holding="B", rationale="corrected",
                  rule_id="ruling/m-middle", overrules=["ruling/z-old"])
    rb.add_ruling(prompt="Is 2+2 four?", response_a="no", response_b="yes", holding="B", rationale="see m",
                  rule_id="ruling/a-new", cites=["ruling/m-middle", "spec/rule-0001"])
    order = [rule.id for rule in rb.rules_in_dependency_order(page_size=1)]
    assert sorted(order) == sorted(rule.id for rule in rb.rules())
    assert order.index("ruling/z-old") < order.index("ruling/m-middle") < order.index("ruling/a-new")
    assert order.index("spec/rule-0001") < order.index("ruling/late")

    from judge.testing import hash_rulebook as make

    copy = make(f"sqlite:///{tmp_path / 'copy.db'}")
    report = copy.ingest(rb.rules_in_dependency_order(), batch_size=1)
    assert report.added == len(order)
    assert copy.get("ruling/z-old").status == rb.get("ruling/z-old").status
