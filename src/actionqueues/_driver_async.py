"""The async queue's driver: it carries out what the core's flows decide (``_flow``),
awaiting what the actions return; the twin of ``_driver_sync.py``.

It holds no rule. Beyond the sync driver it bounds a call by its timeout, makes
journal writes in worker threads, runs a parallel group's members as tasks, and
shields ``run()``'s rollback from cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from time import perf_counter
from types import CoroutineType
from typing import Any

from ._action import ActionLike
from ._build import Engine
from ._driver_sync import SyncDriver
from ._flow import BATCH, CALL, GROUP, SLEEP, UNDO, UNDO_BATCH, WRITE, Flow
from ._report import RunReport
from ._writers import writer


class AsyncDriver(Engine):
    """Execute, roll back and retry, awaited; and run parallel groups."""

    __slots__ = ()

    async def execute(self) -> None:
        batch = self._execute_batch()
        if batch is None:
            flow = self._execute_flow()
        else:  # the hot path: no flow, unless a retry needs one
            try:
                await self._batch(batch)
            except BaseException as exc:
                then = self._batch_failed(exc)
                if then is None:
                    del self  # no queue → error → traceback → frame → queue cycle
                    raise
                flow = then
            else:
                self._batch_done()
                return
        try:
            await self._drive(flow)
        except BaseException:
            del self
            raise

    async def rollback(self) -> None:
        first = self._rollback_batch()
        if first is None:
            flow = self._rollback_flow()
        else:  # the hot path: no flow, unless a rollback fails
            try:
                await self._undo(first)
            except BaseException as exc:
                flow = self._rollback_flow(exc)
            else:
                raised = self._undo_done()
                if raised is None:
                    return
                del self  # no queue → error → traceback → frame → queue cycle
                raise raised
        try:
            await self._drive(flow)
        except BaseException:
            del self
            raise

    async def run(self) -> RunReport:
        self._begin_run()
        try:
            await self.execute()
        except BaseException as exc:
            try:
                await self._drive(self._run_failed(exc))
            finally:
                del self  # no queue → error → traceback → frame → queue cycle
            raise
        return self.report

    execute.__doc__ = SyncDriver.execute.__doc__
    rollback.__doc__ = SyncDriver.rollback.__doc__
    run.__doc__ = SyncDriver.run.__doc__

    async def _drive(self, flow: Flow) -> Any:
        """Carry out ``flow``'s operations until it returns (its value) or raises."""
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            except BaseException:
                del self, flow, error  # no queue → error → traceback → frame → queue cycle
                raise
            value = error = None
            code = op[0]
            try:
                if code == CALL:
                    value = op[3]()
                    if type(value) is CoroutineType and op[4] is None:
                        value = await value
                    elif value is not None:
                        value = await self._settle(value, op[1], op[4])
                elif code == BATCH:
                    await self._batch(op[1])
                elif code == UNDO_BATCH:
                    await self._undo(op[1])
                elif code == SLEEP:
                    await asyncio.sleep(op[1])
                elif code == WRITE:
                    await self._io(op[1], *op[2])
                elif code == GROUP:
                    await _all([self._drive(member) for member in op[1]])
                elif code == UNDO:
                    # In a task of its own, shielded; what it raises comes back as a value
                    # (asyncio would let a KeyboardInterrupt out of the loop, not to us).
                    raised = await _uncancelled(asyncio.ensure_future(self._quietly()))
                    if raised is not None:
                        raise raised
                else:
                    raise AssertionError(op)
            except BaseException as exc:
                error = exc

    async def _batch(self, actions: list[ActionLike]) -> None:
        """BATCH: call each action's execute in a row, its result to ``_results``."""
        results = self._results
        starts = self._starts if self._timed else None
        try:
            for action in actions:
                if starts is not None:
                    starts.append(perf_counter())
                result = action.execute()
                if type(result) is CoroutineType:
                    result = await result
                elif result is not None:
                    result = await self._settle(result, len(results), None)
                results.append(result)
        except BaseException:
            del self  # no queue → error → traceback → frame → queue cycle
            raise

    async def _undo(self, first: int) -> None:
        """UNDO_BATCH: roll back steps ``first`` down to 0 in a row."""
        actions = self._actions
        starts = self._rb_starts if self._timed else None
        try:
            for i in range(first, -1, -1):
                self._rb_index = i
                if starts is not None:
                    starts.append(perf_counter())
                result = actions[i].rollback()
                if type(result) is CoroutineType:
                    await result
                elif result is not None:
                    await self._settle(result, i, None)
        except BaseException:
            del self  # no queue → error → traceback → frame → queue cycle
            raise

    async def _quietly(self) -> BaseException | None:
        try:
            await self.rollback()
        except BaseException as exc:
            return exc
        return None

    async def _settle(self, result: object, index: int, timeout: float | None) -> object:
        """What a call returned, awaited if it is awaitable, within ``timeout``."""
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
            raise self._timed_out(index, timeout) from exc

    async def _io(self, write: Any, *args: object) -> None:
        """Make a journal write in a worker thread, so that the event loop never
        waits for a commit, one write of a run at a time; a cancelled caller still
        waits for the write it started (a record of unknown fate would be worse),
        and is cancelled then."""
        durable = self._durable
        assert durable is not None
        loop = asyncio.get_running_loop()
        async with durable.lock():
            await _uncancelled(loop.run_in_executor(writer(durable.journal), write, *args))


async def _all(calls: list[Coroutine[Any, Any, None]]) -> None:
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
        await _uncancelled(asyncio.gather(*tasks, return_exceptions=True))
        raise


async def _uncancelled(future: asyncio.Future[Any]) -> Any:
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
