"""The sync queue's driver: GENERATED from ``_driver_async.py`` by
``tools/unasync.py``. Do not edit; edit that file and run the tool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from time import perf_counter
from types import CoroutineType
from typing import Final

from ._durable import DurableRun
from ._engine import Engine
from ._errors import ActionQueueError, JournalError, LeaseLostError
from ._events import StepStarted, logger
from ._lifecycle import QueueState, check
from ._report import RunReport
from ._status import Mode, Phase, RunStatus, StepStatus

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
                    if not self._retryable(exc):
                        raise
                    error = exc
                else:
                    if track:
                        self._step_succeeded(len(done) - 1, _EXECUTE)
                    continue
                # Outside the except block, so the action's exception keeps its context.
                results(self._call(len(done), _EXECUTE, action.execute, error))
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
                    error = exc
                else:
                    if track:
                        self._step_succeeded(i, _ROLLBACK)
                    continue
                if not self._retryable(error):
                    self._rollback_failed(i, error)
                    continue
                try:
                    self._call(i, _ROLLBACK, action.rollback, error)
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
        error: BaseException | None = None,
    ) -> object:
        """Call ``method`` (again, after ``error``) for as long as the engine says to
        retry; its result.

        Raises:
            BaseException: The last call's exception, once the engine gives up.
        """
        attempt = 1
        while True:
            if error is not None:
                wait = self._failed(index, phase, error, attempt)
                if wait is None:
                    error = self._final_error(error)
                    del self  # no queue → error → traceback → frame → queue cycle
                    try:
                        raise error
                    finally:  # nor error → traceback → this frame → error
                        del error
                time.sleep(wait)
                attempt += 1
                self._attempts[phase, index] = attempt  # a real dict: _failed() made it
                if self._track:
                    self._step_started(index, phase, attempt)
            try:
                result = method()
                if result is not None and type(result) is CoroutineType:
                    result = self._settle(result, index, phase)
            except BaseException as exc:
                error = exc
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

    def _give_up(self, durable: DurableRun, why: BaseException) -> None:
        """Leave the run to recovery, released (a journal write, so made as writes are);
        a journal closed meanwhile lets its lease expire instead."""
        try:
            self._io(durable.give_up, why, True)
        except JournalError:
            durable.give_up(why, False)

    def _step_started(self, index: int, phase: Phase, attempt: int) -> None:
        self._calling = True
        if self._durable is not None:
            self._record_started(self._durable, index, phase, attempt)
        if self._bus.wants(StepStarted):
            self._announce_started(index, phase, attempt)

    def _record_started(self, durable: DurableRun, index: int, phase: Phase, attempt: int) -> None:
        """D1/D3: before a step's first call, commit that it is executing (or rolling
        back), with its state then. A journal that cannot be written stops the run
        before the side effect (D10); during rollback, the compensation matters more
        than its record, so the rollback goes on (unless another process owns the run)."""
        durable.enter(index, self._step_name(index), phase, attempt)
        if attempt != 1:
            return
        if phase is _EXECUTE:
            state = durable.state(index, self._actions[index])
            self._io(durable.step_started, index, StepStatus.EXECUTING, state)
            return
        try:
            state = durable.state(index, self._actions[index])
            self._io(
                durable.step_started, index, StepStatus.ROLLING_BACK, state, RunStatus.ROLLING_BACK
            )
        except LeaseLostError:
            raise
        except (JournalError, ActionQueueError) as exc:
            if durable.mode == Mode.RESUME and durable.status == RunStatus.RUNNING:
                # The journal still holds the run as running, which recovery resumes:
                # a step undone now would be resumed past as if executed. Nothing is
                # undone; recovery takes the run over (D5, D10).
                msg = (
                    f"Run {durable.run_id}: the start of step {index + 1}'s rollback could "
                    f"not be recorded ({exc}). The journal holds the run as running, which "
                    "recovery would resume past a step undone now: the rollback stops "
                    "here, and recovery takes the run over."
                )
                self._give_up(durable, exc)
                raise JournalError(msg) from exc
            logger.error("rolling back step %d without a journal record: %s", index + 1, exc)
        except BaseException as exc:  # an interrupt: held until every rollback was tried
            self._hold(exc)

    def _step_succeeded(self, index: int, phase: Phase) -> None:
        self._calling = False
        if self._durable is not None:
            self._record_done(self._durable, index, phase)
        self._announce_succeeded(index, phase)

    def _record_done(self, durable: DurableRun, index: int, phase: Phase) -> None:
        """D2/D3: the step returned; record it with its state after. During rollback a
        journal or state error is logged and the rollback goes on."""
        status = StepStatus.EXECUTED if phase is _EXECUTE else StepStatus.ROLLED_BACK
        attempts = self._attempts.get((phase, index), 1)
        state: str | None
        if phase is _EXECUTE:
            state = durable.state(index, self._actions[index])
            self._io(durable.step_done, index, status, state, attempts)
            return
        try:
            state = durable.state(index, self._actions[index])
        except ActionQueueError as exc:
            logger.error("step %d rolled back, its state not recorded: %s", index + 1, exc)
            state = None
        try:
            self._io(durable.step_done, index, status, state, attempts)
        except LeaseLostError:
            raise
        except JournalError as exc:  # kept pending: the next write tries again
            logger.error("step %d rolled back, not yet recorded: %s", index + 1, exc)
        except BaseException as exc:  # an interrupt: held until every rollback was tried
            self._hold(exc)

    def _record_end(self, durable: DurableRun) -> None:
        """D4: record how execution ended. Unrecorded, a completed run must not count
        as done; a failure's record failing is logged, not raised: the action's own
        exception is what propagates."""
        durable.leave()
        if not durable.begun:  # the run's first record could not be made
            return
        error = self._error
        if durable.new is not None:  # never recorded (its first write failed): nothing to do
            durable.give_up(error or JournalError("not recorded"), release=False)
            return
        if error is None:
            try:
                self._io(durable.finish, RunStatus.COMPLETED)
            except BaseException as exc:
                self._state = _FAILED
                self._error = exc
                if isinstance(exc, JournalError) and not isinstance(exc, LeaseLostError):
                    durable.give_up(exc, release=False)
                raise
            return
        try:
            for index in self._failures():
                durable.step_failed(
                    index,
                    StepStatus.FAILED,
                    durable.state(index, self._actions[index]),
                    self._attempts.get((_EXECUTE, index), 1),
                    repr(self._errors.get(index, error)),
                )
            self._io(durable.finish, RunStatus.FAILED, repr(error))
        except LeaseLostError as exc:
            logger.error("run %s: %s", durable.run_id, exc)
        except (JournalError, ActionQueueError) as exc:
            # Its rollback, if one follows, writes again (and leases it again).
            durable.give_up(exc, release=False)

    def _record_rollback_end(self, durable: DurableRun) -> None:
        """D4: record how the rollback ended (a failure to is logged); the step context
        was left by ``rollback()``."""
        try:
            ended = RunStatus.ROLLBACK_FAILED if self._rb_errors else RunStatus.ROLLED_BACK
            self._io(durable.finish, ended)
        except LeaseLostError as exc:
            logger.error("run %s: %s", durable.run_id, exc)
        except (JournalError, ActionQueueError) as exc:
            logger.error("could not record the end of run %s's rollback: %s", durable.run_id, exc)
            self._give_up(durable, exc)
        except BaseException as exc:  # an interrupt: raised once the rollback is over
            self._hold(exc)
