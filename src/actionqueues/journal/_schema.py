"""What both journals' tables hold, said once: their columns, the status sets as SQL,
and the indexes made on every open to write.

Each backend keeps its own ``CREATE TABLE`` migrations (their types differ); the
names here are the ones their statements share. The tables are written ``{s}runs``
and ``{s}steps``: a backend puts its schema's prefix in place of ``{s}`` (PostgreSQL's
``"name".``, SQLite's nothing).
"""

from __future__ import annotations

import re
from typing import Final

from ._base import UNFINISHED

RUN_COLUMNS: Final = (
    "id, name, status, mode, owner, lease_until, claims, created, updated, error, steps"
)
STEP_COLUMNS: Final = (
    "run_id, idx, action, name, state, status, attempts, rollback_attempts, error, "
    "rollback_error, updated, grp"
)
#: A journal of schema 1, read as it is (read-only, not migrated): no parallel groups.
STEP_COLUMNS_1: Final = STEP_COLUMNS.replace(", grp", ", NULL AS grp")
#: Step statuses of the rollback phase: their attempts and error are the rollback's.
ROLLBACK_STATUSES: Final = frozenset({"rolling_back", "rolled_back", "rollback_failed"})
#: The unfinished runs, as literal SQL, so that a planner matches the partial index
#: below (which a parameter it could not).
UNFINISHED_SQL: Final = "status IN (" + ", ".join(f"'{s}'" for s in UNFINISHED) + ")"
#: Claims walk the unfinished runs in (updated, id) order from a recoverer's cursor;
#: without this partial index each claim sorted every unfinished run, and a pass over
#: many runs recovery cannot rebuild took quadratic time. An index changes no row: it
#: is made on every open to write rather than by a schema version (an older
#: actionqueues reads the journal as before).
INDEXES: Final = (
    f"CREATE INDEX IF NOT EXISTS runs_claimable ON {{s}}runs (updated, id) WHERE {UNFINISHED_SQL}",
)

#: A PostgreSQL journal's schema name (the only identifier its SQL interpolates),
#: matched whole (``fullmatch``: a trailing newline is no part of a name).
SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
