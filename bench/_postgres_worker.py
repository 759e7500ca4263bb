"""One timing of durable 10-step runs on PostgreSQL; run by bench_postgres.py.

usage: python _postgres_worker.py KIND THREADS RUNS URL SCHEMA START
  KIND: floor (a bare INSERT, committed, per step: psycopg, autocommit,
        synchronous_commit=on), ours (PostgresJournal, one commit a step),
        ours2 (a listener attached: two commits a step)
  THREADS: queues running at once in this process, RUNS runs in all
  START: a time.time() to wait for, so that processes start together
Prints "steps elapsed" (elapsed from START to the last run's end).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time

STEPS = 10


def floor(url: str, schema: str, threads: int, runs: int, start: float) -> int:
    import psycopg

    def work(n: int, count: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = on")
            statement = f"INSERT INTO {schema}.floor VALUES (%s, %s, %s)"  # noqa: S608
            ready.wait()
            for run in range(count):
                for idx in range(STEPS):
                    conn.execute(statement, (f"{n}-{run}", idx, "{}"))

    ready = threading.Event()
    pool = [threading.Thread(target=work, args=(n, runs // threads)) for n in range(threads)]
    for t in pool:
        t.start()
    time.sleep(max(0.0, start - time.time()))
    ready.set()
    for t in pool:
        t.join()
    return runs // threads * threads * STEPS


def ours(url: str, schema: str, threads: int, runs: int, start: float, listen: bool) -> int:
    import actionqueues
    from actionqueues.journal import PostgresJournal

    names = actionqueues.Registry()

    @names.register("bench.noop")
    @dataclasses.dataclass
    class Noop:
        n: int = 0

        def execute(self) -> None:
            pass

        def rollback(self) -> None:
            pass

    journal = PostgresJournal(url, schema=schema, pool_size=threads + 2)

    listeners = [lambda event: None] if listen else []

    def work(count: int) -> None:
        ready.wait()
        for _ in range(count):
            q = actionqueues.ActionQueue(journal=journal, registry=names, listeners=listeners)
            for i in range(STEPS):
                q.add(Noop(i))
            q.execute()

    ready = threading.Event()
    pool = [threading.Thread(target=work, args=(runs // threads,)) for _ in range(threads)]
    for t in pool:
        t.start()
    time.sleep(max(0.0, start - time.time()))
    ready.set()
    for t in pool:
        t.join()
    journal.close()
    return runs // threads * threads * STEPS


def main() -> None:
    kind, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    url, schema, start = sys.argv[4], sys.argv[5], float(sys.argv[6])
    if kind == "floor":
        steps = floor(url, schema, threads, runs, start)
    else:
        steps = ours(url, schema, threads, runs, start, listen=kind == "ours2")
    print(steps, time.time() - start)


if __name__ == "__main__":
    main()
