"""The SQLite journal: the embedded default (stdlib ``sqlite3``, WAL).

By default the journal survives a process crash (WAL with ``synchronous=NORMAL``);
``durability="full"`` makes it survive power loss too (``synchronous=FULL``) (D9).
The file is created readable and writable by its owner only. Every statement is
parameterised; the only SQL text chosen at run time is picked from constants.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, Literal

from ._base import (
    FINISHED,
    UNFINISHED,
    Journal,
    JournalError,
    LeaseLostError,
    NewRun,
    RunRow,
    StepChange,
    StepRow,
    lease_lost,
    run_filters,
)

SCHEMA_VERSION: Final = 2

# Migrations: the statements that take a journal from version n - 1 to n.
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT,
            status TEXT NOT NULL,
            mode TEXT NOT NULL,
            owner TEXT,
            lease_until REAL NOT NULL,
            claims INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            error TEXT,
            steps INTEGER NOT NULL
        )""",
        "CREATE INDEX runs_unfinished ON runs (status, lease_until)",
        "CREATE INDEX runs_updated ON runs (updated)",
        """CREATE TABLE steps (
            run_id TEXT NOT NULL REFERENCES runs (id),
            idx INTEGER NOT NULL,
            action TEXT NOT NULL,
            name TEXT NOT NULL,
            state TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            rollback_attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            rollback_error TEXT,
            updated REAL NOT NULL,
            PRIMARY KEY (run_id, idx)
        ) WITHOUT ROWID""",
    ),
    # Parallel groups (the async queue's): each member's group, its first index.
    2: ("ALTER TABLE steps ADD COLUMN grp INTEGER",),
}

_RUN_COLUMNS: Final = (
    "id, name, status, mode, owner, lease_until, claims, created, updated, error, steps"
)
_STEP_COLUMNS: Final = (
    "run_id, idx, action, name, state, status, attempts, rollback_attempts, error, "
    "rollback_error, updated, grp"
)
_OURS: Final = "EXISTS (SELECT 1 FROM runs WHERE id = ? AND owner = ? AND claims = ?)"
_EXECUTE_UPDATE: Final = (
    "UPDATE steps SET status = ?, state = COALESCE(?, state), "
    "attempts = COALESCE(?, attempts), error = COALESCE(?, error), updated = ? "
    f"WHERE run_id = ? AND idx = ? AND {_OURS}"
)
_ROLLBACK_UPDATE: Final = (
    "UPDATE steps SET status = ?, state = COALESCE(?, state), "
    "rollback_attempts = COALESCE(?, rollback_attempts), "
    "rollback_error = COALESCE(?, rollback_error), updated = ? "
    f"WHERE run_id = ? AND idx = ? AND {_OURS}"
)
_ROLLBACK_STATUSES: Final = frozenset({"rolling_back", "rolled_back", "rollback_failed"})
_UNFINISHED_SQL: Final = "status IN (" + ", ".join(f"'{s}'" for s in UNFINISHED) + ")"
_FINISHED_SQL: Final = "status IN (" + ", ".join(f"'{s}'" for s in FINISHED) + ")"


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


class SQLiteJournal(Journal):
    """A journal in one SQLite file.

    Args:
        path: The journal file; created (mode 0600) if missing.
        durability: ``"process"`` (the default: WAL, ``synchronous=NORMAL``; survives
            a crash of the process) or ``"power"`` (``synchronous=FULL``; survives
            power loss too, at the cost of an fsync per commit).
        lease: Seconds a run stays owned without a heartbeat.
        busy_timeout: Seconds to wait for another writer before failing.

    Raises:
        JournalError: The file cannot be created or opened, is not a journal, or was
            written by a newer actionqueues.

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Literal["process", "power"] = "process",
        lease: float = 30.0,
        busy_timeout: float = 5.0,
    ) -> None:
        super().__init__(lease=lease)
        if durability not in ("process", "power"):
            msg = f"durability={durability!r}: choose 'process' (the default) or 'power'."
            raise JournalError(msg)
        self.path = Path(path)
        self.durability = durability
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
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
        self._create_file()
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                msg = (
                    f"The journal {self.path} has schema version {version}, newer than "
                    f"this actionqueues understands ({SCHEMA_VERSION}). Upgrade actionqueues."
                )
                raise JournalError(msg)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {step:d}")

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
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            return db
        try:
            # One connection per thread; close() may run in another thread, hence
            # check_same_thread=False (never used by two threads at once).
            db = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA journal_mode = WAL")
            sync = "FULL" if self.durability == "power" else "NORMAL"
            db.execute(f"PRAGMA synchronous = {sync}")
        except sqlite3.Error as exc:
            msg = f"Cannot open the journal {self.path}: {exc}."
            raise JournalError(msg) from exc
        self._local.db = db
        with self._lock:
            self._connections.append(db)
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
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
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            msg = f"The journal {self.path} cannot be read: {exc}."
            raise JournalError(msg) from exc

    def _close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # -- writes ---------------------------------------------------------------------

    def _insert(self, db: sqlite3.Connection, run_id: str, new: NewRun, now: float) -> None:
        name, mode, steps, groups = new
        db.execute(
            f"INSERT INTO runs ({_RUN_COLUMNS}) "
            "VALUES (?, ?, 'running', ?, ?, ?, 0, ?, ?, NULL, ?)",
            (run_id, name, mode, self.owner, now + self.lease, now, now, len(steps)),
        )
        db.executemany(
            f"INSERT INTO steps ({_STEP_COLUMNS}) "
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
        write = _Write((run_id, claim, changes, status, error, new))
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
                self._lead()
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

    def _lead(self) -> None:
        """Commit what is waiting, then hand the lead to the next writer, if any.

        As PostgreSQL's ``commit_delay`` does, a leader whose last group had company
        waits a moment (at most ``_COMMIT_DELAY``) for as many writers to queue up:
        without it, writers woken together by one commit would trickle into two
        (one alone, then the rest), and pay two fsyncs for one.
        """
        with self._group:
            if len(self._waiting) < self._siblings:
                self._group.wait(_COMMIT_DELAY)
            batch, self._waiting = self._waiting, []
            self._siblings = len(batch)
        try:
            self._commit(batch)
        except BaseException as exc:  # an interrupt mid-commit: nobody may wait forever
            for write in batch:
                if write.error is None:
                    write.error = JournalError(f"The journal {self.path}: write interrupted")
            raise exc from None
        finally:
            with self._group:
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
                except (LeaseLostError, sqlite3.Error) as exc:
                    db.execute(f"ROLLBACK TO w{number:d}" if not alone else "ROLLBACK")
                    write.error = exc if isinstance(exc, LeaseLostError) else self._failed(exc)
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

    def _failed(self, exc: sqlite3.Error) -> JournalError:
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
        ours = (run_id, self.owner, claim)
        if status is not None:
            owned = (
                1
                == db.execute(
                    "UPDATE runs SET updated = ?, lease_until = ?, status = ?, "
                    "error = COALESCE(?, error) WHERE id = ? AND owner = ? AND claims = ?",
                    (now, now + self.lease, status, error, *ours),
                ).rowcount
            )
        for c in changes:
            sql = _ROLLBACK_UPDATE if c.status in _ROLLBACK_STATUSES else _EXECUTE_UPDATE
            owned = (
                owned
                and 1
                == db.execute(
                    sql, (c.status, c.state, c.attempts, c.error, now, run_id, c.index, *ours)
                ).rowcount
            )
        if not owned:
            raise lease_lost(run_id, self.owner)

    def renew(self, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ?",
                [(now + self.lease, run_id, self.owner) for run_id in ids],
            )

    def claim(self, exclude: Iterable[str] = ()) -> RunRow | None:
        skip = list(exclude)
        not_in = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        now = time.time()
        with self._transaction() as db:
            found = db.execute(
                f"SELECT id FROM runs WHERE {_UNFINISHED_SQL} AND lease_until < ?{not_in} "
                "ORDER BY updated LIMIT 1",
                (now, *skip),
            ).fetchone()
            if found is None:
                return None
            row = db.execute(
                "UPDATE runs SET owner = ?, lease_until = ?, claims = claims + 1 "
                f"WHERE id = ? RETURNING {_RUN_COLUMNS}",
                (self.owner, now + self.lease, found[0]),
            ).fetchone()
        return RunRow(*row)

    def release(self, run_id: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET lease_until = 0 WHERE id = ? AND owner = ?", (run_id, self.owner)
            )

    def prune(self, before: float) -> int:
        with self._transaction() as db:
            ids = [
                r[0]
                for r in db.execute(
                    f"SELECT id FROM runs WHERE {_FINISHED_SQL} AND updated < ?", (before,)
                )
            ]
            db.executemany("DELETE FROM steps WHERE run_id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])
        return len(ids)

    # -- reads ----------------------------------------------------------------------

    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        runs = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not runs:
            return None
        steps = self._read(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY idx", (run_id,)
        )
        return RunRow(*runs[0]), [StepRow(*s) for s in steps]  # type: ignore[arg-type]

    def runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[RunRow]:
        interrupted = (f"{_UNFINISHED_SQL} AND lease_until < ?", [time.time()])
        where, params = run_filters("?", interrupted, status, name, before)
        params.append(-1 if limit is None else limit)
        rows = self._read(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where} ORDER BY created DESC LIMIT ?",
            params,
        )
        return [RunRow(*r) for r in rows]  # type: ignore[arg-type]


def open_journal(url: str | os.PathLike[str], **options: object) -> Journal:
    """A journal from a path or a URL: ``sqlite:///relative.db``,
    ``sqlite:////absolute.db``, a plain file path, or ``postgresql://...`` (the
    ``[postgres]`` extra).

    .. versionadded:: 1.0
    """
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresJournal

        return PostgresJournal(text, **options)  # type: ignore[arg-type]
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        msg = (
            f"Unsupported journal URL scheme {scheme!r}; use a file path, a sqlite:/// "
            "URL or a postgresql:// URL."
        )
        raise JournalError(msg)
    return SQLiteJournal(text, **options)  # type: ignore[arg-type]
