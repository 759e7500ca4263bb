"""Durable steps per second on the PostgreSQL journal, against the raw commit floor.

usage: python bench/bench_postgres.py URL [--rounds 3] [--runs 160]

Run with the interpreter of a venv where this tree is installed with the
``[postgres]`` extra. For 1, 4 and 16 queues at once, as threads of one process and
then as processes (each with a thread), it times 10-step runs of no-op durable
actions (``ours``: one commit a step, a step's D2 with the next one's D1;
``ours2``: two commits a step, a listener attached) and the floor: a bare INSERT committed per step
(autocommit, ``synchronous_commit=on``), the same number of steps, the same
concurrency. Each round runs every measurement in fresh processes, in a shuffled
order, in a schema of its own that is dropped afterwards; the figures are medians.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_postgres_worker.py"
LEVELS = (1, 4, 16)


def measure(kind: str, how: str, level: int, runs: int, url: str, schema: str) -> float:
    """Steps per second for ``level`` queues at once (threads or processes)."""
    processes, threads = (level, 1) if how == "processes" else (1, level)
    start = time.time() + 1.5 + 0.1 * processes  # everyone imported and connected
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                WORKER,
                kind,
                str(threads),
                str(runs // processes),
                url,
                schema,
                str(start),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        for _ in range(processes)
    ]
    steps, elapsed = 0, 0.0
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0
        n, seconds = out.split()
        steps += int(n)
        elapsed = max(elapsed, float(seconds))
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=160, help="10-step runs per timing")
    args = parser.parse_args()
    import psycopg

    from actionqueues.journal import PostgresJournal

    schema = f"aq_bench_{uuid.uuid4().hex[:8]}"
    PostgresJournal(args.url, schema=schema).close()
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {schema}.floor (run text, idx integer, state text)")
    cases = [
        (kind, how, level)
        for kind in ("floor", "ours", "ours2")
        for how in ("threads", "processes")
        for level in LEVELS
    ]
    results: dict[tuple[str, str, int], list[float]] = {c: [] for c in cases}
    try:
        for _ in range(args.rounds):
            random.shuffle(cases)
            for case in cases:
                results[case].append(measure(*case, args.runs, args.url, schema))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    med = {c: statistics.median(v) for c, v in results.items()}
    print(f"{args.rounds} rounds, {args.runs} runs of 10 steps per timing; steps/s, median")
    print(
        f"{'how':<10}{'queues':>7}{'floor':>9}{'ours':>9}{'ours2':>9}"
        f"{'floor/ours':>12}{'floor/ours2':>13}"
    )
    for how in ("threads", "processes"):
        for level in LEVELS:
            f, o, o1 = (med[k, how, level] for k in ("floor", "ours", "ours2"))
            print(f"{how:<10}{level:>7}{f:>9.0f}{o:>9.0f}{o1:>9.0f}{f / o:>12.2f}{f / o1:>13.2f}")
        one, sixteen = med["ours", how, 1], med["ours", how, 16]
        print(f"{how}: ours with 16 queues / 1 queue = {sixteen / one:.2f}")
    every = {f"{k[0]}/{k[1]}/{k[2]}": [round(x) for x in v] for k, v in results.items()}
    print("all rounds:", every)


if __name__ == "__main__":
    main()
