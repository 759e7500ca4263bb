"""What only the async driver does, for ``_driver_async.py``: await an action's
result within its timeout, make a journal write in a worker thread, run a group's
members as tasks, and shield a rollback from cancellation."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from ._durable import DurableRun
from ._writers import writer


async def settle(
    result: object,
    timeout: float | None,
    timed_out: Callable[[int, float], TimeoutError],
    index: int,
) -> object:
    """What a call returned, awaited if it is awaitable, within ``timeout``; past
    it, the error ``timed_out(index, timeout)`` (the core's)."""
    if not inspect.isawaitable(result):
        return result
    if timeout is None:
        return await result
    clock = asyncio.timeout(timeout)
    try:
        async with clock:
            return await result
    except TimeoutError as exc:
        if not clock.expired():  # the action's own TimeoutError
            raise
        raise timed_out(index, timeout) from exc


async def write(durable: DurableRun, function: Callable[..., None], *args: object) -> None:
    """Make a journal write in a worker thread, so that the event loop never waits
    for a commit, one write of a run at a time; a cancelled caller still waits for
    the write it started (a record of unknown fate would be worse), and is
    cancelled then."""
    loop = asyncio.get_running_loop()
    async with durable.lock():
        await uncancelled(loop.run_in_executor(writer(durable.journal), function, *args))


async def shielded(rollback: Coroutine[Any, Any, None]) -> None:
    """Run ``rollback`` in a task of its own, to its end even if the caller is
    cancelled meanwhile; then what it raised, or the cancellation. (Raised here, not
    in the task: asyncio would let a KeyboardInterrupt out of the loop.)"""
    raised = await uncancelled(asyncio.ensure_future(_quietly(rollback)))
    if raised is not None:
        raise raised


async def _quietly(call: Coroutine[Any, Any, None]) -> BaseException | None:
    try:
        await call
    except BaseException as exc:
        return exc
    return None


async def gather(calls: list[Coroutine[Any, Any, object]]) -> None:
    """Run ``calls`` (which never raise) as tasks, and wait for every one to end. If
    the caller is cancelled meanwhile, they are cancelled too, waited for, and the
    cancellation propagates."""
    if not calls:
        return
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        await asyncio.wait(tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await uncancelled(asyncio.gather(*tasks, return_exceptions=True))
        raise


async def uncancelled(future: asyncio.Future[Any]) -> Any:
    """Await ``future`` to its end even if the caller is cancelled meanwhile. Then a
    cancellation that came meanwhile propagates (with what the future raised, if
    anything, as its context); else the future's result or exception."""
    cancelled: BaseException | None = None
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError as exc:
            if future.cancelled():
                raise
            cancelled = exc  # the caller was cancelled: wait on
            continue
        except BaseException as exc:
            if cancelled is not None:
                raise cancelled from exc
            raise
        if cancelled is not None:
            raise cancelled
        return result
