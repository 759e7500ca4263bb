"""The journal under faults: closed under writers, failing mid-recovery, damaged rows,
leases after fork, and resources a dropped journal or a dead thread must give back.
Real SQLite files, real threads and processes."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from durable_actions import Write, effects, registry

import actionqueues
from actionqueues import ActionQueue, JournalError, Registry, SQLiteJournal, recover
from actionqueues.journal import PRUNABLE, Journal, NewRun, StepChange

TESTS = Path(__file__).parent


def child(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter that imports the tests' helpers."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(TESTS), **(env or {})},
    )


class Outage(SQLiteJournal):
    """A journal whose next ``down`` writes fail, refused by SQLite itself (the
    connection made query-only for each of them, as a read-only disk would)."""

    down = 0
    skip = 0  # writes that still succeed before the ``down`` ones fail

    def record(self, *args: Any, **kwargs: Any) -> None:
        if self.skip:
            self.skip -= 1
            return super().record(*args, **kwargs)
        if not self.down:
            return super().record(*args, **kwargs)
        self.down -= 1
        db = self._db()
        db.execute("PRAGMA query_only = 1")
        try:
            return super().record(*args, **kwargs)
        finally:
            db.execute("PRAGMA query_only = 0")


CRASH_IN_C = """
    import asyncio, sys, actionqueues
    from durable_actions import AsyncWrite, Write, registry
    j = actionqueues.SQLiteJournal(sys.argv[1], lease=0.3)
    kind = sys.argv[3]
    Queue = actionqueues.AsyncActionQueue if kind == "async" else actionqueues.ActionQueue
    Step = AsyncWrite if kind == "async" else Write
    q = Queue(journal=j, registry=registry, recovery="resume", run_id="r1")
    for value in "abc":
        q.add(Step(sys.argv[2], value))
    asyncio.run(q.run()) if kind == "async" else q.run()
"""


def crashed_in_c(tmp_path: Path, sysdb: str, kind: str = "sync") -> Path:
    """A resume-mode run killed with SIGKILL in its third step, after that step's
    side effect: the journal holds a and b executed, c executing."""
    path = tmp_path / "journal.db"
    done = child(CRASH_IN_C, str(path), sysdb, kind, env={"AQ_CRASH_AT": "6"})
    assert -9 == done.returncode, done.stderr
    assert ["a", "b", "c"] == effects(sysdb)
    time.sleep(0.4)  # the lease expires
    return path


class Faulty(SQLiteJournal):
    """A journal whose writes numbered in ``failing`` (from 1, counted from when it
    is set) are refused by SQLite itself, as ``Outage``'s are."""

    failing: frozenset[int] = frozenset()
    count = 0

    def record(self, *args: Any, **kwargs: Any) -> None:
        self.count += 1
        if self.count not in self.failing:
            return super().record(*args, **kwargs)
        db = self._db()
        db.execute("PRAGMA query_only = 1")
        try:
            return super().record(*args, **kwargs)
        finally:
            db.execute("PRAGMA query_only = 0")


def test_close_under_writing_threads_fails_them_cleanly(tmp_path: Path, sysdb: str) -> None:
    """close() while 8 threads write: no crash; they fail with JournalError, and their
    runs are recovered afterwards."""
    script = """
        import sys, threading, time, actionqueues
        from durable_actions import Write, registry
        j = actionqueues.SQLiteJournal(sys.argv[1], lease=0.3)
        errors, stop = [], threading.Event()
        def work():
            while not stop.is_set():
                q = actionqueues.ActionQueue(journal=j, registry=registry)
                for v in "abc":
                    q.add(Write(sys.argv[2], v))
                try:
                    q.run()
                except actionqueues.JournalError as exc:
                    errors.append(exc)
                    return
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        j.close()
        stop.set()
        for t in threads:
            t.join()
        print(len(errors))
    """
    for trial in range(6):
        path = tmp_path / f"journal{trial}.db"
        done = child(script, str(path), sysdb)
        assert 0 == done.returncode, done.stderr[-2000:]
        assert int(done.stdout) >= 1  # some writer was refused, not crashed
        time.sleep(0.4)
        with SQLiteJournal(path) as j:
            recover(j, registry=registry)
            assert set() == {r.status for r in j.runs(limit=None)} - {"completed", "rolled_back"}
    assert [] == [v for v in effects(sysdb) if v not in "abc"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_resumed_run_whose_first_record_fails_rolls_back_every_called_step(
    tmp_path: Path, sysdb: str, kind: str
) -> None:
    """D5: the step a crash interrupted counts as executed even if its new record
    fails, so its effect is undone with the others."""
    path = crashed_in_c(tmp_path, sysdb, kind)
    with Outage(path, lease=0.3) as journal:
        journal.down = 1  # the resumed step's "executing" record
        [result] = recover(journal, registry=registry)
        assert "rolled_back" == result.outcome
        assert ["rolled_back"] * 3 == [s.status for s in result.steps]
    assert [] == effects(sysdb)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_resume_whose_rollback_cannot_be_recorded_undoes_nothing(
    tmp_path: Path, sysdb: str, kind: str
) -> None:
    """D10: a resumed run the journal holds as running is not undone unrecorded (a
    later recovery would resume past the undone steps); it is left, released, and
    the next recovery resumes it to the end."""
    path = crashed_in_c(tmp_path, sysdb, kind)
    with Outage(path, lease=0.3) as journal:
        journal.down = 1000  # every write fails
        [result] = recover(journal, registry=registry)
        assert "interrupted" == result.outcome
        assert "the rollback stops here" in (result.problem or "")
        with pytest.raises(LookupError):  # no step context is left behind
            actionqueues.current_step()
        assert ["a", "b", "c"] == effects(sysdb)  # nothing undone
        run, steps = journal.load("r1")  # type: ignore[misc]
        assert ("running", 1) == (run.status, run.claims)
        assert ["executed", "executed", "executing"] == [s.status for s in steps]
        assert run.lease_until < journal.now() + 0.3  # not renewed
        journal.down = 0
        time.sleep(0.4)
        [result] = recover(journal, registry=registry)
        assert "completed" == result.outcome
    assert ["a", "b", "c"] == effects(sysdb)


def test_a_locked_journal_during_a_resume_loses_nothing(tmp_path: Path, sysdb: str) -> None:
    """D10: another process holding the write lock for 2 s during a resume: the
    run's recorded end matches what its actions did."""
    path = crashed_in_c(tmp_path, sysdb)
    holder = """
        import sqlite3, sys, time
        db = sqlite3.connect(sys.argv[1], isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(2)
        db.execute("ROLLBACK")
        db.close()
    """

    class LockedAfterClaim(SQLiteJournal):
        def claim(self, *args: Any, **kwargs: Any) -> Any:
            row = super().claim(*args, **kwargs)
            if row is not None and not hasattr(self, "proc"):
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", textwrap.dedent(holder), str(path)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert self.proc.stdout is not None
                assert "locked" == self.proc.stdout.readline().strip()
            return row

    with LockedAfterClaim(path, lease=0.3, busy_timeout=0.2) as journal:
        with pytest.raises(JournalError, match="locked"):  # the next claim, still locked
            recover(journal, registry=registry)
        journal.proc.wait()
        assert journal.proc.stdout is not None
        journal.proc.stdout.close()
        time.sleep(0.4)
        results = recover(journal, registry=registry)
        run, steps = journal.load("r1")  # type: ignore[misc]
    assert "completed" == run.status
    assert ["executed"] * 3 == [s.status for s in steps]
    assert ["a", "b", "c"] == effects(sysdb)
    assert "completed" == results[-1].outcome


@actionqueues.durable("test.grown")
@dataclasses.dataclass
class Grown:
    """A durable action that gained a field since its runs were recorded."""

    value: str
    tags: list[str] = dataclasses.field(default_factory=list)

    def execute(self) -> None:
        pass

    def rollback(self) -> None:
        self.tags.append("undone")


registry.register("test.grown", Grown)  # in the tests' registry too


def interrupted_run(journal: Journal, run_id: str, steps: list[tuple[str, str]]) -> None:
    """Record a run whose owner died while its last step was executing."""
    new = NewRun(
        None, "rollback", [(action, f"s{i}", state) for i, (action, state) in enumerate(steps)]
    )
    journal.record(run_id, 0, [StepChange(len(steps) - 1, "executing", steps[-1][1])], new=new)
    journal.release(run_id)


def test_one_run_that_cannot_be_rebuilt_does_not_stop_recovery(tmp_path: Path) -> None:
    """D8: a state with a __dict__ key, or one a decoder chokes on, is skipped; the
    other runs are recovered; a dataclass's new field takes its default."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        interrupted_run(journal, "bad", [("test.grown", '{"value":"x","__dict__":{}}')])
        interrupted_run(journal, "grown", [("test.grown", '{"value":"y"}')])
        results = {r.run_id: r for r in recover(journal)}
        assert "skipped" == results["bad"].outcome
        assert "__dict__" in (results["bad"].problem or "")
        assert "rolled_back" == results["grown"].outcome
        assert 0 == journal.load("bad")[0].claims  # type: ignore[index]  # untouched
        assert ["skipped"] == [r.outcome for r in recover(journal)]


def test_a_skipped_run_keeps_its_place_and_claims(tmp_path: Path) -> None:
    """D8: recovery passes once over many runs it cannot rebuild, leaving each as it
    was (its claim count too), and still finds a run it can recover after them."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        for i in range(300):
            interrupted_run(journal, f"u{i:03d}", [("nobody.registered", "{}")])
        interrupted_run(journal, "ok", [("test.grown", '{"value":"z"}')])
        results = recover(journal)
        assert 301 == len(results)
        assert {"skipped"} == {r.outcome for r in results if r.run_id != "ok"}
        assert ["rolled_back"] == [r.outcome for r in results if r.run_id == "ok"]
        assert {0} == {r.claims for r in journal.runs(status="interrupted", limit=None)}


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (
            "UPDATE steps SET idx = 5 WHERE idx = 1; UPDATE events SET idx = 5 WHERE idx = 1",
            "indexes [0, 2, 5]",
        ),
        (
            "UPDATE steps SET idx = -1 WHERE idx = 0; UPDATE events SET idx = -1 WHERE idx = 0",
            "indexes [-1, 1, 2]",
        ),
        ("DELETE FROM steps WHERE idx = 2; DELETE FROM events WHERE idx = 2", "indexes [0, 1]"),
        ("DELETE FROM steps WHERE idx = 2", "step 3 has events but no step row"),
        ("UPDATE events SET status = 'half' WHERE idx = 0", "unknown status 'half'"),
        ("UPDATE steps SET grp = 7 WHERE idx = 1", "parallel group 7"),
        ("UPDATE runs SET mode = 'sideways'", "mode 'sideways'"),
    ],
)
def test_damaged_step_rows_are_skipped_with_the_reason(
    tmp_path: Path, sysdb: str, damage: str, problem: str
) -> None:
    """D8: rows edited or damaged by hand are checked on load: the run is skipped,
    saying what is wrong, and nothing is rolled back or recorded."""
    path = crashed_in_c(tmp_path, sysdb)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(damage)
    with SQLiteJournal(path) as journal:
        [result] = recover(journal, registry=registry)
        assert "skipped" == result.outcome
        assert problem in (result.problem or "")
        assert "running" == journal.load("r1")[0].status  # type: ignore[index]
    assert ["a", "b", "c"] == effects(sysdb)


def test_a_run_the_journal_failed_is_left_to_recovery(
    tmp_path: Path, sysdb: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A record that fails after the step ran (D2): the queue stops renewing the
    lease, says so, and recovery takes the run while the queue object lives."""
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.3)

    @dataclasses.dataclass
    class FillsTheDisk:
        def execute(self) -> None:
            journal._db().execute("PRAGMA query_only = 1")  # D2 and after: refused

        def rollback(self) -> None:
            pass

    names = Registry()
    names.register("fills", FillsTheDisk)
    q = ActionQueue(journal=journal, registry=names)
    q.add(FillsTheDisk())
    with caplog.at_level(logging.WARNING, logger="actionqueues"), pytest.raises(JournalError):
        q.execute()
    journal._db().execute("PRAGMA query_only = 0")
    assert "recovery takes it over" in caplog.text
    time.sleep(0.5)  # past the lease: the heartbeat no longer renews it
    [result] = recover(journal, registry=names)
    assert "rolled_back" == result.outcome
    assert q is not None  # the queue object is still alive
    journal.close()


def test_a_failing_renewal_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """D7: a heartbeat that cannot renew the leases says so at WARNING."""
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.3, busy_timeout=0.01)

    @dataclasses.dataclass
    class HoldsTheLock:
        def execute(self) -> None:
            with contextlib.closing(sqlite3.connect(journal.path, isolation_level=None)) as db:
                db.execute("BEGIN IMMEDIATE")
                time.sleep(0.25)  # two beats
                db.execute("ROLLBACK")
            time.sleep(0.25)  # and two that renew again

        def rollback(self) -> None:
            pass

    names = Registry()
    names.register("holds", HoldsTheLock)
    q = ActionQueue(journal=journal, registry=names)
    q.add(HoldsTheLock())
    with caplog.at_level(logging.WARNING, logger="actionqueues"):
        q.run()
    journal.close()
    assert any(
        r.levelno == logging.WARNING and "could not renew the leases of 1 run" in r.getMessage()
        for r in caplog.records
    )
    assert "renewing leases in" in caplog.text  # and when it works again


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX")
def test_a_forked_child_gets_an_owner_of_its_own(tmp_path: Path, sysdb: str) -> None:
    """D7: after os.fork() the child never renews the parent's runs: its journal has
    another owner, watches no run of the parent's, and records runs of its own."""
    journal = SQLiteJournal(tmp_path / "j.db", lease=5)
    q = ActionQueue(journal=journal, registry=registry)
    q.add(Write(sysdb, "parent"))
    q._begin_execute()
    q._drive(q._step_started(0, actionqueues.Phase.EXECUTE, 1))  # a parent's run in flight
    parent_owner = journal.owner
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            fresh = journal.owner != parent_owner and not list(journal._live)
            own = ActionQueue(journal=journal, registry=registry)
            own.add(Write(sysdb, "child"))
            own.run()
            code = 0 if fresh and own.report.status.value == "completed" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    runs = {r.owner for r in journal.runs()}
    assert parent_owner in runs
    assert len(runs) == 2  # the child's run was recorded under its own owner
    q._durable.leave()  # type: ignore[union-attr]  # the step context, for later tests
    journal.close()


def test_a_dropped_journal_gives_back_its_thread_and_files(tmp_path: Path, sysdb: str) -> None:
    """A journal dropped without close() stops its heartbeat and closes its files."""
    gc.collect()
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    for i in range(50):
        journal = SQLiteJournal(tmp_path / f"j{i}.db", lease=0.3)
        q = ActionQueue(journal=journal, registry=registry)
        q.add(Write(sysdb, f"{i}"))
        q.run()
        del q, journal
    gc.collect()
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threads == threading.active_count()
    assert len(os.listdir("/proc/self/fd")) <= fds + 2


def test_connections_of_finished_threads_are_closed(tmp_path: Path, sysdb: str) -> None:
    """A thread's connection is closed when the thread ends: 100 short-lived writer
    threads leave one connection open (the main thread's), not 101."""
    journal = SQLiteJournal(tmp_path / "j.db")
    journal.runs()
    fds = len(os.listdir("/proc/self/fd"))

    def work(i: int) -> None:
        q = ActionQueue(journal=journal, registry=registry)
        q.add(Write(sysdb, f"{i}"))
        q.run()

    for i in range(100):
        t = threading.Thread(target=work, args=(i,))
        t.start()
        t.join()
    gc.collect()
    assert 1 == len(journal._connections)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2
    assert 100 == len(journal.runs(limit=None))
    journal.close()


def test_prune_keeps_what_an_operator_needs(tmp_path: Path) -> None:
    """O3: prune() deletes completed and rolled back runs; a run that failed to roll
    back stays unless asked for by status; bad arguments delete nothing."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        for run_id, status in (("c", "completed"), ("r", "rolled_back"), ("f", "rollback_failed")):
            new = NewRun(None, "rollback", [("a", "s", "{}")])
            journal.record(run_id, 0, [], status=status, new=new)
        later = journal.now() + 1
        for bad in ("abc", None, float("nan"), True):
            with pytest.raises(JournalError, match="a time is a number of seconds"):
                journal.prune(bad)  # type: ignore[arg-type]
        with pytest.raises(JournalError, match="only finished runs can be pruned"):
            journal.prune(later, statuses=["running"])
        with pytest.raises(JournalError, match="a time is a number"):
            journal.runs(before="x")  # type: ignore[arg-type]
        assert 3 == len(journal.runs())
        assert ("completed", "rolled_back") == PRUNABLE
        assert 2 == journal.prune(later)
        assert ["f"] == [r.id for r in journal.runs()]
        assert 1 == journal.prune(later, statuses=["rollback_failed"])


def test_a_reused_run_id_is_refused_before_any_side_effect(
    tmp_path: Path, sysdb: str, caplog: pytest.LogCaptureFixture
) -> None:
    """D4: a run id the journal holds is refused by the first record, saying so;
    the refused queue logs nothing at ERROR and leaves the first run as it was."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        first = ActionQueue(journal=journal, registry=registry, run_id="same")
        first.add(Write(sysdb, "first"))
        first.run()
        before = journal.load("same")
        second = ActionQueue(journal=journal, registry=registry, run_id="same")
        second.add(Write(sysdb, "second"))
        with (
            caplog.at_level(logging.WARNING, logger="actionqueues"),
            pytest.raises(JournalError, match="already holds a run with id 'same'"),
        ):
            second.run()
        assert [] == [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert before == journal.load("same")
    assert ["first"] == effects(sysdb)


def test_two_queues_starting_one_id_at_once_run_once(tmp_path: Path, sysdb: str) -> None:
    """D4: of two processes starting one run id at the same moment, exactly one runs."""
    script = """
        import sys, actionqueues
        from durable_actions import Write, registry
        j = actionqueues.SQLiteJournal(sys.argv[1])
        q = actionqueues.ActionQueue(journal=j, registry=registry, run_id="once")
        q.add(Write(sys.argv[2], sys.argv[3]))
        try:
            q.run()
        except actionqueues.JournalError as exc:
            print("refused", exc)
    """
    path = str(tmp_path / "j.db")
    SQLiteJournal(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), path, sysdb, who],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(TESTS)},
        )
        for who in ("x", "y")
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert 1 == sum("refused" in out for out in outputs)
    assert 1 == len(effects(sysdb))


def test_the_executing_record_counts_the_first_try(tmp_path: Path, sysdb: str) -> None:
    """A step killed mid-execute is recorded as tried once, not zero times."""
    path = crashed_in_c(tmp_path, sysdb)
    with SQLiteJournal(path) as journal:
        _, steps = journal.load("r1")  # type: ignore[misc]
    assert [1, 1, 1] == [s.attempts for s in steps]
    assert "executing" == steps[2].status
    assert {"path": sysdb, "value": "c", "fail": False, "key": None} == json.loads(steps[2].state)


def test_claims_walk_an_index_in_order(tmp_path: Path) -> None:
    """A claim reads the unfinished runs through their ordered index, from its cursor,
    never sorting them all (which made a pass over skipped runs quadratic)."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        db = journal._db()
        plan = " ".join(
            str(row[3])
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM runs INDEXED BY runs_claimable WHERE "
                "status IN ('running', 'failed', 'rolling_back') AND lease_until < ? "
                "AND (updated, id) > (?, ?) ORDER BY updated, id LIMIT 1",
                (1.0, 0.0, ""),
            )
        )
        assert "runs_claimable" in plan
        assert "TEMP B-TREE" not in plan
        assert journal.claim(after=(0.0, "")) is None


def test_event_places_are_counted_again_when_the_count_is_wrong(tmp_path: Path) -> None:
    """The SQLite journal counts each run's events itself: a count that fell behind
    (a write it never saw succeed) is counted again from the journal and the write
    goes on; a run it did not begin is counted from the journal; a run whose number
    was damaged is refused with the reason, nothing written."""
    new = NewRun("q", "rollback", [("a", "s", "{}"), ("a", "t", "{}")])
    with SQLiteJournal(tmp_path / "j.db") as journal:
        journal.record("r", 0, [StepChange(0, "executing", "{}", 1)], new=new)
        journal.record("r", 0, [StepChange(0, "executed", '{"k":1}', 1)])
        journal._next["r", 0] = 1  # as if the last write had not been seen
        journal.record("r", 0, [StepChange(1, "executing", "{}", 1)])
        del journal._next["r", 0]  # as for a run another journal object began
        journal.record("r", 0, [StepChange(1, "executed", '{"k":2}', 1)])
        loaded = journal.load("r")
        assert loaded is not None
        assert [("executed", '{"k":1}'), ("executed", '{"k":2}')] == [
            (s.status, s.state) for s in loaded[1]
        ]
        places = [r[0] % 2**32 for r in journal._read("SELECT id FROM events ORDER BY id")]
        assert [1, 2, 3, 4] == places
        journal._read("SELECT 1")  # the connection, for the damage below
        journal._db().execute("DROP TRIGGER runs_num_required")
        journal._db().execute("UPDATE runs SET num = NULL")
        del journal._next["r", 0]
        with pytest.raises(JournalError, match="has no number"):
            journal.record("r", 0, [StepChange(1, "rolling_back", None, 1)])
        assert 4 == len(journal._read("SELECT id FROM events"))


def test_a_claim_counts_event_places_from_the_journal(tmp_path: Path) -> None:
    """A journal object that claims a run again counts its events' places from the
    journal, not from what it wrote under its earlier claim: another owner's write in
    between (here one that left a gap, as a rolled-back commit does) stays before
    its own, and the run reads as its last write left it."""
    path = tmp_path / "j.db"
    new = NewRun("q", "rollback", [("a", "s", "{}")])
    with SQLiteJournal(path, lease=0.1) as first, SQLiteJournal(path, lease=0.1) as second:
        first.record("r", 0, [StepChange(0, "executing", "{}", 1)], new=new)
        first.release("r")
        run = second.claim()
        assert run is not None
        second._next["r", run.claims] = 5  # ahead of the journal: places 2-4 a gap
        second.record("r", run.claims, [StepChange(0, "rolling_back", None, 1)])
        second.release("r")
        again = first.claim()
        assert again is not None
        first.record("r", again.claims, [StepChange(0, "rolled_back", None, 1)])
        loaded = first.load("r")
        assert loaded is not None
        assert "rolled_back" == loaded[1][0].status
        places = [r[0] % 2**32 for r in first._read("SELECT id FROM events ORDER BY id")]
        assert [1, 5, 6] == places


def test_find_ids_scans_only_the_prefix_range(tmp_path: Path) -> None:
    """find_ids() reads the id index between both ends of the prefix's range: a
    bound the planner cannot see made it scan every id after the prefix (44 ms at
    1M runs)."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        read = journal._read
        asked: list[tuple[str, Sequence[object]]] = []

        def reading(sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
            asked.append((sql, params))  # the statement as prepared, parameters bound
            return read(sql, params)

        journal._read = reading  # type: ignore[method-assign]
        assert [] == journal.find_ids("3f2a")
        [(sql, params)] = asked
        plan = " ".join(str(r[3]) for r in read(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "id>? AND id<?" in plan, plan


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_run_left_interrupted_is_claimed_once_a_pass(
    tmp_path: Path, sysdb: str, kind: str
) -> None:
    """A run whose rollback's end could not be recorded is left, released, for the
    next recovery: the same pass does not claim it again (its own records moved it
    past the pass's cursor); the next one finishes it."""
    path = crashed_in_c(tmp_path, sysdb, kind)
    with Faulty(path, lease=0.3) as journal:
        # 1: c's new "executing" (fails); 2: the failure; 3-5: the three rollbacks'
        # starts (each with the previous one's end); 6: the rollback's end (fails).
        journal.failing = frozenset({1, 6})
        [result] = recover(journal, registry=registry)
        assert "interrupted" == result.outcome
        assert [] == effects(sysdb)
        run = journal.load("r1")[0]  # type: ignore[index]
        assert ("rolling_back", 1) == (run.status, run.claims)
        [result] = recover(journal, registry=registry)
        assert "rolled_back" == result.outcome
        assert ["rolled_back"] * 3 == [s.status for s in result.steps]


@pytest.mark.parametrize(
    "damage",
    ["UPDATE runs SET steps = 'abc'", "UPDATE steps SET grp = 0.5", "UPDATE steps SET grp = 'x'"],
)
def test_rows_of_the_wrong_type_are_skipped(tmp_path: Path, sysdb: str, damage: str) -> None:
    """D8: a number column holding text or a fraction: the run is skipped, and the
    others are recovered."""
    path = crashed_in_c(tmp_path, sysdb)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(damage)
    with SQLiteJournal(path) as journal:
        interrupted_run(journal, "ok", [("test.grown", '{"value":"z"}')])
        results = {r.run_id: r.outcome for r in recover(journal, registry=registry)}
    assert {"r1": "skipped", "ok": "rolled_back"} == results


def test_a_release_is_fenced_by_its_claim(tmp_path: Path) -> None:
    """A release made under an old claim leaves a newer claim's lease alone."""
    with SQLiteJournal(tmp_path / "j.db", lease=0.1) as journal:
        interrupted_run(journal, "r", [("test.grown", '{"value":"z"}')])
        row = journal.claim()
        assert row is not None
        assert 1 == row.claims
        journal.release("r", claim=0)  # a queue's give-up, from before the claim
        assert journal.load("r")[0].lease_until > 0  # type: ignore[index]
        journal.release("r", claim=1)
        assert 0 == journal.load("r")[0].lease_until  # type: ignore[index]


def test_a_name_refused_at_add_leaves_nothing_behind(tmp_path: Path, sysdb: str) -> None:
    """A durable add() whose step name no journal could store is refused whole: the
    next step does not inherit the name, and the run records."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        q = ActionQueue(journal=journal, registry=registry)
        with pytest.raises(actionqueues.InvalidArgumentError, match="lone surrogate"):
            q.add(Write(sysdb, "a"), name="bad\ud800")
        q.add(Write(sysdb, "b"))
        q.run()
        assert ["Write"] == [s.name for s in journal.load(journal.runs()[0].id)[1]]  # type: ignore[index]


def test_an_interrupted_group_commit_leader_hands_the_lead_on(tmp_path: Path) -> None:
    """durability="power": a leader interrupted while it waits for its siblings
    leaves the queue of writers working (later writes commit, close() returns)."""
    journal = SQLiteJournal(tmp_path / "j.db", durability="power")
    journal._siblings = 2  # the last group had company: the next leader waits
    condition = journal._group

    class Interrupting(type(condition)):  # type: ignore[misc]
        def wait(self, timeout: float | None = None) -> bool:
            raise KeyboardInterrupt

    journal._group = Interrupting(threading.Lock())
    new = NewRun(None, "rollback", [])
    with pytest.raises(KeyboardInterrupt):
        journal.record("first", 0, [], new=new)
    journal._group = condition
    done = threading.Event()

    def write() -> None:
        journal.record("second", 0, [], new=new)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    t.join(5)
    assert done.is_set()
    assert ["second"] == [r.id for r in journal.runs()]
    journal.close()


def test_an_async_group_member_whose_rollback_cannot_be_recorded_stops_the_rollback(
    tmp_path: Path,
) -> None:
    """A resume-mode async run whose parallel group fails: when a member's rollback
    cannot be recorded, it is not counted as a failed rollback and the rollback does
    not go on to the earlier steps; the run is left to recovery, as the sync queue
    leaves it."""
    import asyncio

    journal = Outage(tmp_path / "j.db", lease=0.3)
    undone: list[str] = []

    @dataclasses.dataclass
    class Step:
        name: str
        fail: bool = False

        async def execute(self) -> None:
            if self.fail:
                journal.skip, journal.down = 1, 2  # b recorded; the failure and c not
                raise RuntimeError(self.name)

        async def rollback(self) -> None:
            undone.append(self.name)

    names = Registry()
    names.register("step", Step)
    q = actionqueues.AsyncActionQueue(journal=journal, registry=names, recovery="resume")
    q.add(Step("a"))
    q.add_parallel(Step("b"), Step("c", fail=True))
    with pytest.raises(JournalError, match="the rollback stops here"):
        asyncio.run(q.run())
    assert "a" not in undone
    assert "c" not in undone
    _, steps = journal.load(journal.runs()[0].id)  # type: ignore[misc]
    assert "rollback_failed" not in [s.status for s in steps]
    journal.close()


@dataclasses.dataclass
class Hook:
    """A durable action that calls the test's hook for its name, if any, in execute."""

    name: str
    hooks: ClassVar[dict[str, Callable[[], None]]] = {}
    calls: ClassVar[list[str]] = []

    def execute(self) -> None:
        self.calls.append(f"{self.name}.execute")
        hook = self.hooks.get(self.name)
        if hook is not None:
            hook()

    def rollback(self) -> None:
        self.calls.append(f"{self.name}.rollback")


class AsyncHook(Hook):
    async def execute(self) -> None:  # type: ignore[override]
        Hook.execute(self)

    async def rollback(self) -> None:  # type: ignore[override]
        Hook.rollback(self)


hooks = Registry()
hooks.register("hook", Hook)
hooks.register("ahook", AsyncHook)


@pytest.fixture
def hooked() -> Iterator[type[Hook]]:
    """Hook's hooks and calls, fresh for the test."""
    Hook.hooks.clear()
    Hook.calls.clear()
    yield Hook
    Hook.hooks.clear()
    Hook.calls.clear()


def queue_of(kind: str, journal: Journal, names: list[str], **options: Any) -> Any:
    """A durable queue of Hook steps (AsyncHook ones on the async queue)."""
    step = AsyncHook if kind == "async" else Hook
    queue_class = actionqueues.AsyncActionQueue if kind == "async" else ActionQueue
    q = queue_class(journal=journal, registry=hooks, **options)
    for name in names:
        q.add(step(name))
    return q


def call(kind: str, method: Any) -> Any:
    import asyncio

    return asyncio.run(method()) if kind == "async" else method()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_step_whose_record_fails_after_it_ran_leaves_the_run_to_recovery(
    tmp_path: Path, hooked: type[Hook], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """D2 fails (the disk went away during the step): execute() raises JournalError,
    the queue stops renewing the lease and says so, and recovery takes the run over
    while the queue object lives."""
    journal = Outage(tmp_path / "j.db", lease=0.3)
    hooked.hooks["a"] = lambda: setattr(journal, "down", 1000)
    q = queue_of(kind, journal, ["a", "b"])
    with caplog.at_level(logging.WARNING, logger="actionqueues"), pytest.raises(JournalError):
        call(kind, q.execute)
    journal.down = 0
    assert "recovery takes it over once the lease expires" in caplog.text
    assert ".;" not in caplog.text  # the error's own full stop does not end the clause
    assert ["a.execute"] == hooked.calls
    time.sleep(0.5)
    [result] = recover(journal, registry=hooks)
    assert "rolled_back" == result.outcome
    assert ["a.execute", "a.rollback"] == hooked.calls
    assert q is not None
    journal.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_run_whose_end_cannot_be_recorded_is_released_after_its_rollback(
    tmp_path: Path, hooked: type[Hook], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """The "completed" record fails: run() rolls the run back (the compensation goes
    on unrecorded), then releases it at once, so that recovery need not wait."""
    journal = Outage(tmp_path / "j.db", lease=30)
    hooked.hooks["b"] = lambda: setattr(journal, "down", 1000)  # b's D2 and after
    q = queue_of(kind, journal, ["a", "b"], name="ends")
    with caplog.at_level(logging.WARNING, logger="actionqueues"), pytest.raises(JournalError):
        call(kind, q.run)
    assert ["a.execute", "b.execute", "b.rollback", "a.rollback"] == hooked.calls
    assert "it is released, for recovery to take over now" in caplog.text
    journal.down = 0
    [run] = journal.runs()
    assert 0 == run.lease_until  # released: claimable at once, though the lease is 30 s
    [result] = recover(journal, registry=hooks)
    assert "rolled_back" == result.outcome
    journal.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_reused_run_id_is_refused_by_either_queue(
    tmp_path: Path, hooked: type[Hook], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """D4 on both drivers: the id is taken, nothing runs, nothing is logged at ERROR."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        call(kind, queue_of(kind, journal, ["first"], run_id="same").run)
        second = queue_of(kind, journal, ["second"], run_id="same")
        with (
            caplog.at_level(logging.WARNING, logger="actionqueues"),
            pytest.raises(JournalError, match="already holds a run with id 'same'"),
        ):
            call(kind, second.run)
        assert ["first.execute"] == hooked.calls
        assert [] == [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert 1 == len(journal.runs())


@dataclasses.dataclass
class Versioned:
    """A durable action whose class changed since its runs were recorded."""

    value: str
    count: int = 0
    required: str = dataclasses.field(default="")

    def execute(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class Slotted:
    """An action with neither dataclass fields nor an attribute dict."""

    __slots__ = ("value",)

    def execute(self) -> None:
        pass

    def rollback(self) -> None:
        pass


def test_old_states_are_rebuilt_or_skipped_with_the_reason(tmp_path: Path) -> None:
    """D8: a field added with a default takes it; a state that is not an object, or
    lacks a field without a default, is skipped, saying which and how to fix it."""

    @dataclasses.dataclass
    class Strict:
        value: str
        needed: str

        def execute(self) -> None:
            pass

        def rollback(self) -> None:
            pass

    names = Registry()
    names.register("versioned", Versioned)
    names.register("strict", Strict)
    with SQLiteJournal(tmp_path / "j.db") as journal:
        interrupted_run(journal, "old", [("versioned", '{"value":"x"}')])
        interrupted_run(journal, "list", [("versioned", "[1, 2]")])
        interrupted_run(journal, "lacking", [("strict", '{"value":"x"}')])
        results = {r.run_id: r for r in recover(journal, registry=names)}
    assert "rolled_back" == results["old"].outcome
    assert "must be a JSON object" in (results["list"].problem or "")
    assert "has no 'needed', a field without a default" in (results["lacking"].problem or "")


def test_an_action_without_state_to_save_is_refused_at_add(tmp_path: Path) -> None:
    """D11: a registered class with no fields, no attribute dict and no to_state()
    is refused at add(), saying what to give it."""
    names = Registry()
    names.register("slotted", Slotted)
    with SQLiteJournal(tmp_path / "j.db") as journal:
        q = ActionQueue(journal=journal, registry=names)
        with pytest.raises(actionqueues.StateError, match="no attribute dict to save"):
            q.add(Slotted())


def test_a_journal_in_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    """The journal's folder must exist: the error names the file and the reason."""
    with pytest.raises(JournalError, match=r"Cannot create the journal .*No such file"):
        SQLiteJournal(tmp_path / "missing" / "j.db")


def test_recover_from_a_running_loop_skips_async_runs(tmp_path: Path, sysdb: str) -> None:
    """D8: recover() called on an event loop would block it running an async run:
    the run is skipped, saying to call recover() in a thread, and left as it was."""
    import asyncio

    path = crashed_in_c(tmp_path, sysdb, "async")

    async def on_the_loop() -> list[actionqueues.Recovered]:
        with SQLiteJournal(path) as journal:
            return recover(journal, registry=registry)

    [result] = asyncio.run(on_the_loop())
    assert "skipped" == result.outcome
    assert "asyncio.to_thread(recover, journal)" in (result.problem or "")
    with SQLiteJournal(path) as journal:
        [result] = recover(journal, registry=registry)  # from a thread of its own: fine
    assert "completed" == result.outcome
