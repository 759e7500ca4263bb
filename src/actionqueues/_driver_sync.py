"""The sync queue's driver: GENERATED from ``_driver_async.py`` by
``tools/unasync.py``. Do not edit; edit that file and run the tool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from time import perf_counter
from types import CoroutineType
from typing import Final

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

_EXECUTE: Final = Phase.EXECUTE
_ROLLBACK: Final = Phase.ROLLBACK
_FAILED: Final = QueueState.FAILED


class SyncDriver(Engine):
    """Execute, roll back and retry (and, in the async queue, run parallel groups)."""

    __slots__ = ()

    def execute(self) -> None:
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
        failed = -1  # the step whose call raised, if one did
        try:
            for action in actions:
                if timed:
                    started(perf_counter())
                if track:
                    self._step_started(len(done), _EXECUTE, 1)
                try:
                    result = action.execute()
                    if result is not None and type(result) is CoroutineType:
                        result = self._settle(result, len(done), _EXECUTE)
                    results(result)
                except BaseException as exc:
                    failed = len(done)
                    wait = self._retry(failed, _EXECUTE, exc, 1)
                    if wait is exc:
                        raise
                else:
                    if track:
                        self._step_succeeded(len(done) - 1, _EXECUTE)
                    continue
                # Outside the except block, so the action's exception keeps its context.
                results(self._call(len(done), _EXECUTE, action.execute, wait))
                failed = -1
                if track:
                    self._step_succeeded(len(done) - 1, _EXECUTE)
        except BaseException as exc:
            self._end_execute(exc, failed)
            held: BaseException | None = None
            if self._durable is not None:
                try:
                    self._record_end(self._durable)
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
            self._record_end(self._durable)
        if self._report_end:
            self._announce_end()

    def rollback(self) -> None:
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
        try:
            for i in indices:
                action = actions[i]
                self._rb_index = i
                if timed:
                    started(perf_counter())
                if track:
                    self._step_started(i, _ROLLBACK, 1)
                try:
                    result = action.rollback()
                    if result is not None and type(result) is CoroutineType:
                        self._settle(result, i, _ROLLBACK)
                except BaseException as exc:
                    wait = self._retry(i, _ROLLBACK, exc, 1)
                    error = exc
                else:
                    if track:
                        self._step_succeeded(i, _ROLLBACK)
                    continue
                if wait is error:  # failed for good: recorded, and the rollback goes on (S5)
                    self._rollback_failed(i, error)
                    continue
                try:
                    self._call(i, _ROLLBACK, action.rollback, wait)
                except BaseException as exc:
                    self._rollback_failed(i, exc)
                    continue
                if track:
                    self._step_succeeded(i, _ROLLBACK)
        finally:  # stopped by the journal (another owner, a rollback unrecorded) too
            if self._durable is not None:
                self._durable.leave()  # the caller's step context, as it was
        self._end_rollback()
        durable = self._durable
        if durable is not None and durable.begun:
            self._record_rollback_end(durable)
        if self._report_finish or self._interrupt is not None or self._rb_errors:
            raised = self._rollback_outcome()
            if raised is not None:
                raise raised

    def run(self) -> RunReport:
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
            self.execute()
        except BaseException as exc:
            try:
                self.rollback()
            finally:
                self._annotate(exc)
                del self  # no queue → error → traceback → frame → queue cycle
            raise
        return self.report

    def _call(
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
                time.sleep(wait)
                attempt += 1
                self._attempts[phase, index] = attempt  # a real dict: _retry() made it
                if self._track:
                    self._step_started(index, phase, attempt)
            try:
                result = method()
                if result is not None and type(result) is CoroutineType:
                    result = self._settle(result, index, phase)
            except BaseException as exc:
                wait = self._retry(index, phase, exc, attempt)
            else:
                return result

    def _settle(self, result: object, index: int, phase: Phase) -> object:
        """What a call returned, awaited if it is awaitable (within the step's timeout,
        for execute). The sync queue never awaits: it refuses a coroutine."""
        raise self._unawaited(result, index, phase)

    # -- the journal (see DurableRun) ------------------------------------------------

    def _io(self, write: Callable[..., None], *args: object) -> None:
        """Make a journal write. The async queue hands it to a worker thread, so that
        its event loop never waits for a commit, one write of a run at a time; a
        cancelled caller still waits for the write it started (a record of unknown
        fate would be worse), and is cancelled then."""
        write(*args)

    def _journal_error(self, stage: int, index: int, error: BaseException) -> None:
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
                self._io(durable.give_up, error, True)
            except JournalError:  # closed meanwhile: the lease expires instead
                durable.give_up(error, False)
        if then & STOP:
            raise JournalError(message) from error
        if then & HOLD:
            self._hold(error)
        elif then & RAISE:
            raise error

    def _step_started(self, index: int, phase: Phase, attempt: int) -> None:
        self._calling = True
        if self._durable is not None:
            self._record_started(self._durable, index, phase, attempt)
        if self._bus.wants(StepStarted):
            self._announce_started(index, phase, attempt)

    def _record_started(self, durable: DurableRun, index: int, phase: Phase, attempt: int) -> None:
        """D1/D3: before a step's first call, commit that it is executing (or rolling
        back), with its state then."""
        durable.enter(index, self._step_name(index), phase, attempt)
        if attempt != 1:
            return
        execute = phase is _EXECUTE
        try:
            state = durable.state(index, self._actions[index])
            if execute:
                self._io(durable.step_started, index, StepStatus.EXECUTING, state)
            else:
                self._io(
                    durable.step_started,
                    index,
                    StepStatus.ROLLING_BACK,
                    state,
                    RunStatus.ROLLING_BACK,
                )
        except BaseException as exc:
            self._journal_error(STARTED if execute else UNDOING, index, exc)

    def _step_succeeded(self, index: int, phase: Phase) -> None:
        self._calling = False
        if self._durable is not None:
            self._record_done(self._durable, index, phase)
        self._announce_succeeded(index, phase)

    def _record_done(self, durable: DurableRun, index: int, phase: Phase) -> None:
        """D2/D3: the step returned; record it with its state after."""
        execute = phase is _EXECUTE
        status = StepStatus.EXECUTED if execute else StepStatus.ROLLED_BACK
        attempts = self._attempts.get((phase, index), 1)
        state: str | None
        try:
            state = durable.state(index, self._actions[index])
        except BaseException as exc:
            self._journal_error(DONE if execute else UNDONE_STATE, index, exc)
            state = None
        try:
            self._io(durable.step_done, index, status, state, attempts)
        except BaseException as exc:
            self._journal_error(DONE if execute else UNDONE, index, exc)

    def _record_end(self, durable: DurableRun) -> None:
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
                self._io(durable.finish, RunStatus.COMPLETED)
                return
            for index in self._failures():
                durable.step_failed(
                    index,
                    StepStatus.FAILED,
                    durable.state(index, self._actions[index]),
                    self._attempts.get((_EXECUTE, index), 1),
                    repr(self._errors.get(index, error)),
                )
            self._io(durable.finish, RunStatus.FAILED, repr(error))
        except BaseException as exc:
            self._journal_error(COMPLETED if error is None else FAILED, -1, exc)

    def _record_rollback_end(self, durable: DurableRun) -> None:
        """D4: record how the rollback ended; the step context was left by
        ``rollback()``."""
        try:
            ended = RunStatus.ROLLBACK_FAILED if self._rb_errors else RunStatus.ROLLED_BACK
            self._io(durable.finish, ended)
        except BaseException as exc:
            self._journal_error(ROLLED_BACK, -1, exc)
