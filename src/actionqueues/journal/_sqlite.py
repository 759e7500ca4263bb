"""The SQLite journal: the embedded default (stdlib ``sqlite3``, WAL).

By default the journal survives a process crash (WAL with ``synchronous=NORMAL``);
``durability="power"`` makes it survive power loss too (``synchronous=FULL``) (D9).
The file is created readable and writable by its owner only. Every statement is
parameterised; the only SQL text chosen at run time is picked from constants.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, Literal

from .._errors import JournalError
from .._status import FINISHED
from ._base import (
    MAX_LEASE,
    Journal,
    NewRun,
    RunRow,
    StepChange,
    StepRow,
    check_prune,
    check_runs,
    is_number,
    lease_lost,
    prefix_range,
    run_filters,
    run_taken,
    with_events,
)
from ._schema import (
    EVENT_COLUMNS,
    EVENT_SPAN,
    INDEXES,
    PRUNE_BATCH,
    PRUNE_PAUSE,
    RUN_COLUMNS,
    RUNS_ORDER,
    SCHEMA_VERSION,
    SQLITE_MIGRATIONS,
    STEP_COLUMNS,
    STEP_COLUMNS_1,
    UNFINISHED_SQL,
    events_of,
)

#: Schema 3's write of a step's transitions: their events, appended under the run's
#: number (``_schema.EVENT_SPAN``), each at the place in the run the journal counted
#: (``SQLiteJournal._next``), while the run is ours (the join with its row is the
#: fence): one statement, atomic on its own, that writes nothing for a writer that
#: lost the run. ``{rows}``: a ``(?, ?, ?, ?, ?, ?, ?)`` per event, its place first;
#: then the run's id, owner and claim. (Finding the place in the statement, by the
#: run's last event, cost a step a third more: SQLite copies such a SELECT of the
#: table it inserts into before inserting; ``bench/commit_shapes.py``.)
_EVENTS: Final = (
    f"INSERT INTO events (id, {EVENT_COLUMNS}) "
    f"SELECT r.num * {EVENT_SPAN} + v.column1, v.column2, v.column3, v.column4, v.column5, "
    "v.column6, v.column7 FROM runs r JOIN (VALUES {rows}) v "
    "WHERE r.id = ? AND r.owner = ? AND r.claims = ? AND r.num IS NOT NULL"
)
_EVENTS_BY_COUNT: dict[int, str] = {}
#: The most events one statement appends (7 parameters each: SQLite before 3.32
#: allows 999 in all).
_CHUNK: Final = 100


def _events_sql(count: int) -> str:
    """The statement appending ``count`` events (made once per count)."""
    sql = _EVENTS_BY_COUNT.get(count)
    if sql is None:
        rows = ", ".join("(?, ?, ?, ?, ?, ?, ?)" for _ in range(count))
        sql = _EVENTS_BY_COUNT[count] = _EVENTS.replace("{rows}", rows)
    return sql


# The longest a group commit's leader waits for its siblings (seconds): measured in
# bench/RESULTS.md (8 threads at "power": 1.8x the sequential rate without it, 2.2x
# with it). It is paid once when concurrency drops (the group shrinks).
_COMMIT_DELAY: Final = 0.001

_Args = tuple[str, int, Sequence[StepChange], str | None, str | None, NewRun | None]


class _Write:
    """One queued journal write, for group commit."""

    __slots__ = ("args", "done", "error", "lead")

    def __init__(self, args: _Args) -> None:
        self.args = args
        self.done: threading.Event | None = None  # made only by a writer that waits
        self.error: JournalError | None = None
        self.lead = False


class _Connection:
    """A thread's connection, closed when the thread ends (its thread-local slot is
    dropped) or the journal closes: connections are bounded by the threads alive.

    The closing is a ``weakref.finalize``, which keeps the connection reachable until
    it runs: collected in one cycle with its holder, the connection would otherwise
    be finalized first, unclosed (a ResourceWarning on Python 3.13)."""

    __slots__ = ("__weakref__", "closer", "db")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db: sqlite3.Connection | None = db
        self.closer = weakref.finalize(self, db.close)

    def close(self) -> None:
        self.db = None
        self.closer()

    def inherited(self) -> sqlite3.Connection | None:
        """In a forked child: the connection, never to be used or closed here."""
        db, self.db = self.db, None
        self.closer.detach()
        return db


# Connections a forked child inherited: never used, and never closed either (closing
# a connection the parent shares is unsafe); kept here so that they are not collected.
_INHERITED: list[sqlite3.Connection] = []


class SQLiteJournal(Journal):
    """A journal in one SQLite file.

    Args:
        path: The journal file; created (mode 0600) if missing.
        durability: ``"process"`` (the default: WAL, ``synchronous=NORMAL``; survives
            a crash of the process) or ``"power"`` (``synchronous=FULL``; survives
            power loss too, at the cost of an fsync per commit).
        lease: Seconds a run stays owned without a heartbeat.
        busy_timeout: Seconds to wait for another writer before failing.
        readonly: Open an existing journal to read only: nothing is created,
            migrated or written (listing and showing runs), but for the ``-wal`` and
            ``-shm`` side files SQLite's readers of a WAL journal need.

    Raises:
        JournalError: The file cannot be created or opened, is not a journal, or was
            written by a newer actionqueues; or an argument is wrong.

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Literal["process", "power"] = "process",
        lease: float = 30.0,
        busy_timeout: float = 5.0,
        readonly: bool = False,
    ) -> None:
        super().__init__(lease=lease, readonly=readonly)
        if durability not in ("process", "power"):
            msg = f"durability={durability!r}: choose 'process' (the default) or 'power'."
            raise JournalError(msg)
        if not is_number(busy_timeout) or not 0 <= busy_timeout <= MAX_LEASE:
            msg = (
                f"busy_timeout={busy_timeout!r}: the seconds to wait for another writer "
                f"are a number from 0 to {MAX_LEASE:g} (a day; the default is 5)."
            )
            raise JournalError(msg)
        if not isinstance(path, str | os.PathLike) or os.fspath(path) in ("", ":memory:"):
            msg = (
                f"SQLiteJournal({path!r}): a journal is a file, so that another process "
                "can recover its runs; pass a file path."
            )
            raise JournalError(msg)
        self.path = Path(path)
        self.durability = durability
        self._busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        # Guards _waiting, _leading and _siblings (group commit); a leader waits on it
        # for its siblings.
        self._group = threading.Condition(threading.Lock())
        self._waiting: list[_Write] = []
        self._leading = False
        self._siblings = 1  # the size of the last group committed
        # Group commit pays when a commit is dear (an fsync, at "power"); at "process"
        # a commit is cheap and the hand-offs would cost more than they save.
        self._grouped = durability == "power"
        if self._grouped:
            self.write_threads = 8  # async queues' writes, to group
        self._version = SCHEMA_VERSION
        # Each unfinished run's next event's place, as this journal object wrote it
        # under a claim (see ``_EVENTS``); counted from the journal when missing: a
        # claim of its own begins with what the other owners wrote.
        self._next: dict[tuple[str, int], int] = {}
        try:
            if readonly:
                self._open_to_read()
            else:
                self._create_file()
                self._migrate()
        except BaseException:
            self._close()  # no connection is left to the garbage collector
            raise

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in SQLITE_MIGRATIONS[step]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {step:d}")
            for statement in INDEXES:
                db.execute(statement.replace("{s}", ""))

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            msg = (
                f"The journal {self.path} has schema version {version}, newer than "
                f"this actionqueues understands ({SCHEMA_VERSION}). Upgrade actionqueues."
            )
            raise JournalError(msg)

    def _open_to_read(self) -> None:
        """Check, without writing, that the file holds a journal (DESIGN O2)."""
        if not self.path.is_file():
            msg = f"no journal at {self.path}"
            raise JournalError(msg)
        tables = {
            str(row[0]) for row in self._read("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        version = int(self._read("PRAGMA user_version")[0][0])  # type: ignore[call-overload]
        needed = {"runs", "steps", "events"} if version >= 3 else {"runs", "steps"}
        if version < 1 or not needed <= tables:
            msg = f"{self.path} is not an actionqueues journal"
            raise JournalError(msg)
        self._check_version(version)
        self._version = version  # read as it is: migrated only when opened to write

    def __repr__(self) -> str:
        return f"SQLiteJournal({str(self.path)!r}, durability={self.durability!r})"

    # -- connections ----------------------------------------------------------------

    def _create_file(self) -> None:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            msg = f"Cannot create the journal {self.path}: {exc.strerror}."
            raise JournalError(msg) from exc
        os.close(fd)

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        held: _Connection | None = getattr(self._local, "db", None)
        if held is not None and held.db is not None:
            return held.db
        # A reader opens the file read-only (and so writes no pragma); close() may run
        # in another thread (it waits for the statements in flight, and a connection
        # is never used by two threads at once), hence check_same_thread=False.
        target = self.path.resolve().as_uri() + "?mode=ro" if self.readonly else self.path
        try:
            db = sqlite3.connect(
                target,
                uri=self.readonly,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            if not self.readonly:
                try:
                    db.execute("PRAGMA journal_mode = WAL")
                    sync = "FULL" if self.durability == "power" else "NORMAL"
                    db.execute(f"PRAGMA synchronous = {sync}")
                except sqlite3.Error:
                    db.close()
                    raise
        except sqlite3.Error as exc:
            msg = f"Cannot open the journal {self.path}: {exc}."
            raise JournalError(msg) from exc
        held = _Connection(db)
        self._local.db = held
        self._connections.add(held)
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._using():
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                msg = f"The journal {self.path} cannot be written: {exc}."
                raise JournalError(msg) from exc

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._using(write=False):
            try:
                return self._db().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                msg = f"The journal {self.path} cannot be read: {exc}."
                raise JournalError(msg) from exc

    def _close(self) -> None:
        with self._lock:
            for held in list(self._connections):
                held.close()
        self._local = threading.local()

    def _forked(self) -> None:
        # The child makes connections of its own; those it inherited are left alone.
        for held in list(self._connections):
            db = held.inherited()
            if db is not None:
                _INHERITED.append(db)
        super()._forked()
        self._fork_error = None  # SQLite files can be opened again in the child
        self._local = threading.local()
        self._group = threading.Condition(threading.Lock())
        self._waiting = []
        self._leading = False
        self._next = {}

    # -- writes ---------------------------------------------------------------------

    def _insert(self, db: sqlite3.Connection, run_id: str, new: NewRun, now: float) -> None:
        name, mode, steps, groups = new
        try:  # the run's number: the highest yet, plus one (its events go last)
            db.execute(
                f"INSERT INTO runs ({RUN_COLUMNS}, num) "
                "VALUES (?, ?, 'running', ?, ?, ?, 0, ?, ?, NULL, ?, "
                "(SELECT COALESCE(MAX(num), 0) + 1 FROM runs))",
                (run_id, name, mode, self.owner, now + self.lease, now, now, len(steps)),
            )
        except sqlite3.IntegrityError:
            raise run_taken(run_id) from None
        self._next[run_id, 0] = 1  # its events' places, from 1
        db.executemany(
            f"INSERT INTO steps ({STEP_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, NULL, NULL, ?, ?)",
            [
                (run_id, i, action, step, state, now, groups[i] if groups else None)
                for i, (action, step, state) in enumerate(steps)
            ],
        )

    def record(
        self,
        run_id: str,
        claim: int,
        changes: Sequence[StepChange],
        status: str | None = None,
        error: str | None = None,
        new: NewRun | None = None,
    ) -> None:
        with self._using():
            self._record(_Write((run_id, claim, changes, status, error, new)))

    def _record(self, write: _Write) -> None:
        if not self._grouped:  # each writer commits its own write, SQLite serialising them
            self._commit([write])
        else:
            # Group commit: the first writer to arrive leads, and commits in one
            # transaction (one fsync) every write that queued up meanwhile; the others
            # wait for that commit. Alone, a writer commits its own write at once.
            with self._group:
                self._waiting.append(write)
                if len(self._waiting) == self._siblings:
                    self._group.notify()  # a leader waiting for its siblings
                lead = not self._leading
                self._leading = True
                if not lead:
                    write.done = threading.Event()
            if write.done is not None:
                try:
                    write.done.wait()
                except BaseException:  # interrupted while waiting: leave the queue cleanly
                    self._abandon(write)
                    raise
                lead = write.lead  # handed the lead: our write is not committed yet
            if lead:
                self._lead(write)
        if write.error is not None:
            raise write.error

    def _abandon(self, write: _Write) -> None:
        """A waiting writer gives up: drop its write if still queued, pass on a lead
        it was handed."""
        with self._group:
            if write in self._waiting:
                self._waiting.remove(write)
            if write.lead:
                if self._waiting:
                    nxt = self._waiting[0]
                    nxt.lead = True
                    if nxt.done is not None:
                        nxt.done.set()
                else:
                    self._leading = False

    def _lead(self, own: _Write) -> None:
        """Commit what is waiting, then hand the lead to the next writer, if any.

        As PostgreSQL's ``commit_delay`` does, a leader whose last group had company
        waits a moment (at most ``_COMMIT_DELAY``) for as many writers to queue up:
        without it, writers woken together by one commit would trickle into two
        (one alone, then the rest), and pay two fsyncs for one.
        """
        batch: list[_Write] = []
        try:
            with self._group:
                if len(self._waiting) < self._siblings:
                    self._group.wait(_COMMIT_DELAY)
                batch, self._waiting = self._waiting, []
                self._siblings = len(batch)
            self._commit(batch)
        except BaseException as exc:  # an interrupt mid-commit: nobody may wait forever
            for write in batch:
                if write.error is None:
                    write.error = JournalError(f"The journal {self.path}: write interrupted")
            raise exc from None
        finally:
            with self._group:
                if own in self._waiting:  # interrupted while waiting for siblings
                    self._waiting.remove(own)
                for write in batch:
                    if write.done is not None:
                        write.done.set()
                if self._waiting:
                    nxt = self._waiting[0]
                    nxt.lead = True
                    if nxt.done is not None:  # always: it queued behind a leader
                        nxt.done.set()
                else:
                    self._leading = False

    def _commit(self, batch: list[_Write]) -> None:
        db = self._db()
        now = time.time()
        alone = len(batch) == 1  # no savepoint needed to keep others' writes
        if alone:
            run_id, claim, changes, status, _, new = batch[0].args
            if new is None and status is None and 0 < len(changes) <= _CHUNK:
                # The usual write, a step's events alone: one statement, atomic on
                # its own, with no transaction around it (as the floor's INSERT).
                try:
                    self._append(db, now, run_id, claim, changes)
                except JournalError as exc:
                    batch[0].error = exc
                except sqlite3.Error as exc:
                    batch[0].error = self._failed(exc)
                return
        try:
            self._write_batch(db, now, batch, alone=alone)
        except BaseException:  # an interrupt mid-transaction must not keep the lock
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _write_batch(
        self, db: sqlite3.Connection, now: float, batch: list[_Write], *, alone: bool
    ) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            for number, write in enumerate(batch):
                if not alone:
                    db.execute(f"SAVEPOINT w{number:d}")
                try:
                    self._apply(db, now, *write.args)
                except Exception as exc:  # this write's own failure: the others go on
                    db.execute(f"ROLLBACK TO w{number:d}" if not alone else "ROLLBACK")
                    write.error = exc if isinstance(exc, JournalError) else self._failed(exc)
                    if alone:
                        return
                if not alone:
                    db.execute(f"RELEASE w{number:d}")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            failure = self._failed(exc)
            for write in batch:
                if write.error is None:
                    write.error = failure

    def _failed(self, exc: Exception) -> JournalError:
        error = JournalError(f"The journal {self.path} cannot be written: {exc}.")
        error.__cause__ = exc
        return error

    def _apply(
        self,
        db: sqlite3.Connection,
        now: float,
        run_id: str,
        claim: int,
        changes: Sequence[StepChange],
        status: str | None,
        error: str | None,
        new: NewRun | None,
    ) -> None:
        """One write: insert the run if new, then its changes, while the run is ours."""
        if new is not None:
            self._insert(db, run_id, new, now)
        # Fencing: write only while the run is ours, under our claim: every write
        # carries the check. The runs row (and its indexes) is rewritten only when
        # its status changes; the lease is the heartbeat's business.
        owned = True
        if status is not None:
            owned = (
                1
                == db.execute(
                    "UPDATE runs SET updated = ?, lease_until = ?, status = ?, "
                    "error = COALESCE(?, error) WHERE id = ? AND owner = ? AND claims = ?",
                    (now, now + self.lease, status, error, run_id, self.owner, claim),
                ).rowcount
            )
        if owned and changes:
            for start in range(0, len(changes), _CHUNK):
                self._append(db, now, run_id, claim, changes[start : start + _CHUNK])
        elif owned and status is None:  # nothing to write: the fence alone
            owned = bool(
                db.execute(
                    "SELECT 1 FROM runs WHERE id = ? AND owner = ? AND claims = ?",
                    (run_id, self.owner, claim),
                ).fetchone()
            )
        if not owned:
            raise lease_lost(run_id, self.owner)
        if status in FINISHED:  # counted again should it be written again (rolled back)
            self._next.pop((run_id, claim), None)

    def _append(
        self,
        db: sqlite3.Connection,
        now: float,
        run_id: str,
        claim: int,
        changes: Sequence[StepChange],
    ) -> None:
        """Append ``changes`` as the run's next events, fenced (see ``_EVENTS``)."""
        key = (run_id, claim)
        place = self._next.get(key)
        for tries in range(2):
            if place is None:
                place = self._place(db, run_id)
            params: list[object] = []
            for k, c in enumerate(changes):
                params += (place + k, c.index, c.status, c.state, c.attempts, c.error, now)
            params += (run_id, self.owner, claim)
            try:
                written = db.execute(_events_sql(len(changes)), params).rowcount
            except sqlite3.IntegrityError:
                # The count fell behind (a write whose success was never seen here,
                # interrupted after its statement): count again, once.
                self._next.pop(key, None)
                if tries:
                    raise
                place = None
                continue
            if written != len(changes):
                self._next.pop(key, None)
                raise lease_lost(run_id, self.owner)
            # Ahead of the journal if this transaction is rolled back: a gap, never a
            # place taken twice (behind it, the IntegrityError above counts again).
            self._next[key] = place + len(changes)
            return

    def _place(self, db: sqlite3.Connection, run_id: str) -> int:
        """The place of the run's next event, counted in the journal: for a run this
        journal object did not begin (a recovered one) or forgot (it finished)."""
        found = db.execute(
            f"SELECT r.num, (SELECT MAX(e.id) FROM events e WHERE e.id {events_of('r.num')}) "
            "FROM runs r WHERE r.id = ?",
            (run_id,),
        ).fetchone()
        if found is None:
            raise lease_lost(run_id, self.owner)
        num, last = found
        if type(num) is not int:
            msg = f"The journal {self.path}: run {run_id} has no number (its row is damaged)."
            raise JournalError(msg)
        return 1 if last is None else int(last) - num * EVENT_SPAN + 1

    def renew(self, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ?",
                [(now + self.lease, run_id, self.owner) for run_id in ids],
            )

    def claim(
        self, exclude: Iterable[str] = (), *, after: tuple[float, str] | None = None
    ) -> RunRow | None:
        skip = list(exclude)
        not_in = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        # Runs are claimed in the order of their last update; ``after``, the last run
        # a recoverer passed over, lets it go on past the runs it left, in one scan.
        past = " AND (updated, id) > (?, ?)" if after else ""
        now = time.time()
        with self._transaction() as db:
            found = db.execute(
                "SELECT id FROM runs INDEXED BY runs_claimable WHERE "
                f"{UNFINISHED_SQL} AND lease_until < ?{not_in}{past} "
                "ORDER BY updated, id LIMIT 1",
                (now, *skip, *(after or ())),
            ).fetchone()
            if found is None:
                return None
            row = db.execute(
                "UPDATE runs SET owner = ?, lease_until = ?, claims = claims + 1 "
                f"WHERE id = ? RETURNING {RUN_COLUMNS}",
                (self.owner, now + self.lease, found[0]),
            ).fetchone()
        return RunRow(*row)

    def release(self, run_id: str, *, unclaim: bool = False, claim: int | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET lease_until = 0, "
                "claims = CASE WHEN ? AND claims > 0 THEN claims - 1 ELSE claims END "
                "WHERE id = ? AND owner = ? AND (? IS NULL OR claims = ?)",
                (unclaim, run_id, self.owner, claim, claim),
            )

    def prune(self, before: float, *, statuses: Iterable[str] | None = None) -> int:
        when, chosen = check_prune(before, statuses)
        marks = ", ".join("?" * len(chosen))
        deleted = 0
        while True:  # in batches: another writer never waits long for the lock
            with self._transaction() as db:
                found = db.execute(  # a run is created before it is last updated
                    f"SELECT id, num FROM runs INDEXED BY runs_created WHERE created < ? "
                    f"AND status IN ({marks}) AND updated < ? LIMIT ?",
                    (when, *chosen, when, PRUNE_BATCH),
                ).fetchall()
                ids = [(run_id,) for run_id, _ in found]
                db.executemany("DELETE FROM steps WHERE run_id = ?", ids)
                gone = [(num, num) for _, num in found]
                db.executemany(f"DELETE FROM events WHERE id {events_of('?')}", gone)
                db.executemany("DELETE FROM runs WHERE id = ?", ids)
            deleted += len(ids)
            if len(ids) < PRUNE_BATCH:
                return deleted
            time.sleep(PRUNE_PAUSE)  # a writer waiting for the lock takes it now

    # -- reads ----------------------------------------------------------------------

    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        # One read transaction, so that the run, its steps and its events agree.
        with self._using(write=False):
            db = self._db()
            try:
                db.execute("BEGIN")
                try:
                    return self._load(db, run_id)
                finally:
                    db.execute("COMMIT")
            except sqlite3.Error as exc:
                msg = f"The journal {self.path} cannot be read: {exc}."
                raise JournalError(msg) from exc

    def _load(self, db: sqlite3.Connection, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        numbered = self._version >= 3  # an older journal, read as it is: no events
        run = db.execute(
            f"SELECT {RUN_COLUMNS}{', num' if numbered else ''} FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if run is None:
            return None
        columns = STEP_COLUMNS if self._version >= 2 else STEP_COLUMNS_1
        steps = db.execute(
            f"SELECT {columns} FROM steps WHERE run_id = ? ORDER BY idx", (run_id,)
        ).fetchall()
        events: list[tuple[object, ...]] = []
        if numbered and isinstance(run[-1], int):
            events = db.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id {events_of('?')} ORDER BY id",
                (run[-1], run[-1]),
            ).fetchall()
        row = RunRow(*run[: len(RunRow._fields)])
        return row, with_events(run_id, steps, events)

    def find_ids(self, prefix: str, *, limit: int = 2) -> list[str]:
        start, end = prefix_range(prefix, limit)
        # SQLite compares text as UTF-8 bytes (BINARY): the range is the prefix's.
        # Both bounds in the statement, so that the index scan stops at the end of
        # the range (a condition the planner cannot read as a bound scans past it).
        rows = self._read(
            "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
            if end is not None
            else "SELECT id FROM runs WHERE id >= ? ORDER BY id LIMIT ?",
            (start, end, limit) if end is not None else (start, limit),
        )
        return [str(r[0]) for r in rows]

    def runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[RunRow]:
        check_runs(status, name, before, limit)
        interrupted = (f"{UNFINISHED_SQL} AND lease_until < ?", [time.time()])
        where, params = run_filters("?", interrupted, status, name, before)
        params.append(-1 if limit is None else limit)
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE {where} {RUNS_ORDER} LIMIT ?",
            params,
        )
        return [RunRow(*r) for r in rows]  # type: ignore[arg-type]
