"""The PostgreSQL journal's own guarantees, on the real server (see conftest's pg_url).

The contract every journal keeps (D1-D11) is tested on both backends in
test_durable.py and test_crash.py; here: fencing between machines, claims under
contention, concurrent schema creation, the database's clock, redacted passwords,
async queues, and the command as a long-running worker across a database restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from durable_actions import AsyncWrite, Write, registry, system
from test_crash import restart_postgres, started_at

import actionqueues
from actionqueues import (
    ActionQueue,
    AsyncActionQueue,
    JournalError,
    LeaseLostError,
    open_journal,
)
from actionqueues.journal import PostgresJournal

COMMAND = shutil.which("actionqueues", path=str(Path(sys.executable).parent))
ACTIONS = """
import dataclasses, actionqueues

@actionqueues.durable("pg.note")
@dataclasses.dataclass
class Note:
    text: str

    def execute(self):
        pass

    def rollback(self):
        pass
"""


@pytest.fixture
def sysdb(tmp_path: Path) -> str:
    path = str(tmp_path / "system.db")
    system(path).close()
    return path


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user_host = rest.split("@", 1)
    if len(user_host) == 1:
        return f"{scheme}://postgres:{password}@{rest}"
    user = user_host[0].split(":", 1)[0]
    return f"{scheme}://{user}:{password}@{user_host[1]}"


def test_open_journal_takes_a_postgresql_url_and_hides_its_password(
    pg_url: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-Pa55"  # noqa: S105 - a made-up password, to look for
    journal = open_journal(with_password(pg_url, secret), schema=pg_schema)
    assert isinstance(journal, PostgresJournal)
    assert secret not in repr(journal)
    assert ":***@" in repr(journal)
    journal.close()
    # Unreachable: the error names the server, never the password; nothing logged has it.
    unreachable = with_password("postgresql://127.0.0.1:1/test", secret)
    with caplog.at_level(logging.DEBUG), pytest.raises(JournalError) as caught:
        PostgresJournal(unreachable, connect_timeout=2)
    assert "cannot be reached" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in caplog.text


def test_bad_schema_names_are_refused(pg_url: str) -> None:
    for bad in ("Robert'); DROP TABLE x;--", "", "UPPER", "1abc"):
        with pytest.raises(JournalError, match="a schema name is lower-case"):
            PostgresJournal(pg_url, schema=bad)


def test_many_workers_create_the_schema_at_the_same_moment(pg_url: str, pg_schema: str) -> None:
    """The advisory lock: eight journals opened at once on a new schema all work."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        try:
            barrier.wait()
            PostgresJournal(pg_url, schema=pg_schema).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [] == errors
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f"SELECT version FROM {pg_schema}.version").fetchall()  # noqa: S608
    assert [(1,)] == rows


def test_a_newer_schema_is_refused(pg_url: str, pg_schema: str) -> None:
    PostgresJournal(pg_url, schema=pg_schema).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute(f"UPDATE {pg_schema}.version SET version = 99")  # noqa: S608
    with pytest.raises(JournalError, match="newer than this actionqueues understands"):
        PostgresJournal(pg_url, schema=pg_schema)


def test_leases_are_measured_by_the_database_clock(pg_url: str, pg_schema: str) -> None:
    journal = PostgresJournal(pg_url, schema=pg_schema, lease=7.0)
    q = ActionQueue(journal=journal, registry=registry)
    q.add(Write(os.devnull, "x"))
    q._begin_execute()
    q._step_started(0, actionqueues.Phase.EXECUTE, 1)
    server_now = journal.now()
    [row] = journal.runs()
    assert abs(row.lease_until - (server_now + 7.0)) < 1.0
    assert abs(row.created - server_now) < 1.0
    q._durable.leave()  # type: ignore[union-attr]
    journal.close()


def test_a_run_taken_over_by_another_machine_stops_with_lease_lost(
    pg_url: str, pg_schema: str, sysdb: str
) -> None:
    """Fencing: once another journal (another machine) claimed the run, the owner's
    next write is refused, before its next step's side effect."""
    owner = PostgresJournal(pg_url, schema=pg_schema, lease=0.3)
    thief = PostgresJournal(pg_url, schema=pg_schema, lease=30)
    owner._beat = lambda: None  # type: ignore[method-assign]  # a frozen machine
    claimed = []

    @dataclasses.dataclass
    class Stall:
        def execute(self) -> None:
            time.sleep(0.5)
            claimed.append(thief.claim())

        def rollback(self) -> None:
            pass

    registry.register("test.pg.stall", Stall)
    q = ActionQueue(journal=owner, registry=registry)
    q.add(Stall())
    q.add(Write(sysdb, "never"))
    with pytest.raises(LeaseLostError, match="no longer owned"):
        q.execute()
    assert claimed[0] is not None
    assert q._durable.run_id == claimed[0].id  # type: ignore[union-attr]
    with sqlite3.connect(sysdb) as db:
        assert [] == db.execute("SELECT * FROM effects").fetchall()
    owner.close()
    thief.close()


def test_claims_under_contention_never_take_a_run_twice(
    pg_url: str, pg_schema: str, sysdb: str
) -> None:
    """SKIP LOCKED: eight journals claim from one pool of abandoned runs at once."""
    maker = PostgresJournal(pg_url, schema=pg_schema, lease=0.2)
    for _ in range(40):
        q = ActionQueue(journal=maker, registry=registry)
        q.add(Write(sysdb, "x"))
        q._begin_execute()
        q._step_started(0, actionqueues.Phase.EXECUTE, 1)
        q._durable.leave()  # type: ignore[union-attr]
    maker._closed.set()  # no more renewals
    time.sleep(0.4)
    claimed: Counter[str] = Counter()
    lock = threading.Lock()

    def claim_all() -> None:
        journal = PostgresJournal(pg_url, schema=pg_schema, lease=60)
        while (row := journal.claim()) is not None:
            with lock:
                claimed[row.id] += 1
        journal.close()

    threads = [threading.Thread(target=claim_all) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 40 == len(claimed)
    assert {1} == set(claimed.values())
    maker._closed.clear()
    maker.close()


@registry.register("test.pg.slow")
@dataclasses.dataclass
class Slow:
    """An async step that takes a while (for the loop to go on meanwhile)."""

    async def execute(self) -> None:
        await asyncio.sleep(0.01)

    async def rollback(self) -> None:
        await asyncio.sleep(0)


def test_async_queues_on_postgres_write_off_the_loop(
    pg_url: str, pg_schema: str, sysdb: str
) -> None:
    journal = PostgresJournal(pg_url, schema=pg_schema)
    loop_thread: list[int] = []
    writers: set[int] = set()
    record = journal.record

    def noting(*args: object, **kwargs: object) -> None:
        writers.add(threading.get_ident())
        record(*args, **kwargs)  # type: ignore[arg-type]

    journal.record = noting  # type: ignore[method-assign]

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        queues = []
        for n in range(20):
            q = AsyncActionQueue(journal=journal, registry=registry, name=f"a{n}")
            q.add(AsyncWrite(sysdb, f"{n}"))
            q.add_parallel(Slow(), Slow())
            queues.append(q)
        await asyncio.gather(*(q.run() for q in queues))

    asyncio.run(main())
    assert loop_thread[0] not in writers
    assert 20 == len([r for r in journal.runs() if r.status == "completed"])
    journal.close()


def test_the_command_is_a_worker_that_survives_a_database_restart(
    pg_url: str, pg_schema: str, tmp_path: Path, sysdb: str
) -> None:
    """`recover --watch --journal postgresql://...`: the database restarts under it;
    it backs off, reconnects, recovers what was interrupted, and on SIGTERM exits 0."""
    assert COMMAND is not None
    journal = PostgresJournal(pg_url, schema=pg_schema, lease=0.3)
    env = {
        **os.environ,
        "ACTIONQUEUES_JOURNAL": pg_url,
        "ACTIONQUEUES_SCHEMA": pg_schema,
        "PYTHONPATH": str(tmp_path),
        "COLUMNS": "200",
    }
    (tmp_path / "pg_cli_actions.py").write_text(ACTIONS)
    sys.path.insert(0, str(tmp_path))
    try:
        import pg_cli_actions
    finally:
        sys.path.pop(0)
    worker = subprocess.Popen(
        [COMMAND, "recover", "--watch", "--interval", "0.1", "--import", "pg_cli_actions"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(1.5)  # the worker is up, connected, and polling
    assert worker.poll() is None
    before = started_at(pg_url)
    restart_postgres(down=2.0)  # an outage the worker cannot miss
    assert before != started_at(pg_url)
    assert worker.poll() is None  # it waited for the server (the pool reconnects)
    journal.close()
    journal = PostgresJournal(pg_url, schema=pg_schema, lease=0.3)
    q = ActionQueue(journal=journal)  # the default registry, as the command's
    q.add(pg_cli_actions.Note("a"))
    q._begin_execute()
    q._step_started(0, actionqueues.Phase.EXECUTE, 1)
    q._durable.leave()  # type: ignore[union-attr]
    run_id = q._durable.run_id  # type: ignore[union-attr]
    journal._closed.set()  # abandoned: the worker must take it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        loaded = journal.load(run_id)
        if loaded is not None and loaded[0].status == "rolled_back":
            break
        time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)
    assert 0 == worker.returncode, err
    assert f"{run_id} (unnamed): rolled_back" in out
    assert "stopped (SIGTERM)" in out
    journal._closed.clear()
    journal.close()


def test_without_the_extra_the_error_says_how_to_install_it() -> None:
    """No psycopg installed (hidden here): a clear error, before any connection."""
    code = (
        "import sys; sys.modules['psycopg_pool'] = None; sys.modules['psycopg'] = None\n"
        "from actionqueues import open_journal, JournalError\n"
        "try:\n"
        "    open_journal('postgresql://app:pw@127.0.0.1:1/db')\n"
        "except JournalError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'actionqueues[postgres]'" in out.stdout
