"""How long recovery takes to pass over runs it cannot rebuild (issue 9, item 4).

Each run's only step names an action nobody registered, so recovery claims it,
skips it (D8: untouched) and gives it back. Before the fix a recoverer excluded the
runs it had skipped with a growing ``NOT IN (...)`` list and claimed them in an
order that put them first again: quadratic. Now it claims past the last run it
passed (a cursor on (updated, id)): linear, so the time per run stays flat as the
journal grows. The reference is the same journal's bare claim-and-release loop
(what recovery cannot do without), measured in the same run.

    .venv/bin/python bench/bench_recovery_skip.py --sizes 2000 8000 --rounds 3
    .venv/bin/python bench/bench_recovery_skip.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from actionqueues import SQLiteJournal, recover
from actionqueues.journal import Journal, NewRun, PostgresJournal, StepChange

Opener = Callable[[], Journal]


def journal_with(opener: Opener, n: int) -> Opener:
    with opener() as journal:
        for i in range(n):
            run_id = f"run-{i:06d}"
            new = NewRun(None, "rollback", [("nobody.registered", "s", "{}")])
            journal.record(run_id, 0, [StepChange(0, "executing", "{}")], new=new)
            journal.release(run_id)
    return opener


def recover_all(path: Opener) -> float:
    with path() as journal:
        start = time.perf_counter()
        results = recover(journal)
        took = time.perf_counter() - start
    assert all(r.outcome == "skipped" for r in results), "every run is skipped"
    return took


def bare_claims(path: Opener, n: int) -> float:
    """Claim and release each run, cursor-ordered, doing nothing else."""
    with path() as journal:
        start = time.perf_counter()
        after = None
        for _ in range(n):
            row = journal.claim(after=after)
            assert row is not None
            after = (row.updated, row.id)
            journal.release(row.id, unclaim=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL journal, not SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print("| runs | recover() | per run | bare claim+release | recover / bare |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for n in args.sizes:
            opener: Opener
            if args.postgres:
                schema = f"aq_bench_{uuid.uuid4().hex[:8]}"
                opener = functools.partial(PostgresJournal, args.postgres, schema=schema)
            else:
                opener = functools.partial(SQLiteJournal, Path(folder) / f"skip-{n}.db")
            path = journal_with(opener, n)
            ours, bare = [], []
            for _ in range(args.rounds):
                ours.append(recover_all(path))
                bare.append(bare_claims(path, n))
            o, b = statistics.median(ours), statistics.median(bare)
            print(f"| {n} | {o:.2f} s | {o / n * 1e6:.0f} µs | {b:.2f} s | {o / b:.2f} |")
            if args.postgres:
                import psycopg

                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
