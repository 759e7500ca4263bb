"""What a journal write costs in SQLite alone, by shape (no actionqueues code).

usage: python bench/commit_shapes.py [--n 4000] [--rounds 9]

Every shape writes, per step, what one commit a step writes (its "executed" record
with the next step's "executing" one), WAL with synchronous=NORMAL, in runs of 10
steps whose ids are random (uuid4), as queues' are:

- floor: one INSERT + COMMIT per step (the raw commit floor of bench_durable.py);
- updates: schema 2's layout, the two fenced UPDATEs of a WITHOUT ROWID steps table
  in one BEGIN IMMEDIATE transaction;
- append: schema 3's, one INSERT of the events in autocommit, fenced by a join with
  the run's row, keyed by the run's number times 2**32 plus the event's place;
- append, numbered: the same with each event's place given by the writer rather
  than found (the run's last event, by MAX);
- append, random key: the same keyed by the random run id (an index on it), to
  show why schema 3 numbers its runs.

Medians over the rounds (each in a fresh file), in shuffled order, microseconds per
step.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

STATE = '{"n":3,"key":null}'
SPAN = 2**32
UPDATE = (
    "UPDATE steps SET status = ?, state = ?, attempts = ?, updated = ? "
    "WHERE run_id = ? AND idx = ? AND "
    "EXISTS (SELECT 1 FROM runs WHERE id = ? AND owner = 'o' AND claims = 0)"
)
APPEND = (
    "INSERT INTO events SELECT COALESCE((SELECT MAX(e.id) FROM events e WHERE e.id "
    f"BETWEEN r.num * {SPAN} AND r.num * {SPAN} + {SPAN - 1}), r.num * {SPAN}) + v.column1, "
    "v.column2, v.column3, v.column4, v.column5 FROM runs r JOIN (VALUES {rows}) v "
    "WHERE r.id = ? AND r.owner = 'o' AND r.claims = 0"
)
NUMBERED = (
    f"INSERT INTO events SELECT r.num * {SPAN} + v.column1, v.column2, v.column3, v.column4, "
    "v.column5 FROM runs r JOIN (VALUES {rows}) v WHERE r.id = ? AND r.owner = 'o' "
    "AND r.claims = 0"
)
BY_ID = (
    "INSERT INTO by_id SELECT r.id, v.column2, v.column3, v.column4, v.column5 "
    "FROM runs r JOIN (VALUES {rows}) v WHERE r.id = ? AND r.owner = 'o' AND r.claims = 0"
)


def setup(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, owner TEXT, claims INT, num INT)")
    db.execute("CREATE UNIQUE INDEX runs_num ON runs (num)")
    db.execute(
        "CREATE TABLE steps (run_id TEXT, idx INT, status TEXT, state TEXT, attempts INT, "
        "updated REAL, PRIMARY KEY (run_id, idx)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, idx INT, status TEXT, state TEXT, at REAL)"
    )
    db.execute("CREATE TABLE by_id (run_id TEXT, idx INT, status TEXT, state TEXT, at REAL)")
    db.execute("CREATE INDEX by_id_run ON by_id (run_id)")
    db.execute("CREATE TABLE floor (run INT, idx INT, state TEXT)")
    return db


def new_run(db: sqlite3.Connection) -> str:
    run_id = uuid.uuid4().hex
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO runs VALUES (?, 'o', 0, (SELECT COALESCE(MAX(num), 0) + 1 FROM runs))",
        (run_id,),
    )
    db.executemany(
        "INSERT INTO steps VALUES (?, ?, 'pending', ?, 0, 0)",
        [(run_id, i, STATE) for i in range(10)],
    )
    db.execute("COMMIT")
    return run_id


def timed(db: sqlite3.Connection, n: int, step: Callable[[str, int], None]) -> float:
    """Microseconds per step of ``step(run_id, index)``, runs made outside the clock."""
    total = 0.0
    for _ in range(n // 10):
        run_id = new_run(db)
        start = time.perf_counter()
        for i in range(10):
            step(run_id, i)
        total += time.perf_counter() - start
    return total / (n // 10 * 10) * 1e6


def shapes(db: sqlite3.Connection) -> dict[str, Callable[[str, int], None]]:

    def floor(run_id: str, i: int) -> None:
        db.execute("BEGIN")
        db.execute("INSERT INTO floor VALUES (?, ?, ?)", (0, i, STATE))
        db.execute("COMMIT")

    def updates(run_id: str, i: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        if i:
            db.execute(UPDATE, ("executed", STATE, 1, 0.0, run_id, i - 1, run_id))
        db.execute(UPDATE, ("executing", STATE, 1, 0.0, run_id, i, run_id))
        db.execute("COMMIT")

    def appending(sql: str) -> Callable[[str, int], None]:
        first = sql.replace("{rows}", "(?, ?, ?, ?, ?)")
        later = sql.replace("{rows}", "(?, ?, ?, ?, ?), (?, ?, ?, ?, ?)")

        def append(run_id: str, i: int) -> None:
            # Each event's place in the run (the writer's count, for "numbered").
            if i:
                rows = (2 * i, i - 1, "executed", STATE, 0.0)
                rows += (2 * i + 1, i, "executing", STATE, 0.0)
                assert db.execute(later, (*rows, run_id)).rowcount == 2
            else:
                assert db.execute(first, (1, i, "executing", STATE, 0.0, run_id)).rowcount == 1

        return append

    return {
        "floor": floor,
        "updates": updates,
        "append": appending(APPEND),
        "append, numbered": appending(NUMBERED),
        "append, random key": appending(BY_ID),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            db = setup(Path(folder) / "shapes.db")
            chosen = list(shapes(db).items())
            random.shuffle(chosen)
            for name, step in chosen:
                results.setdefault(name, []).append(timed(db, args.n, step))
            db.close()
    print(f"microseconds per step, {args.n} steps, WAL + synchronous=NORMAL, medians")
    for name in ("floor", "updates", "append", "append, numbered", "append, random key"):
        print(f"  {name:<20} {statistics.median(results[name]):6.1f}")


if __name__ == "__main__":
    main()
