"""The sync queue's driver: GENERATED from ``_driver_async.py`` by
``tools/async_to_sync.py``. Do not edit; edit that file and run the tool.
"""

from __future__ import annotations

import time
from time import perf_counter
from types import CoroutineType

from ._action import ActionLike
from ._build import Engine
from ._ops import BATCH, CALL, SLEEP, UNDO, UNDO_BATCH, WRITE, Flow
from ._report import RunReport
from ._run import _EXECUTE, _ROLLBACK


class SyncDriver(Engine):
    """Execute, roll back and retry: the flows' operations carried out."""

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
        batch = self._execute_batch()
        if batch is None:
            flow = self._execute_flow()
        else:
            try:
                self._batch(batch)
            except BaseException as exc:
                then = self._batch_failed(exc)
                if then is None:
                    del self
                    raise
                flow = then
            else:
                self._batch_done()
                return
        try:
            self._drive(flow)
        except BaseException:
            del self
            raise

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
        first = self._rollback_batch()
        if first is None:
            flow = self._rollback_flow()
        else:
            try:
                self._undo(first)
            except BaseException as exc:
                flow = self._rollback_flow(exc)
            else:
                raised = self._undo_done()
                if raised is None:
                    return
                del self
                raise raised
        try:
            self._drive(flow)
        except BaseException:
            del self
            raise

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
        self._begin_run()
        try:
            self.execute()
        except BaseException as exc:
            try:
                self._drive(self._run_failed(exc))
            finally:
                del self
            raise
        return self.report

    def _drive(self, flow: Flow) -> object:
        """Carry out ``flow``'s operations until it returns (its value) or raises."""
        value: object = None
        error: BaseException | None = None
        while True:
            try:
                op = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            except BaseException:
                del self, flow, error
                raise
            value = error = None
            code = op[0]
            try:
                if code == CALL:
                    value = op[3]()
                    if value is not None and type(value) is CoroutineType:
                        raise self._unawaited(value, op[1], op[2])
                elif code == BATCH:
                    self._batch(op[1])
                elif code == UNDO_BATCH:
                    self._undo(op[1])
                elif code == SLEEP:
                    time.sleep(op[1])
                elif code == WRITE:
                    op[1](*op[2])
                elif code == UNDO:
                    self.rollback()
                else:
                    raise AssertionError(op)
            except BaseException as exc:
                error = exc

    def _batch(self, actions: list[ActionLike]) -> None:
        """BATCH: call each action's execute in a row, its result to ``_results``."""
        results = self._results
        starts = self._starts if self._timed else None
        try:
            for action in actions:
                if starts is not None:
                    starts.append(perf_counter())
                result = action.execute()
                if result is not None and type(result) is CoroutineType:
                    raise self._unawaited(result, len(results), _EXECUTE)
                results.append(result)
        except BaseException:
            del self
            raise

    def _undo(self, first: int) -> None:
        """UNDO_BATCH: roll back steps ``first`` down to 0 in a row."""
        actions = self._actions
        starts = self._rb_starts if self._timed else None
        try:
            for i in range(first, -1, -1):
                self._rb_index = i
                if starts is not None:
                    starts.append(perf_counter())
                result = actions[i].rollback()
                if result is not None and type(result) is CoroutineType:
                    raise self._unawaited(result, i, _ROLLBACK)
        except BaseException:
            del self
            raise
