"""A SQLite journal as it grows: listing, finding and pruning with N finished runs.

usage: python bench/bench_growth.py [--runs 100000] [--steps 10] [--repeat 15]

Fills a fresh journal with N finished runs of ``--steps`` steps (inserted in bulk,
rows and events as a queue writes them, ids as random as uuid4's), then measures,
medians of ``--repeat``:

* ``runs(limit=50)``, the newest 50;
* ``actionqueues show <prefix>``'s lookup: ``load()`` of the prefix (no such run),
  ``find_ids()`` of it, ``load()`` of the one run found (an 8-character prefix);
* ``recover()`` with no run interrupted;
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

from actionqueues import recover
from actionqueues.journal import NewRun, SQLiteJournal, StepChange


def run_id(i: int) -> str:
    """The i-th run's id: 32 hex digits, scattered as uuid4's (an odd multiplier is a
    bijection modulo 2**128)."""
    return f"{i * 0x9E3779B97F4A7C15F39CC0605CEDC835 % 2**128:032x}"


def fill(path: Path, n: int, steps: int) -> None:
    with SQLiteJournal(path) as journal:
        journal.record("seed", 0, [], new=NewRun("q", "rollback", [("a", "s", "{}")], ()))
    import sqlite3

    db = sqlite3.connect(path)
    now = time.time() - 3600
    with db:
        db.executemany(
            "INSERT INTO runs (id, name, status, mode, owner, lease_until, claims, created,"
            " updated, error, steps, num) VALUES (?, 'q', 'completed', 'rollback', NULL, 0, 1,"
            " ?, ?, NULL, ?, ?)",
            ((run_id(i), now + i * 1e-3, now + i * 1e-3, steps, i + 2) for i in range(n)),
        )
        db.executemany(  # each step's two events, executing and executed (schema 3)
            "INSERT INTO events (id, idx, status, state, attempts, error, at) VALUES"
            " (?, ?, ?, '{}', 1, NULL, ?)",
            (
                ((i + 2) * 2**32 + 2 * k + e, k, ("executing", "executed")[e - 1], now)
                for i in range(n)
                for k in range(steps)
                for e in (1, 2)
            ),
        )
        db.executemany(
            "INSERT INTO steps (run_id, idx, action, name, state, status, attempts,"
            " rollback_attempts, error, rollback_error, updated, grp) VALUES"
            " (?, ?, 'a', 's', '{}', 'executed', 1, 0, NULL, NULL, ?, NULL)",
            ((run_id(i), k, now) for i in range(n) for k in range(steps)),
        )
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j.db"
        fill(path, args.runs, args.steps)
        with SQLiteJournal(path) as journal:

            def show(k: int) -> None:  # as cli.find() looks a prefix up
                prefix = run_id(k * 7919 % args.runs)[:8]
                assert journal.load(prefix) is None
                [found] = journal.find_ids(prefix)
                assert journal.load(found) is not None

            for name, work in (
                ("runs(limit=50)", lambda k: journal.runs(limit=50)),
                ("show <prefix>", show),
                ("recover(), none interrupted", lambda k: recover(journal)),
            ):
                work(0)  # warm
                times = []
                for k in range(args.repeat):
                    t = time.perf_counter()
                    work(k + 1)
                    times.append(time.perf_counter() - t)
                print(
                    f"{args.runs} finished runs of {args.steps} steps; {name}: "
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
