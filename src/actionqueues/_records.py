"""The journal's records as flows: D1-D4 written through ``DurableRun``, and what
D10 (``Core._journal_failed``) says a failed record leads to, carried out."""

from __future__ import annotations

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
from ._groups import Groups
from ._ops import WRITE, Flow
from ._run import _EXECUTE
from ._status import Phase, RunStatus, StepStatus


class Records(Groups):
    """A durable run's records, written by the flows (see ``_flow``)."""

    __slots__ = ()

    def _step_started(self, index: int, phase: Phase, attempt: int) -> Flow:
        """D1/D3, before a step's call: commit that it is executing (or rolling back)
        with its state then (before its first call only); then ``StepStarted``."""
        self._calling = True
        durable = self._durable
        if durable is not None:
            durable.enter(index, self._step_name(index), phase, attempt)
            if attempt == 1:
                execute = phase is _EXECUTE
                try:
                    state = durable.state(index, self._actions[index])
                    if execute:
                        yield WRITE, durable.step_started, (index, StepStatus.EXECUTING, state)
                    else:
                        yield (
                            WRITE,
                            durable.step_started,
                            (index, StepStatus.ROLLING_BACK, state, RunStatus.ROLLING_BACK),
                        )
                except BaseException as exc:
                    yield from self._journal_error(STARTED if execute else UNDOING, index, exc)
        if self._bus.wants(StepStarted):
            self._announce_started(index, phase, attempt)

    def _step_succeeded(self, index: int, phase: Phase) -> Flow:
        """D2/D3, the step returned: record it with its state after; then tell."""
        self._calling = False
        durable = self._durable
        if durable is not None:
            execute = phase is _EXECUTE
            status = StepStatus.EXECUTED if execute else StepStatus.ROLLED_BACK
            attempts = self._attempts.get((phase, index), 1)
            state: str | None
            try:
                state = durable.state(index, self._actions[index])
            except BaseException as exc:
                yield from self._journal_error(DONE if execute else UNDONE_STATE, index, exc)
                state = None
            if self._done_waits(index, phase):
                durable.step_pending(index, status, state, attempts)
            else:
                try:
                    yield WRITE, durable.step_done, (index, status, state, attempts)
                except BaseException as exc:
                    yield from self._journal_error(DONE if execute else UNDONE, index, exc)
        self._announce_succeeded(index, phase)

    def _record_end(self, durable: DurableRun) -> Flow:
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
                yield WRITE, durable.finish, (RunStatus.COMPLETED,)
                return
            for index in self._failures():
                durable.step_failed(
                    index,
                    StepStatus.FAILED,
                    durable.state(index, self._actions[index]),
                    self._attempts.get((_EXECUTE, index), 1),
                    repr(self._errors.get(index, error)),
                )
            yield WRITE, durable.finish, (RunStatus.FAILED, repr(error))
        except BaseException as exc:
            yield from self._journal_error(COMPLETED if error is None else FAILED, -1, exc)

    def _record_rollback_end(self, durable: DurableRun) -> Flow:
        """D4: record how the rollback ended."""
        ended = RunStatus.ROLLBACK_FAILED if self._rb_errors else RunStatus.ROLLED_BACK
        try:
            yield WRITE, durable.finish, (ended,)
        except BaseException as exc:
            yield from self._journal_error(ROLLED_BACK, -1, exc)

    def _journal_error(self, record: int, index: int, error: BaseException) -> Flow:
        """Carry out what D10 (``Core._journal_failed``) says a failed record leads
        to; called in the ``except`` block that caught it."""
        durable = self._durable
        assert durable is not None
        then, message = self._journal_failed(record, index, error)
        if message is not None and not then & STOP:
            logger.error("%s", message)
        if then & EXPIRE:
            durable.give_up(error, release=False)
        if then & RELEASE:  # a journal write, so made as writes are
            try:
                yield WRITE, durable.give_up, (error, True)
            except JournalError:  # closed meanwhile: the lease expires instead
                durable.give_up(error, False)
        if then & STOP:
            raise JournalError(message) from error
        if then & HOLD:
            self._hold(error)
        elif then & RAISE:
            raise error
