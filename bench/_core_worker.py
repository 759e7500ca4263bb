"""One timing of a 10-step in-memory queue; run by bench_core.py in a fresh process.

usage: python _core_worker.py {seed,ours,ours-run,bare} {happy,fail} N
Prints nanoseconds per step: queue built, 10 actions added, executed (and, on the
failure path, the last step fails and the whole queue is rolled back). ``ours`` uses
0.8.2's API (execute, then rollback on failure); ``ours-run`` the one call ``run()``,
which also builds the report it returns and, on failure, notes the exception.
"""

from __future__ import annotations

import sys
import time

STEPS = 10


class Ok:
    def execute(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class Boom(Ok):
    def execute(self) -> None:
        raise ValueError("boom")


def queue_run(queue_cls: type, actions: list[Ok], fail: bool) -> None:
    q = queue_cls()
    for a in actions:
        q.add(a)
    if fail:
        try:
            q.execute()
        except ValueError:
            q.rollback()
    else:
        q.execute()


def run_run(queue_cls: type, actions: list[Ok], fail: bool) -> None:
    q = queue_cls()
    for a in actions:
        q.add(a)
    try:  # noqa: SIM105 - the same try/except as the 0.8.2 path, for a fair comparison
        q.run()
    except ValueError:
        pass


def bare_run(queue_cls: object, actions: list[Ok], fail: bool) -> None:
    """The same calls with no library: the floor."""
    executed = []
    try:
        for a in actions:
            executed.append(a)
            a.execute()
    except ValueError:
        for a in reversed(executed):
            try:  # noqa: SIM105 - contextlib.suppress costs more than the floor should
                a.rollback()
            except Exception:  # noqa: S110 - the floor swallows like 0.8.2
                pass


def main() -> None:
    impl, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fail = path == "fail"
    actions = [Ok() for _ in range(STEPS - 1)] + [Boom() if fail else Ok()]
    if impl == "bare":
        run, cls = bare_run, None
    else:
        from actionqueues.actionqueue import ActionQueue

        run, cls = run_run if impl == "ours-run" else queue_run, ActionQueue  # type: ignore[assignment]
    for _ in range(n // 10):  # warm up
        run(cls, actions, fail)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            run(cls, actions, fail)
        best = min(best, time.perf_counter() - t)
    print(f"{best / n / STEPS * 1e9:.1f}")


if __name__ == "__main__":
    main()
