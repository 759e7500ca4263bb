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
  dsync       us per durable step: N 10-step ActionQueue runs, one after another, of
              registered no-op actions, on a SQLite journal in DIR (NORMAL)
  dasync      the same with AsyncActionQueue and async actions (its writes made in
              the journal's thread)
  dasync-inline  the same with the writes made on the loop (a control)
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


def write_on_the_loop() -> None:
    """The control: the async driver's journal writes made on the event loop's
    thread, not in the journal's (``_aiotools.write`` replaced where the driver
    calls it)."""
    from actionqueues import _driver_async

    async def inline(durable: Any, function: Any, *args: object) -> None:
        function(*args)

    _driver_async.write = inline  # type: ignore[assignment]


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

    if inline:
        write_on_the_loop()
    journal = actionqueues.SQLiteJournal(folder / "stall.db")
    cls = actionqueues.AsyncActionQueue
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


def durable_step(kind: str, n: int, folder: Path) -> float:
    """Microseconds per durable step, sync or async queues, one run at a time."""
    import actionqueues

    names = actionqueues.Registry()
    names.register("bench.noop", dataclasses.dataclass(type("Noop", (Noop,), {})))
    names.register("bench.anoop", dataclasses.dataclass(type("ANoop", (AsyncNoop,), {})))
    journal = actionqueues.SQLiteJournal(folder / "durable.db")

    def sync_runs() -> None:
        for _ in range(n):
            queue = actionqueues.ActionQueue(journal=journal, registry=names)
            for _ in range(STEPS):
                queue.add(names.decode("bench.noop", "{}"))  # type: ignore[arg-type]
            queue.execute()

    async def async_runs() -> None:
        for _ in range(n):
            queue = actionqueues.AsyncActionQueue(journal=journal, registry=names)
            for _ in range(STEPS):
                queue.add(names.decode("bench.anoop", "{}"))  # type: ignore[arg-type]
            await queue.execute()

    if kind == "dasync-inline":
        write_on_the_loop()
    start = time.perf_counter()
    if kind == "dsync":
        sync_runs()
    else:
        asyncio.run(async_runs())
    elapsed = time.perf_counter() - start
    journal.close()
    return elapsed / n / STEPS * 1e6


def main() -> None:
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind in ("sync", "async", "bare"):
        value = per_step(kind, n)
    elif kind in ("dsync", "dasync", "dasync-inline"):
        value = durable_step(kind, n, Path(sys.argv[3]))
    elif kind == "wall":
        value = asyncio.run(concurrent(n))
    elif kind == "memory":
        value = memory(n)
    else:
        value = asyncio.run(stall(n, Path(sys.argv[3]), inline=kind == "stall-inline"))
    print(f"{value:.4f}")


if __name__ == "__main__":
    main()
