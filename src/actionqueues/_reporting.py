"""A run's report (E4), built from its fields, and the end of a run told to listeners.

:class:`Reporting` adds to :class:`~actionqueues._run.RunState` the ``report``
property (a snapshot, whose per-step part is built on first use once the run is
settled), the note ``run()`` attaches to the exception it re-raises (E1), and the
``StepFailed`` and ``RunFinished`` events.
"""

from __future__ import annotations

import functools
from time import perf_counter
from typing import Final, NamedTuple

from ._events import RunFinished, StepFailed
from ._lifecycle import QueueState
from ._report import RunReport, StepReport
from ._run import (
    _EXECUTE,
    _EXECUTED,
    _EXECUTING,
    _FAILED,
    _NEW,
    _ROLLBACK,
    _ROLLED_BACK,
    _ROLLING_BACK,
    RunState,
)
from ._status import RunStatus, StepStatus

_RUN_STATUS: Final = {
    _NEW: RunStatus.PENDING,
    _EXECUTING: RunStatus.RUNNING,
    _EXECUTED: RunStatus.COMPLETED,
    _FAILED: RunStatus.FAILED,
    _ROLLING_BACK: RunStatus.ROLLING_BACK,
    _ROLLED_BACK: RunStatus.ROLLED_BACK,
}
# Reports of runs in these states cannot change any more (a rollback to come reads
# only data of its own), so their per-step part can be built later, on first use.
_SETTLED: Final = (_EXECUTED, _FAILED, _ROLLED_BACK)


class _Snapshot(NamedTuple):
    """Where a run was when its report was asked for."""

    state: QueueState
    executed: int  # steps that count as executed
    first_undone: int  # steps from here to ``executed`` have had rollback called
    failed: int  # the step whose failure stopped execution, or -1
    end: float  # when execution ended (or now)
    rb_end: float  # when rollback ended (or now)
    calling: bool  # the last executed step's execute is being called


class Reporting(RunState):
    """A run's report, and the events that tell how it ended."""

    __slots__ = ()

    def _finished(self) -> None:
        """Tell RunFinished listeners (callers check ``_report_finish`` first)."""
        self._emit(RunFinished(queue=self._name, report=self.report))

    def _announce_end(self) -> None:
        """Tell listeners how execution ended (callers check ``_report_end`` first)."""
        error = self._error
        if error is not None and self._bus.wants(StepFailed):
            for index in self._failures():
                self._emit(
                    StepFailed(
                        queue=self._name,
                        step=self._step_name(index),
                        index=index,
                        attempt=self._attempts.get((_EXECUTE, index), 1),
                        error=self._errors.get(index, error),
                    )
                )
        if self._report_finish:
            try:
                self._finished()
            except BaseException as exc:  # a listener's interrupt: not done after all
                if error is None:
                    self._state = _FAILED
                    self._error = exc
                raise

    # -- reporting ------------------------------------------------------------------

    @property
    def report(self) -> RunReport:
        """What has happened so far to the run and to each of its steps.

        Each read takes a new snapshot, a :class:`RunReport`, which does not change
        afterwards: read it again to see later progress.

        .. versionadded:: 1.0
        """
        state = self._state
        rolling = state is _ROLLING_BACK or state is _ROLLED_BACK
        status = _RUN_STATUS[state]
        failures: tuple[tuple[str, BaseException], ...] = ()
        if rolling and self._rb_errors:
            failures = tuple(
                (self._step_name(i), self._rb_errors[i])
                for i in sorted(self._rb_errors, reverse=True)
            )
            if status is RunStatus.ROLLED_BACK:
                status = RunStatus.ROLLBACK_FAILED
        duration: float | None = None
        if self._timed:
            now = perf_counter()
            if state is not _NEW:
                duration = (now if state is _EXECUTING else self._end) - self._t0
                if rolling:
                    duration += (now if state is _ROLLING_BACK else self._rb_end) - self._rb_t0
        failed = -1 if self._error is None else self._failed_index()
        return RunReport(
            self._name,
            status,
            # Settled runs cannot change what their steps' reports say: build later.
            functools.partial(self._step_reports, state)
            if state in _SETTLED
            else self._step_reports(state),
            len(self._actions),
            self._error,
            duration,
            None if failed < 0 else (failed, self._step_name(failed)),
            self._executed - self._rb_index - (state is _ROLLING_BACK and self._calling)
            if rolling
            else 0,
            failures,
        )

    def _snapshot(self, state: QueueState) -> _Snapshot:
        """Where the run is, as seen by a report taken in ``state``."""
        executed = self._executed_count() if state is self._state else self._executed
        rolling = state is _ROLLING_BACK or state is _ROLLED_BACK
        now = perf_counter() if self._timed else 0.0
        return _Snapshot(
            state,
            executed,
            self._rb_index if rolling else executed,
            self._failed_index(),
            now if state is _EXECUTING else self._end,
            now if state is _ROLLING_BACK else self._rb_end,
            state is self._state and self._calling,
        )

    def _step_reports(self, state: QueueState) -> tuple[StepReport, ...]:
        snap = self._snapshot(state)
        return tuple(self._step_report(i, snap) for i in range(len(self._actions)))

    def _step_report(self, i: int, snap: _Snapshot) -> StepReport:
        name = self._step_name(i)
        if i >= snap.executed:
            return StepReport(i, name, StepStatus.PENDING)
        timed = self._timed
        starts = self._starts
        duration = None
        ends = self._ends
        if timed and i < len(starts):
            end = ends.get((_EXECUTE, i)) if ends else None
            if end is None:
                end = starts[i + 1] if i + 1 < len(starts) else snap.end
            duration = end - starts[i]
        results = self._results
        rollback_attempts = 0
        rollback_duration = None
        rollback_error = None
        if i >= snap.first_undone:
            rollback_attempts = self._attempts.get((_ROLLBACK, i), 1)
            rollback_error = self._rb_errors.get(i)
            rb_starts = self._rb_starts
            k = snap.executed - 1 - i  # position in rollback order
            if timed and k < len(rb_starts):
                end = ends.get((_ROLLBACK, i)) if ends else None
                if end is None:
                    end = rb_starts[k + 1] if k + 1 < len(rb_starts) else snap.rb_end
                rollback_duration = end - rb_starts[k]
        return StepReport(
            i,
            name,
            self._step_status(i, snap),
            self._attempts.get((_EXECUTE, i), 1),
            duration,
            results[i] if i < len(results) else None,
            self._errors.get(i, self._error) if i == snap.failed else self._errors.get(i),
            rollback_attempts,
            rollback_duration,
            rollback_error,
            self._group_of(i) if self._groups else None,
        )

    def _step_status(self, i: int, snap: _Snapshot) -> StepStatus:
        if i >= snap.first_undone:
            if i in self._rb_errors:
                return StepStatus.ROLLBACK_FAILED
            if snap.state is _ROLLING_BACK and (
                (i == snap.first_undone and snap.calling) or i in self._inflight
            ):
                return StepStatus.ROLLING_BACK
            return StepStatus.ROLLED_BACK
        if i == snap.failed or i in self._errors:
            return StepStatus.FAILED
        if (i == snap.executed - 1 and snap.calling) or i in self._inflight:
            return StepStatus.EXECUTING
        return StepStatus.EXECUTED

    def _annotate(self, error: BaseException) -> None:
        """Attach the rollback's outcome to the exception ``run()`` re-raises (E1)."""
        report = self.report
        error.add_note(f"actionqueues: {report.summary()}")
        # Exceptions cannot be weakly referenced; the report rides on the exception.
        error._actionqueues_report = report  # type: ignore[attr-defined]


def report_of(error: BaseException) -> RunReport | None:
    """The report of the ``run()`` that raised ``error``.

    ``run()`` attaches its report to the exception it re-raises after rolling back;
    this reads it back, for code that catches the exception away from the queue.

    Args:
        error: An exception, typically one caught from ``queue.run()``.

    Returns:
        The report of that run, after its rollback; None when ``error`` did not
        come out of a queue's ``run()`` (from ``execute()``, say).

    .. versionadded:: 1.0
    """
    report = getattr(error, "_actionqueues_report", None)
    return report if isinstance(report, RunReport) else None
