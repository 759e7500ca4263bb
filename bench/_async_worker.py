"""One measurement of the async queue; run by bench_async.py in a fresh process.

usage: python _async_worker.py KIND N [DIR]
  sync        ns per step: ActionQueue, 10 plain no-op actions, built, added, run()
  async       ns per step: AsyncActionQueue, 10 async no-op actions, the same
  bare        ns per step: a bare async loop awaiting the same 10 actions
  wall        seconds for N concurrent 10-step queues (each action awaits
              asyncio.sleep(0), so the queues interleave), built and run at once
  memory      peak bytes per queue while N such queues run (tracemalloc: every
              allocation counted, the queues' actions and tasks included)
  stall       longest event-loop stall (ms) while N durable 10-step queues run at
              once on a SQLite journal in DIR (NORMAL); a 1 ms ticker measures it
  stall-inline  the same with the journal's writes made on the loop (a control)
Prints one number.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

STEPS = 10


class Noop:
    def execute(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class AsyncNoop:
    async def execute(self) -> None:
        pass

    async def rollback(self) -> None:
        pass


class Yielding:
    __slots__ = ()

    async def execute(self) -> None:
        await asyncio.sleep(0)

    async def rollback(self) -> None:
        await asyncio.sleep(0)


def per_step(kind: str, n: int) -> float:
    from actionqueues import ActionQueue, AsyncActionQueue

    def sync_round() -> None:
        actions = [Noop() for _ in range(STEPS)]
        for _ in range(n):
            q = ActionQueue()
            for a in actions:
                q.add(a)
            q.run()

    async def async_round() -> None:
        actions = [AsyncNoop() for _ in range(STEPS)]
        for _ in range(n):
            q = AsyncActionQueue()
            for a in actions:
                q.add(a)
            await q.run()

    async def bare_round() -> None:
        actions = [AsyncNoop() for _ in range(STEPS)]
        for _ in range(n):
            done = []
            for a in actions:
                done.append(await a.execute())

    best = float("inf")
    for _ in range(6):  # the first is a warm-up
        t = time.perf_counter()
        if kind == "sync":
            sync_round()
        else:
            asyncio.run(async_round() if kind == "async" else bare_round())
        best = min(best, time.perf_counter() - t)
    return best / n / STEPS * 1e9


async def concurrent(n: int) -> float:
    from actionqueues import AsyncActionQueue

    start = time.perf_counter()
    queues = []
    for _ in range(n):
        q = AsyncActionQueue()
        for _ in range(STEPS):
            q.add(Yielding())
        queues.append(q)
    await asyncio.gather(*(q.run() for q in queues))
    return time.perf_counter() - start


def memory(n: int) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    asyncio.run(concurrent(n))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - before) / n


async def stall(n: int, folder: Path, inline: bool) -> float:
    import actionqueues

    names = actionqueues.Registry()

    @names.register("bench.ynoop")
    @dataclasses.dataclass
    class Step:
        n: int = 0

        async def execute(self) -> None:
            await asyncio.sleep(0)

        async def rollback(self) -> None:
            await asyncio.sleep(0)

    class Inline(actionqueues.AsyncActionQueue):
        """The control: journal writes made on the event loop's thread."""

        async def _io(self, write: Any, *args: object) -> None:
            write(*args)

    journal = actionqueues.SQLiteJournal(folder / "stall.db")
    cls = Inline if inline else actionqueues.AsyncActionQueue
    worst = 0.0
    running = True

    async def ticker() -> None:
        nonlocal worst
        while running:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t - 0.001)

    queues = []  # built first: building is the caller's work, not the queues'
    for _ in range(n):
        q = cls(journal=journal, registry=names)
        for i in range(STEPS):
            q.add(Step(i))
        queues.append(q)
    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    await asyncio.gather(*(q.run() for q in queues))
    running = False
    await tick
    journal.close()
    return worst * 1e3


def main() -> None:
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind in ("sync", "async", "bare"):
        value = per_step(kind, n)
    elif kind == "wall":
        value = asyncio.run(concurrent(n))
    elif kind == "memory":
        value = memory(n)
    else:
        value = asyncio.run(stall(n, Path(sys.argv[3]), inline=kind == "stall-inline"))
    print(f"{value:.4f}")


if __name__ == "__main__":
    main()
