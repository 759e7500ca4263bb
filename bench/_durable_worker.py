"""One timing of durable 10-step runs; run by bench_durable.py in a fresh process.

usage: python _durable_worker.py KIND MODE RUNS DIR
  KIND: floor (a bare sqlite3 INSERT + COMMIT per step), ours (one thread),
        ours2 (one thread, a listener attached:
        two commits a step), ours8 (8 threads at once,
        RUNS in all), dbos (DBOS Transact on SQLite)
  MODE: normal or full (synchronous=NORMAL / FULL; WAL for all)
Prints durable steps per second.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
import threading
import time
from pathlib import Path

STEPS = 10


def floor(mode: str, runs: int, folder: Path) -> float:
    db = sqlite3.connect(folder / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {mode.upper()}")
    db.execute("CREATE TABLE steps (run INTEGER, idx INTEGER, state TEXT)")
    start = time.perf_counter()
    for run in range(runs):
        for idx in range(STEPS):
            db.execute("BEGIN")
            db.execute("INSERT INTO steps VALUES (?, ?, ?)", (run, idx, "{}"))
            db.execute("COMMIT")
    return runs * STEPS / (time.perf_counter() - start)


def ours(mode: str, runs: int, folder: Path, threads: int, listen: bool = False) -> float:
    import actionqueues

    names = actionqueues.Registry()

    @names.register("bench.noop")
    @dataclasses.dataclass
    class Noop:
        n: int = 0

        def execute(self) -> None:
            pass

        def rollback(self) -> None:
            pass

    journal = actionqueues.SQLiteJournal(
        folder / "ours.db", durability="power" if mode == "full" else "process"
    )

    listeners = [lambda event: None] if listen else []

    def work(count: int) -> None:
        for _ in range(count):
            q = actionqueues.ActionQueue(journal=journal, registry=names, listeners=listeners)
            for i in range(STEPS):
                q.add(Noop(i))
            q.execute()

    start = time.perf_counter()
    if threads == 1:
        work(runs)
    else:
        pool = [threading.Thread(target=work, args=(runs // threads,)) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    elapsed = time.perf_counter() - start
    journal.close()
    return runs // threads * threads * STEPS / elapsed


def dbos(mode: str, runs: int, folder: Path) -> float:
    from dbos import DBOS

    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{folder / 'dbos.sqlite'}"})

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def workflow() -> None:
        for i in range(STEPS):
            noop(i)

    DBOS.launch()
    workflow()  # warm up
    start = time.perf_counter()
    for _ in range(runs):
        workflow()
    elapsed = time.perf_counter() - start
    DBOS.destroy()
    return runs * STEPS / elapsed


def main() -> None:
    kind, mode, runs, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    if kind == "floor":
        rate = floor(mode, runs, folder)
    elif kind == "ours":
        rate = ours(mode, runs, folder, 1)
    elif kind == "ours2":
        rate = ours(mode, runs, folder, 1, listen=True)
    elif kind == "ours8":
        rate = ours(mode, runs, folder, 8)
    else:
        rate = dbos(mode, runs, folder)
    print(f"{rate:.1f}")


if __name__ == "__main__":
    main()
