"""The PostgreSQL journal's own guarantees, on the real server (see conftest's pg_url).

The contract every journal keeps (D1-D11) is tested on both backends in
test_durable.py and test_crash.py; here: fencing between machines, claims under
contention, concurrent schema creation, the database's clock, redacted passwords,
async queues, the command as a long-running worker across a database restart, run
ids that are never reused (across a lost COMMIT reply, through a proxy that loses
it), failing fast when the server cannot be reached, read-only opening, pruning and
releasing. Bad parameters are in test_bad_input_postgres.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from durable_actions import AsyncWrite, Write, registry
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
    """open_journal() makes a PostgresJournal; its password is in no repr, error or log."""
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
    assert "cannot be opened" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in caplog.text


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
    """A journal written by a newer actionqueues is refused, not migrated down."""
    PostgresJournal(pg_url, schema=pg_schema).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute(f"UPDATE {pg_schema}.version SET version = 99")  # noqa: S608
    with pytest.raises(JournalError, match="newer than this actionqueues understands"):
        PostgresJournal(pg_url, schema=pg_schema)


def test_leases_are_measured_by_the_database_clock(pg_url: str, pg_schema: str) -> None:
    """Leases and times are the server's clock, not this machine's."""
    journal = PostgresJournal(pg_url, schema=pg_schema, lease=7.0)
    q = ActionQueue(journal=journal, registry=registry)
    q.add(Write(os.devnull, "x"))
    q._begin_execute()
    q._drive(q._step_started(0, actionqueues.Phase.EXECUTE, 1))
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
    owner.renew = lambda run_ids: None  # type: ignore[method-assign]  # a frozen machine
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
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
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
        q._drive(q._step_started(0, actionqueues.Phase.EXECUTE, 1))
        q._durable.leave()  # type: ignore[union-attr]
    maker.renew = lambda run_ids: None  # type: ignore[method-assign]  # no more renewals
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
    """Async queues' journal writes are made in worker threads, never on the loop."""
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
    q._drive(q._step_started(0, actionqueues.Phase.EXECUTE, 1))
    q._durable.leave()  # type: ignore[union-attr]
    run_id = q._durable.run_id  # type: ignore[union-attr]
    journal.renew = lambda run_ids: None  # type: ignore[method-assign]  # abandoned: the worker must take it
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


class Proxy:
    """A TCP proxy in front of the test server that loses a COMMIT, as a network or
    a server restart can: ``drop`` lists what to do at each of the next COMMITs,
    ``("reply", None)`` (the server commits, the client never hears of it) or
    ``("commit", meanwhile)`` (the COMMIT never reaches the server, whose backend
    then aborts; ``meanwhile`` runs before the client sees the connection drop)."""

    def __init__(self, url: str) -> None:
        info = psycopg.conninfo.conninfo_to_dict(url)
        host = str(info.get("host") or "127.0.0.1")
        if host.startswith("/"):
            pytest.skip("the proxy forwards TCP; the test server is on a Unix socket")
        self.target = (host, int(info.get("port") or 5432))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        port = self.listener.getsockname()[1]
        # No TLS nor GSS encryption through the proxy: it must see the COMMIT.
        self.url = psycopg.conninfo.make_conninfo(
            url, host="127.0.0.1", port=str(port), sslmode="disable", gssencmode="disable"
        )
        self.drop: list[tuple[str, Callable[[], None] | None]] = []
        self.dropped = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            swallow = threading.Event()
            with self.lock:
                self.sockets += (client, server)
                for target in (self._up, self._down):
                    thread = threading.Thread(
                        target=target, args=(client, server, swallow), daemon=True
                    )
                    self.threads.append(thread)
                    thread.start()

    def _plan(self, data: bytes) -> tuple[str, Callable[[], None] | None] | None:
        """What to do with this message from the client: a simple query "COMMIT"."""
        if b"Q\x00\x00\x00\x0bCOMMIT\x00" not in data:
            return None
        with self.lock:
            if not self.drop:
                return None
            self.dropped += 1
            return self.drop.pop(0)

    def _up(self, client: socket.socket, server: socket.socket, swallow: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                plan = self._plan(data)
                if plan is not None and plan[0] == "commit":
                    server.shutdown(socket.SHUT_RDWR)  # the backend aborts, uncommitted
                    if plan[1] is not None:
                        plan[1]()
                    break
                if plan is not None:
                    swallow.set()  # the server's reply to this COMMIT is lost
                server.sendall(data)
        self._cut(client, server)

    def _down(self, client: socket.socket, server: socket.socket, swallow: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while (data := server.recv(65536)) and not swallow.is_set():
                client.sendall(data)
        self._cut(client, server)

    @staticmethod
    def _cut(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopping.set()
        with self.lock:
            self._cut(*self.sockets)
        for thread in list(self.threads):
            thread.join()
        for sock in [*self.sockets, self.listener]:
            sock.close()


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    """A proxy to the test server that can lose a COMMIT (see Proxy)."""
    with contextlib.closing(Proxy(pg_url)) as made:
        yield made


def test_a_first_write_whose_commit_reply_was_lost_succeeds_on_its_retry(
    proxy: Proxy, pg_schema: str
) -> None:
    """The run was committed, the reply lost: the retry finds the run its own, not taken."""
    journal = PostgresJournal(proxy.url, schema=pg_schema)
    proxy.drop = [("reply", None)]
    new = NewRun("q", "rollback", [("x", "s0", "{}"), ("x", "s1", "{}")])
    journal.record("R", 0, [StepChange(0, "executing", '{"v":1}', 1)], new=new)
    loaded = journal.load("R")
    assert loaded is not None
    assert 1 == proxy.dropped
    assert (["R"], [("executing", '{"v":1}'), ("pending", "{}")]) == (
        [r.id for r in journal.runs()],
        [(s.status, s.state) for s in loaded[1]],
    )
    journal.close()


def test_a_run_whose_first_commit_is_unknown_is_recognised_by_its_next_write(
    proxy: Proxy, pg_schema: str
) -> None:
    """Both replies lost: the same run's next write finds it its own; another's is refused."""
    journal = PostgresJournal(proxy.url, schema=pg_schema)
    proxy.drop = [("reply", None), ("reply", None)]
    new = NewRun("q", "rollback", [("x", "s0", "{}")])
    with pytest.raises(JournalError, match="cannot be written"):
        journal.record("U", 0, [StepChange(0, "executing", '{"v":1}', 1)], new=new)
    other = NewRun("q", "rollback", [("x", "s0", "{}")])
    with pytest.raises(JournalError, match="already holds a run with id 'U'"):
        journal.record("U", 0, [StepChange(0, "executing", '{"v":2}', 1)], new=other)
    journal.record("U", 0, [StepChange(0, "failed", None, 1, "E")], "failed", "E", new=new)
    loaded = journal.load("U")
    assert loaded is not None
    assert (2, "failed", [("failed", '{"v":1}')]) == (
        proxy.dropped,
        loaded[0].status,
        [(s.status, s.state) for s in loaded[1]],
    )
    journal.close()


def test_a_retried_first_write_never_joins_a_run_inserted_meanwhile(
    proxy: Proxy, pg_schema: str
) -> None:
    """COMMIT lost, the id inserted meanwhile on the same journal: the retry is refused."""
    journal = PostgresJournal(proxy.url, schema=pg_schema)
    rival = NewRun("rival", "rollback", [("x", "r0", '{"rival":0}')])

    def meanwhile() -> None:
        journal.record("R", 0, [StepChange(0, "executing", '{"rival":1}', 1)], new=rival)

    proxy.drop = [("commit", meanwhile)]
    new = NewRun("q", "rollback", [("x", "s0", "{}"), ("x", "s1", "{}")])
    with pytest.raises(JournalError) as caught:
        journal.record("R", 0, [StepChange(0, "executing", '{"v":1}', 1)], new=new)
    loaded = journal.load("R")
    assert loaded is not None
    assert (False, True) == (
        isinstance(caught.value, LeaseLostError),
        "already holds a run with id 'R'" in str(caught.value),
    )
    assert ("rival", [("executing", '{"rival":1}')]) == (
        loaded[0].name,
        [(s.status, s.state) for s in loaded[1]],
    )
    journal.close()


def test_a_run_id_already_used_is_refused_and_the_first_run_is_unchanged(
    pg_url: str, pg_schema: str, sysdb: str
) -> None:
    """One after the other: the second queue's first write is refused, nothing run."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    first = ActionQueue(journal=journal, registry=registry, run_id="x", name="first")
    first.add(Write(sysdb, "first"))
    first.run()
    before = journal.load("x")
    second = ActionQueue(journal=journal, registry=registry, run_id="x", name="second")
    second.add(Write(sysdb, "second"))
    with pytest.raises(JournalError) as caught:
        second.run()
    assert (False, True) == (
        isinstance(caught.value, LeaseLostError),
        "already holds a run with id 'x'" in str(caught.value),
    )
    assert before == journal.load("x")
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
        assert ([("first",)], []) == (
            db.execute("SELECT value FROM effects").fetchall(),
            db.execute("SELECT * FROM compensations").fetchall(),
        )
    journal.close()


def test_a_run_id_held_by_another_machines_unfinished_run_is_refused(
    pg_url: str, pg_schema: str, sysdb: str
) -> None:
    """Not a lost lease: the id is taken, and the other machine's run is untouched."""
    theirs = PostgresJournal(pg_url, schema=pg_schema)
    mine = PostgresJournal(pg_url, schema=pg_schema)
    new = NewRun("theirs", "rollback", [("test.write", "s0", "{}")])
    theirs.record("y", 0, [StepChange(0, "executing", '{"v":0}', 1)], new=new)
    before = theirs.load("y")
    q = ActionQueue(journal=mine, registry=registry, run_id="y")
    q.add(Write(sysdb, "mine"))
    with pytest.raises(JournalError) as caught:
        q.run()
    assert "lease expired" not in str(caught.value)
    assert "already holds a run with id 'y'" in str(caught.value)
    assert before == theirs.load("y")
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
        assert [] == db.execute("SELECT * FROM effects").fetchall()
    theirs.close()
    mine.close()


def test_two_threads_starting_one_run_id_on_one_journal_run_it_once(
    pg_url: str, pg_schema: str, sysdb: str
) -> None:
    """At the same moment, on one journal object (one owner): exactly one runs."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def start(value: str) -> None:
        q = ActionQueue(journal=journal, registry=registry, run_id="z")
        q.add(Write(sysdb, value))
        barrier.wait()
        try:
            q.run()
            outcomes.append("ran")
        except JournalError as exc:
            outcomes.append("taken" if "already holds a run with id 'z'" in str(exc) else str(exc))

    threads = [threading.Thread(target=start, args=(v,)) for v in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = journal.load("z")
    assert loaded is not None
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
        effects = db.execute("SELECT value FROM effects").fetchall()
    assert (["ran", "taken"], 1, "completed") == (sorted(outcomes), len(effects), loaded[0].status)
    journal.close()


RACER = """
import os, sys, time
from durable_actions import Write, registry
from actionqueues import ActionQueue, JournalError
from actionqueues.journal import PostgresJournal

url, schema, sysdb, go, value = sys.argv[1:]
journal = PostgresJournal(url, schema=schema)
q = ActionQueue(journal=journal, registry=registry, run_id="same")
q.add(Write(sysdb, value))
while not os.path.exists(go):
    time.sleep(0.001)
try:
    q.run()
    print("ran")
except JournalError as exc:
    print("taken" if "already holds a run with id 'same'" in str(exc) else exc)
journal.close()
"""


def test_two_processes_starting_one_run_id_run_it_once(
    pg_url: str, pg_schema: str, sysdb: str, tmp_path: Path
) -> None:
    """At the same moment, in two processes: one runs, the other is told the id is taken."""
    PostgresJournal(pg_url, schema=pg_schema).close()  # the schema, made once
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, pg_url, pg_schema, sysdb, str(go), value],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for value in ("a", "b")
    ]
    time.sleep(1.0)  # both are ready and waiting
    go.touch()
    results = [racer.communicate(timeout=60) for racer in racers]
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
        effects = db.execute("SELECT value FROM effects").fetchall()
    assert (["ran", "taken"], 1) == (sorted(out.strip() for out, _ in results), len(effects))


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
    """A refused opening leaves no pool threads behind."""
    PostgresJournal(pg_url, schema=pg_schema).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.version SET version = 99")  # noqa: S608
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(JournalError, match="newer"):
        PostgresJournal(pg_url, schema=pg_schema)
    assert before == {t.name for t in threading.enumerate()}


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        ("postgresql://app:Pw1@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgres://app:Pw1@h1:5432,h2:5433/x", "postgres://app:***@h1:5432,h2:5433/x"),
        ("postgresql://app:P?w#1:x@db/x", "postgresql://app:***@db/x"),  # libpq allows ? # :
        ("postgresql://app:P%40w1@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:P@w1@db/x", "postgresql://app:***@db/x"),  # an unencoded @
        ("postgresql://app:P/w1@db/x", "postgresql://app:***@db/x"),  # an unencoded /
        (
            "postgresql://db/x?password=Pw1&sslmode=require",
            "postgresql://db/x?password=***&sslmode=require",
        ),
        (
            "postgresql://db/x?sslmode=require&PASSWORD=Pw1",
            "postgresql://db/x?sslmode=require&PASSWORD=***",
        ),
        ("postgresql://db/x?password=P&w1", "postgresql://db/x?password=***"),  # an unencoded &
        ("host=db password=Pw1 dbname=x", "host=db password=*** dbname=x"),
        ("host=db sslpassword=Pw1 dbname=x", "host=db sslpassword=*** dbname=x"),
        ("postgresql://db/x?sslpassword=Pw1", "postgresql://db/x?sslpassword=***"),
        ("postgresql+psycopg://bob:Pw1@db/x", "postgresql+psycopg://bob:***@db/x"),
        ("host=db password = Pw1", "host=db password = ***"),
        ("password=Pw1 host=db", "password=*** host=db"),
        ("host=db password='P w1' dbname=x", "host=db password=*** dbname=x"),
        ("host=db password='P\\'w1' dbname=x", "host=db password=*** dbname=x"),
        ("host=db password=P\\ w1", "host=db password=***"),
        ("host=db password='P w1", "host=db password=***"),  # unterminated
        ("host=db password=P w1 dbname=x", "host=db password=*** dbname=x"),  # unquoted space
        ("host=db\tpassword=Pw1", "host=db\tpassword=***"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),  # nothing to hide
    ],
)
def test_passwords_are_redacted_in_every_form_libpq_accepts(conninfo: str, shown: str) -> None:
    """URL user:password@, ?password=, keyword password=..., quoted or not, mistyped."""
    from actionqueues.journal._redact import redact

    assert shown == redact(conninfo)


def test_redact_also_hides_the_secret_wherever_it_appears() -> None:
    """Given the parsed password, redact() hides it anywhere, as in a server's message."""
    from actionqueues.journal._redact import redact

    assert "for *** at host=db password=***" == redact(
        "for s3cr3t at host=db password=s3cr3t", "s3cr3t"
    )


def test_a_reserved_word_is_a_schema_name_too(pg_url: str) -> None:
    """A schema named after a reserved word works (its name is always quoted)."""
    try:
        journal = PostgresJournal(pg_url, schema="order")
        assert [] == journal.runs()
        journal.close()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "order" CASCADE')


def test_a_version_1_schema_is_migrated_and_keeps_its_runs(pg_url: str, pg_schema: str) -> None:
    """A version 1 journal opened to write is migrated to the current version."""
    from actionqueues.journal import _schema

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.version (version integer)")
        conn.execute(f"INSERT INTO {pg_schema}.version VALUES (1)")  # noqa: S608
        for statement in _schema.POSTGRES_MIGRATIONS[1]:
            conn.execute(statement.replace("{s}", pg_schema))
        conn.execute(
            f"INSERT INTO {pg_schema}.runs VALUES ('old', 'q', 'completed', 'rollback', "  # noqa: S608
            "'me', 0, 0, 1, 1, NULL, 1)"
        )
    journal = PostgresJournal(pg_url, schema=pg_schema)
    assert ["old"] == [r.id for r in journal.runs()]
    journal.close()
    with psycopg.connect(pg_url) as conn:
        version = conn.execute(f"SELECT version FROM {pg_schema}.version").fetchone()  # noqa: S608
        assert (_schema.SCHEMA_VERSION,) == version


def test_a_version_2_schema_is_migrated_and_its_runs_recovered(
    pg_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """Schema 3 appends step events: an interrupted run written by schema 2 is
    recovered after the migration, its new records appended over its old rows."""
    from durable_actions import registry

    from actionqueues.journal import _schema

    state = json.dumps({"path": str(tmp_path / "s.db"), "value": "a", "fail": False, "key": None})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.version (version integer)")
        conn.execute(f"INSERT INTO {pg_schema}.version VALUES (2)")  # noqa: S608
        for version in (1, 2):
            for statement in _schema.POSTGRES_MIGRATIONS[version]:
                conn.execute(statement.replace("{s}", pg_schema))
        conn.execute(
            f"INSERT INTO {pg_schema}.runs VALUES ('old', 'q', 'running', 'rollback', "  # noqa: S608
            "'gone', 0, 1, 1, 1, NULL, 2)"
        )
        for idx, status in enumerate(("executed", "executing")):
            conn.execute(
                f"INSERT INTO {pg_schema}.steps VALUES ('old', %s, 'test.write', 's', %s, %s, "  # noqa: S608
                "1, 0, NULL, NULL, 1, NULL)",
                (idx, state, status),
            )
    journal = PostgresJournal(pg_url, schema=pg_schema, lease=0.3)
    try:
        [result] = actionqueues.recover(journal, registry=registry)
        assert "rolled_back" == result.outcome
        loaded = journal.load("old")
        assert loaded is not None
        assert [("rolled_back", 1)] * 2 == [(s.status, s.rollback_attempts) for s in loaded[1]]
    finally:
        journal.close()
    with psycopg.connect(pg_url) as conn:
        events = conn.execute(f"SELECT count(*) FROM {pg_schema}.events").fetchone()  # noqa: S608
        assert (4,) == events
        # An older actionqueues still running inserts runs without a number: refused.
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(
                f"INSERT INTO {pg_schema}.runs VALUES ('older', 'q', 'running', 'rollback', "  # noqa: S608
                "'x', 0, 0, 1, 1, NULL, 1)"
            )


def _postgres_schema_version() -> int:
    from actionqueues.journal import _schema

    return _schema.SCHEMA_VERSION


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pool_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("psycopg.pool") and r.levelno >= logging.WARNING
    ]


def test_a_database_that_does_not_exist_fails_at_once_with_the_servers_reason(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No waiting out connect_timeout, no pool retries logged: the server's own words."""
    url = psycopg.conninfo.make_conninfo(pg_url, dbname="aq_no_such_database")
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(JournalError) as caught:
        PostgresJournal(url)
    elapsed = time.monotonic() - started
    assert (True, True, []) == (
        elapsed < 2,
        'database "aq_no_such_database" does not exist' in str(caught.value),
        _pool_warnings(caplog),
    )


def test_a_closed_port_fails_at_once_and_the_pool_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connection refused: reported at once, with libpq's reason, before any pool."""
    url = f"postgresql://postgres@127.0.0.1:{_free_port()}/test"
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(JournalError) as caught:
        PostgresJournal(url)
    elapsed = time.monotonic() - started
    assert (True, True, True, []) == (
        elapsed < 2,
        "cannot be opened" in str(caught.value),
        "Connection refused" in str(caught.value),
        _pool_warnings(caplog),
    )


def test_a_keyword_connection_string_never_shows_its_password(
    pg_url: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """host=... password='...': out of repr(), errors and logs, quoted or not."""
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    base = " ".join(f"{k}={v}" for k, v in info.items() if k != "password")
    for conninfo, pieces in (
        (f"{base} password='Qv8 Lm3'", ("Qv8", "Lm3")),
        (f"{base} password = Kx7Jw2", ("Kx7Jw2",)),
        (f"{base} password='Rz\\'9 Tq'", ("Rz", "9 Tq")),
    ):
        journal = PostgresJournal(conninfo, schema=pg_schema)  # trust: not checked
        shown = repr(journal)
        journal.close()
        with caplog.at_level(logging.DEBUG), pytest.raises(JournalError) as caught:
            PostgresJournal(f"{conninfo} port=1")  # the last port= counts
        for piece in pieces:
            assert (False, False, False) == (
                piece in shown,
                piece in str(caught.value),
                piece in caplog.text,
            )


def test_a_read_only_journal_of_a_schema_that_does_not_exist_creates_nothing(
    pg_url: str, pg_schema: str
) -> None:
    """O2: no schema, no table; the error says there is no journal there."""
    with pytest.raises(JournalError, match=f"no journal in schema {pg_schema}"):
        PostgresJournal(pg_url, schema=pg_schema, readonly=True)
    with pytest.raises(JournalError, match=f"no journal in schema {pg_schema}"):
        open_journal(pg_url, schema=pg_schema, readonly=True)
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (pg_schema,)
        ).fetchone()
    assert (0,) == found


def test_a_read_only_journal_refuses_a_schema_that_holds_no_journal(
    pg_url: str, pg_schema: str
) -> None:
    """A schema with other tables (even one named version) is not a journal; untouched."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.version (version integer)")
    with pytest.raises(JournalError, match=f"no journal in schema {pg_schema}"):
        PostgresJournal(pg_url, schema=pg_schema, readonly=True)
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (pg_schema,),
        ).fetchall()
    assert [("version",)] == tables


def test_a_read_only_journal_takes_no_lock_and_refuses_every_write(
    pg_url: str, pg_schema: str, sysdb: str
) -> None:
    """It reads while a migration holds the lock, writes nothing, starts no heartbeat."""
    writer = PostgresJournal(pg_url, schema=pg_schema)
    new = NewRun("q", "rollback", [("test.write", "s0", "{}")])
    writer.record("r", 0, [StepChange(0, "executing", "{}", 1)], new=new)
    writer.close()
    from actionqueues.journal import _postgres

    # A writer migrating meanwhile holds the advisory lock; a read-only open never waits.
    locked = psycopg.conninfo.make_conninfo(pg_url, options="-c lock_timeout=2000")
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (_postgres._ADVISORY_KEY,))
        reader = PostgresJournal(locked, schema=pg_schema, readonly=True)
        loaded = reader.load("r")
    assert loaded is not None
    assert (["r"], "executing", True) == (
        [r.id for r in reader.runs()],
        loaded[1][0].status,
        "readonly=True" in repr(reader),
    )
    writes: list[Callable[[], object]] = [
        lambda: reader.record("r", 0, [StepChange(0, "executed", "{}", 1)]),
        lambda: reader.record("n", 0, [StepChange(0, "executing", "{}", 1)], new=new),
        reader.claim,
        lambda: reader.release("r"),
        lambda: reader.renew(["r"]),
        lambda: reader.prune(reader.now() + 1),
    ]
    for write in writes:
        with pytest.raises(JournalError, match="read-only"):
            write()
    beating = {t for t in threading.enumerate() if t.name == "actionqueues-heartbeat"}
    q = ActionQueue(journal=reader, registry=registry)
    q.add(Write(sysdb, "never"))
    with pytest.raises(JournalError, match="read-only"):
        q.run()
    after = {t for t in threading.enumerate() if t.name == "actionqueues-heartbeat"}
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
        assert ([], beating) == (db.execute("SELECT * FROM effects").fetchall(), after)
    unchanged = reader.load("r")
    assert unchanged is not None
    assert (["r"], loaded) == ([r.id for r in reader.runs()], unchanged)
    reader.close()


def _make_version_1(pg_url: str, schema: str) -> None:
    """A journal as schema 1 left it (no steps.grp), with one run of one step."""
    from actionqueues.journal import _schema

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.version (version integer)")
        conn.execute(f"INSERT INTO {schema}.version VALUES (1)")  # noqa: S608
        for statement in _schema.POSTGRES_MIGRATIONS[1]:
            conn.execute(statement.replace("{s}", schema))
        conn.execute(
            f"INSERT INTO {schema}.runs VALUES ('old', 'q', 'completed', 'rollback', "  # noqa: S608
            "'me', 0, 0, 1, 1, NULL, 1)"
        )
        conn.execute(
            f"INSERT INTO {schema}.steps VALUES ('old', 0, 'x', 's', '{{}}', 'executed', "  # noqa: S608
            "1, 0, NULL, NULL, 1)"
        )


def test_a_read_only_journal_reads_a_version_1_schema_as_it_is(pg_url: str, pg_schema: str) -> None:
    """Its steps read with no group; the schema stays at version 1, without grp."""
    _make_version_1(pg_url, pg_schema)
    reader = PostgresJournal(pg_url, schema=pg_schema, readonly=True)
    loaded = reader.load("old")
    reader.close()
    assert loaded is not None
    with psycopg.connect(pg_url) as conn:
        version = conn.execute(f"SELECT version FROM {pg_schema}.version").fetchone()  # noqa: S608
        grp = conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'steps' AND column_name = 'grp'",
            (pg_schema,),
        ).fetchone()
    assert ((1,), (0,), [("executed", None)]) == (
        version,
        grp,
        [(s.status, s.group) for s in loaded[1]],
    )


def test_a_read_only_journal_refuses_a_newer_schema(pg_url: str, pg_schema: str) -> None:
    """Read-only or not, a journal written by a newer actionqueues is refused."""
    PostgresJournal(pg_url, schema=pg_schema).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.version SET version = 99")  # noqa: S608
    with pytest.raises(JournalError, match="newer than this actionqueues understands"):
        PostgresJournal(pg_url, schema=pg_schema, readonly=True)


def _finished(journal: PostgresJournal, run_id: str, status: str) -> None:
    """A run of one step, recorded straight to ``status``."""
    new = NewRun(run_id, "rollback", [("x", "s0", "{}")])
    journal.record(run_id, 0, [StepChange(0, "executing", "{}", 1)], status, new=new)


def test_prune_keeps_runs_that_failed_to_roll_back_unless_asked(
    pg_url: str, pg_schema: str
) -> None:
    """O3: by default only completed and rolled back runs go; unfinished ones never."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    for status in ("completed", "rolled_back", "rollback_failed", "failed"):
        _finished(journal, status, status)
    later = journal.now() + 1
    pruned = journal.prune(later)
    left = sorted(r.id for r in journal.runs())
    pruned_on_request = journal.prune(later, statuses=["rollback_failed"])
    assert (2, ["failed", "rollback_failed"], 1, ["failed"]) == (
        pruned,
        left,
        pruned_on_request,
        [r.id for r in journal.runs()],
    )
    journal.close()


def _abandoned(journal: PostgresJournal, run_id: str) -> None:
    """A running run whose lease has already expired (its owner gone)."""
    _finished(journal, run_id, "running")
    with psycopg.connect(journal._conninfo, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {journal.schema}.runs SET lease_until = 0 WHERE id = %s",  # noqa: S608
            (run_id,),
        )


def test_release_with_unclaim_takes_back_the_claim(pg_url: str, pg_schema: str) -> None:
    """A recovery that skipped a run does not count as a claim; only the owner's counts."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    other = PostgresJournal(pg_url, schema=pg_schema)
    _abandoned(journal, "a")

    def claims() -> tuple[int, float]:
        loaded = journal.load("a")
        assert loaded is not None
        return loaded[0].claims, loaded[0].lease_until

    row = journal.claim()
    assert row is not None
    other.release("a", unclaim=True)  # not its claim: nothing changes
    held = claims()
    journal.release("a", unclaim=True)
    taken_back = claims()
    journal.claim()
    journal.release("a")
    kept = claims()
    assert ((1, row.lease_until), (0, 0.0), (1, 0.0)) == (held, taken_back, kept)
    journal.close()
    other.close()


def test_claims_go_in_order_of_last_update_past_the_last_one_passed(
    pg_url: str, pg_schema: str
) -> None:
    """claim(after=(updated, id)) takes the next run in that order, not one before it."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    for run_id in ("c1", "c2", "c3"):
        _abandoned(journal, run_id)
    first = journal.claim()
    assert first is not None
    journal.release(first.id, unclaim=True)
    second = journal.claim(after=(first.updated, first.id))
    assert second is not None
    third = journal.claim(after=(second.updated, second.id))
    assert third is not None
    assert (["c1", "c2", "c3"], None) == (
        [first.id, second.id, third.id],
        journal.claim(after=(third.updated, third.id)),
    )
    journal.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() only")
def test_a_forked_child_refuses_the_journal_and_leaves_the_parents_sessions_alone(
    pg_url: str, pg_schema: str
) -> None:
    """In the child of os.fork(): told to open its own; its close() ends no parent session."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    journal.runs()  # a pooled connection, shared with the child by the fork
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking with threads
        pid = os.fork()
    if pid == 0:  # the child
        try:
            try:
                journal.runs()
                said = "used"
            except JournalError as exc:
                said = "refused" if "os.fork()" in str(exc) else str(exc)
            journal.close()
            os.write(write, said.encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as answer:
        said = answer.read()
    assert ("refused", []) == (said, journal.runs())
    journal.close()


def test_a_dropped_journal_closes_its_pool(pg_url: str, pg_schema: str) -> None:
    """A PostgresJournal dropped without close() closes its pool: its threads and
    connections go, and nothing is printed (a pool collected in one of its own
    worker threads cannot wait for them)."""
    script = textwrap.dedent(
        """
        import gc, os, sys, threading, time
        from actionqueues.journal import PostgresJournal
        gc.collect()
        threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
        for _ in range(10):
            journal = PostgresJournal(sys.argv[1], schema=sys.argv[2])
            journal.runs()
            del journal
        gc.collect()
        deadline = time.monotonic() + 10
        while threading.active_count() > threads and time.monotonic() < deadline:
            time.sleep(0.05)
        print(threading.active_count() - threads, len(os.listdir("/proc/self/fd")) - fds)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, pg_url, pg_schema],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ("", 0) == (done.stderr, done.returncode)
    assert ["0", "0"] == done.stdout.split()


def test_find_ids_ignores_a_locale_collation(pg_url: str, pg_schema: str) -> None:
    """A run id column in a locale's collation (ICU en-US: case and punctuation
    weigh little) does not keep a prefix's ids together; find_ids goes by code point
    all the same, through its own index."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                f'ALTER TABLE {pg_schema}.runs ALTER COLUMN id TYPE text COLLATE "en-US-x-icu"'
            )
        ids = ["a-b", "ab", "aB", "a.c", "a-c", "A-b", "b"]
        new = NewRun("q", "rollback", [("a", "s", "{}")])
        for run_id in ids:
            journal.record(run_id, 0, [StepChange(0, "executing", "{}", 1)], new=new)
        for prefix in ("a-", "a", "aB", "A", "a.", "ab", ""):
            assert sorted(i for i in ids if i.startswith(prefix)) == journal.find_ids(
                prefix, limit=10
            ), prefix
        with psycopg.connect(pg_url) as conn:
            conn.execute("SET enable_seqscan = off")  # a table this small is read whole
            plan = conn.execute(
                f'EXPLAIN SELECT id FROM {pg_schema}.runs WHERE id COLLATE "C" >= %s '  # noqa: S608
                f'AND id COLLATE "C" < %s ORDER BY id COLLATE "C" LIMIT 2',
                ("a-", "a."),
            ).fetchall()
        assert "runs_id_c" in " ".join(str(r[0]) for r in plan)
    finally:
        journal.close()
