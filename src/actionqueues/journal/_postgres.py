"""The PostgreSQL journal: one database for a fleet of machines (``[postgres]`` extra).

Queues on many machines record their runs in one database, and any machine's
recoverer finishes the runs of one that died. The same guarantees as the SQLite
journal (D1-D11), with:

* leases measured by the database's clock, never the client's: every time is the
  server's ``clock_timestamp()``, as seconds since the epoch;
* claims with ``SELECT ... FOR UPDATE SKIP LOCKED`` inside one ``UPDATE ...
  RETURNING``: two recoverers never take the same run, and neither waits for the
  other's lock;
* schema creation and migration under a transaction-level advisory lock, so that
  many workers may start at the same moment;
* a pool of connections (psycopg_pool) checked before use, so that a database
  restart costs the writes in flight (each a clear ``JournalError`` before the step's
  side effect, D10) and nothing after it;
* the connection string's password kept out of ``repr()``, logs and errors.

Every statement is parameterised; the only SQL text chosen at run time is the
schema's name, checked to be a plain identifier, and constants.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

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

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

SCHEMA_VERSION: Final = 2
_IDENTIFIER: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ADVISORY_KEY: Final = 0x61717565  # "aque": serialises schema creation and migration

# The server's clock, as seconds since the epoch.
_NOW: Final = "extract(epoch from clock_timestamp())"

_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE {s}.runs (
            id text PRIMARY KEY,
            name text,
            status text NOT NULL,
            mode text NOT NULL,
            owner text,
            lease_until double precision NOT NULL,
            claims integer NOT NULL DEFAULT 0,
            created double precision NOT NULL,
            updated double precision NOT NULL,
            error text,
            steps integer NOT NULL
        )""",
        "CREATE INDEX runs_unfinished ON {s}.runs (lease_until) "
        "WHERE status IN ('running', 'failed', 'rolling_back')",
        "CREATE INDEX runs_updated ON {s}.runs (updated)",
        """CREATE TABLE {s}.steps (
            run_id text NOT NULL REFERENCES {s}.runs (id) ON DELETE CASCADE,
            idx integer NOT NULL,
            action text NOT NULL,
            name text NOT NULL,
            state text NOT NULL,
            status text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            rollback_attempts integer NOT NULL DEFAULT 0,
            error text,
            rollback_error text,
            updated double precision NOT NULL,
            PRIMARY KEY (run_id, idx)
        )""",
    ),
    # Parallel groups (the async queue's): each member's group, its first index.
    2: ("ALTER TABLE {s}.steps ADD COLUMN grp integer",),
}

_RUN_COLUMNS: Final = (
    "id, name, status, mode, owner, lease_until, claims, created, updated, error, steps"
)
_STEP_COLUMNS: Final = (
    "run_id, idx, action, name, state, status, attempts, rollback_attempts, error, "
    "rollback_error, updated, grp"
)
_ROLLBACK_STATUSES: Final = frozenset({"rolling_back", "rolled_back", "rollback_failed"})


_USERINFO_PASSWORD: Final = re.compile(r"(://[^:@/?#]*):[^@/?#]*@")
_QUERY_PASSWORD: Final = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact(url: str, secret: str | None = None) -> str:
    """``url`` with its password (in the user part, or a ``password=`` parameter,
    and ``secret`` wherever it appears) replaced by ``***``."""
    text = _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1:***@", url))
    return text.replace(secret, "***") if secret else text


def _dropped(exc: BaseException) -> bool:
    """Whether ``exc`` says the server closed the connection (a restart, a
    terminated backend): the write may be made again on a new connection."""
    text = str(exc).lower()
    return any(
        sign in text
        for sign in ("terminating connection", "server closed the connection", "consuming input")
    )


class _Redact(logging.Filter):
    """Takes a password out of psycopg_pool's log records (it logs libpq's errors)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), ()
        return True


def merged(changes: Sequence[StepChange]) -> list[tuple[object, ...]]:
    """One update per step, as applying ``changes`` in order would leave it (one
    statement may not update a row twice): the last status; each column's last
    value that is not None, the attempts and error of the phase each change is in.
    Each is (status, state, attempts, error, rollback attempts, rollback error, index)."""
    rows: dict[int, list[object]] = {}
    for c in changes:
        row = rows.setdefault(c.index, [None] * 6 + [c.index])
        row[0] = c.status
        if c.state is not None:
            row[1] = c.state
        at = 4 if c.status in _ROLLBACK_STATUSES else 2
        if c.attempts is not None:
            row[at] = c.attempts
        if c.error is not None:
            row[at + 1] = c.error
    return [tuple(row) for row in rows.values()]


def _check(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection it hands out: one the client already knows
    to be broken is replaced. (A round trip to the server per write, as psycopg's
    ``check_connection`` makes, would double a write's cost; a connection the server
    dropped, in a restart, fails one write with JournalError and is replaced.)"""
    if conn.closed or conn.broken:
        msg = "connection closed"
        raise OSError(msg)


class PostgresJournal(Journal):
    """A journal in a PostgreSQL database, shared by queues and recoverers on many
    machines.

    Args:
        url: ``postgresql://user:password@host:port/database`` (any libpq URL).
        schema: The schema that holds the journal's tables; created if missing.
        lease: Seconds a run stays owned without a heartbeat (by the server's clock).
        pool_size: Most connections this journal opens.
        connect_timeout: Seconds to wait for a connection before a write fails.

    Raises:
        JournalError: psycopg is not installed (``pip install 'actionqueues[postgres]'``),
            the database cannot be reached, or its journal was written by a newer
            actionqueues.

    .. versionadded:: 1.0
    """

    #: Async queues' writes: concurrent, since each waits on the network.
    write_threads = 8

    def __init__(
        self,
        url: str,
        *,
        schema: str = "actionqueues",
        lease: float = 30.0,
        pool_size: int = 16,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(lease=lease)
        self.url = redact(url)
        if not isinstance(schema, str) or not _IDENTIFIER.match(schema):
            msg = (
                f"schema={schema!r}: a schema name is lower-case letters, digits and "
                "underscores, starting with a letter or underscore."
            )
            raise JournalError(msg)
        self.schema = schema
        self._secret: str | None = None
        try:
            import psycopg
            import psycopg_pool
        except ImportError:
            msg = (
                "The PostgreSQL journal needs psycopg and psycopg_pool: "
                "pip install 'actionqueues[postgres]'."
            )
            raise JournalError(msg) from None
        try:
            info = psycopg.conninfo.conninfo_to_dict(url)
            password = info.get("password")
        except psycopg.Error as exc:
            raise self._error("is not a valid connection string", exc) from None
        self._secret = str(password) if password else None
        self.url = redact(url, self._secret)
        self._filter: _Redact | None = None
        if self._secret:
            self._filter = _Redact(self._secret)
            logging.getLogger("psycopg.pool").addFilter(self._filter)
        self._conns: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            open=False,
            timeout=connect_timeout,
            check=_check,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(1, int(connect_timeout)),
                # Seen in pg_stat_activity, unless the URL names its own.
                "application_name": info.get("application_name") or "actionqueues",
            },
            name="actionqueues",
        )
        try:
            self._conns.open(wait=True, timeout=connect_timeout)
        except Exception as exc:
            self._close()
            raise self._error("cannot be reached", exc) from None
        try:
            self._migrate()
        except BaseException:
            self._close()
            raise

    def __repr__(self) -> str:
        return f"PostgresJournal({self.url!r}, schema={self.schema!r})"

    # -- connections ----------------------------------------------------------------

    def _error(self, what: str, exc: BaseException) -> JournalError:
        text = str(exc).strip() or type(exc).__name__
        if self._secret:
            text = text.replace(self._secret, "***")
        return JournalError(f"The journal {self.url} (schema {self.schema}) {what}: {text}.")

    @contextmanager
    def _transaction(
        self, what: str = "cannot be written", *, atomic: bool = True, raw: bool = False
    ) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on a pooled connection, in one transaction (or, not ``atomic``,
        in autocommit: for a single statement, one round trip); psycopg's errors
        become JournalError (a broken connection is discarded by the pool), unless
        ``raw``: then psycopg's OperationalError passes, for ``_retrying``."""
        import psycopg

        try:
            with self._conns.connection() as conn:
                if atomic:
                    with conn.transaction(), conn.cursor() as cur:
                        yield cur
                else:
                    with conn.cursor() as cur:
                        yield cur
        except (LeaseLostError, JournalError):
            raise
        except psycopg.OperationalError as exc:
            if raw:
                raise
            raise self._error(what, exc) from None
        except (psycopg.Error, OSError) as exc:
            raise self._error(what, exc) from None
        except Exception as exc:  # the pool's PoolTimeout and the like
            if type(exc).__module__.startswith(("psycopg", "psycopg_pool")):
                raise self._error(what, exc) from None
            raise

    def _retrying(self, work: Callable[[psycopg.Cursor[Any]], None], *, atomic: bool) -> None:
        """Do ``work`` (a write that may be made twice: its statements set values, and
        a new run's insert is idempotent); if the connection turns out dead (the
        server restarted since it was pooled), drop the pool's idle connections,
        which died with it, and try once more on a fresh one."""
        import psycopg

        try:
            with self._transaction(atomic=atomic, raw=True) as cur:
                work(cur)
        except psycopg.OperationalError as exc:
            if not _dropped(exc):
                raise self._error("cannot be written", exc) from None
            self._conns.check()  # idle connections of a restarted server: gone
            with self._transaction(atomic=atomic) as cur:
                work(cur)

    def _sql(self, text: str) -> str:
        return text.replace("{s}", f'"{self.schema}"')  # quoted: "order" is a name too

    def _migrate(self) -> None:
        """Create or migrate the schema, one process at a time (an advisory lock held
        to the end of the transaction)."""
        with self._transaction("cannot be set up") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
            cur.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
            cur.execute(self._sql("CREATE TABLE IF NOT EXISTS {s}.version (version integer)"))
            cur.execute(self._sql("SELECT version FROM {s}.version"))
            row = cur.fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                msg = (
                    f"The journal {self.url} (schema {self.schema}) has schema version "
                    f"{version}, newer than this actionqueues understands "
                    f"({SCHEMA_VERSION}). Upgrade actionqueues."
                )
                raise JournalError(msg)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    cur.execute(self._sql(statement))
            if row is None:
                cur.execute(self._sql("INSERT INTO {s}.version VALUES (%s)"), (SCHEMA_VERSION,))
            elif version < SCHEMA_VERSION:
                cur.execute(self._sql("UPDATE {s}.version SET version = %s"), (SCHEMA_VERSION,))

    def _close(self) -> None:
        self._conns.close()
        if self._filter is not None:
            logging.getLogger("psycopg.pool").removeFilter(self._filter)

    # -- writes ---------------------------------------------------------------------

    def record(
        self,
        run_id: str,
        claim: int,
        changes: Sequence[StepChange],
        status: str | None = None,
        error: str | None = None,
        new: NewRun | None = None,
    ) -> None:
        # One statement (one round trip, atomic on its own) for the usual write. Its
        # every part is gated on the run being ours, through a row lock (FOR SHARE)
        # that a claim (FOR UPDATE) cannot take meanwhile: a writer that lost the
        # run writes nothing at all.
        params: list[object] = [run_id, self.owner, claim]
        parts = [
            "o AS (SELECT id FROM {s}.runs WHERE id = %s AND owner = %s AND claims = %s FOR SHARE)"
        ]
        if status is not None:
            parts.append(
                f"r AS (UPDATE {{s}}.runs SET updated = {_NOW}, lease_until = {_NOW} + %s, "
                "status = %s, error = COALESCE(%s, error) WHERE id IN (SELECT id FROM o))"
            )
            params += (self.lease, status, error)
        for k, c in enumerate(merged(changes)):
            parts.append(
                f"s{k} AS (UPDATE {{s}}.steps SET status = %s, state = COALESCE(%s, state), "
                "attempts = COALESCE(%s, attempts), error = COALESCE(%s, error), "
                "rollback_attempts = COALESCE(%s, rollback_attempts), "
                f"rollback_error = COALESCE(%s, rollback_error), updated = {_NOW} "
                "WHERE run_id IN (SELECT id FROM o) AND idx = %s)"
            )
            params += c
        statement = self._sql("WITH " + ", ".join(parts) + " SELECT count(*) FROM o")

        def write(cur: psycopg.Cursor[Any]) -> None:
            if new is not None:
                self._insert(cur, run_id, new)
            cur.execute(statement, params)
            row = cur.fetchone()
            if row is None or row[0] != 1:
                raise lease_lost(run_id, self.owner)

        self._retrying(write, atomic=new is not None)

    def _insert(self, cur: psycopg.Cursor[Any], run_id: str, new: NewRun) -> None:
        """Insert a new run, ours, with its steps pending. Idempotent: made again after
        a commit whose reply was lost, it inserts nothing (and the ownership check of
        the write it belongs to still holds)."""
        name, mode, steps, groups = new
        cur.execute(
            self._sql(
                f"WITH r AS (INSERT INTO {{s}}.runs ({_RUN_COLUMNS}) SELECT %s, %s, "
                f"'running', %s, %s, n + %s, 0, n, n, NULL, %s FROM (SELECT {_NOW} AS n) t "
                f"ON CONFLICT (id) DO NOTHING) INSERT INTO {{s}}.steps ({_STEP_COLUMNS}) "
                f"SELECT %s, i - 1, a, nm, st, 'pending', 0, 0, NULL, NULL, {_NOW}, g FROM "
                "unnest(%s::text[], %s::text[], %s::text[], %s::integer[]) "
                "WITH ORDINALITY AS u(a, nm, st, g, i) ON CONFLICT (run_id, idx) DO NOTHING"
            ),
            (
                run_id,
                name,
                mode,
                self.owner,
                self.lease,
                len(steps),
                run_id,
                [s[0] for s in steps],
                [s[1] for s in steps],
                [s[2] for s in steps],
                list(groups) if groups else [None] * len(steps),
            ),
        )

    def renew(self, run_ids: Iterable[str]) -> None:
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE {{s}}.runs SET lease_until = {_NOW} + %s "
                    "WHERE id = ANY(%s) AND owner = %s"
                ),
                (self.lease, list(run_ids), self.owner),
            )

    def claim(self, exclude: Iterable[str] = ()) -> RunRow | None:
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE {{s}}.runs SET owner = %s, lease_until = {_NOW} + %s, "
                    "claims = claims + 1 WHERE id = (SELECT id FROM {s}.runs "
                    f"WHERE status = ANY(%s) AND lease_until < {_NOW} AND NOT id = ANY(%s) "
                    "ORDER BY updated LIMIT 1 FOR UPDATE SKIP LOCKED) "
                    f"RETURNING {_RUN_COLUMNS}"
                ),
                (self.owner, self.lease, list(UNFINISHED), list(exclude)),
            )
            row = cur.fetchone()
        return None if row is None else RunRow(*row)

    def release(self, run_id: str) -> None:
        with self._transaction() as cur:
            cur.execute(
                self._sql("UPDATE {s}.runs SET lease_until = 0 WHERE id = %s AND owner = %s"),
                (run_id, self.owner),
            )

    def prune(self, before: float) -> int:
        with self._transaction() as cur:
            cur.execute(
                self._sql("DELETE FROM {s}.runs WHERE status = ANY(%s) AND updated < %s"),
                (list(FINISHED), before),
            )
            return cur.rowcount

    # -- reads ----------------------------------------------------------------------

    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        with self._transaction("cannot be read") as cur:
            cur.execute(
                self._sql(f"SELECT {_RUN_COLUMNS} FROM {{s}}.runs WHERE id = %s"), (run_id,)
            )
            run = cur.fetchone()
            if run is None:
                return None
            cur.execute(
                self._sql(
                    f"SELECT {_STEP_COLUMNS} FROM {{s}}.steps WHERE run_id = %s ORDER BY idx"
                ),
                (run_id,),
            )
            steps = cur.fetchall()
        return RunRow(*run), [StepRow(*s) for s in steps]

    def runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[RunRow]:
        interrupted = (f"status = ANY(%s) AND lease_until < {_NOW}", [list(UNFINISHED)])
        where, params = run_filters("%s", interrupted, status, name, before)
        params.append(limit)
        with self._transaction("cannot be read") as cur:
            cur.execute(
                self._sql(
                    f"SELECT {_RUN_COLUMNS} FROM {{s}}.runs WHERE {where} "
                    "ORDER BY created DESC LIMIT %s"
                ),
                params,
            )
            rows = cur.fetchall()
        return [RunRow(*r) for r in rows]

    def now(self) -> float:
        """The database's clock, as seconds since the epoch."""
        with self._transaction("cannot be read") as cur:
            cur.execute(f"SELECT {_NOW}")
            row = cur.fetchone()
        assert row is not None
        return float(row[0])
