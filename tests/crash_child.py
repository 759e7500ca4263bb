"""A child process for the crash tests: runs one durable queue, or recovers.

usage: crash_child.py run JOURNAL SYSTEM STEPS FAIL_AT MODE
       crash_child.py arun JOURNAL SYSTEM STEPS FAIL_AT MODE   (AsyncActionQueue,
                                async actions, steps 1-2 in parallel)
       crash_child.py threads JOURNAL SYSTEM   (4 threads of queues, durability=power,
                                                until killed from outside)
       crash_child.py d2 JOURNAL SYSTEM CASE   (killed where a step's "executed"
                                record must already be committed: see test_crash)
       crash_child.py recover JOURNAL
       crash_child.py worker JOURNAL   (recover every 0.1 s until killed)
JOURNAL is a file path, or a postgresql:// URL (the schema in $AQ_PG_SCHEMA).
AQ_CRASH_AT=n kills the process with SIGKILL at the n-th instrumented point
(inside actions, before and after their side effects, and between steps).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time

from durable_actions import AsyncRow, AsyncWrite, Crasher, Row, Write, registry

import actionqueues
from actionqueues import ActionQueue, AsyncActionQueue, SQLiteJournal, StepSucceeded


def between_steps(event: actionqueues.Event) -> None:
    if isinstance(event, StepSucceeded):
        Crasher.point()


def threads(journal_path: str, system: str) -> None:
    """Queues in 4 threads sharing group commits, forever: the parent kills us."""
    journal = SQLiteJournal(journal_path, lease=0.3, durability="power")  # SQLite's own

    def work(n: int) -> None:
        for k in range(10**9):
            queue = ActionQueue(
                name=f"rollback {-1 if k % 3 else 1}", journal=journal, registry=registry
            )
            for i in range(3):
                queue.add(Write(system, f"t{n}-{k}-{i}", fail=k % 3 == 0 and i == 1))
            with contextlib.suppress(RuntimeError):
                queue.run()

    pool = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def d2(journal: actionqueues.journal.Journal, system: str, case: str) -> None:
    """Steps a and b return; then the process is killed before anything else is
    committed: in the next step ("next"), in a listener of b's end ("listener"),
    in b's parallel sibling ("group"), or in a's rollback after b's ("rollback")."""
    if case == "group":
        aqueue = AsyncActionQueue(journal=journal, registry=registry, run_id="d2")
        aqueue.add(AsyncRow(system, "a"))
        aqueue.add_parallel(AsyncRow(system, "b"), AsyncRow(system, "c", kill=True))
        asyncio.run(aqueue.run())
        return

    def kill_after_b(event: actionqueues.Event) -> None:
        if isinstance(event, StepSucceeded) and event.index == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    listeners = [kill_after_b] if case == "listener" else []
    queue = ActionQueue(journal=journal, registry=registry, run_id="d2", listeners=listeners)
    if case == "rollback":
        os.environ["AQ_KILL_UNDO"] = "a"
    queue.add(Row(system, "a"))
    queue.add(Row(system, "b"))
    queue.add(Row(system, "c", kill=case == "next", fail=case == "rollback"))
    queue.run()


def open_it(where: str, **options: object) -> actionqueues.journal.Journal:
    if where.startswith("postgresql://"):
        options["schema"] = os.environ["AQ_PG_SCHEMA"]
    return actionqueues.open_journal(where, **options)


def main() -> None:
    command, journal_path = sys.argv[1], sys.argv[2]
    if command == "threads":
        threads(journal_path, sys.argv[3])
        return
    if command == "worker":  # a worker may start while the database restarts: wait
        while True:
            try:
                journal = open_it(journal_path, lease=0.3)
                break
            except actionqueues.JournalError:
                time.sleep(0.2)
    else:
        journal = open_it(journal_path, lease=0.3)
    if command == "worker":
        while True:
            with contextlib.suppress(actionqueues.JournalError):  # the database restarting
                actionqueues.recover(journal, registry=registry, listeners=[between_steps])
            time.sleep(0.1)
    if command == "d2":
        d2(journal, sys.argv[3], sys.argv[4])
    if command == "arun":
        system, steps, fail_at, mode = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        aqueue = AsyncActionQueue(
            name=f"{mode} {fail_at}",
            journal=journal,
            registry=registry,
            recovery=mode,
            listeners=[between_steps],
        )
        actions = [AsyncWrite(system, f"step {i}", fail=i == fail_at) for i in range(steps)]
        aqueue.add(actions[0])
        aqueue.add_parallel(*actions[1:3])  # steps >= 3
        for action in actions[3:]:
            aqueue.add(action)
        with contextlib.suppress(RuntimeError):
            asyncio.run(aqueue.run())
    elif command == "run":
        system, steps, fail_at, mode = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        queue = ActionQueue(
            name=f"{mode} {fail_at}",  # what the test expects of the run
            journal=journal,
            registry=registry,
            recovery=mode,
            listeners=[between_steps],
        )
        for i in range(steps):
            queue.add(Write(system, f"step {i}", fail=i == fail_at))
        with contextlib.suppress(RuntimeError):  # a scripted failure, rolled back
            queue.run()
    else:
        actionqueues.recover(journal, registry=registry, listeners=[between_steps])
    journal.close()


if __name__ == "__main__":
    main()
