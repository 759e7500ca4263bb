"""What a journal write costs in SQLite alone, by shape (no actionqueues code).

usage: python bench/commit_shapes.py [--n 3000]

Compares, in WAL with synchronous=NORMAL: the raw floor (one INSERT + COMMIT); a step
as the SQLite journal writes it (two commits: an ownership-fenced UPDATE of a
WITHOUT ROWID table each); the same two commits as appends to an events table. It
answers whether an append-only layout would make durable steps cheaper.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

OURS = "EXISTS (SELECT 1 FROM runs WHERE id = ? AND owner = ? AND claims = ?)"
UPDATE = (
    "UPDATE steps SET status = ?, state = COALESCE(?, state), "
    "attempts = COALESCE(?, attempts), error = COALESCE(?, error), updated = ? "
    f"WHERE run_id = ? AND idx = ? AND {OURS}"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "shapes.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, owner TEXT, claims INT)")
        db.execute(
            "CREATE TABLE steps (run_id TEXT, idx INT, status TEXT, state TEXT, attempts INT, "
            "error TEXT, updated REAL, PRIMARY KEY (run_id, idx)) WITHOUT ROWID"
        )
        db.execute(
            "CREATE TABLE events (run_id TEXT, idx INT, status TEXT, state TEXT, "
            "attempts INT, error TEXT, at REAL)"
        )
        for r in range(n // 10):
            db.execute("INSERT INTO runs VALUES (?, 'o', 0)", (f"r{r}",))
            db.executemany(
                "INSERT INTO steps VALUES (?, ?, 'pending', '{}', 0, NULL, 0)",
                [(f"r{r}", i) for i in range(10)],
            )

        def timed(step: object) -> float:
            start = time.perf_counter()
            for k in range(n):
                step(f"r{k // 10}", k % 10)  # type: ignore[operator]
            return (time.perf_counter() - start) / n * 1e6

        def floor(run: str, idx: int) -> None:
            db.execute("BEGIN")
            db.execute("INSERT INTO events VALUES (?, ?, 's', '{}', NULL, NULL, 0)", (run, idx))
            db.execute("COMMIT")

        def updates(run: str, idx: int) -> None:
            for status in ("executing", "executed"):
                db.execute("BEGIN IMMEDIATE")
                db.execute(UPDATE, (status, '{"a":1}', 1, None, 0.0, run, idx, run, "o", 0))
                db.execute("COMMIT")

        def appends(run: str, idx: int) -> None:
            for status in ("executing", "executed"):
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "SELECT 1 FROM runs WHERE id = ? AND owner = ? AND claims = ?", (run, "o", 0)
                ).fetchone()
                db.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, 1, NULL, 0)",
                    (run, idx, status, '{"a":1}'),
                )
                db.execute("COMMIT")

        results = {
            name: timed(fn)
            for name, fn in (("floor", floor), ("updates", updates), ("appends", appends))
        }
        db.close()
    print(f"microseconds per step, {n} steps, WAL + synchronous=NORMAL")
    print(f"  raw floor, 1 commit (INSERT):               {results['floor']:6.1f}")
    print(f"  journal layout, 2 commits (fenced UPDATEs): {results['updates']:6.1f}")
    print(f"  append-only layout, 2 commits (INSERTs):    {results['appends']:6.1f}")


if __name__ == "__main__":
    main()
