"""The PostgreSQL journal: one database for a fleet of machines (``[postgres]`` extra).

Queues on many machines record their runs in one database, and any machine's
recoverer finishes the runs of one that died. The same guarantees as the SQLite
journal (D1-D11), with:

* leases measured by the database's clock, never the client's: every time is the
  server's ``clock_timestamp()``, as seconds since the epoch;
* a run id that the journal already holds, finished or not, refused by the write
  that inserts the run (a plain ``INSERT``), before the first step's side effect: of
  two queues starting one id, exactly one runs;
* claims with ``SELECT ... FOR UPDATE SKIP LOCKED`` inside one ``UPDATE ...
  RETURNING``: two recoverers never take the same run, and neither waits for the
  other's lock;
* schema creation and migration under a transaction-level advisory lock, so that
  many workers may start at the same moment; a read-only journal creates, migrates
  and locks nothing (O2), and reads an older schema as it is;
* one direct connection first, so that a server that cannot be reached, or refuses
  the connection, fails the journal's opening at once with the server's reason;
* then a pool of connections (psycopg_pool), so that a database restart costs the
  writes in flight (each a clear ``JournalError`` before the step's side effect,
  D10) and nothing after it: a write on a connection the server dropped is made
  again on a new one, and a commit whose reply was lost is looked up by its
  transaction id (``pg_xact_status``) rather than guessed;
* the connection string's password kept out of ``repr()``, logs and errors, in
  every form libpq accepts, and even when the string cannot be parsed.

Every statement is parameterised; the only SQL text chosen at run time is the
schema's name, checked to be a plain identifier, and constants.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .._errors import JournalError, LeaseLostError
from .._registry import _encode
from .._status import UNFINISHED
from ._base import (
    Journal,
    NewRun,
    RunRow,
    StepChange,
    StepRow,
    check_prune,
    check_runs,
    is_number,
    is_whole,
    lease_lost,
    prefix_range,
    run_filters,
    run_taken,
    with_events,
)
from ._redact import Redact, redact, scrub
from ._schema import (
    EVENT_COLUMNS,
    EVENT_SPAN,
    INDEXES,
    POSTGRES_INDEXES,
    POSTGRES_MIGRATIONS,
    PRUNE_BATCH,
    RUN_COLUMNS,
    RUNS_ORDER,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    STEP_COLUMNS,
    STEP_COLUMNS_1,
    UNFINISHED_SQL,
    events_of,
)

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

_ADVISORY_KEY: Final = 0x61717565  # "aque": serialises schema creation and migration
_LIBPQ_INT_MAX: Final = 2**31 - 1  # libpq refuses a larger connect_timeout

# The server's clock, as seconds since the epoch.
_NOW: Final = "extract(epoch from clock_timestamp())"

# -- helpers ---------------------------------------------------------------------------


def _dropped(exc: BaseException) -> bool:
    """Whether ``exc`` says the server closed the connection (a restart, a
    terminated backend): the write may be made again on a new connection."""
    text = str(exc).lower()
    return any(
        sign in text
        for sign in ("terminating connection", "server closed the connection", "consuming input")
    )


def _busy(exc: BaseException) -> bool:
    """Whether a failed connection attempt was refused by a server that cannot take
    connections at the moment (SQLSTATE 57P03 or 53300: it is starting up, shutting
    down, in recovery, or has too many clients), as opposed to a lasting reason (no
    such database or role, a wrong password, no server at that address)."""
    text = str(exc)
    return any(
        sign in text
        for sign in (
            "the database system is starting up",
            "the database system is shutting down",
            "the database system is in recovery mode",
            "the database system is not yet accepting connections",
            "too many clients already",
            "remaining connection slots are reserved",
        )
    )


#: The events of a write: appended under the run's number (``o``, the fenced run),
#: numbered on from its last event, at the server's time.
_EVENTS: Final = (
    f"e AS (INSERT INTO {{s}}.events (id, {EVENT_COLUMNS}) "
    "SELECT COALESCE((SELECT max(x.id) FROM {s}.events x WHERE x.id "
    f"{events_of('o.num')}), o.num * {EVENT_SPAN}) "
    "+ v.k, (v.e->>0)::integer, v.e->>1, v.e->>2, (v.e->>3)::integer, v.e->>4, "
    f"{_NOW} FROM o, json_array_elements(%s::json) WITH ORDINALITY AS v(e, k))"
)
#: A write's statement by its shape (whether it sets the run's status, whether it
#: has events), made once: its text, and psycopg's conversion of it, are then the
#: same object every time.
_STATEMENTS: dict[tuple[str, bool, bool], str] = {}


def _statement(schema: str, status: bool, events: bool) -> str:
    """The write of that shape, in ``schema`` (a quoted name), made once."""
    key = (schema, status, events)
    statement = _STATEMENTS.get(key)
    if statement is None:
        parts = [
            "o AS (SELECT id, num FROM {s}.runs "
            "WHERE id = %s AND owner = %s AND claims = %s FOR SHARE)"
        ]
        if status:
            parts.append(
                f"r AS (UPDATE {{s}}.runs SET updated = {_NOW}, lease_until = {_NOW} + %s, "
                "status = %s, error = COALESCE(%s, error) WHERE id IN (SELECT id FROM o))"
            )
        if events:
            parts.append(_EVENTS)
        text = "WITH " + ", ".join(parts) + " SELECT count(*) FROM o"
        statement = _STATEMENTS[key] = text.replace("{s}", schema)
    return statement


class _First(NamedTuple):
    """A new run's first records, inserted with it: its events (JSON text, as
    ``record()`` makes them), its status and error; None for none."""

    events: str | None
    status: str | None
    error: str | None


def _check(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection it hands out: one the client already knows
    to be broken is replaced. (A round trip to the server per write, as psycopg's
    ``check_connection`` makes, would double a write's cost; a connection the server
    dropped, in a restart, fails one write with JournalError and is replaced.)"""
    if conn.closed or conn.broken:
        msg = "connection closed"
        raise OSError(msg)


def _read_only(conn: psycopg.Connection[Any]) -> None:
    """A read-only journal's connections: every transaction ``BEGIN READ ONLY``, so
    that the server too refuses a write (O2). Client-side: no round trip, no session
    setting left behind (as a ``SET`` would be, through a pooler)."""
    conn.read_only = True


# Pools a forked child inherited: never used, and never closed either (closing them
# would end the parent's sessions); kept here so that they are not collected.
_INHERITED: list[object] = []


def _close_dropped(pool: psycopg_pool.ConnectionPool[Any], filter_: Redact | None) -> None:
    """Close the pool of a journal that was dropped unclosed, in a thread of its own."""

    def close() -> None:
        pool.close(timeout=5.0)
        if filter_ is not None:
            logging.getLogger("psycopg.pool").removeFilter(filter_)

    threading.Thread(target=close, name="actionqueues-close", daemon=True).start()


def _checked_parameters(schema: object, pool_size: object, connect_timeout: object) -> None:
    """Refuse, before anything connects, a parameter that could only fail later."""
    if not isinstance(schema, str) or not SCHEMA_NAME.fullmatch(schema):
        msg = (
            f"schema={schema!r}: a schema name is lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters."
        )
        raise JournalError(msg)
    if not is_whole(pool_size) or pool_size < 1:  # type: ignore[operator]
        msg = (
            f"pool_size={pool_size!r}: the most connections the journal opens must be "
            "a whole number, 1 or more."
        )
        raise JournalError(msg)
    if not is_number(connect_timeout) or not 0 < connect_timeout < math.inf:  # type: ignore[operator]
        msg = (
            f"connect_timeout={connect_timeout!r}: the seconds to wait for a connection "
            "must be a finite number, more than 0."
        )
        raise JournalError(msg)


class PostgresJournal(Journal):
    """A journal in a PostgreSQL database (13 or later), for queues on many machines.

    Queues and recoverers on any number of machines share it; leases and times are
    measured by the database's clock.

    Args:
        url: A libpq connection string: ``postgresql://user:password@host:port/database``
            or ``host=... dbname=... user=...``.
        schema: The schema that holds the journal's tables; created if missing (not
            when ``readonly``).
        lease: Seconds a run stays owned without a heartbeat (by the server's clock).
        pool_size: Most connections this journal opens.
        connect_timeout: Seconds to wait for a connection before the opening, or a
            write, fails.
        readonly: Read only (listing and showing runs): create, migrate and lock
            nothing, refuse a schema that holds no journal, and refuse every write.

    Raises:
        JournalError: A parameter is not valid; psycopg is not installed (``pip install
            'actionqueues[postgres]'``); the database cannot be reached (with the
            server's reason); the schema holds no journal (``readonly``); or its journal
            was written by a newer actionqueues.

    .. versionadded:: 1.0
    """

    #: Eight threads make async queues' writes, concurrently, since each waits on
    #: the network.
    write_threads = 8

    def __init__(
        self,
        url: str,
        *,
        schema: str = "actionqueues",
        lease: float = 30.0,
        pool_size: int = 16,
        connect_timeout: float = 10.0,
        readonly: bool = False,
    ) -> None:
        super().__init__(lease=lease, readonly=readonly)
        if not isinstance(url, str):
            msg = (
                f"url: a connection string (str) is needed, not {type(url).__name__}: "
                "postgresql://user:password@host:port/database, or host=... dbname=...."
            )
            raise JournalError(msg)
        self.url = redact(url)
        _checked_parameters(schema, pool_size, connect_timeout)
        self.schema = schema
        self._conninfo = url  # kept for _scrub; never shown
        self._secret: str | None = None
        self._timeout = float(connect_timeout)
        self._step_columns = STEP_COLUMNS
        self._version = SCHEMA_VERSION
        # First writes whose commit's outcome is not known (its reply was lost), by run
        # id and the NewRun, kept with it: the transaction id to look up.
        self._unsure: dict[tuple[str, int], tuple[NewRun, str]] = {}
        self._filter: Redact | None = None
        self._conns: psycopg_pool.ConnectionPool[Any] | None = None
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
        except psycopg.Error as exc:
            # The string is not repeated: where its password is cannot be known.
            reason = " ".join(scrub(str(exc), url, None).split()).rstrip(".")
            msg = (
                f"The journal's connection string is not valid: {reason}. (It is not "
                "repeated here, as it may hold a password.) Give a URL, "
                "postgresql://user:password@host:port/database, with any special "
                "character of the password percent-encoded, or key=value pairs: "
                "host=... dbname=... user=... password='...'."
            )
            raise JournalError(msg) from None
        password = info.get("password")
        self._secret = str(password) if password else None
        self.url = redact(url, self._secret)
        self._filter = Redact(url, self._secret)
        logging.getLogger("psycopg.pool").addFilter(self._filter)
        options: dict[str, Any] = {
            "autocommit": True,
            # libpq's whole seconds (at least 2: it reads 1 as 2).
            "connect_timeout": min(max(1, math.ceil(self._timeout)), _LIBPQ_INT_MAX),
            # Seen in pg_stat_activity, unless the URL names its own.
            "application_name": info.get("application_name") or "actionqueues",
        }
        try:
            self._open(url, options)
            self._conns = psycopg_pool.ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                open=False,
                timeout=self._timeout,
                check=_check,
                configure=_read_only if self.readonly else None,
                kwargs=options,
                name="actionqueues",
            )
            # The server was just reached: the pool's first connection is made in the
            # background, and a write waits for it (at most connect_timeout).
            self._conns.open(wait=False)
        except BaseException:
            self._close()
            raise
        # Dropped without close(), the journal closes its pool (and its threads and
        # connections) from a thread of its own: the garbage collector may run in one
        # of the pool's workers, which cannot wait for itself.
        self._dropped = weakref.finalize(self, _close_dropped, self._conns, self._filter)
        self._dropped.atexit = False

    def __repr__(self) -> str:
        readonly = ", readonly=True" if self.readonly else ""
        return f"PostgresJournal({self.url!r}, schema={self.schema!r}{readonly})"

    # -- connections ----------------------------------------------------------------

    def _error(self, what: str, exc: BaseException) -> JournalError:
        text = str(exc).strip() or type(exc).__name__
        text = " ".join(scrub(text, self._conninfo, self._secret).split())
        end = "" if text.endswith((".", "?", "!")) else "."
        return JournalError(f"The journal {self.url} (schema {self.schema}) {what}: {text}{end}")

    def _open(self, url: str, options: dict[str, Any]) -> None:
        """Connect once, directly, before any pool: a server that cannot be reached,
        or refuses us (no such database, a wrong password), fails the opening at once
        with the server's reason, where a pool would retry it in the background for
        ``connect_timeout`` and log each attempt. Only a server that says it cannot
        take connections *now* (starting up, shutting down, in recovery, full) is
        tried again, for at most ``connect_timeout``. On that connection the schema
        is set up (created or migrated), or, read-only, checked to hold a journal."""
        import psycopg

        deadline = time.monotonic() + self._timeout
        wait = 0.05
        while True:
            try:
                conn = psycopg.connect(url, **options)
                break
            except psycopg.Error as exc:
                if not _busy(exc) or time.monotonic() + wait > deadline:
                    raise self._error("cannot be opened", exc) from None
            time.sleep(wait)
            wait = min(2 * wait, 1.0)
        with conn:
            try:
                if self.readonly:
                    conn.read_only = True
                    with conn.transaction(), conn.cursor() as cur:
                        self._inspect(cur)
                else:
                    with conn.transaction(), conn.cursor() as cur:
                        self._migrate(cur)
            except psycopg.Error as exc:
                what = "cannot be read" if self.readonly else "cannot be set up"
                raise self._error(what, exc) from None

    @contextmanager
    def _transaction(
        self, what: str = "cannot be written", *, atomic: bool = True, raw: bool = False
    ) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on a pooled connection, in one transaction (or, not ``atomic``,
        in autocommit: for a single statement, one round trip); psycopg's errors
        become JournalError (a broken connection is discarded by the pool), unless
        ``raw``: then psycopg's OperationalError passes, for ``_retrying``."""
        import psycopg

        with self._using(write=False):  # writes check readonly themselves
            assert self._conns is not None  # set once opened; None only when closed
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
        """Do ``work`` (a write that may be made twice: its status is set again, its
        events, appended again, replay the same transitions, and a new run's insert
        knows whether it was made already); if the connection
        turns out dead (the server restarted since it was pooled), drop the pool's
        idle connections, which died with it, and try once more on a fresh one."""
        import psycopg

        with self._using(write=False):  # close() waits for the retry too
            try:
                with self._transaction(atomic=atomic, raw=True) as cur:
                    work(cur)
            except psycopg.OperationalError as exc:
                if not _dropped(exc):
                    raise self._error("cannot be written", exc) from None
                assert self._conns is not None
                self._conns.check()  # idle connections of a restarted server: gone
                with self._transaction(atomic=atomic) as cur:
                    work(cur)

    def _sql(self, text: str) -> str:
        return text.replace("{s}", f'"{self.schema}"')  # quoted: "order" is a name too

    def _migrate(self, cur: psycopg.Cursor[Any]) -> None:
        """Create or migrate the schema, one process at a time (an advisory lock held
        to the end of the transaction)."""
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        cur.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
        cur.execute(self._sql("CREATE TABLE IF NOT EXISTS {s}.version (version integer)"))
        cur.execute(self._sql("SELECT version FROM {s}.version"))
        row = cur.fetchone()
        version = 0 if row is None else int(row[0])
        self._check_version(version)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in POSTGRES_MIGRATIONS[step]:
                cur.execute(self._sql(statement))
        if row is None:
            cur.execute(self._sql("INSERT INTO {s}.version VALUES (%s)"), (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            cur.execute(self._sql("UPDATE {s}.version SET version = %s"), (SCHEMA_VERSION,))
        for statement in (*INDEXES, *POSTGRES_INDEXES):
            cur.execute(self._sql(statement.replace("{s}runs", "{s}.runs")))

    def _inspect(self, cur: psycopg.Cursor[Any]) -> None:
        """Read-only: check that the schema holds a journal, changing nothing (O2),
        and read an older one as it is."""
        names = [f'"{self.schema}".{table}' for table in ("version", "runs", "steps")]
        cur.execute(
            "SELECT bool_and(to_regclass(n) IS NOT NULL) FROM unnest(%s::text[]) n", (names,)
        )
        found = cur.fetchone()
        row = None
        if found is not None and found[0]:
            cur.execute(self._sql("SELECT max(version) FROM {s}.version"))
            row = cur.fetchone()
        if row is not None and row[0] is not None and int(row[0]) >= 3:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{self.schema}".events',))
            found = cur.fetchone()
            row = row if found is not None and found[0] else None
        if row is None or row[0] is None:
            msg = (
                f"The journal {self.url}: no journal in schema {self.schema} (the schema "
                "does not exist, or holds no journal's tables). Check the schema's name; "
                "a journal is created by opening it for writing (not readonly)."
            )
            raise JournalError(msg)
        version = int(row[0])
        self._check_version(version)
        self._version = version  # read as it is: migrated only when opened to write
        if version < 2:
            self._step_columns = STEP_COLUMNS_1

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            msg = (
                f"The journal {self.url} (schema {self.schema}) has schema version "
                f"{version}, newer than this actionqueues understands "
                f"({SCHEMA_VERSION}). Upgrade actionqueues."
            )
            raise JournalError(msg)

    def _close(self) -> None:
        dropped = getattr(self, "_dropped", None)
        if dropped is not None:
            dropped.detach()
        if self._conns is not None:
            self._conns.close()
            self._conns = None
        if self._filter is not None:
            logging.getLogger("psycopg.pool").removeFilter(self._filter)
            self._filter = None

    def _forked(self) -> None:
        # The parent's pool is left alone (see _INHERITED); the child must open the
        # journal again (the base class's _fork_error says so).
        if self._conns is not None:
            _INHERITED.append(self._conns)
            self._conns = None
        super()._forked()

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
        self._check_writable()
        # One statement (one round trip, atomic on its own) for the usual write. Its
        # every part is gated on the run being ours, through a row lock (FOR SHARE)
        # that a claim (FOR UPDATE) cannot take meanwhile: a writer that lost the
        # run writes nothing at all. The steps' transitions are appended as events
        # (schema 3, see ``_schema.EVENT_SPAN``), after the run's last one.
        params: list[object] = [run_id, self.owner, claim]
        if status is not None:
            params += (self.lease, status, error)
        events = None
        if changes:  # one JSON text: psycopg dumps it at once, five arrays item by item
            events = _encode([[c.index, c.status, c.state, c.attempts, c.error] for c in changes])
            params.append(events)
        statement = _statement(f'"{self.schema}"', status is not None, bool(changes))

        def write(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(statement, params)
            row = cur.fetchone()
            if row is None or row[0] != 1:
                raise lease_lost(run_id, self.owner)

        if new is None:
            self._retrying(write, atomic=False)
        else:  # a claim other than a new run's: the fence refuses it, as for any run
            self._begin(run_id, new, write, _First(events, status, error) if claim == 0 else None)

    def _begin(
        self,
        run_id: str,
        new: NewRun,
        write: Callable[[psycopg.Cursor[Any]], None],
        first_records: _First | None,
    ) -> None:
        """A run's first write: insert the run with its first records (one statement
        with the insert, ``first_records``; None: the insert, then ``write``), in one
        transaction. The insert is a plain INSERT: a run id the journal holds,
        whoever wrote it, finished or not, is refused (``run_taken``), and of two
        queues inserting one id at once, the second waits for the first's commit and
        is refused. A commit whose reply was lost (the connection dropped) leaves its
        outcome unknown; its transaction id, noted before the COMMIT, tells the next
        attempt (``_retrying``'s, or the next write of the same run) whether the run
        it would insert is already its own, rather than someone else's."""
        key = (run_id, id(new))  # ``new`` is kept with the entry: its id stays unique

        def first(cur: psycopg.Cursor[Any]) -> None:
            known = self._unsure.get(key)
            if known is not None and known[0] is new and self._committed(cur, known[1]):
                xid = known[1]  # inserted by our attempt whose reply was lost
                write(cur)
            elif first_records is None:
                xid = self._insert(cur, run_id, new, _First(None, None, None))
                write(cur)
            else:
                xid = self._insert(cur, run_id, new, first_records)
            self._unsure[key] = (new, xid)  # until the COMMIT's reply: not known

        self._retrying(first, atomic=True)
        self._unsure.pop(key, None)

    def _committed(self, cur: psycopg.Cursor[Any], xid: str) -> bool:
        """Whether transaction ``xid`` committed; one still in progress (a COMMIT the
        server is finishing, or a client it has not yet seen leave) is waited for, up
        to connect_timeout."""
        deadline = time.monotonic() + self._timeout
        while True:
            cur.execute("SELECT pg_xact_status(%s::xid8)", (xid,))
            row = cur.fetchone()
            status = None if row is None else row[0]
            if status != "in progress":
                return status == "committed"
            if time.monotonic() > deadline:
                msg = (
                    f"The journal {self.url} (schema {self.schema}): the outcome of an "
                    f"earlier attempt to write this run (transaction {xid}) is not known "
                    "yet. Nothing was executed; try again."
                )
                raise JournalError(msg)
            time.sleep(0.05)

    def _insert(self, cur: psycopg.Cursor[Any], run_id: str, new: NewRun, first: _First) -> str:
        """Insert a new run, ours, with its steps pending, and its first records
        (``first``: its events, its status), in one statement; its transaction's id.
        The run was never anyone else's: its events are its first, from place 1."""
        import psycopg

        name, mode, steps, groups = new
        events = (
            ", e AS (INSERT INTO {s}.events (id, "
            f"{EVENT_COLUMNS}) SELECT r.num * {EVENT_SPAN} + v.k, (v.e->>0)::integer, "
            f"v.e->>1, v.e->>2, (v.e->>3)::integer, v.e->>4, {_NOW} FROM r, "
            "json_array_elements(%s::json) WITH ORDINALITY AS v(e, k))"
            if first.events is not None
            else ""
        )
        try:
            cur.execute(
                self._sql(
                    f"WITH r AS (INSERT INTO {{s}}.runs ({RUN_COLUMNS}, num) SELECT %s, %s, "
                    "COALESCE(%s::text, 'running'), %s, %s, n + %s, 0, n, n, %s, %s, "
                    f"nextval('{{s}}.run_numbers') FROM (SELECT {_NOW} AS n) t RETURNING num), "
                    f"s AS (INSERT INTO {{s}}.steps ({STEP_COLUMNS}) "
                    "SELECT %s, i - 1, u.e->>0, u.e->>1, u.e->>2, 'pending', 0, 0, NULL, NULL, "
                    f"{_NOW}, (u.e->>3)::integer FROM json_array_elements(%s::json) "
                    f"WITH ORDINALITY AS u(e, i)){events} "
                    "SELECT pg_current_xact_id()::text"
                ),
                (
                    run_id,
                    name,
                    first.status,
                    mode,
                    self.owner,
                    self.lease,
                    first.error,
                    len(steps),
                    run_id,
                    _encode(  # one JSON text, as a write's events (see record())
                        [
                            [action, step, state, groups[i] if groups else None]
                            for i, (action, step, state) in enumerate(steps)
                        ]
                    ),
                    *(() if first.events is None else (first.events,)),
                ),
            )
        except psycopg.errors.UniqueViolation:
            raise run_taken(run_id) from None
        row = cur.fetchone()
        assert row is not None
        return str(row[0])

    def renew(self, run_ids: Iterable[str]) -> None:
        self._check_writable()
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE {{s}}.runs SET lease_until = {_NOW} + %s "
                    "WHERE id = ANY(%s) AND owner = %s"
                ),
                (self.lease, list(run_ids), self.owner),
            )

    def claim(
        self, exclude: Iterable[str] = (), *, after: tuple[float, str] | None = None
    ) -> RunRow | None:
        self._check_writable()
        # In the order of (last update, id); ``after``, the last run a recoverer
        # passed, lets it go on past the runs it left, in one scan.
        past = "AND (updated, id) > (%s, %s) " if after is not None else ""
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE {{s}}.runs SET owner = %s, lease_until = {_NOW} + %s, "
                    "claims = claims + 1 WHERE id = (SELECT id FROM {s}.runs "
                    f"WHERE {UNFINISHED_SQL} AND lease_until < {_NOW} AND NOT id = ANY(%s) "
                    f"{past}ORDER BY updated, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                    f"RETURNING {RUN_COLUMNS}"
                ),
                (self.owner, self.lease, list(exclude), *(after or ())),
            )
            row = cur.fetchone()
        return None if row is None else RunRow(*row)

    def release(self, run_id: str, *, unclaim: bool = False, claim: int | None = None) -> None:
        """Give up this journal's claim on a run, leaving it for another recoverer at once.

        Args:
            run_id: The run's id.
            unclaim: Also take back its count (a recovery that left the run
                untouched did not claim it, as far as an operator is concerned).
            claim: Only while the run is under that claim; None: whatever the claim.

        Raises:
            JournalError: The journal is read-only, closed, or cannot be written.
        """
        self._check_writable()
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "UPDATE {s}.runs SET lease_until = 0, "
                    "claims = CASE WHEN %s AND claims > 0 THEN claims - 1 ELSE claims END "
                    "WHERE id = %s AND owner = %s AND (%s::integer IS NULL OR claims = %s)"
                ),
                (bool(unclaim), run_id, self.owner, claim, claim),
            )

    def prune(self, before: float, *, statuses: Iterable[str] | None = None) -> int:
        """Delete old finished runs, with their steps.

        Args:
            before: Delete runs whose status was last recorded before this time, in
                seconds since the epoch by the database's clock (see :meth:`now`).
            statuses: The statuses of the runs to delete, among
                :data:`~actionqueues.journal.FINISHED`; by default
                :data:`~actionqueues.journal.PRUNABLE` (those an operator no longer
                needs: completed or rolled back). An unfinished run is never deleted.

        Returns:
            How many runs were deleted.

        Raises:
            JournalError: ``before`` is not a time, a status is not a finished one,
                or the journal is read-only, closed, or cannot be written.
        """
        self._check_writable()
        until, chosen = check_prune(before, statuses)
        deleted = 0
        while True:  # in batches: another writer never waits long behind it
            with self._transaction() as cur:
                cur.execute(  # the steps go with their run (ON DELETE CASCADE)
                    self._sql(
                        # The conditions again outside: a row a writer held (FOR SHARE)
                        # meanwhile is checked again as it is then, by these alone.
                        "WITH d AS (DELETE FROM {s}.runs WHERE id IN (SELECT id FROM {s}.runs "
                        "WHERE created < %s AND status = ANY(%s) AND updated < %s LIMIT %s) "
                        "AND status = ANY(%s) AND updated < %s "
                        "RETURNING num), e AS (DELETE FROM {s}.events x USING d WHERE x.id "
                        f"{events_of('d.num')}) "
                        "SELECT count(*) FROM d"
                    ),
                    (until, list(chosen), until, PRUNE_BATCH, list(chosen), until),
                )
                found = cur.fetchone()
                count = 0 if found is None else int(found[0])
            deleted += count
            if count < PRUNE_BATCH:
                return deleted

    # -- reads ----------------------------------------------------------------------

    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        numbered = self._version >= 3  # an older journal, read as it is: no events
        with self._transaction("cannot be read") as cur:  # one snapshot (REPEATABLE READ)
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute(
                self._sql(
                    f"SELECT {RUN_COLUMNS}{', num' if numbered else ''} FROM {{s}}.runs "
                    "WHERE id = %s"
                ),
                (run_id,),
            )
            run = cur.fetchone()
            if run is None:
                return None
            cur.execute(
                self._sql(
                    f"SELECT {self._step_columns} FROM {{s}}.steps WHERE run_id = %s ORDER BY idx"
                ),
                (run_id,),
            )
            steps = cur.fetchall()
            events: list[tuple[Any, ...]] = []
            if numbered and run[-1] is not None:
                cur.execute(
                    self._sql(
                        f"SELECT {EVENT_COLUMNS} FROM {{s}}.events "
                        f"WHERE id {events_of('%s::bigint')} ORDER BY id"
                    ),
                    (run[-1], run[-1]),
                )
                events = cur.fetchall()
        return RunRow(*run[: len(RunRow._fields)]), with_events(run_id, steps, events)

    def find_ids(self, prefix: str, *, limit: int = 2) -> list[str]:
        start, end = prefix_range(prefix, limit)
        # By code point whatever the database's collation (a locale's order does not
        # keep a prefix's ids together): through the runs_id_c index, COLLATE "C".
        with self._transaction("cannot be read") as cur:
            bounded = end is not None  # both bounds in the statement: see SQLite's
            cur.execute(
                self._sql(
                    'SELECT id FROM {s}.runs WHERE id COLLATE "C" >= %s'
                    + (' AND id COLLATE "C" < %s' if bounded else "")
                    + ' ORDER BY id COLLATE "C" LIMIT %s'
                ),
                (start, end, limit) if bounded else (start, limit),
            )
            rows = cur.fetchall()
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
        interrupted = (f"status = ANY(%s) AND lease_until < {_NOW}", [[str(s) for s in UNFINISHED]])
        where, params = run_filters("%s", interrupted, status, name, before)
        params.append(limit)
        with self._transaction("cannot be read") as cur:
            cur.execute(
                self._sql(
                    f"SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE {where} {RUNS_ORDER} LIMIT %s"
                ),
                params,
            )
            rows = cur.fetchall()
        return [RunRow(*r) for r in rows]

    def now(self) -> float:
        """The database's clock, by which the journal's leases and times are measured.

        Returns:
            Seconds since the epoch.

        Raises:
            JournalError: The database cannot be read.
        """
        with self._transaction("cannot be read") as cur:
            cur.execute(f"SELECT {_NOW}")
            row = cur.fetchone()
        assert row is not None
        return float(row[0])
