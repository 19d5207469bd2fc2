"""Streaming ingest of large rulebooks: batches, bounded memory, idempotent re-runs, dump/ingest round trip."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from judge.errors import OverruleError, UnknownCitationError
from judge.rulebook import IngestReport, Rulebook
from judge.rules.model import ChangeKind, Layer, Pair, Response, Rule, RuleStatus, RulingCase
from judge.store import PendingChange
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


def _ruling(rule_id: str, holding: str, *, overrules: tuple[str, ...] = (), status: str = "active") -> Rule:
    return Rule(id=rule_id, layer=Layer.RULING, title=rule_id, text=f"{holding} is right.", status=status,
                case=RulingCase(prompt="Is 2+2 5?", response_a=Response(text="yes"), response_b=Response(text="no"),
                                holding=holding, rationale=f"{holding} is right.", overrules=overrules))


def test_ingest_never_makes_an_overruled_ruling_active_again(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    rb.add_ruling(prompt="Is 2+2 5?", response_a="yes", response_b="no", holding="A", rationale="first take",
                  rule_id="ruling/old")
    rb.add_ruling(prompt="Is 2+2 5?", response_a="yes", response_b="no", holding="B", rationale="corrected",
                  rule_id="ruling/new", overrules=["ruling/old"])
    old_dump = rb.get("ruling/old").model_copy(update={"status": RuleStatus.ACTIVE, "version": 1})
    report = rb.ingest([*_rules(4)[:2], old_dump], batch_size=10)
    assert (report.added, report.amended, report.unchanged, report.not_reinstated) == (2, 0, 1, 1)
    assert rb.get("ruling/old").status == "overruled" and rb.get("ruling/old").version == 2
    changed = old_dump.model_copy(update={"title": "a new title"})  # a text load (`load`) takes the same path
    synced = rb.store.sync([changed])
    assert synced.amended == 1 and synced.not_reinstated == ("ruling/old",)
    assert (rb.get("ruling/old").status, rb.get("ruling/old").title) == ("overruled", "a new title")
    # the write path itself refuses it too (any other caller)
    with pytest.raises(OverruleError, match="ruling/old.*overruled.*active again"):
        rb.store.commit([PendingChange(changed.model_copy(update={"title": "again"}), ChangeKind.AMEND)])


def test_ingest_overrules_what_a_ruling_names(hash_rulebook: Rulebook) -> None:
    """A ruling ingested with ``overrules`` overrules those rulings in the same batch, as add_ruling does:
    stored ones, ones earlier in the stream and ones later in its own batch."""
    rb = hash_rulebook
    rb.add_ruling(prompt="Is 2+2 5?", response_a="yes", response_b="no", holding="A", rationale="first take",
                  rule_id="ruling/stored", author="alice")
    report = rb.ingest([_ruling("ruling/earlier", "A"),
                        _ruling("ruling/by-stored", "B", overrules=("ruling/stored",)),
                        _ruling("ruling/by-earlier", "B", overrules=("ruling/earlier",))],
                       batch_size=1, author="bob")
    assert (report.added, report.amended, report.overruled) == (3, 0, 2)
    for rid, by in (("ruling/stored", "ruling/by-stored"), ("ruling/earlier", "ruling/by-earlier")):
        rule = rb.get(rid)
        assert rule.status == "overruled" and rule.author == "bob"
        _, last = rb.history(rid)[-1]
        assert (last.kind.value, last.reason) == ("overrule", f"overruled by {by}")
    # forward reference inside one text load: the overruled ruling comes after the one naming it
    report2 = rb.store.sync([_ruling("ruling/fwd-by", "B", overrules=("ruling/fwd",)), _ruling("ruling/fwd", "A")])
    assert (report2.added, report2.amended, report2.overruled) == (2, 0, 1)
    assert rb.store.get("ruling/fwd").status == "overruled"
    # a dump that already carries the overrule adds nothing more
    again = rb.ingest(list(rb.rules_in_dependency_order()), batch_size=3)
    assert again.added == again.amended == again.overruled == 0


def test_cli_ingest_keeps_overruled_rulings_overruled_and_re_runs(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                                   sqlite_url: str) -> None:
    path = tmp_path / "rules.jsonl"  # a hand-written file: the overruled ruling is listed as active
    path.write_text("\n".join(r.model_dump_json() for r in [
        _ruling("ruling/old", "A"), _ruling("ruling/new", "B", overrules=("ruling/old",))]) + "\n", encoding="utf-8")
    code, out, _ = run_cli(["rulebook", "ingest", str(path), "--batch-size", "1", "--json"], monkeypatch, capsys,
                           sqlite_url)
    assert code == 0 and (json.loads(out)["added"], json.loads(out)["overruled"]) == (2, 1)
    code, out, _ = run_cli(["rulebook", "ingest", str(path), "--batch-size", "1", "--json"], monkeypatch, capsys,
                           sqlite_url)  # re-running the same file changes nothing
    report = json.loads(out)
    assert code == 0 and (report["added"], report["amended"], report["unchanged"], report["not_reinstated"]) \
        == (0, 0, 2, 1)
    stale = tmp_path / "stale.jsonl"
    stale.write_text("\n".join(r.model_dump_json() for r in [*_rules(4)[:2], _ruling("ruling/old", "A")]) + "\n",
                     encoding="utf-8")
    code, out, _ = run_cli(["rulebook", "ingest", str(stale), "--json"], monkeypatch, capsys, sqlite_url)
    assert code == 0 and json.loads(out)["not_reinstated"] == 1
    code, out, _ = run_cli(["rulebook", "show", "ruling/old", "--json"], monkeypatch, capsys, sqlite_url)
    assert json.loads(out)["status"] == "overruled"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_ruling("ruling/x", "A", overrules=("spec/rule-0000",)).model_dump_json() + "\n", encoding="utf-8")
    code, _, err = run_cli(["rulebook", "ingest", str(bad)], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "bad.jsonl:1" in err and "not a ruling" in " ".join(err.split())


def test_ingest_overrules_a_stored_ruling_whose_citations_are_not_in_the_file(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    rb.ingest(_rules(4)[:2])
    rb.add_ruling(prompt="Is 2+2 5?", response_a="yes", response_b="no", holding="B", rationale="no",
                  rule_id="ruling/cites", cites=["spec/rule-0001"])
    report = rb.ingest([_ruling("ruling/over", "B", overrules=("ruling/cites",))])
    assert (report.added, report.overruled) == (1, 1) and rb.get("ruling/cites").status == "overruled"


def test_contradictions_finds_what_ingest_let_in_once_per_pair(hash_rulebook: Rulebook) -> None:
    rb = hash_rulebook
    rb.add_ruling(prompt="Is 2+2 5?", response_a="yes", response_b="no", holding="B", rationale="no is right",
                  rule_id="ruling/stored")
    rb.ingest([_ruling("ruling/says-a", "A"), _ruling("ruling/agrees", "B"), *_rules(4)[:1]])  # not checked
    found = list(rb.contradictions())
    assert sorted((c.ruling_id, c.other.ruling_id) for c in found) == [("ruling/agrees", "ruling/says-a"),
                                                                       ("ruling/says-a", "ruling/stored")]
    assert all({c.holding, c.other.holding} == {"A", "B"} for c in found)
    ticks: list[None] = []
    only = list(rb.contradictions(["ruling/says-a", "spec/rule-0000", "ruling/none"],
                                  on_ruling=lambda: ticks.append(None)))
    assert {c.other.ruling_id for c in only} == {"ruling/agrees", "ruling/stored"} and len(ticks) == 3
    rb.overrule("ruling/says-a", reason="wrong")
    assert list(rb.contradictions()) == []


def test_cli_conflicts_and_ingest_check_conflicts(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  sqlite_url: str) -> None:
    path = tmp_path / "rules.jsonl"
    path.write_text("\n".join(r.model_dump_json() for r in [_ruling("ruling/x", "B")]) + "\n", encoding="utf-8")
    code, out, _ = run_cli(["rulebook", "ingest", str(path), "--check-conflicts", "--json"], monkeypatch, capsys,
                           sqlite_url)
    assert code == 0 and json.loads(out)["checked_rulings"] == 1 and json.loads(out)["contradictions"] == []
    more = tmp_path / "more.jsonl"
    more.write_text(_ruling("ruling/y", "A").model_dump_json() + "\n", encoding="utf-8")
    code, out, _ = run_cli(["rulebook", "ingest", str(more), "--check-conflicts", "--json"], monkeypatch, capsys,
                           sqlite_url)
    report = json.loads(out)
    assert code == 1 and report["added"] == 1  # written, then reported
    assert [(c["ruling_id"], c["holding"], c["other_id"], c["other_holding"]) for c in report["contradictions"]] \
        == [("ruling/y", "A", "ruling/x", "B")]
    code, out, _ = run_cli(["rulebook", "conflicts"], monkeypatch, capsys, sqlite_url)
    assert code == 1 and "1 contradiction(s) among 2 ruling(s) checked" in " ".join(out.split())
    assert "ruling/x" in out and "ruling/y" in out
    code, _, err = run_cli(["rulebook", "conflicts", "ruling/nope"], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "no such ruling: ruling/nope" in err
    code, _, err = run_cli(["rulebook", "conflicts", "spec/rule-0000"], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "not a ruling id: spec/rule-0000" in err
    code, _, err = run_cli(["rulebook", "overrule", "ruling/y", "--reason", " "], monkeypatch, capsys, sqlite_url)
    assert code == 2 and "without a reason" in err
    assert run_cli(["rulebook", "overrule", "ruling/y", "--reason", "wrong"], monkeypatch, capsys, sqlite_url)[0] == 0
    code, out, _ = run_cli(["rulebook", "conflicts", "--json"], monkeypatch, capsys, sqlite_url)
    assert code == 0 and json.loads(out) == {"checked_rulings": 1, "contradictions": []}
