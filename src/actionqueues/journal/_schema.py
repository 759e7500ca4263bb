"""What the journals' tables hold, said once: the schema's version, each backend's
migrations, the columns, the status sets as SQL, and the indexes made on every open
to write.

The two backends' migrations differ in their types (and PostgreSQL's tables are in
a schema of their own); the names here are the ones their statements share. The
tables are written ``{s}runs`` and ``{s}steps``: a backend puts its schema's prefix in
place of ``{s}`` (PostgreSQL's ``"name".``, SQLite's nothing).
"""

from __future__ import annotations

import re
from typing import Final

from .._status import UNFINISHED

RUN_COLUMNS: Final = (
    "id, name, status, mode, owner, lease_until, claims, created, updated, error, steps"
)
STEP_COLUMNS: Final = (
    "run_id, idx, action, name, state, status, attempts, rollback_attempts, error, "
    "rollback_error, updated, grp"
)
#: A journal of schema 1, read as it is (read-only, not migrated): no parallel groups.
STEP_COLUMNS_1: Final = STEP_COLUMNS.replace(", grp", ", NULL AS grp")
#: The unfinished runs, as literal SQL, so that a planner matches the partial index
#: below (which a parameter it could not).
UNFINISHED_SQL: Final = "status IN (" + ", ".join(f"'{s}'" for s in UNFINISHED) + ")"
#: Claims walk the unfinished runs in (updated, id) order from a recoverer's cursor;
#: without this partial index each claim sorted every unfinished run, and a pass over
#: many runs recovery cannot rebuild took quadratic time. An index changes no row: it
#: is made on every open to write rather than by a schema version (an older
#: actionqueues reads the journal as before).
#: ``runs()`` lists the newest first, ties by id: without ``runs_created`` it sorted
#: every run to give 50 (62-77 ms at 100k runs).
INDEXES: Final = (
    f"CREATE INDEX IF NOT EXISTS runs_claimable ON {{s}}runs (updated, id) WHERE {UNFINISHED_SQL}",
    "CREATE INDEX IF NOT EXISTS runs_created ON {s}runs (created, id)",
)
#: PostgreSQL's own: ``find_ids()`` looks a prefix up by code point, which the
#: primary key's index, in the database's collation (often a locale's), cannot.
POSTGRES_INDEXES: Final = ('CREATE INDEX IF NOT EXISTS runs_id_c ON {s}runs (id COLLATE "C")',)
#: The order of ``runs()``, on every backend (the memory journal's too).
RUNS_ORDER: Final = "ORDER BY created DESC, id DESC"
#: ``prune()`` deletes this many runs a transaction, so that no other writer waits
#: long behind it (a prune of 100k runs in one transaction held the lock 1.2-1.6 s).
PRUNE_BATCH: Final = 250
#: And pauses this long between two (seconds): SQLite's busy handler retries a
#: waiting writer after 1, 2, 5, 10 ms..., which a prune that took the lock again
#: at once would starve.
PRUNE_PAUSE: Final = 0.01

#: The version of the schema this actionqueues writes, on every backend.
SCHEMA_VERSION: Final = 3

#: Schema 3: a step's transitions are appended to ``events``, one row each, rather
#: than written over its ``steps`` row (which keeps what was added, and, in a
#: journal migrated from schema 2, what was recorded before). An event's id is its
#: run's number times EVENT_SPAN plus its place in the run, from 1: a run's events
#: lie together, in order, under the table's own key (no other index to keep), and
#: a new run's under the highest. Its columns, as a load reads them:
EVENT_COLUMNS: Final = "idx, status, state, attempts, error, at"
EVENT_SPAN: Final = 2**32


def events_of(num: str) -> str:
    """SQL: the event ids of the run whose number is ``num`` (an SQL expression), as
    in ``WHERE id {events_of('r.num')}``."""
    return f"BETWEEN {num} * {EVENT_SPAN} AND {num} * {EVENT_SPAN} + {EVENT_SPAN - 1}"


#: SQLite's migrations: the statements that take a journal from version n - 1 to n
#: (its version is SQLite's ``user_version``).
SQLITE_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
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
    # Step events (see EVENT_COLUMNS), keyed by each run's number. Schema 1's
    # indexes of the status and the update time go: runs_claimable and runs_created
    # (INDEXES) serve their queries, and each cost a run's start and end about 35 us.
    # An older actionqueues that opened the journal before (a process still
    # running) would insert runs without a number, and read no events: its inserts
    # are refused (the trigger); stop such processes before migrating.
    3: (
        "DROP INDEX IF EXISTS runs_unfinished",
        "DROP INDEX IF EXISTS runs_updated",
        "ALTER TABLE runs ADD COLUMN num INTEGER",
        "UPDATE runs SET num = rowid",
        "CREATE UNIQUE INDEX runs_num ON runs (num)",
        "CREATE TRIGGER runs_num_required BEFORE INSERT ON runs WHEN NEW.num IS NULL "
        "BEGIN SELECT RAISE(ABORT, 'a run of schema 3 has a number: this journal was "
        "migrated by a newer actionqueues; upgrade this one'); END",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            idx INTEGER NOT NULL,
            status TEXT NOT NULL,
            state TEXT,
            attempts INTEGER,
            error TEXT,
            at REAL NOT NULL
        )""",
    ),
}

#: PostgreSQL's migrations, version by version (its version is in ``{s}.version``);
#: ``{s}`` is the schema's quoted name.
POSTGRES_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
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
        "CREATE INDEX runs_unfinished ON {s}.runs (lease_until) WHERE " + UNFINISHED_SQL,
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
    # Step events (see EVENT_COLUMNS), keyed by each run's number; schema 1's
    # indexes of the status and the update time go, as SQLite's do.
    3: (
        "DROP INDEX IF EXISTS {s}.runs_unfinished",
        "DROP INDEX IF EXISTS {s}.runs_updated",
        "CREATE SEQUENCE {s}.run_numbers",
        "ALTER TABLE {s}.runs ADD COLUMN num bigint",
        "UPDATE {s}.runs SET num = nextval('{s}.run_numbers')",
        "ALTER TABLE {s}.runs ALTER COLUMN num SET NOT NULL",  # an older writer: refused
        "CREATE UNIQUE INDEX runs_num ON {s}.runs (num)",
        """CREATE TABLE {s}.events (
            id bigint PRIMARY KEY,
            idx integer NOT NULL,
            status text NOT NULL,
            state text,
            attempts integer,
            error text,
            at double precision NOT NULL
        )""",
    ),
}

#: A PostgreSQL journal's schema name (the only identifier its SQL interpolates),
#: matched whole (``fullmatch``: a trailing newline is no part of a name).
SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
