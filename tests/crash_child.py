"""A child process for the crash tests: runs one durable queue, or recovers.

usage: crash_child.py run JOURNAL SYSTEM STEPS FAIL_AT MODE
       crash_child.py recover JOURNAL
AQ_CRASH_AT=n kills the process with SIGKILL at the n-th instrumented point
(inside actions, before and after their side effects, and between steps).
"""

from __future__ import annotations

import contextlib
import sys

from durable_actions import Crasher, Write, registry

import actionqueues
from actionqueues import ActionQueue, SQLiteJournal, StepSucceeded


def between_steps(event: actionqueues.Event) -> None:
    if isinstance(event, StepSucceeded):
        Crasher.point()


def main() -> None:
    command, journal_path = sys.argv[1], sys.argv[2]
    journal = SQLiteJournal(journal_path, lease=0.3)
    if command == "run":
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
