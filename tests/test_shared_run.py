"""Two workers, one batch: `judge run --shared` divides the pairs through the database.

Every pair is judged exactly once (counted on the fake backends' requests), the batch holds one verdict per
pair, and a worker killed with SIGKILL mid-run loses nothing: its leases run out and the other worker takes
its pairs over. Runs on a tmp SQLite file and, when ``JUDGE_TEST_PG_URL`` is set, on PostgreSQL too (that
database is emptied before each test, as in test_store.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from judge.backends.fake import FakeBackend, FakeReply
from judge.errors import InputError
from judge.judging.engine import Judge, bare_config
from judge.judging.shared import SharedRunReport, batch_fingerprint, batch_id_for, run_shared
from judge.records import PairRecord, read_pairs
from judge.rules.model import Pair
from judge.store import migrate, open_engine
from judge.store.claims import WorkClaims
from judge.store.judgments import JudgmentStore
from judge.store.schema import WorkClaimRow
from judge.verdicts import Distribution, Failure, JudgeConfig, Verdict
from tests.test_store import BACKENDS, backend_url

ROOT = Path(__file__).resolve().parent.parent
GOOD = "Water boils at 100 degrees Celsius at sea level."
BAD = "Water boils at 50 degrees Celsius, trust me."


# ----------------------------------------------------------------------------------------------- helpers
@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return backend_url(request.param, sqlite_url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    made = open_engine(db_url)
    migrate(made)
    yield made
    made.dispose()


def pair_line(i: int) -> str:
    a, b = (GOOD, BAD) if i % 2 else (BAD, GOOD)  # odd pairs: A wins; even: B
    return json.dumps({"id": f"p{i:02d}", "prompt": f"[p{i:02d}] At what temperature does water boil?",
                       "response_a": a, "response_b": b})


def write_pairs(path: Path, n: int) -> Path:
    path.write_text("".join(pair_line(i) + "\n" for i in range(n)), encoding="utf-8")
    return path


def records(n: int) -> list[PairRecord]:
    return [PairRecord(pair=Pair.model_validate(json.loads(pair_line(i))), label=None, source=None, line=i + 1)
            for i in range(n)]


def block(body: dict[str, Any], tag: str) -> str:
    user = body["messages"][1]["content"]
    return user.split(f"<{tag}>\n", 1)[1].split(f"\n</{tag}>", 1)[0]


def pair_of(body: dict[str, Any]) -> str:
    return block(body, "prompt").split("]", 1)[0].removeprefix("[")


def fair(delay_s: float = 0.0) -> Callable[[dict[str, Any]], FakeReply]:
    """Picks the slot holding the correct answer, after ``delay_s``."""
    def script(body: dict[str, Any]) -> FakeReply:
        time.sleep(delay_s)
        win = "A" if "100 degrees" in block(body, "response_a") else "B"
        lose = "B" if win == "A" else "A"
        return FakeReply(text=win, top_logprobs=[(win, math.log(0.9)), (lose, math.log(0.1))])

    return script


def worker(url: str, batch: str, name: str, *, delay_s: float = 0.0, lease_s: float = 30.0) -> tuple[
        Judge, FakeBackend, WorkClaims]:
    """One worker as a separate process would have it: its own engine, backend and judge."""
    engine = open_engine(url)
    migrate(engine)
    fb = FakeBackend(fair(delay_s))
    judge = Judge(fb, None, config=bare_config(fb), store=JudgmentStore(engine))
    return judge, fb, WorkClaims(engine, batch, worker_id=name, lease_s=lease_s)


def expected_winner(pair_id: str) -> str:
    return "A" if int(pair_id[1:]) % 2 else "B"


def verdict(pair_id: str, failure: str | None = None) -> Verdict:
    return Verdict(pair_id=pair_id, winner=None if failure else "A", cache_key=f"{pair_id:0>64}",
                   probabilities=None if failure else Distribution(a=0.9, tie=0.0, b=0.1),
                   failure=Failure(stage=failure, reason="boom") if failure else None,  # type: ignore[arg-type]
                   config=JudgeConfig(backend="fake", model="m", template_version="t"))


def rows(engine: Engine, batch: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.pair_id: r for r in conn.execute(select(WorkClaimRow).where(WorkClaimRow.batch_id == batch))}


# ====================================================================================== the claim protocol
def test_claims_are_exclusive_in_input_order_and_a_lost_claim_cannot_finish(engine: Engine) -> None:
    ids = [f"p{i}" for i in range(6)]
    one = WorkClaims(engine, "b", worker_id="one", lease_s=2.0)  # outlasts a stall of a busy machine
    two = WorkClaims(engine, "b", worker_id="two", lease_s=30)
    assert one.open(ids, "f" * 64) == 0 and two.open(ids, "f" * 64) == 0
    assert [c.pair_id for c in one.claim(2)] == ["p0", "p1"]
    assert [c.pair_id for c in two.claim(3)] == ["p2", "p3", "p4"]
    assert two.finish("p2", verdict("p2")) and not one.finish("p2", verdict("p2"))  # not one's to finish
    p = one.progress()
    assert (p.total, p.done, p.held, p.reclaimed) == (6, 1, 4, 0) and p.next_expiry is not None

    time.sleep(2.1)  # one's leases run out (it stopped renewing)
    taken = two.claim(3)
    assert [(c.pair_id, c.taken_over) for c in taken] == [("p0", True), ("p1", True), ("p5", False)]
    assert not one.finish("p0", verdict("p0"))  # lost: its verdict is not the batch's
    assert one.renew(["p1"]) == 0
    assert two.finish("p0", verdict("p0")) and two.finish("p0", verdict("p0"))  # a retried write stays True
    assert rows(engine, "b")["p0"].claims == 2 and two.progress().reclaimed == 2

    assert two.release(["p1"]) == 1  # given back: claimable at once, and not a takeover
    assert [(c.pair_id, c.taken_over) for c in one.claim(5)] == [("p1", False)]
    assert [v.pair_id for v in two.results()] == ["p0", "p2"]  # the decided ones, in input order


def test_workers_opening_a_new_batch_at_the_same_moment_create_it_once(db_url: str) -> None:
    ids = [f"p{i}" for i in range(2000)]
    engines = [open_engine(db_url) for _ in range(3)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def join(engine: Engine) -> None:
        try:
            barrier.wait(timeout=60)
            WorkClaims(engine, "b").open(ids, "f" * 64)
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    migrate(engines[0])
    threads = [threading.Thread(target=join, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert WorkClaims(engines[0], "b").progress().total == len(ids)
    for engine in engines:
        engine.dispose()


def test_renewed_leases_do_not_run_out(engine: Engine) -> None:
    one = WorkClaims(engine, "b", worker_id="one", lease_s=1.5)
    two = WorkClaims(engine, "b", worker_id="two")
    one.open(["p0"], "f" * 64)
    assert [c.pair_id for c in one.claim(1)] == ["p0"]
    for _ in range(3):
        time.sleep(0.6)  # three beats: 1.8 s in all, longer than one lease
        assert one.renew(["p0"]) == 1
    assert two.claim(1) == []


def test_a_batch_name_is_bound_to_its_pairs_and_judge(engine: Engine) -> None:
    WorkClaims(engine, "nightly").open(["p0", "p1"], "a" * 64)
    with pytest.raises(InputError, match="nightly.*other pairs or another judge"):
        WorkClaims(engine, "nightly").open(["p0", "p1"], "b" * 64)
    with pytest.raises(InputError, match="unique"):
        WorkClaims(engine, "other").open(["p0", "p0"], "a" * 64)
    with pytest.raises(InputError, match="lease"):
        WorkClaims(engine, "other", lease_s=0)


def test_transient_failures_reopen_and_a_restarted_worker_id_gives_up_its_old_claims(engine: Engine) -> None:
    ids = ["p0", "p1", "p2"]
    first = WorkClaims(engine, "b", worker_id="w")
    first.open(ids, "f" * 64)
    first.claim(3)
    assert first.finish("p0", verdict("p0", failure="backend"))
    assert first.finish("p1", verdict("p1", failure="verdict"))  # deterministic: not retried
    again = WorkClaims(engine, "b", worker_id="w")  # the same id after a restart: p2 is nobody's now
    assert again.open(ids, "f" * 64, reopen_stages={"backend", "budget"}) == 1
    time.sleep(0.01)
    assert sorted((c.pair_id, c.taken_over) for c in again.claim(3)) == [("p0", False), ("p2", True)]


# ============================================================================= two workers, one batch
def _in_thread(fn: Callable[[], SharedRunReport], results: list[SharedRunReport], errors: list[BaseException],
               barrier: threading.Barrier) -> threading.Thread:
    def target() -> None:
        try:
            barrier.wait(timeout=60)
            results.append(fn())
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_two_workers_judge_every_pair_exactly_once(db_url: str) -> None:
    n = 40
    recs = records(n)
    workers = [worker(db_url, "together", name, delay_s=0.005) for name in ("one", "two")]
    reports: list[SharedRunReport] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)
    threads = [_in_thread(lambda j=j, c=c: asyncio.run(run_shared(j, recs, c, concurrency=3)),  # type: ignore[misc]
                          reports, errors, barrier) for j, _, c in workers]
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    asked = Counter(pair_of(body) for _, fb, _ in workers for body in fb.history)
    assert asked == Counter({f"p{i:02d}": 2 for i in range(n)})  # both orders of every pair, once
    assert all(len(fb.history) > 0 for _, fb, _ in workers)  # the work was divided
    assert sum(r.judged for r in reports) == n and all(r.complete and r.batch_done == n for r in reports)
    assert all(r.reclaimed == r.rejudged == r.lost == 0 for r in reports)
    assert {r.skipped for r in reports} == {n - r.judged for r in reports}

    claims = workers[0][2]
    results = list(claims.results())
    assert [v.pair_id for v in results] == [f"p{i:02d}" for i in range(n)]  # one per pair, input order
    assert all(v.winner == expected_winner(v.pair_id or "") for v in results)
    assert claims.progress().reclaimed == 0
    assert JudgmentStore(claims.engine).count() == n  # nothing judged (or recorded) twice
    for _, _, c in workers:
        c.engine.dispose()


def test_a_second_run_of_a_finished_batch_asks_nothing_and_retries_transient_failures(db_url: str) -> None:
    recs = records(6)
    judge, fb, claims = worker(db_url, "b", "one")
    fb._script = lambda body: FakeReply(status=503) if pair_of(body) == "p03" else fair()(body)
    first = asyncio.run(run_shared(judge, recs, claims, concurrency=2))
    assert first.complete and first.failed == 1

    judge2, fb2, claims2 = worker(db_url, "b", "two")
    second = asyncio.run(run_shared(judge2, recs, claims2, concurrency=2))
    assert {pair_of(b) for b in fb2.history} == {"p03"}  # only the transient failure was asked again
    assert (second.reopened, second.judged, second.failed, second.skipped) == (1, 1, 0, 5)
    assert [v.failure for v in claims2.results()] == [None] * 6
    claims.engine.dispose()
    claims2.engine.dispose()


def test_a_budget_stops_one_worker_and_another_finishes_the_batch(db_url: str) -> None:
    recs = records(10)
    judge, _, claims = worker(db_url, "b", "one")
    per_pair = 2 * (50 + 1)
    first = asyncio.run(run_shared(judge, recs, claims, concurrency=1, max_tokens=int(2.5 * per_pair)))
    assert first.stopped_by_budget and not first.complete and (first.judged, first.batch_done) == (3, 3)
    assert claims.progress().held == 0  # nothing left claimed: the rest is free for others at once

    out_of_time = asyncio.run(run_shared(judge, recs, claims, concurrency=1, max_seconds=0))  # a time budget
    assert out_of_time.stopped_by_budget and (out_of_time.judged, out_of_time.batch_done) == (0, 3)

    judge2, fb2, claims2 = worker(db_url, "b", "two")
    second = asyncio.run(run_shared(judge2, recs, claims2, concurrency=4))
    assert second.complete and (second.judged, second.skipped, second.reclaimed) == (7, 3, 0)
    assert len(fb2.history) == 2 * 7
    claims.engine.dispose()
    claims2.engine.dispose()


def test_a_comparison_that_raises_stops_the_worker_and_hands_its_pairs_back(db_url: str) -> None:
    judge, _, claims = worker(db_url, "b", "one")
    real = judge.acompare

    async def broken(pair: Pair, *, exclude: Any = ()) -> Verdict:
        if pair.id == "p02":
            raise RuntimeError("bug")
        await asyncio.sleep(0.05 if pair.id == "p03" else 0)  # p03 is still in flight when p02 fails
        return await real(pair, exclude=exclude)

    judge.acompare = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="bug"):
        asyncio.run(run_shared(judge, records(6), claims, concurrency=2))
    state = rows(claims.engine, "b")
    assert state["p02"].worker_id is None and state["p02"].done_at is None  # released, not left to expire
    assert all(r.done_at is not None or r.worker_id is None for r in state.values())
    assert claims.progress().held == 0
    claims.engine.dispose()


def test_the_batch_id_follows_the_pairs_and_the_judge() -> None:
    fb = FakeBackend()
    judge = Judge(fb, None, config=bare_config(fb))
    single = Judge(fb, None, config=bare_config(fb, both_orders=False))
    same = batch_fingerprint(judge, records(3))
    assert batch_fingerprint(judge, records(3)) == same
    assert len({same, batch_fingerprint(single, records(3)), batch_fingerprint(judge, records(4)),
                batch_fingerprint(judge, records(3), options={"holdout_same_prompt": True})}) == 4
    assert batch_id_for(same).startswith("batch-")
    dup = records(2) + records(1)
    with pytest.raises(InputError, match="duplicate pair id 'p00'"):
        asyncio.run(run_shared(judge, dup, WorkClaims(open_engine("sqlite://"), "b")))


# ================================================================================= a worker killed mid-run
CHILD = '''
import asyncio, math, sys, time
from judge.backends.fake import FakeBackend, FakeReply
from judge.judging.engine import Judge, bare_config
from judge.judging.pairs_io import read_pairs
from judge.judging.shared import run_shared
from judge.store import migrate, open_engine
from judge.store.claims import WorkClaims
from judge.store.judgments import JudgmentStore

pairs, url, asked, name, lease = sys.argv[1:6]
log = open(asked, "a", encoding="utf-8")

def script(body):
    user = body["messages"][1]["content"]
    log.write(user.split("<prompt>\\n[", 1)[1].split("]", 1)[0] + "\\n")
    log.flush()  # written when asked: a kill after this line counts the pair as asked
    time.sleep(0.05)
    slot_a = user.split("<response_a>\\n", 1)[1].split("\\n</response_a>", 1)[0]
    win = "A" if "100 degrees" in slot_a else "B"
    lose = "B" if win == "A" else "A"
    return FakeReply(text=win, top_logprobs=[(win, math.log(0.9)), (lose, math.log(0.1))])

engine = open_engine(url)
migrate(engine)
fb = FakeBackend(script)
judge = Judge(fb, None, config=bare_config(fb), store=JudgmentStore(engine))
claims = WorkClaims(engine, "kill", worker_id=name, lease_s=float(lease))
asyncio.run(run_shared(judge, list(read_pairs(pairs)), claims, concurrency=2,
                       on_result=lambda v: print(v.pair_id, flush=True)))
'''


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _asking(engine: Engine, asked_log: Path, worker_id: str) -> set[str]:
    """The pairs the worker holds unfinished, when it has asked the model about one of them (else empty)."""
    asked = set(asked_log.read_text(encoding="utf-8").split()) if asked_log.exists() else set()
    held = {pid for pid, r in rows(engine, "kill").items() if r.worker_id == worker_id and r.done_at is None}
    return held if held & asked else set()


def _freeze(child: subprocess.Popen[str]) -> None:
    """SIGSTOP the child and wait until it has really stopped (the signal lands asynchronously)."""
    child.send_signal(signal.SIGSTOP)
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), status


def test_a_killed_worker_loses_nothing_and_the_other_finishes_its_pairs(db_url: str, tmp_path: Path) -> None:
    n, lease = 40, 4.0  # a heartbeat every lease / 3: a worker starved by a busy machine keeps its leases
    pairs = write_pairs(tmp_path / "pairs.jsonl", n)
    (tmp_path / "child.py").write_text(CHILD, encoding="utf-8")
    asked_a = tmp_path / "asked-a.txt"
    engine = open_engine(db_url)
    migrate(engine)  # before the child starts, so the two never race on the first migration

    child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(pairs), db_url, str(asked_a), "a",
                              str(lease)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_child_env())
    judge_b, fb_b, claims_b = worker(db_url, "kill", "b", delay_s=0.02, lease_s=lease)
    reports: list[SharedRunReport] = []
    errors: list[BaseException] = []
    printed: list[str] = []
    b_thread: threading.Thread | None = None
    held_by_a: set[str] = set()
    try:
        assert child.stdout is not None
        while len(printed) < 6:
            line = child.stdout.readline()
            if not line:
                break
            printed.append(line.strip())
            if len(printed) == 3:  # a is well under way: b joins the batch
                b_thread = _in_thread(lambda: asyncio.run(run_shared(judge_b, list(read_pairs(pairs)), claims_b,
                                                                     concurrency=2)),
                                      reports, errors, threading.Barrier(1))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            # kill mid-comparison: a has asked the model and not yet recorded the verdict. Freeze a first and
            # look again, so a verdict recorded between the look and the kill cannot make the kill miss; what
            # a holds is read while it is frozen, before b can take anything over.
            if _asking(engine, asked_a, "a"):
                _freeze(child)
                held_by_a = _asking(engine, asked_a, "a")
                if held_by_a:
                    break
                child.send_signal(signal.SIGCONT)
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)  # no cleanup of any kind: as if the machine lost power
    finally:
        _, err = child.communicate(timeout=60)
    assert len(printed) == 6, err
    assert child.returncode == -signal.SIGKILL  # killed mid-run, not finished
    assert held_by_a, "the kill should land while a is judging"

    assert b_thread is not None
    b_thread.join(timeout=120)
    assert not errors, errors
    (report,) = reports
    assert report.complete and report.batch_done == n

    final = rows(engine, "kill")
    assert all(r.done_at is not None for r in final.values())
    assert set(printed) <= {pid for pid, r in final.items() if r.worker_id == "a"}  # a's verdicts were kept
    results = list(claims_b.results())
    assert [v.pair_id for v in results] == [f"p{i:02d}" for i in range(n)]
    assert all(v.winner == expected_winner(v.pair_id or "") for v in results)

    # a's unfinished pairs were taken over; the model was asked again only where a had stored no verdict
    assert report.reclaimed == len(held_by_a) and {p for p, r in final.items() if r.claims > 1} == held_by_a
    by_a = set(asked_a.read_text(encoding="utf-8").split())
    by_b = {pair_of(body) for body in fb_b.history}
    assert by_a | by_b == set(final)  # every pair was judged by someone
    assert by_a & by_b <= held_by_a and report.rejudged == len(held_by_a & by_b) <= 2  # a judged 2 at a time
    assert {v.pair_id for v in results if v.cached} == held_by_a - by_b  # a stored these: b used the cache
    stored = Counter(v.pair_id for v in JudgmentStore(engine).iter_all())
    assert stored == Counter(set(final))  # one judgment recorded per pair, none twice
    claims_b.engine.dispose()
    engine.dispose()


# ======================================================================================== the CLI, twice
CLI_CHILD = '''
import math, os, sys, time
from pathlib import Path
from judge.backends import registry
from judge.backends.fake import FakeBackend, FakeReply

asked, ready, go = sys.argv[1:4]
log = open(asked, "a", encoding="utf-8")

def script(body):
    user = body["messages"][1]["content"]
    log.write(user.split("<prompt>\\n[", 1)[1].split("]", 1)[0] + "\\n")
    log.flush()
    time.sleep(0.03)
    slot_a = user.split("<response_a>\\n", 1)[1].split("\\n</response_a>", 1)[0]
    win = "A" if "100 degrees" in slot_a else "B"
    lose = "B" if win == "A" else "A"
    return FakeReply(text=win, top_logprobs=[(win, math.log(0.9)), (lose, math.log(0.1))])

registry.make_backend = lambda *a, **k: FakeBackend(script)
from judge.cli.main import main

Path(ready).touch()
while not Path(go).exists():  # both processes start judging at the same moment
    time.sleep(0.01)
sys.argv = ["judge", *sys.argv[4:]]
main()
'''


def test_two_judge_run_processes_share_a_batch(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    n = 30
    pairs = write_pairs(tmp_path / "pairs.jsonl", n)
    (tmp_path / "cli_child.py").write_text(CLI_CHILD, encoding="utf-8")
    engine = open_engine(sqlite_url)
    migrate(engine)
    engine.dispose()
    go = tmp_path / "go"
    procs = []
    for name in ("one", "two"):
        procs.append(subprocess.Popen(
            [sys.executable, str(tmp_path / "cli_child.py"), str(tmp_path / f"asked-{name}.txt"),
             str(tmp_path / f"ready-{name}"), str(go), "--db", sqlite_url, "run", str(pairs), "-o",
             str(tmp_path / f"results-{name}.jsonl"), "--backend", "fake", "--no-rules", "--shared", "-c", "2",
             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env()))
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{name}").exists() for name in ("one", "two")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), procs[0].stderr
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]

    asked = Counter(line for name in ("one", "two")
                    for line in (tmp_path / f"asked-{name}.txt").read_text(encoding="utf-8").split())
    assert asked == Counter({f"p{i:02d}": 2 for i in range(n)})  # every pair judged once, both orders
    assert all(r["judged"] > 0 for r in reports) and sum(r["judged"] for r in reports) == n
    assert reports[0]["batch_id"] == reports[1]["batch_id"]  # the same input and judge: the same batch
    files = [(tmp_path / f"results-{name}.jsonl").read_text(encoding="utf-8").splitlines() for name in ("one", "two")]
    ids = [[json.loads(line)["pair_id"] for line in lines] for lines in files]
    assert ids[0] == ids[1] == [f"p{i:02d}" for i in range(n)]  # each wrote the whole batch, in input order

    from judge.cli.main import main

    def cli(*args: str) -> tuple[int, str]:
        monkeypatch.setattr("sys.argv", ["judge", "--db", sqlite_url, *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    batch = reports[0]["batch_id"]
    code, out = cli("batch", "status", batch, "--json")
    assert code == 0 and json.loads(out) == {"batch": batch, "total": n, "done": n, "held": 0, "waiting": 0,
                                             "reclaimed": 0, "complete": True}
    code, out = cli("batch", "export", batch, "-o", str(tmp_path / "export.jsonl"))
    assert code == 0 and f"wrote {n} of {n}" in out
    assert (tmp_path / "export.jsonl").read_text(encoding="utf-8").splitlines() == files[0]
    code, out = cli("batch", "export", batch, "-o", str(tmp_path / "export2.jsonl"), "--json")
    assert code == 0 and json.loads(out) == {"batch": batch, "written": n, "total": n,
                                             "out": str(tmp_path / "export2.jsonl")}
    code, out = cli("batch", "status", "nope")
    assert code == 2 and "no shared batch named 'nope'" in out
