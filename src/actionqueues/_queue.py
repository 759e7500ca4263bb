"""``ActionQueue``: the synchronous driver of the engine.

The driver calls the actions and sleeps; every decision is the engine's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from time import perf_counter
from typing import Final

from ._engine import Engine
from ._lifecycle import check
from ._report import Phase, RunReport

_EXECUTE: Final = Phase.EXECUTE
_ROLLBACK: Final = Phase.ROLLBACK


class ActionQueue(Engine):
    """A queue of actions, executed in order and rolled back in reverse on failure.

    Add actions with :meth:`add`, then either call :meth:`run` (execute, and on
    failure roll back and re-raise) or, as in 0.8.2, :meth:`execute` and, when it
    raises, :meth:`rollback`. A queue runs once and is not safe to share between
    threads while it runs.

    Args:
        name: The run's name in reports, events and logs.
        retry: Retry policy for every step's ``execute``, unless the step has its own.
        rollback_retry: Retry policy for every step's ``rollback``.
        listeners: Callables that receive events (see :class:`Event`).
        strict: Raise :class:`RollbackError` from :meth:`rollback` (and :meth:`run`)
            when any rollback failed, after every rollback was tried.
        timings: Measure durations (each step's, and the run's) for the report. Also
            on whenever listeners are attached or a retry policy is declared;
            otherwise the report's durations are None and the clock is never read.
        journal: Record the run there, so that it survives a crash (durable queue).
        registry: Where a durable queue's action classes are registered; the
            default registry (``@durable``) if None.
        recovery: What recovery does with the run if its process dies: ``"rollback"``
            or ``"resume"`` (execute again from the step that was executing).
        run_id: The run's id in the journal; a random one if None.
        one_commit_per_step: Commit a step's "executed" record with the next step's
            "executing" one: half the commits, but after a crash between the two the
            step's rollback sees its state from before execute, and must find what
            execute did by its idempotency key.

    .. versionchanged:: 1.0
       Keyword arguments, :meth:`run` and :attr:`report`.
    """

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name else ""
        count = len(self._actions)
        return f"<ActionQueue{name}: {count} step{'s' * (count != 1)}, {self._state.value}>"

    def execute(self) -> None:
        """Execute every action in the order added; stop at the first failure.

        An exception other than ``ActionRetryException`` propagates unchanged (the very
        object the action raised) once any retry policy has given up; the action
        that raised it counts as executed, so :meth:`rollback` covers it.

        Raises:
            LifecycleError: The queue was already executed.
        """
        actions = self._begin_execute()
        done = self._results
        results = done.append
        started = self._starts.append
        timed = self._timed
        track = self._track
        in_call = False  # did the error come out of a step's calls?
        try:
            for action in actions:
                if timed:
                    started(perf_counter())
                if track:
                    self._step_started(len(done), _EXECUTE, 1)
                try:
                    results(action.execute())
                except BaseException as exc:
                    in_call = True
                    if not self._retryable(exc):
                        raise
                    error = exc
                else:
                    if track:
                        self._step_succeeded(len(done) - 1, _EXECUTE)
                    continue
                # Outside the except block, so the action's exception keeps its context.
                results(self._call_again(len(done), _EXECUTE, action.execute, error))
                in_call = False
                if track:
                    self._step_succeeded(len(done) - 1, _EXECUTE)
        except BaseException as exc:
            self._end_execute(exc, in_call)
            # The queue keeps the exception, whose traceback keeps this frame: drop the
            # frame's reference to the queue, one path fewer in the reference cycle.
            del self
            raise
        self._end_execute(None)

    def rollback(self) -> None:
        """Roll back every executed action, the failed one included, latest first.

        A rollback that fails (after its retry policy, if any, gave up) is logged on
        the ``actionqueues`` logger and recorded in the report, and the earlier
        actions are still rolled back.

        Raises:
            LifecycleError: The queue was not executed, or was already rolled back.
            RollbackError: In strict mode, when any rollback failed.
            BaseException: A KeyboardInterrupt or SystemExit raised by a rollback,
                once the other rollbacks are done.
        """
        actions = self._actions
        indices = self._begin_rollback()
        started = self._rb_starts.append
        timed = self._timed
        track = self._track
        for i in indices:
            action = actions[i]
            self._rb_index = i
            if timed:
                started(perf_counter())
            if track:
                self._step_started(i, _ROLLBACK, 1)
            try:
                action.rollback()
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
                self._call_again(i, _ROLLBACK, action.rollback, error)
            except BaseException as exc:
                self._rollback_failed(i, exc)
                continue
            if track:
                self._step_succeeded(i, _ROLLBACK)
        raised = self._end_rollback()
        if raised is not None:
            raise raised

    def run(self) -> RunReport:
        """Execute; if that fails, roll back and re-raise the original exception.

        The exception gets a note (PEP 678) saying how the rollback went, and
        :func:`report_of` gives its report.

        Returns:
            The report of the completed run.

        Raises:
            BaseException: Whatever the failed action raised, after the rollback.
            LifecycleError: The queue was already executed.
            RollbackError: In strict mode, when any rollback failed.

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

    def _resume(self, done: int) -> RunReport:
        """Recovery: run again from step ``done``, the steps before it executed."""
        self._prepare_resume(done)
        return self.run()

    def _undo(self, executed: int, earlier: dict[int, str | None]) -> None:
        """Recovery: roll back the first ``executed`` steps; ``earlier`` rollbacks
        failed under a previous claim."""
        self._prepare_undo(executed, earlier)
        self.rollback()

    def _call_again(
        self, index: int, phase: Phase, call: Callable[[], object], error: BaseException
    ) -> object:
        """Retry a failed call for as long as the engine says so; return its result.

        Raises:
            BaseException: The last call's exception, once the engine gives up.
        """
        attempt = 1
        while True:
            wait = self._failed(index, phase, error, attempt)
            if wait is None:
                error = self._final_error(error)
                del self  # no queue → error → traceback → frame → queue cycle
                raise error
            time.sleep(wait)
            attempt += 1
            self._retry_started(index, phase, attempt)
            try:
                return call()
            except BaseException as exc:
                error = exc
