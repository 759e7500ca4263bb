"""One timing of a 10-step in-memory run of plain functions; run by bench_functions.py.

usage: python _functions_worker.py {sagapy,ours} {happy,fail} N
Prints nanoseconds per step: the run built from 10 (do, undo) function pairs and
run; on the failure path the last step raises and the nine before it are undone.
``sagapy`` is saga-py 1.1.0 (``SagaBuilder().action(do, undo)``, ``execute()``);
``ours`` is ``ActionQueue().add(do, undo)`` and ``run()``.
"""

from __future__ import annotations

import sys
import time

STEPS = 10


def do() -> None:
    pass


def undo() -> None:
    pass


def boom() -> None:
    raise ValueError("boom")


def main() -> None:
    impl, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    steps = [do] * (STEPS - 1) + [boom if path == "fail" else do]
    if impl == "sagapy":
        from saga import SagaBuilder, SagaError  # type: ignore[import-not-found]

        def run() -> None:
            builder = SagaBuilder.create()
            for step in steps:
                builder = builder.action(step, undo)
            try:  # noqa: SIM105 - the same try/except for both, for a fair comparison
                builder.build().execute()
            except SagaError:
                pass

    else:
        from actionqueues import ActionQueue

        def run() -> None:
            queue = ActionQueue()
            for step in steps:
                queue.add(step, undo)
            try:  # noqa: SIM105
                queue.run()
            except ValueError:
                pass

    for _ in range(n // 10):  # warm up
        run()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            run()
        best = min(best, time.perf_counter() - t)
    print(f"{best / n / STEPS * 1e9:.1f}")


if __name__ == "__main__":
    main()
