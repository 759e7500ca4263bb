"""Durable queues in one process: D1-D4, D6, D8-D11 against a real SQLite journal."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from durable_actions import Write, effects, registry
from hypothesis import given
from hypothesis import strategies as st

import actionqueues
from actionqueues import (
    ActionQueue,
    AsyncActionQueue,
    InvalidActionError,
    InvalidArgumentError,
    JournalError,
    LeaseLostError,
    Registry,
    SQLiteJournal,
    StateError,
    open_journal,
    recover,
)
from actionqueues.journal import Journal, NewRun, PostgresJournal, StepChange


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    """A fresh journal with a short lease, on each backend."""
    if request.param == "sqlite":
        j: Journal = SQLiteJournal(tmp_path / "journal.db", lease=0.3)
    else:
        url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
        j = PostgresJournal(url, schema=schema, lease=0.3)
    yield j
    j.close()


# A test of the SQLite journal's own file, connections or locking.
sqlite_only = pytest.mark.parametrize("journal", ["sqlite"], indirect=True)


def peek(journal: Journal, run_id: str) -> list[tuple[str, dict[str, object]]]:
    """The steps' statuses and states, as the journal holds them (committed)."""
    loaded = journal.load(run_id)
    assert loaded is not None
    return [(step.status, json.loads(step.state)) for step in loaded[1]]


def test_a_completed_run_is_recorded(journal: Journal, sysdb: str) -> None:
    """D2, D4: each step executed with its state after; the run completed."""
    q = ActionQueue(name="signup", journal=journal, registry=registry)
    q.add(Write(sysdb, "a"))
    q.add(Write(sysdb, "b"))
    report = q.run()
    assert report.ok
    [run] = journal.runs()
    assert ("signup", "completed", 2, 0) == (run.name, run.status, run.steps, run.claims)
    steps = peek(journal, run.id)
    assert ["executed", "executed"] == [s for s, _ in steps]
    assert [f"{run.id}/0", f"{run.id}/1"] == [state["key"] for _, state in steps]
    assert ["a", "b"] == effects(sysdb)


def test_executing_is_committed_before_the_call(journal: Journal, sysdb: str) -> None:
    """D1/D2: inside execute, the journal already says executing, with the state before."""
    seen: list[object] = []

    @dataclasses.dataclass
    class Peek:
        value: int = 0

        def execute(self) -> None:
            step = actionqueues.current_step()
            seen.append(peek(journal, step.run_id)[step.index])
            self.value = 42

        def rollback(self) -> None:
            step = actionqueues.current_step()
            seen.append(peek(journal, step.run_id)[step.index])

    names = Registry()
    names.register("peek", Peek)
    q = ActionQueue(journal=journal, registry=names)
    q.add(Peek())
    q.add(Peek())
    q.execute()
    q.rollback()
    assert [
        ("executing", {"value": 0}),
        ("executing", {"value": 0}),
        ("rolling_back", {"value": 42}),
        ("rolling_back", {"value": 42}),
    ] == seen
    [run] = journal.runs()
    assert "rolled_back" == run.status
    assert ["rolled_back"] * 2 == [s for s, _ in peek(journal, run.id)]


def test_a_failed_run_records_the_failure_and_rollback(journal: Journal, sysdb: str) -> None:
    """D3, D4: a failing step is recorded failed, then every step rolled back."""
    q = ActionQueue(journal=journal, registry=registry)
    q.add(Write(sysdb, "a"))
    q.add(Write(sysdb, "b", fail=True))
    with pytest.raises(RuntimeError, match="b failed"):
        q.run()
    [run] = journal.runs()
    assert "rolled_back" == run.status
    assert "RuntimeError('b failed')" == run.error
    loaded = journal.load(run.id)
    assert loaded is not None
    assert [("rolled_back", 1, 1), ("rolled_back", 1, 1)] == [
        (s.status, s.attempts, s.rollback_attempts) for s in loaded[1]
    ]
    assert "RuntimeError('b failed')" == loaded[1][1].error
    assert [] == effects(sysdb)


def test_idempotency_key_is_stable_across_retries(journal: Journal) -> None:
    """D6: retries of a step see the same key; another step another key."""
    keys: list[str] = []

    @dataclasses.dataclass
    class Flaky:
        calls: int = 0

        def execute(self) -> None:
            keys.append(actionqueues.idempotency_key())
            self.calls += 1
            if self.calls < 3:
                raise actionqueues.ActionRetryException()

        def rollback(self) -> None:
            keys.append(actionqueues.idempotency_key())

    names = Registry()
    names.register("flaky", Flaky)
    q = ActionQueue(journal=journal, registry=names)
    q.add(Flaky())
    q.execute()
    q.rollback()
    assert 1 == len(set(keys))
    assert 4 == len(keys)
    with pytest.raises(LookupError, match="only available inside"):
        actionqueues.idempotency_key()


def test_unregistered_functions_and_non_json_state_are_refused_at_add(
    journal: Journal, sysdb: str
) -> None:
    """D11: a durable queue refuses, at add(), what it could not record or rebuild."""
    q = ActionQueue(journal=journal, registry=registry)
    with pytest.raises(InvalidActionError, match="this is a function"):
        q.add(lambda: None)
    with pytest.raises(InvalidActionError, match="Action, which is not registered"):
        q.add(actionqueues.Action())
    bad = Write(sysdb, "x")
    bad.value = {1, 2}  # type: ignore[assignment]
    with pytest.raises(StateError, match=r"'test.write' .* is not JSON"):
        q.add(bad)
    assert [] == journal.runs()


@sqlite_only
def test_bad_durable_arguments(journal: Journal) -> None:
    """Bad input: journal, registry, recovery and run_id are checked."""
    with pytest.raises(InvalidArgumentError, match="not a journal"):
        ActionQueue(journal="runs.db")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"not an actionqueues.Registry"):
        ActionQueue(journal=journal, registry={})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"rolled back .* or resumed"):
        ActionQueue(journal=journal, recovery="retry")
    with pytest.raises(InvalidArgumentError, match="non-empty string"):
        ActionQueue(journal=journal, run_id="")
    with pytest.raises(JournalError, match=r"from 0\.1 to 86400"):
        SQLiteJournal(journal.path, lease=0)
    with pytest.raises(JournalError, match=r"'process' .* or 'power'"):
        SQLiteJournal(journal.path, durability="disk")  # type: ignore[arg-type]


def test_registry_rules() -> None:
    """D8: names are unique and stable; only action classes register."""
    names = Registry()
    names.register("a", Write)
    names.register("a", Write)  # the same class again is fine
    with pytest.raises(InvalidActionError, match="already registered"):
        names.register("a", actionqueues.Action)
    with pytest.raises(InvalidActionError, match="needs a class with execute"):
        names.register("b", int)
    with pytest.raises(InvalidActionError, match="non-empty string"):
        names.register("", Write)
    assert ["a"] == names.names()


def test_custom_state_hooks(journal: Journal) -> None:
    """D8: to_state()/from_state() and encode=/decode= replace the default encoding."""

    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

        def execute(self) -> None:
            pass

        def rollback(self) -> None:
            pass

        def to_state(self) -> list[int]:
            return [self.cents]

        @classmethod
        def from_state(cls, state: list[int]) -> Money:
            return cls(state[0])

    names = Registry()
    names.register("money", Money)
    assert "[250]" == names.encode("money", Money(250))
    assert 250 == names.decode("money", "[250]").cents  # type: ignore[attr-defined]
    names.register("plain", actionqueues.Action, encode=lambda a: "x", decode=lambda s: 1)
    assert '"x"' == names.encode("plain", actionqueues.Action())
    with pytest.raises(StateError, match="cannot rebuild"):
        names.decode("money", "{}")


def test_journal_file_is_private_and_versioned(tmp_path: Path) -> None:
    """The journal file is created 0600; a newer schema is refused clearly."""
    path = tmp_path / "j.db"
    SQLiteJournal(path).close()
    assert 0o600 == stat.S_IMODE(os.stat(path).st_mode)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalError, match="schema version 99, newer"):
        SQLiteJournal(path)
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello, this is not a database, and it is long enough to matter")
    with pytest.raises(JournalError, match="not a database"):
        SQLiteJournal(not_a_db)


def test_durability_setting_reaches_sqlite(tmp_path: Path) -> None:
    """D9: WAL with synchronous NORMAL by default, FULL on request."""
    for durability, expected in (("process", 1), ("power", 2)):
        j = SQLiteJournal(tmp_path / f"{durability}.db", durability=durability)  # type: ignore[arg-type]
        db = j._db()
        assert "wal" == db.execute("PRAGMA journal_mode").fetchone()[0]
        assert expected == db.execute("PRAGMA synchronous").fetchone()[0]
        j.close()


@sqlite_only
def test_unwritable_journal_stops_before_the_side_effect(
    journal: Journal, sysdb: str, caplog: pytest.LogCaptureFixture
) -> None:
    """D10: a journal that cannot be written raises before the step's side effect."""

    def read_only_after_a(event: actionqueues.Event) -> None:
        if isinstance(event, actionqueues.StepSucceeded):
            journal._db().execute("PRAGMA query_only = 1")

    q = ActionQueue(journal=journal, registry=registry, listeners=[read_only_after_a])
    q.add(Write(sysdb, "a"))
    q.add(Write(sysdb, "b"))
    with (
        caplog.at_level(logging.ERROR, logger="actionqueues"),
        pytest.raises(JournalError, match="cannot be written: attempt to write a readonly"),
    ):
        q.run()
    # b's execute never ran; a ran and was rolled back although nothing could be
    # recorded: the compensation matters more than its record.
    assert [] == effects(sysdb)
    assert (1, 1) == (q.report.steps[0].attempts, q.report.steps[0].rollback_attempts)
    assert "rolling back step 1 without a journal record" in caplog.text
    journal._db().execute("PRAGMA query_only = 0")


def test_a_full_disk_is_a_clear_error(tmp_path: Path, sysdb: str) -> None:
    """D10: SQLITE_FULL ("database or disk is full") stops the run before the call."""
    j = SQLiteJournal(tmp_path / "full.db")
    db = j._db()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    q = ActionQueue(journal=j, registry=registry)
    for i in range(50):
        q.add(Write(sysdb, f"{i:02d}" + "x" * 2000))
    with pytest.raises(JournalError, match="full"):
        q.run()
    assert [] == effects(sysdb)
    j.close()


def test_a_locked_journal_is_a_clear_error(tmp_path: Path, sysdb: str) -> None:
    """D10: another writer holding the lock past busy_timeout gives a clear error."""
    j = SQLiteJournal(tmp_path / "locked.db", busy_timeout=0.1)
    holder = sqlite3.connect(j.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    q = ActionQueue(journal=j, registry=registry)
    q.add(Write(sysdb, "a"))
    with pytest.raises(JournalError, match="locked"):
        q.run()
    holder.execute("ROLLBACK")
    holder.close()
    assert [] == effects(sysdb)
    j.close()


def test_recovery_rolls_back_an_abandoned_run(journal: Journal, sysdb: str) -> None:
    """D5, D7: a failed run its owner dropped is rolled back once the lease expires."""
    q = ActionQueue(journal=journal, registry=registry)
    q.add(Write(sysdb, "a"))
    q.add(Write(sysdb, "b", fail=True))
    with pytest.raises(RuntimeError):
        q.execute()  # 0.8.2 style, and then the caller forgets rollback()
    [run] = journal.runs()
    assert [] == recover(journal, registry=registry)  # the lease is still held
    del q
    time.sleep(0.4)
    [result] = recover(journal, registry=registry)
    assert (run.id, "rolled_back", None) == (result.run_id, result.outcome, result.problem)
    assert ["rolled_back", "rolled_back"] == [s.status for s in result.steps]
    assert [] == effects(sysdb)
    assert 1 == journal.load(run.id)[0].claims  # type: ignore[index]
    assert [] == recover(journal, registry=registry)


def test_heartbeat_keeps_a_long_step_owned(journal: Journal) -> None:
    """D7: while a step runs longer than the lease, the owner keeps the run."""
    stolen: list[object] = []

    @dataclasses.dataclass
    class Slow:
        def execute(self) -> None:
            time.sleep(1.0)  # more than three leases
            stolen.extend(recover(journal, registry=names))

        def rollback(self) -> None:
            pass

    names = Registry()
    names.register("slow", Slow)
    q = ActionQueue(journal=journal, registry=names)
    q.add(Slow())
    q.run()
    assert [] == stolen
    assert "completed" == journal.runs()[0].status


def test_a_run_taken_over_stops_with_lease_lost(tmp_path: Path, sysdb: str) -> None:
    """D7: if a recoverer claimed the run, the old owner's next write fails."""
    path = tmp_path / "j.db"
    owner, thief = SQLiteJournal(path, lease=0.2), SQLiteJournal(path, lease=5)
    owner.renew = lambda run_ids: None  # type: ignore[method-assign]  # a frozen owner
    q = ActionQueue(journal=owner, registry=registry)

    @dataclasses.dataclass
    class Pause:
        def execute(self) -> None:
            time.sleep(0.3)
            assert thief.claim() is not None

        def rollback(self) -> None:
            pass

    registry.register("test.pause", Pause)
    q.add(Pause())
    q.add(Write(sysdb, "never"))
    with pytest.raises(LeaseLostError, match="no longer owned"):
        q.execute()
    assert [] == effects(sysdb)
    owner.close()
    thief.close()


@sqlite_only
def test_unknown_names_and_corrupt_state_are_left_untouched(journal: Journal, sysdb: str) -> None:
    """D8: recovery reports and skips runs it cannot rebuild; nothing is rewritten."""
    for _ in range(2):
        q = ActionQueue(journal=journal, registry=registry)
        q.add(Write(sysdb, "a", fail=True))
        with pytest.raises(RuntimeError):
            q.execute()
        del q
    first, second = (r.id for r in journal.runs())
    with contextlib.closing(sqlite3.connect(journal.path)) as db, db:
        db.execute("UPDATE steps SET action = 'gone' WHERE run_id = ?", (first,))
        db.execute(  # a step's state after it was added is its events'
            "UPDATE events SET state = '{not json' "
            "WHERE id / 4294967296 = (SELECT num FROM runs WHERE id = ?)",
            (second,),
        )
    before = {r: journal.load(r)[1] for r in (first, second)}  # type: ignore[index]
    time.sleep(0.4)
    results = {r.run_id: r for r in recover(journal, registry=registry)}
    assert "skipped" == results[first].outcome
    assert "'gone' is not registered" in (results[first].problem or "")
    assert "skipped" == results[second].outcome
    assert "cannot rebuild" in (results[second].problem or "")
    assert before == {r: journal.load(r)[1] for r in (first, second)}  # type: ignore[index]


def test_resume_mode_completes_an_interrupted_run(journal: Journal, sysdb: str) -> None:
    """D5: recovery="resume" executes the rest, the executing step again."""
    q = ActionQueue(journal=journal, registry=registry, recovery="resume")
    q.add(Write(sysdb, "a"))
    q.add(Write(sysdb, "b"))
    q.add(Write(sysdb, "c"))
    durable = q._durable
    q._begin_execute()
    q._drive(q._step_started(0, actionqueues.Phase.EXECUTE, 1))
    durable.step_done(0, "executed", durable.state(0, q._actions[0]), 1)  # type: ignore[union-attr]
    q._drive(q._step_started(1, actionqueues.Phase.EXECUTE, 1))
    durable.leave()  # type: ignore[union-attr]
    del q, durable
    time.sleep(0.4)
    [result] = recover(journal, registry=registry, listeners=[lambda event: None])
    assert "completed" == result.outcome
    assert ["executed"] * 3 == [s.status for s in result.steps]
    assert ["b", "c"] == effects(sysdb)  # a's side effect was never made in this test


def test_runs_listing_and_prune(journal: Journal, sysdb: str) -> None:
    """Finished runs are listed, filtered, and pruned by age; unfinished ones stay."""
    for name in ("x", "y"):
        q = ActionQueue(name=name, journal=journal, registry=registry)
        q.add(Write(sysdb, name))
        q.run()
    live = ActionQueue(name="live", journal=journal, registry=registry)
    live.add(Write(sysdb, "z", fail=True))
    with pytest.raises(RuntimeError):
        live.execute()
    assert ["live", "y", "x"] == [r.name for r in journal.runs()]
    assert ["x"] == [r.name for r in journal.runs(name="x")]
    assert ["live"] == [r.name for r in journal.runs(status="failed")]
    assert 1 == len(journal.runs(limit=1))
    assert [] == journal.runs(status="interrupted")
    assert 2 == journal.prune(before=time.time() + 1)
    assert ["live"] == [r.name for r in journal.runs()]
    assert journal.load("nope") is None


def test_open_journal_urls(tmp_path: Path) -> None:
    """A path or a sqlite:/// URL opens the SQLite journal; other schemes are refused."""
    os.chdir(tmp_path)
    j = open_journal("sqlite:///rel.db")
    assert Path("rel.db").exists()
    j.close()
    open_journal(tmp_path / "p.db").close()
    with pytest.raises(JournalError, match="Unsupported journal URL scheme 'mysql'"):
        open_journal("mysql://x")


def test_many_threads_share_one_journal(journal: Journal, sysdb: str) -> None:
    """Queues in several threads write one journal through their own connections."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for k in range(5):
                q = ActionQueue(journal=journal, registry=registry)
                q.add(Write(sysdb, f"{n}-{k}"))
                q.run()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [] == errors
    assert 20 == len(journal.runs(status="completed"))


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[bool]:
    """A real tmpfs of ``size`` mounted at ``path`` (True), or False where mounting is
    not allowed (then the caller makes SQLite's own limits stand in for the disk)."""
    path.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],  # noqa: S607
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)  # noqa: S607


def test_a_full_filesystem_stops_the_run_and_loses_nothing(tmp_path: Path, sysdb: str) -> None:
    """D10 on a real full disk: a clear error before the side effect; earlier runs intact."""
    with small_filesystem(tmp_path / "fs", "160k") as mounted:
        j = SQLiteJournal(tmp_path / "fs" / "journal.db")
        if not mounted:
            db = j._db()
            db.execute(
                f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0] + 8}"
            )
        first = ActionQueue(name="first", journal=j, registry=registry)
        first.add(Write(sysdb, "kept"))
        first.run()
        big = ActionQueue(name="big", journal=j, registry=registry)
        for i in range(60):
            big.add(Write(sysdb, f"big {i:02d} " + "x" * 4000))
        with pytest.raises(JournalError, match="full"):
            big.run()
        assert ["kept"] == effects(sysdb)  # nothing of "big" stayed, "first" untouched
        [run] = j.runs(name="first")
        assert "completed" == run.status
        j.close()


def test_a_read_only_filesystem_is_a_clear_error(tmp_path: Path, sysdb: str) -> None:
    """D10 on a read-only filesystem: refused before any side effect, clearly."""
    folder = tmp_path / "fs"
    with small_filesystem(folder, "1m") as mounted:
        j = SQLiteJournal(folder / "journal.db")
        done = ActionQueue(name="before", journal=j, registry=registry)
        done.add(Write(sysdb, "before"))
        done.run()
        if mounted:
            j.close()  # a filesystem with files open for writing cannot be remounted
            remounted = subprocess.run(
                ["mount", "-o", "remount,ro", str(folder)],  # noqa: S607
                capture_output=True,
                check=False,
            )
            assert 0 == remounted.returncode, remounted.stderr
        else:
            j._db().execute("PRAGMA query_only = 1")

        def sign_up_again() -> None:
            journal = SQLiteJournal(folder / "journal.db") if mounted else j
            q = ActionQueue(journal=journal, registry=registry)
            q.add(Write(sysdb, "never"))
            q.run()

        # Opening (WAL needs its shared-memory file) or the first write fails.
        with pytest.raises(JournalError, match=r"cannot be written|Cannot open the journal"):
            sign_up_again()
        assert ["before"] == effects(sysdb)
        j.close()


def test_group_commit_under_many_threads(tmp_path: Path, sysdb: str) -> None:
    """durability="power": concurrent queues share commits; every record lands."""
    j = SQLiteJournal(tmp_path / "power.db", durability="power")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for k in range(6):
                q = ActionQueue(journal=j, registry=registry)
                q.add(Write(sysdb, f"{n}-{k}-a"))
                q.add(Write(sysdb, f"{n}-{k}-b", fail=k == 5))
                with contextlib.suppress(RuntimeError):
                    q.run()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [] == errors
    assert 40 == len(j.runs(status="completed", limit=None))
    assert 8 == len(j.runs(status="rolled_back", limit=None))
    for run in j.runs(limit=None):
        loaded = j.load(run.id)
        assert loaded is not None
        expected = "executed" if run.status == "completed" else "rolled_back"
        assert [expected, expected] == [s.status for s in loaded[1]]
    assert 80 == len(effects(sysdb))
    j.close()


def test_a_lost_lease_in_a_group_fails_only_its_own_write(tmp_path: Path) -> None:
    """Group commit: one write's LeaseLostError leaves the batch's other writes in."""
    from actionqueues.journal import NewRun, StepChange
    from actionqueues.journal._sqlite import _Write

    j = SQLiteJournal(tmp_path / "g.db", durability="power")
    mine = _Write(
        (
            "r1",
            0,
            [StepChange(0, "executing", "{}")],
            None,
            None,
            NewRun("a", "rollback", [("x", "x", "{}")]),
        )
    )
    stolen = _Write(("r2", 7, [StepChange(0, "executing", "{}")], None, None, None))
    j._commit([mine, stolen])
    assert mine.error is None
    assert isinstance(stolen.error, LeaseLostError)
    loaded = j.load("r1")
    assert loaded is not None
    assert "executing" == loaded[1][0].status
    j.close()


def test_the_state_after_execute_survives_a_crash_right_after_it(tmp_path: Path) -> None:
    """D2: killed just after execute returned, recovery's rollback sees the new row id."""
    script = textwrap.dedent(
        """
        import contextlib, dataclasses, os, signal, sqlite3, sys, actionqueues
        command, app, journal = sys.argv[1:]
        names = actionqueues.Registry()

        @names.register("by-id")
        @dataclasses.dataclass
        class Insert:
            row_id: int | None = None
            def execute(self):
                with contextlib.closing(sqlite3.connect(app)) as db, db:
                    db.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY)")
                    self.row_id = db.execute("INSERT INTO users DEFAULT VALUES").lastrowid
            def rollback(self):
                if self.row_id is not None:
                    with contextlib.closing(sqlite3.connect(app)) as db, db:
                        db.execute("DELETE FROM users WHERE id = ?", (self.row_id,))

        def die(event):
            if isinstance(event, actionqueues.StepSucceeded):
                os.kill(os.getpid(), signal.SIGKILL)

        j = actionqueues.SQLiteJournal(journal, lease=0.2)
        if command == "run":
            q = actionqueues.ActionQueue(journal=j, registry=names, listeners=[die])
            q.add(Insert())
            q.add(Insert())
            q.run()
        else:
            print([r.outcome for r in actionqueues.recover(j, registry=names)])
        """
    )
    (tmp_path / "crashy.py").write_text(script)
    paths = [str(tmp_path / "app.db"), str(tmp_path / "j.db")]
    killed = subprocess.run(
        [sys.executable, str(tmp_path / "crashy.py"), "run", *paths], check=False
    )
    assert -9 == killed.returncode
    time.sleep(0.3)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "crashy.py"), "recover", *paths],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "['rolled_back']" == done.stdout.strip()
    with contextlib.closing(sqlite3.connect(tmp_path / "app.db")) as db, db:
        assert [] == db.execute("SELECT id FROM users").fetchall()


def test_rollback_after_completion_is_leased(journal: Journal, sysdb: str) -> None:
    """D7: a completed run rolled back later is owned again while it rolls back."""
    stolen: list[object] = []

    @dataclasses.dataclass
    class SlowUndo:
        def execute(self) -> None:
            pass

        def rollback(self) -> None:
            time.sleep(0.8)  # several leases
            stolen.extend(recover(journal, registry=names))

    names = Registry()
    names.register("slow-undo", SlowUndo)
    q = ActionQueue(journal=journal, registry=names)
    q.add(SlowUndo())
    q.run()
    q.rollback()
    assert [] == stolen
    assert "rolled_back" == journal.runs()[0].status


def test_a_closed_journal_refuses_new_runs(tmp_path: Path, sysdb: str) -> None:
    """Writing after close() would run without a heartbeat: refused clearly."""
    j = SQLiteJournal(tmp_path / "c.db")
    j.close()
    q = ActionQueue(journal=j, registry=registry)
    q.add(Write(sysdb, "a"))
    with pytest.raises(JournalError, match="is closed"):
        q.run()
    assert [] == effects(sysdb)


@sqlite_only
def test_recovery_keeps_earlier_rollback_failures_and_uses_policies(
    journal: Journal, sysdb: str
) -> None:
    """A rollback that failed under an earlier claim still makes the run
    rollback_failed; recover(rollback_retry=) retries the rollbacks it makes."""
    calls: list[str] = []

    @dataclasses.dataclass
    class Flaky:
        name: str

        def execute(self) -> None:
            pass

        def rollback(self) -> None:
            calls.append(self.name)
            if calls.count(self.name) < 2:
                raise TimeoutError(self.name)

    names = Registry()
    names.register("flaky-undo", Flaky)
    q = ActionQueue(journal=journal, registry=names)
    for name in "abc":
        q.add(Flaky(name))
    q.execute()
    run_id = journal.runs()[0].id
    with (
        contextlib.closing(sqlite3.connect(journal.path)) as db,
        db,
    ):  # as if: c undone, b failed, then a crash
        db.execute("UPDATE runs SET status = 'rolling_back' WHERE id = ?", (run_id,))
        for idx, status, error in ((2, "rolled_back", None), (1, "rollback_failed", "x")):
            db.execute(  # the step's events
                "UPDATE events SET status = ?, error = ? "
                "WHERE id / 4294967296 = (SELECT num FROM runs WHERE id = ?) AND idx = ?",
                (status, error, run_id, idx),
            )
    del q
    time.sleep(0.4)
    policy = actionqueues.RetryPolicy(on=TimeoutError, attempts=2, wait_initial=0, wait_jitter=0)
    [result] = recover(journal, registry=names, rollback_retry=policy)
    assert "rollback_failed" == result.outcome
    assert ["a", "a"] == calls  # only a was left to undo; retried once, then done
    assert ["rolled_back", "rollback_failed", "rolled_back"] == [s.status for s in result.steps]


def test_a_rollback_leaving_unrecordable_state_goes_on(journal: Journal) -> None:
    """A rollback whose state is no longer JSON is logged; earlier rollbacks still run."""
    undone: list[str] = []

    @dataclasses.dataclass
    class Messy:
        name: str
        junk: object = None

        def execute(self) -> None:
            pass

        def rollback(self) -> None:
            undone.append(self.name)
            self.junk = {1, 2}

    names = Registry()
    names.register("messy", Messy)
    q = ActionQueue(journal=journal, registry=names)
    q.add(Messy("a"))
    q.add(Messy("b"))
    q.execute()
    q.rollback()
    assert ["b", "a"] == undone
    assert "rolled_back" == journal.runs()[0].status


def test_a_refused_durable_add_leaves_nothing_behind(journal: Journal, sysdb: str) -> None:
    """A bad option on add() keeps neither the action nor its name or journal entry."""
    q = ActionQueue(journal=journal, registry=registry)
    with pytest.raises(actionqueues.InvalidPolicyError):
        q.add(Write(sysdb, "a"), name="first", retry=5)  # type: ignore[arg-type]
    q.add(Write(sysdb, "b"))
    assert q.run().ok
    assert ["Write"] == [s.name for s in q.report.steps]
    assert ["b"] == effects(sysdb)


@sqlite_only
def test_a_failed_executing_record_is_not_replayed(
    journal: Journal, sysdb: str, caplog: pytest.LogCaptureFixture
) -> None:
    """D10: when step b's "executing" write fails, b is never recorded as called, even
    once the journal can be written again."""

    def read_only_after_a(event: actionqueues.Event) -> None:
        if isinstance(event, actionqueues.StepSucceeded):
            journal._db().execute("PRAGMA query_only = 1")

    q = ActionQueue(journal=journal, registry=registry, listeners=[read_only_after_a])
    q.add(Write(sysdb, "a"))
    q.add(Write(sysdb, "b"))
    with caplog.at_level(logging.ERROR), pytest.raises(JournalError, match="readonly"):
        q.execute()
    journal._db().execute("PRAGMA query_only = 0")
    q.rollback()  # the next writes, once the journal works again
    [run] = journal.runs()
    loaded = journal.load(run.id)
    assert loaded is not None
    assert ("rolled_back", ["rolled_back", "pending"]) == (
        run.status,
        [s.status for s in loaded[1]],
    )
    assert [] == effects(sysdb)


def test_bad_one_commit_per_step_and_closed_recovery(journal: Journal) -> None:
    """Bad input: one_commit_per_step is a bool (and, deprecated, warns at the caller's
    line); recovering a closed journal is refused."""
    with pytest.raises(InvalidArgumentError, match="pass True or False"):
        ActionQueue(journal=journal, one_commit_per_step="no")  # type: ignore[arg-type]
    for cls in (ActionQueue, AsyncActionQueue):
        with pytest.warns(DeprecationWarning, match="no effect") as caught:
            cls(journal=journal, one_commit_per_step=True)
        assert [__file__] == [w.filename for w in caught]
    journal.close()
    with pytest.raises(JournalError, match="is closed"):
        recover(journal)


def test_a_decoder_building_a_non_action_is_skipped(journal: Journal) -> None:
    """D8: a registration whose decode= builds something that is not an action is
    reported and left untouched, and the recoverer goes on."""

    @dataclasses.dataclass
    class Fails:
        def execute(self) -> None:
            raise RuntimeError("no")

        def rollback(self) -> None:
            pass

    good, bad = Registry(), Registry()
    good.register("fails", Fails)
    bad.register("fails", Fails, decode=lambda state: 42)
    q = ActionQueue(journal=journal, registry=good)
    q.add(Fails())
    with pytest.raises(RuntimeError):
        q.execute()  # and the owner walks away without rolling back
    del q
    time.sleep(0.4)
    [result] = recover(journal, registry=bad)
    assert "skipped" == result.outcome
    assert "neither an action" in (result.problem or "")
    assert "failed" == journal.runs()[0].status


def test_two_records_of_one_step_in_one_write_apply_in_order(journal: Journal) -> None:
    """A write may carry a step's pending record and its next one (an "executed" kept
    after a failed write, then "rolling back"): the journal ends as if applied in
    order, whatever the backend."""
    new = NewRun("q", "rollback", [("x", "s0", "{}")])
    journal.record("r1", 0, [StepChange(0, "executing", '{"a":1}')], new=new)
    journal.record(
        "r1",
        0,
        [StepChange(0, "executed", '{"a":2}', 3), StepChange(0, "rolling_back", None)],
        status="rolling_back",
    )
    loaded = journal.load("r1")
    assert loaded is not None
    run, [step] = loaded
    assert ("rolling_back", "rolling_back", '{"a":2}', 3) == (
        run.status,
        step.status,
        step.state,
        step.attempts,
    )


def test_a_version_1_journal_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    """Schema 2 added parallel groups: a journal written by schema 1 opens, migrated,
    and its runs read back (with no groups)."""
    from actionqueues.journal import _schema

    path = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for statement in _schema.SQLITE_MIGRATIONS[1]:
            db.execute(statement)
        db.execute(
            "INSERT INTO runs VALUES ('old', 'q', 'completed', 'rollback', 'me', 0, 0, 1, 1, "
            "NULL, 1)"
        )
        db.execute(
            "INSERT INTO steps VALUES ('old', 0, 'x', 's', '{}', 'executed', 1, 0, NULL, NULL, 1)"
        )
        db.execute("PRAGMA user_version = 1")
    journal = SQLiteJournal(path)
    loaded = journal.load("old")
    assert loaded is not None
    assert [("executed", None)] == [(s.status, s.group) for s in loaded[1]]
    journal.close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert (3,) == db.execute("PRAGMA user_version").fetchone()


def test_a_version_2_journal_is_migrated_and_its_runs_recovered(tmp_path: Path, sysdb: str) -> None:
    """Schema 3 appends step events: a journal of schema 2 holding an interrupted run
    opens, migrated (its rows kept as they are, its runs numbered), and the run is
    recovered, its new records appended as events over its old rows; an older
    actionqueues is then refused by the version, not misled."""
    from actionqueues.journal import _schema

    path = tmp_path / "v2.db"
    state = json.dumps({"path": sysdb, "value": "a", "fail": False, "key": None})
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for version in (1, 2):
            for statement in _schema.SQLITE_MIGRATIONS[version]:
                db.execute(statement)
        for run_id in ("done", "old"):
            status = "completed" if run_id == "done" else "running"
            db.execute(
                "INSERT INTO runs VALUES (?, 'q', ?, 'rollback', 'gone', 0, 1, 1, 1, NULL, 2)",
                (run_id, status),
            )
            for idx, step in enumerate(
                ("executed", "executing" if run_id == "old" else "executed")
            ):
                db.execute(
                    "INSERT INTO steps VALUES (?, ?, 'test.write', 's', ?, ?, 1, 0, NULL, NULL, 1, "
                    "NULL)",
                    (run_id, idx, state, step),
                )
        db.execute("PRAGMA user_version = 2")
    with SQLiteJournal(path, lease=0.3) as journal:
        [result] = recover(journal, registry=registry)
        assert ("old", "rolled_back") == (result.run_id, result.outcome)
        loaded = journal.load("old")
        assert loaded is not None
        assert ["rolled_back", "rolled_back"] == [s.status for s in loaded[1]]
        assert [1, 1] == [s.rollback_attempts for s in loaded[1]]
        done = journal.load("done")
        assert done is not None
        assert ["executed", "executed"] == [s.status for s in done[1]]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert (3,) == db.execute("PRAGMA user_version").fetchone()
        assert [(1,), (2,)] == db.execute("SELECT num FROM runs ORDER BY num").fetchall()
        assert 4 == db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        # An older actionqueues still running inserts runs without a number: refused.
        with pytest.raises(sqlite3.IntegrityError, match="upgrade this one"):
            db.execute(
                "INSERT INTO runs VALUES ('older', 'q', 'running', 'rollback', 'x', 0, 0, 1, 1, "
                "NULL, 1, NULL)"
            )


@given(
    state=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_states_are_encoded_as_json_dumps_would(state: object) -> None:
    """The encoder built once writes exactly what json.dumps() would, keys sorted
    and compact, and refuses what it refuses."""
    from actionqueues._registry import _encode

    try:
        expected = json.dumps(state, allow_nan=False, separators=(",", ":"), sort_keys=True)
    except ValueError:
        with pytest.raises(ValueError, match="not JSON compliant"):
            _encode(state)
        return
    assert expected == _encode(state)
