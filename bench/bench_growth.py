"""A SQLite journal as it grows: listing, finding and pruning with N finished runs.

usage: python bench/bench_growth.py [--runs 100000] [--repeat 15]

Fills a fresh journal with N finished runs of 10 steps (inserted in bulk, rows as a
queue writes them), then measures, medians of ``--repeat``:

* ``runs(limit=50)``, the newest 50;
* ``prune()`` of every run, and meanwhile the longest write of another journal
  object (its own connection, in a thread: sqlite3 lets go of the GIL in SQL) that
  records a step of a live run every millisecond: how long a prune makes other
  writers wait.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from actionqueues.journal import NewRun, SQLiteJournal, StepChange


def fill(path: Path, n: int) -> None:
    with SQLiteJournal(path) as journal:
        journal.record("seed", 0, [], new=NewRun("q", "rollback", [("a", "s", "{}")], ()))
    import sqlite3

    db = sqlite3.connect(path)
    now = time.time() - 3600
    with db:
        db.executemany(
            "INSERT INTO runs (id, name, status, mode, owner, lease_until, claims, created,"
            " updated, error, steps, num) VALUES (?, 'q', 'completed', 'rollback', NULL, 0, 1,"
            " ?, ?, NULL, 10, ?)",
            ((f"{i:032x}", now + i * 1e-3, now + i * 1e-3, i + 2) for i in range(n)),
        )
        db.executemany(  # each step's two events, executing and executed (schema 3)
            "INSERT INTO events (id, idx, status, state, attempts, error, at) VALUES"
            " (?, ?, ?, '{}', 1, NULL, ?)",
            (
                ((i + 2) * 2**32 + 2 * k + e, k, ("executing", "executed")[e - 1], now)
                for i in range(n)
                for k in range(10)
                for e in (1, 2)
            ),
        )
        db.executemany(
            "INSERT INTO steps (run_id, idx, action, name, state, status, attempts,"
            " rollback_attempts, error, rollback_error, updated, grp) VALUES"
            " (?, ?, 'a', 's', '{}', 'executed', 1, 0, NULL, NULL, ?, NULL)",
            ((f"{i:032x}", k, now) for i in range(n) for k in range(10)),
        )
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j.db"
        fill(path, args.runs)
        with SQLiteJournal(path) as journal:
            journal.runs(limit=50)  # warm
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                journal.runs(limit=50)
                times.append(time.perf_counter() - t)
            print(
                f"{args.runs} finished runs; runs(limit=50): "
                f"{statistics.median(times) * 1e3:.2f} ms"
            )
            other = SQLiteJournal(path)
            other.record("live", 0, [], new=NewRun("q", "rollback", [("a", "s", "{}")], ()))
            waits: list[float] = []
            stop = threading.Event()

            def writer() -> None:
                while not stop.is_set():
                    t = time.perf_counter()
                    other.record("live", 0, [StepChange(0, "executing", "{}", 1)])
                    waits.append(time.perf_counter() - t)
                    time.sleep(0.001)

            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(0.05)
            t = time.perf_counter()
            deleted = journal.prune(journal.now() + 1)
            took = time.perf_counter() - t
            stop.set()
            thread.join()
            other.close()
            print(
                f"prune of {deleted} runs: {took:.2f} s; another writer's steps meanwhile: "
                f"{len(waits)}, longest {max(waits) * 1e3:.1f} ms, "
                f"median {statistics.median(waits) * 1e3:.2f} ms"
            )


if __name__ == "__main__":
    main()
