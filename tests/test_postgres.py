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
from actionqueues.journal import NewRun, PostgresJournal, StepChange

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
    assert [(_postgres_schema_version(),)] == rows


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


def test_a_write_racing_a_claim_writes_nothing(pg_url: str, pg_schema: str) -> None:
    """Fencing through a row lock: a write that meets a claim in flight waits for it,
    then finds the run taken, and writes none of its parts."""
    old = PostgresJournal(pg_url, schema=pg_schema, lease=60)
    new = NewRun("q", "rollback", [("x", "s0", "{}"), ("x", "s1", "{}")])
    old.record("A", 0, [StepChange(0, "executing", '{"v":0}')], new=new)
    outcome: list[str] = []
    with psycopg.connect(pg_url) as claim:  # a recoverer's claim, not yet committed
        claim.execute(
            f"UPDATE {pg_schema}.runs SET owner = 'them', claims = claims + 1 "  # noqa: S608
            "WHERE id = 'A'"
        )

        def write() -> None:
            try:
                old.record(
                    "A",
                    0,
                    [StepChange(0, "executed", '{"v":"late"}', 1), StepChange(1, "executing")],
                    status="running",
                )
                outcome.append("written")
            except LeaseLostError:
                outcome.append("lease lost")

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)  # the write waits for the claim's lock
        claim.commit()
        writer.join()
    loaded = old.load("A")
    assert loaded is not None
    assert ["lease lost"] == outcome
    assert [("executing", '{"v":0}'), ("pending", "{}")] == [(s.status, s.state) for s in loaded[1]]
    old.close()


def test_a_new_runs_insert_made_twice_inserts_it_once(pg_url: str, pg_schema: str) -> None:
    """After a commit whose reply was lost, the first write is made again: no error."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    new = NewRun("q", "rollback", [("x", "s0", "{}")])
    journal.record("N", 0, [StepChange(0, "executing", "{}")], new=new)
    journal.record("N", 0, [StepChange(0, "executing", "{}")], new=new)
    assert 1 == len(journal.runs())
    journal.close()


def test_connections_the_server_dropped_are_replaced_without_a_failed_write(
    pg_url: str, pg_schema: str
) -> None:
    """As after a restart: every pooled connection is dead; the next write goes
    through on a fresh one."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    new = NewRun("q", "rollback", [("x", "s0", "{}")])
    journal.record("D", 0, [StepChange(0, "executing", "{}")], new=new)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'actionqueues' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert killed
    journal.record("D", 0, [StepChange(0, "executed", "{}", 1)])
    loaded = journal.load("D")
    assert loaded is not None
    assert "executed" == loaded[1][0].status
    journal.close()


def test_a_journal_that_cannot_be_opened_leaves_nothing_running(
    pg_url: str, pg_schema: str
) -> None:
    PostgresJournal(pg_url, schema=pg_schema).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.version SET version = 99")  # noqa: S608
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(JournalError, match="newer"):
        PostgresJournal(pg_url, schema=pg_schema)
    assert before == {t.name for t in threading.enumerate()}


def test_passwords_are_redacted_wherever_they_are_written() -> None:
    from actionqueues.journal._postgres import redact

    assert "postgresql://app:***@db:5432/x" == redact("postgresql://app:pw@db:5432/x")
    assert "postgresql://db/x?password=***&sslmode=require" == redact(
        "postgresql://db/x?password=pw&sslmode=require"
    )
    assert "postgresql://app:***@h1:5432,h2:5433/x" == redact(
        "postgresql://app:pw@h1:5432,h2:5433/x"
    )
    assert "host=db password=***" == redact("host=db password=s3cr3t", "s3cr3t")


def test_a_reserved_word_is_a_schema_name_too(pg_url: str) -> None:
    try:
        journal = PostgresJournal(pg_url, schema="order")
        assert [] == journal.runs()
        journal.close()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "order" CASCADE')


def test_a_version_1_schema_is_migrated_and_keeps_its_runs(pg_url: str, pg_schema: str) -> None:
    from actionqueues.journal import _postgres

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.version (version integer)")
        conn.execute(f"INSERT INTO {pg_schema}.version VALUES (1)")  # noqa: S608
        for statement in _postgres._MIGRATIONS[1]:
            conn.execute(statement.replace("{s}", pg_schema))
        conn.execute(
            f"INSERT INTO {pg_schema}.runs VALUES ('old', 'q', 'completed', 'rollback', "  # noqa: S608
            "'me', 0, 0, 1, 1, NULL, 1)"
        )
    journal = PostgresJournal(pg_url, schema=pg_schema)
    assert ["old"] == [r.id for r in journal.runs()]
    journal.close()
    with psycopg.connect(pg_url) as conn:
        assert (2,) == conn.execute(f"SELECT version FROM {pg_schema}.version").fetchone()  # noqa: S608


def _postgres_schema_version() -> int:
    from actionqueues.journal import _postgres

    return _postgres.SCHEMA_VERSION
