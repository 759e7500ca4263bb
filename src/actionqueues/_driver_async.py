"""The driver of the engine: it calls the actions, waits between retries and makes
the journal's writes; every decision is the core's (see ``_core``).

This file is the one written by hand, for ``AsyncActionQueue``. ``ActionQueue``'s
driver, ``_driver_sync.py``, is generated from it by ``tools/unasync.py`` (as
psycopg does): ``async``/``await`` are dropped, a line ending in ``# sync: CODE``
becomes ``CODE``, a comment line ``# sync-only: CODE`` becomes ``CODE``, and the
lines between ``# begin async-only`` and ``# end async-only`` are left out (and
more: see the tool). A test
fails when the two differ, so the rules are never written twice and the sync queue
pays nothing for the async one.
"""

from __future__ import annotations

# begin async-only
import asyncio
import inspect

# end async-only
# sync-only: import time
from collections.abc import Callable, Coroutine
from itertools import islice
from time import perf_counter
from types import CoroutineType
from typing import Any, Final

from ._build import Engine
from ._core import (
    COMPLETED,
    DONE,
    EXPIRE,
    FAILED,
    HOLD,
    RAISE,
    RELEASE,
    ROLLED_BACK,
    STARTED,
    STOP,
    UNDOING,
    UNDONE,
    UNDONE_STATE,
)
from ._durable import DurableRun
from ._errors import JournalError
from ._events import StepStarted, logger
from ._lifecycle import QueueState, check
from ._report import RunReport
from ._status import Phase, RunStatus, StepStatus

# begin async-only
from ._writers import writer

# end async-only

_EXECUTE: Final = Phase.EXECUTE
_ROLLBACK: Final = Phase.ROLLBACK
_FAILED: Final = QueueState.FAILED


class AsyncDriver(Engine):
    """Execute, roll back and retry (and, in the async queue, run parallel groups)."""

    __slots__ = ()

    async def execute(self) -> None:
        """Execute every action in the order added; stop at the first failure.

        An exception other than ``ActionRetryException`` propagates unchanged (the very
        object the action raised) once any retry policy has given up; the action
        that raised it counts as executed, so :meth:`rollback` covers it. Nothing is
        rolled back here: call :meth:`rollback`, or use :meth:`run`.

        Raises:
            BaseException: Whatever the failed action raised (KeyboardInterrupt and
                cancellation included), once its retry policy, if any, gave up.
            LifecycleError: The queue was already executed.
            JournalError: A durable queue's journal could not record a step before
                its call (the call is not made) or the run's end.
            LeaseLostError: Another process took the durable run over.
            StateError: A durable action's state could not be written as JSON.
        """
        actions = self._begin_execute()
        done = self._results
        results = done.append
        started = self._starts.append
        timed = self._timed
        track = self._track
        # begin async-only
        groups = self._groups
        bounded = self._timeout is not None or bool(self._timeouts)  # timeouts to apply
        # end async-only
        failed = -1  # the step whose call raised, if one did
        try:
            steps = iter(actions)  # sync: for action in actions:
            for action in steps:  # async-only
                # begin async-only
                if groups and len(done) in groups:
                    first = len(done)
                    failed, error = await self._execute_group(first, groups[first])
                    if error is not None:
                        raise error
                    for _ in islice(steps, groups[first] - first - 1):  # the other members
                        pass
                    continue
                # end async-only
                if timed:
                    started(perf_counter())
                if track:
                    await self._step_started(len(done), _EXECUTE, 1)
                try:
                    result = action.execute()
                    # sync-next: if result is not None and type(result) is CoroutineType:
                    if type(result) is CoroutineType and not bounded:
                        # sync-next: result = self._settle(result, len(done), _EXECUTE)
                        result = await result
                    elif result is not None:  # async-only
                        result = await self._settle(result, len(done), _EXECUTE)  # async-only
                    results(result)
                except BaseException as exc:
                    failed = len(done)
                    wait = self._retry(failed, _EXECUTE, exc, 1)
                    if wait is exc:
                        raise
                else:
                    if track:
                        await self._step_succeeded(len(done) - 1, _EXECUTE)
                    continue
                # Outside the except block, so the action's exception keeps its context.
                results(await self._call(len(done), _EXECUTE, action.execute, wait))
                failed = -1
                if track:
                    await self._step_succeeded(len(done) - 1, _EXECUTE)
        except BaseException as exc:
            self._end_execute(exc, failed)
            held: BaseException | None = None
            if self._durable is not None:
                try:
                    await self._record_end(self._durable)
                except BaseException as interrupt:  # cancelled meanwhile: it goes out
                    held = interrupt
            if self._report_end:
                self._announce_end()
            # The queue keeps the exception, whose traceback keeps this frame: drop the
            # frame's reference to the queue, one path fewer in the reference cycle.
            del self
            if held is not None:
                raise held from exc
            raise
        self._end_execute(None)
        if self._durable is not None:
            await self._record_end(self._durable)
        if self._report_end:
            self._announce_end()

    async def rollback(self) -> None:
        """Roll back every executed action, the failed one included, latest first.

        A rollback that fails (after its retry policy, if any, gave up) is logged on
        the ``actionqueues`` logger and recorded in the report, and the earlier
        actions are still rolled back.

        Raises:
            LifecycleError: The queue was not executed, or was already rolled back.
            RollbackError: In strict mode, when any rollback failed.
            BaseException: A KeyboardInterrupt, SystemExit or cancellation raised by a
                rollback, once the other rollbacks are done.
            LeaseLostError: Another process took the durable run over; the rollback
                stops, and that process finishes it.
            JournalError: A durable queue created with ``recovery="resume"`` could
                not record the start of a step's rollback; the rollback stops there,
                and recovery takes the run over. (Other journal failures during
                rollback are logged, and the rollback goes on.)
        """
        actions = self._actions
        indices = self._begin_rollback()
        started = self._rb_starts.append
        timed = self._timed
        track = self._track
        # begin async-only
        groups = self._groups
        # end async-only
        try:
            steps = iter(indices)  # sync: for i in indices:
            for i in steps:  # async-only
                # begin async-only
                if groups and (first := self._group_of(i)) is not None:
                    lost = await self._rollback_group(first, i + 1)
                    if lost is not None:
                        raise lost
                    for _ in islice(steps, i - first):  # the other members
                        pass
                    continue
                # end async-only
                action = actions[i]
                self._rb_index = i
                if timed:
                    started(perf_counter())
                if track:
                    await self._step_started(i, _ROLLBACK, 1)
                try:
                    result = action.rollback()
                    # sync-next: if result is not None and type(result) is CoroutineType:
                    if type(result) is CoroutineType:
                        await result  # sync: self._settle(result, i, _ROLLBACK)
                    elif result is not None:  # async-only
                        await self._settle(result, i, _ROLLBACK)  # async-only
                except BaseException as exc:
                    wait = self._retry(i, _ROLLBACK, exc, 1)
                    error = exc
                else:
                    if track:
                        await self._step_succeeded(i, _ROLLBACK)
                    continue
                if wait is error:  # failed for good: recorded, and the rollback goes on (S5)
                    self._rollback_failed(i, error)
                    continue
                try:
                    await self._call(i, _ROLLBACK, action.rollback, wait)
                except BaseException as exc:
                    self._rollback_failed(i, exc)
                    continue
                if track:
                    await self._step_succeeded(i, _ROLLBACK)
        finally:  # stopped by the journal (another owner, a rollback unrecorded) too
            if self._durable is not None:
                self._durable.leave()  # the caller's step context, as it was
        self._end_rollback()
        durable = self._durable
        if durable is not None and durable.begun:
            await self._record_rollback_end(durable)
        if self._report_finish or self._interrupt is not None or self._rb_errors:
            raised = self._rollback_outcome()
            if raised is not None:
                raise raised

    async def run(self) -> RunReport:
        """Execute; if that fails, roll back and re-raise the original exception.

        The exception gets a note (PEP 678) saying how the rollback went, and
        :func:`report_of` gives its report. In an :class:`AsyncActionQueue` the
        rollback is shielded: if the task is cancelled (during a step, or during the
        rollback itself), every executed step is still rolled back, and then
        ``CancelledError`` propagates; the report says ``cancelled``.

        Returns:
            The report of the completed run.

        Raises:
            BaseException: Whatever the failed action raised, after the rollback.
            LifecycleError: The queue was already executed.
            RollbackError: In strict mode, when any rollback failed.
            JournalError: A durable queue's journal failed, as :meth:`execute` and
                :meth:`rollback` describe.

        .. versionadded:: 1.0
        """
        check("execute", self._state)  # outside the try: a refused run rolls nothing back
        try:
            await self.execute()
        except BaseException as exc:
            try:
                # begin async-only
                # In a task of its own, shielded; what it raises comes back as a value
                # (asyncio would let a KeyboardInterrupt out of the loop, not to us).
                raised = await _uncancelled(asyncio.ensure_future(self._rollback_quietly()))
                if raised is not None:
                    raise raised
                # end async-only
                # sync-only: self.rollback()
            finally:
                self._annotate(exc)
                del self  # no queue → error → traceback → frame → queue cycle
            raise
        return self.report

    # begin async-only
    async def _rollback_quietly(self) -> BaseException | None:
        try:
            await self.rollback()
        except BaseException as exc:
            return exc
        return None

    # end async-only
    async def _call(
        self,
        index: int,
        phase: Phase,
        method: Callable[[], object],
        wait: float | BaseException | None = None,
    ) -> object:
        """Call ``method`` for as long as the core says to retry (E5); its result.
        ``wait``: what the core said of a first call already made and failed.

        Raises:
            BaseException: What the core says propagates, once retrying ends.
        """
        attempt = 1
        while True:
            if wait is not None:
                if not isinstance(wait, float):
                    error = wait
                    del self, wait  # no queue → error → traceback → frame → queue cycle
                    try:
                        raise error
                    finally:  # nor error → traceback → this frame → error
                        del error
                await asyncio.sleep(wait)  # sync: time.sleep(wait)
                attempt += 1
                self._attempts[phase, index] = attempt  # a real dict: _retry() made it
                if self._track:
                    await self._step_started(index, phase, attempt)
            try:
                result = method()
                # sync-next: if result is not None and type(result) is CoroutineType:
                if result is not None:
                    result = await self._settle(result, index, phase)
            except BaseException as exc:
                wait = self._retry(index, phase, exc, attempt)
            else:
                return result

    async def _settle(self, result: object, index: int, phase: Phase) -> object:
        """What a call returned, awaited if it is awaitable (within the step's timeout,
        for execute). The sync queue never awaits: it refuses a coroutine."""
        # sync-only: raise self._unawaited(result, index, phase)
        # begin async-only
        if not inspect.isawaitable(result):
            return result
        timeout = self._timeout_of(index) if phase is _EXECUTE else None
        name = self._step_name(index)
        del self  # an error's traceback holds this frame: no cycle through it
        if timeout is None:
            return await result
        clock = asyncio.timeout(timeout)
        try:
            async with clock:
                return await result
        except TimeoutError as exc:
            if not clock.expired():  # the action's own TimeoutError
                raise
            msg = f"step {index + 1} ({name!r}) took longer than its timeout of {timeout:g} s"
            raise TimeoutError(msg) from exc
        # end async-only

    # -- the journal (see DurableRun) ------------------------------------------------

    async def _io(self, write: Callable[..., None], *args: object) -> None:
        """Make a journal write. The async queue hands it to a worker thread, so that
        its event loop never waits for a commit, one write of a run at a time; a
        cancelled caller still waits for the write it started (a record of unknown
        fate would be worse), and is cancelled then."""
        # sync-only: write(*args)
        # begin async-only
        durable = self._durable
        assert durable is not None
        loop = asyncio.get_running_loop()
        async with durable.lock():
            await _uncancelled(loop.run_in_executor(writer(durable.journal), write, *args))
        # end async-only

    async def _journal_error(self, stage: int, index: int, error: BaseException) -> None:
        """Carry out what the core says a failed journal record leads to (D10, in
        ``Core._journal_failed``); called in the ``except`` block that caught it."""
        durable = self._durable
        assert durable is not None
        then, message = self._journal_failed(stage, index, error)
        if message is not None and not then & STOP:
            logger.error("%s", message)
        if then & EXPIRE:
            durable.give_up(error, release=False)
        if then & RELEASE:  # a journal write, so made as writes are
            try:
                await self._io(durable.give_up, error, True)
            except JournalError:  # closed meanwhile: the lease expires instead
                durable.give_up(error, False)
        if then & STOP:
            raise JournalError(message) from error
        if then & HOLD:
            self._hold(error)
        elif then & RAISE:
            raise error

    async def _step_started(self, index: int, phase: Phase, attempt: int) -> None:
        self._calling = True
        if self._durable is not None:
            await self._record_started(self._durable, index, phase, attempt)
        if self._bus.wants(StepStarted):
            self._announce_started(index, phase, attempt)

    async def _record_started(
        self, durable: DurableRun, index: int, phase: Phase, attempt: int
    ) -> None:
        """D1/D3: before a step's first call, commit that it is executing (or rolling
        back), with its state then."""
        durable.enter(index, self._step_name(index), phase, attempt)
        if attempt != 1:
            return
        execute = phase is _EXECUTE
        try:
            state = durable.state(index, self._actions[index])
            if execute:
                await self._io(durable.step_started, index, StepStatus.EXECUTING, state)
            else:
                await self._io(
                    durable.step_started,
                    index,
                    StepStatus.ROLLING_BACK,
                    state,
                    RunStatus.ROLLING_BACK,
                )
        except BaseException as exc:
            await self._journal_error(STARTED if execute else UNDOING, index, exc)

    async def _step_succeeded(self, index: int, phase: Phase) -> None:
        self._calling = False
        if self._durable is not None:
            await self._record_done(self._durable, index, phase)
        self._announce_succeeded(index, phase)

    async def _record_done(self, durable: DurableRun, index: int, phase: Phase) -> None:
        """D2/D3: the step returned; record it with its state after."""
        execute = phase is _EXECUTE
        status = StepStatus.EXECUTED if execute else StepStatus.ROLLED_BACK
        attempts = self._attempts.get((phase, index), 1)
        state: str | None
        try:
            state = durable.state(index, self._actions[index])
        except BaseException as exc:
            await self._journal_error(DONE if execute else UNDONE_STATE, index, exc)
            state = None
        try:
            await self._io(durable.step_done, index, status, state, attempts)
        except BaseException as exc:
            await self._journal_error(DONE if execute else UNDONE, index, exc)

    async def _record_end(self, durable: DurableRun) -> None:
        """D4: record how execution ended."""
        durable.leave()
        if not durable.begun:  # the run's first record could not be made
            return
        error = self._error
        if durable.new is not None:  # never recorded (its first write failed): nothing to do
            durable.give_up(error or JournalError("not recorded"), release=False)
            return
        try:
            if error is None:
                await self._io(durable.finish, RunStatus.COMPLETED)
                return
            for index in self._failures():
                durable.step_failed(
                    index,
                    StepStatus.FAILED,
                    durable.state(index, self._actions[index]),
                    self._attempts.get((_EXECUTE, index), 1),
                    repr(self._errors.get(index, error)),
                )
            await self._io(durable.finish, RunStatus.FAILED, repr(error))
        except BaseException as exc:
            await self._journal_error(COMPLETED if error is None else FAILED, -1, exc)

    async def _record_rollback_end(self, durable: DurableRun) -> None:
        """D4: record how the rollback ended; the step context was left by
        ``rollback()``."""
        try:
            ended = RunStatus.ROLLBACK_FAILED if self._rb_errors else RunStatus.ROLLED_BACK
            await self._io(durable.finish, ended)
        except BaseException as exc:
            await self._journal_error(ROLLED_BACK, -1, exc)

    # begin async-only
    # -- parallel groups ------------------------------------------------------------

    async def _execute_group(self, first: int, end: int) -> tuple[int, BaseException | None]:
        """Start the members ``first`` to ``end`` together and wait for them all;
        what the core says of the group when they have (see ``Core._group_ended``).

        Every member's "executing" record (D1) is made first, here: if that fails, or
        the task is cancelled meanwhile, the group never started.
        """
        todo = self._group_members(first, end, _EXECUTE)
        if self._track:
            for i in todo:
                await self._step_started(i, _EXECUTE, 1)
        self._group_started(first, end, todo, _EXECUTE)
        aborted: list[BaseException] = []
        interrupted: BaseException | None = None
        try:
            await _all([self._member(i, _EXECUTE, aborted) for i in todo])
        except BaseException as exc:  # cancelled: every member has ended, cancelled too
            interrupted = exc
        return self._group_ended(first, end, interrupted, aborted)

    async def _member(self, index: int, phase: Phase, aborted: list[BaseException]) -> None:
        """One member of a parallel group, in a task of its own; its end goes to the
        core (``Core._member_ended``), and an error of the queue's own after the call
        (the journal's record of it, a listener) to ``aborted``."""
        action = self._actions[index]
        durable = self._durable
        error: BaseException | None = None
        try:
            if phase is _EXECUTE:
                if durable is not None:  # this task's own step context (D6)
                    durable.enter(index, self._step_name(index), phase, 1)
                self._results[index] = await self._call(index, phase, action.execute)
            else:
                if self._track:
                    try:
                        await self._step_started(index, phase, 1)
                    except JournalError as exc:  # the run must stop: not a rollback failure
                        self._member_ended(index, phase, None)
                        aborted.append(exc)
                        return
                await self._call(index, phase, action.rollback)
        except BaseException as exc:
            error = exc
        self._member_ended(index, phase, error)
        if error is not None:
            del self, error  # the error's traceback holds this frame: no cycle
            return
        if self._track:
            try:
                await self._step_succeeded(index, phase)
            except BaseException as exc:
                aborted.append(exc)

    async def _rollback_group(self, first: int, end: int) -> BaseException | None:
        """Roll back the members ``first`` to ``end`` together; what the core says must
        stop the rollback (see ``Core._group_undone``)."""
        todo = self._group_members(first, end, _ROLLBACK)
        self._group_started(first, end, todo, _ROLLBACK)
        aborted: list[BaseException] = []
        interrupted: BaseException | None = None
        try:
            await _all([self._member(i, _ROLLBACK, aborted) for i in todo])
        except BaseException as exc:  # cancelled: every member has ended, cancelled too
            interrupted = exc
        return self._group_undone(interrupted, aborted)


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


# end async-only
