"""The run as the core decides it: flows that say, step by step, what to do next.

A flow is a generator. It yields an *operation* (a tuple whose first item is one of
the codes below), and the driver carries it out and sends back what came of it: a
value, or, thrown in at the ``yield``, what it raised. The flow decides everything
else: the order of calls and records (D1-D4), retries (E5), what a failure leads to
(S3-S5, D10), and what the run returns or raises. The drivers
(``_driver_sync.py``, ``_driver_async.py``) hold no rule: each is a loop over one
flow's operations, the way httpx's clients drive one ``auth_flow`` generator.

Operations, and what the driver sends back:

* ``(CALL, index, phase, method, timeout)``: call ``method()``; its result (awaited
  by the async driver, within ``timeout`` seconds when that is not None; refused by
  the sync driver when it is a coroutine, through ``_unawaited``).
* ``(BATCH, actions)``: steps nobody observes, called in a row: for each action,
  its start time appended to ``_starts`` when ``_timed``, then its ``execute()``
  result (as for CALL) appended to ``_results``; None at the end, or the first
  call's exception thrown in (the failed step is ``len(_results)``).
* ``(UNDO_BATCH, first)``: likewise, rollbacks from step ``first`` down to step 0,
  ``_rb_index`` set to each before its call (and its start time appended to
  ``_rb_starts`` when ``_timed``); the failed step is ``_rb_index``.
* ``(SLEEP, seconds)``: wait; None.
* ``(WRITE, function, args)``: a journal write, ``function(*args)``; None. (The
  async driver makes it in a worker thread.)
* ``(GROUP, flows)``: the async queue's parallel group: drive each flow (which never
  raises) in a task of its own, and wait for all; None, or a cancellation thrown in.
* ``(UNDO,)``: run :meth:`rollback` (the async driver: shielded, in a task of its
  own); None, or what it raised thrown in.

A flow's operations carry no rule a driver must know; its return value (through
``StopIteration``) is what the queue's method returns, and its exception what it
raises.

The in-memory hot path makes no flow at all: when nobody observes the steps,
``execute()`` asks :meth:`Flows._execute_batch` for the steps, carries the batch out
as it would a BATCH operation, and tells :meth:`Flows._batch_done` (or
:meth:`Flows._batch_failed`, which says whether a flow takes over, for retries);
``rollback()`` likewise (``_rollback_batch``, ``_undo_done``, or
``_rollback_flow(error)``), and ``run()`` (``_begin_run``, then ``execute()``, and
``_run_failed`` only if that raised). A generator costs about what ten steps cost.

The flows call listeners themselves, through the event bus, as tenacity's ``iter()``
calls its ``before_sleep`` callbacks: listeners are synchronous functions, the same
for both drivers.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from time import perf_counter
from typing import Any, Final, TypeAlias

from ._action import ActionLike
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
from ._lifecycle import check
from ._run import _EXECUTE, _ROLLBACK
from ._status import Phase, RunStatus, StepStatus

CALL: Final = 0
BATCH: Final = 1
UNDO_BATCH: Final = 2
SLEEP: Final = 3
WRITE: Final = 4
GROUP: Final = 5
UNDO: Final = 6

#: What a flow yields (an operation), is sent (a value), and returns.
Flow: TypeAlias = Generator[tuple[Any, ...], Any, Any]


class Flows(Groups):
    """Execution, rollback and ``run()`` as flows of operations."""

    __slots__ = ()

    # -- execution (S3, S11, E5, D1, D2, D4) ----------------------------------------

    def _observed(self) -> bool:
        """Whether steps must be called one by one, each recorded or told (or a
        parallel group, or a timeout); else they are called in a row (a batch)."""
        return bool(self._track or self._groups or self._timeout is not None or self._timeouts)

    def _execute_batch(self) -> list[ActionLike] | None:
        """Begin execution, when its steps can be called in a row: the batch, which
        ``execute()`` calls with no flow at all (the in-memory hot path); then
        :meth:`_batch_done`, or :meth:`_batch_failed`. None: the steps are
        observed, and :meth:`_execute_flow` runs them."""
        if self._observed():
            return None
        return self._begin_execute()

    def _batch_done(self) -> None:
        """Every step of the batch returned: execution completed."""
        self._end_execute(None)
        if self._report_end:
            self._announce_end()

    def _batch_failed(self, error: BaseException) -> Flow | None:
        """A step of the batch raised ``error`` (the driver's ``except`` block): None
        when execution ends with it (it propagates, as it is), else the flow of the
        retries and the rest of the run."""
        failed = len(self._results)
        try:
            wait = self._retry(failed, _EXECUTE, error, 1)
        except BaseException as exc:  # a bad ActionRetryException: the run ends with it
            wait = exc
        if wait is not error:
            return self._execute_flow(wait)
        self._end_execute(error, failed)
        if self._report_end:
            self._announce_end()
        return None

    def _execute_flow(self, wait: float | BaseException | None = None) -> Flow:
        """``execute()``: every step in order, until one fails for good. ``wait``:
        what ``_retry`` said of a batch's failed step (execution began, in a row)."""
        if wait is None:
            self._begin_execute()
        actions = self._actions
        results = self._results
        failed = -1  # the step whose calls raised, if one did
        try:
            if self._observed():
                # Step by step, each recorded and told; groups; timeouts.
                steps = actions
                groups = self._groups
                timed, track = self._timed, self._track
                i = len(results)
                while i < len(steps):
                    if groups and i in groups:
                        end = groups[i]
                        failed, error = yield from self._execute_group(i, end)
                        if error is not None:
                            try:
                                raise error
                            finally:  # no error → traceback → frame → error cycle
                                del error
                        i = end
                        continue
                    if timed:
                        self._starts.append(perf_counter())
                    if track:
                        yield from self._step_started(i, _EXECUTE, 1)
                    failed = i
                    results.append((yield from self._again(i, _EXECUTE, steps[i].execute)))
                    failed = -1
                    if track:
                        yield from self._step_succeeded(i, _EXECUTE)
                    i += 1
            else:  # nobody observes a step, nothing bounds one: called in a row
                while True:
                    if wait is None:
                        try:
                            yield BATCH, actions[len(results) :] if results else actions
                        except BaseException as exc:
                            failed = len(results)
                            wait = self._retry(failed, _EXECUTE, exc, 1)
                            if wait is exc:
                                del wait  # no error → traceback → frame → error cycle
                                raise
                        else:
                            break
                    # Outside the except block: the action's exception keeps its context.
                    failed = len(results)
                    method = actions[failed].execute
                    results.append((yield from self._again(failed, _EXECUTE, method, wait)))
                    failed, wait = -1, None
        except BaseException as exc:
            self._end_execute(exc, failed)
            held: BaseException | None = None
            if self._durable is not None:
                try:
                    yield from self._record_end(self._durable)
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
            yield from self._record_end(self._durable)
        if self._report_end:
            self._announce_end()

    def _again(
        self,
        index: int,
        phase: Phase,
        method: Callable[[], object],
        wait: float | BaseException | None = None,
    ) -> Flow:
        """Call ``method`` for as long as the core says to retry (E5); its result.
        ``wait``: what ``_retry`` said of a first call already made, which failed."""
        timeout = self._timeout_of(index) if phase is _EXECUTE else None
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
                yield SLEEP, wait
                attempt += 1
                self._attempts[phase, index] = attempt  # a real dict: _retry() made it
                if self._track:
                    yield from self._step_started(index, phase, attempt)
            try:
                result = yield CALL, index, phase, method, timeout
            except BaseException as exc:
                wait = self._retry(index, phase, exc, attempt)
            else:
                return result

    # -- rollback (S3-S5, E3, E5, D3, D4) -------------------------------------------

    def _rollback_batch(self) -> int | None:
        """Begin rollback, when its steps can be rolled back in a row: the first one
        (``rollback()`` calls the batch with no flow; then :meth:`_undo_done`, or
        :meth:`_rollback_flow` with the error). None: :meth:`_rollback_flow` runs
        the rollback."""
        if self._track or self._groups:
            return None
        return self._begin_rollback().start

    def _undo_done(self) -> BaseException | None:
        """Every rollback was tried: what ``rollback()`` raises, if anything (E3)."""
        self._end_rollback()
        if self._report_finish or self._interrupt is not None or self._rb_errors:
            return self._rollback_outcome()
        return None

    def _rollback_flow(self, error: BaseException | None = None) -> Flow:
        """``rollback()``: every executed step, latest first; a rollback that fails
        for good is recorded, and the rollback goes on (S5). ``error``: what the
        call of a batch's step (``_rb_index``) raised (rollback began, in a row)."""
        first = self._begin_rollback().start if error is None else self._rb_index
        try:
            if self._track or self._groups:
                yield from self._observed_rollbacks(first)
            else:  # nobody observes a step: rolled back in a row
                while first >= 0:
                    if error is None:
                        try:
                            yield UNDO_BATCH, first
                        except BaseException as exc:
                            error = exc
                        else:
                            break
                    first = self._rb_index
                    wait = self._retry(first, _ROLLBACK, error, 1)
                    if wait is error:
                        self._rollback_failed(first, error)
                    else:
                        undo = self._actions[first].rollback
                        try:
                            yield from self._again(first, _ROLLBACK, undo, wait)
                        except BaseException as exc:
                            self._rollback_failed(first, exc)
                    del wait  # no frame → error → traceback → frame cycle
                    error = None
                    first -= 1
        finally:  # stopped by the journal (another owner, a rollback unrecorded) too
            if self._durable is not None:
                self._durable.leave()  # the caller's step context, as it was
        durable = self._durable
        if durable is not None and durable.begun:
            self._end_rollback()
            yield from self._record_rollback_end(durable)
            raised = self._rollback_outcome()
        else:
            raised = self._undo_done()
        if raised is not None:
            raise raised

    def _observed_rollbacks(self, i: int) -> Flow:
        """Rollback step by step, from step ``i`` down, each recorded and told (and
        the async queue's groups)."""
        actions = self._actions
        groups = self._groups
        timed, track = self._timed, self._track
        while i >= 0:
            if groups and (first := self._group_of(i)) is not None:
                lost = yield from self._rollback_group(first, i + 1)
                if lost is not None:
                    raise lost
                i = first - 1
                continue
            self._rb_index = i
            if timed:
                self._rb_starts.append(perf_counter())
            if track:
                yield from self._step_started(i, _ROLLBACK, 1)
            try:
                yield from self._again(i, _ROLLBACK, actions[i].rollback)
            except BaseException as exc:
                self._rollback_failed(i, exc)
            else:
                if track:
                    yield from self._step_succeeded(i, _ROLLBACK)
            i -= 1

    # -- run() (E1) -------------------------------------------------------------------

    def _begin_run(self) -> None:
        """E1: ``run()`` checks the lifecycle before anything (a refused run rolls
        nothing back); then it calls ``execute()``, and if that raises, drives
        :meth:`_run_failed` in its ``except`` block and re-raises the error."""
        check("execute", self._state)

    def _run_failed(self, error: BaseException) -> Flow:
        """E1, after ``execute()`` raised ``error``: roll back (the async driver
        shields the rollback from cancellation), then note on ``error`` how that
        went (and its report, for ``report_of``); ``run()`` re-raises it."""
        try:
            yield (UNDO,)
        finally:
            self._annotate(error)

    # -- the journal's records (D1-D4, D10; see DurableRun) ---------------------------

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

    # -- parallel groups (the async queue's; decisions in ``_groups``) ----------------

    def _execute_group(self, first: int, end: int) -> Flow:
        """Start the members ``first`` to ``end`` together, after every member's
        "executing" record (D1), and wait for them all; what ``_group_ended`` says."""
        todo = self._group_members(first, end, _EXECUTE)
        if self._track:
            for i in todo:
                yield from self._step_started(i, _EXECUTE, 1)
        self._group_started(first, end, todo, _EXECUTE)
        aborted: list[BaseException] = []
        interrupted: BaseException | None = None
        try:
            yield GROUP, [self._member(i, _EXECUTE, aborted) for i in todo]
        except BaseException as exc:  # cancelled: every member has ended, cancelled too
            interrupted = exc
        return self._group_ended(first, end, interrupted, aborted)

    def _rollback_group(self, first: int, end: int) -> Flow:
        """Roll back the members ``first`` to ``end`` together; what must stop the
        rollback (``_group_undone``)."""
        todo = self._group_members(first, end, _ROLLBACK)
        self._group_started(first, end, todo, _ROLLBACK)
        aborted: list[BaseException] = []
        interrupted: BaseException | None = None
        try:
            yield GROUP, [self._member(i, _ROLLBACK, aborted) for i in todo]
        except BaseException as exc:  # cancelled: every member has ended, cancelled too
            interrupted = exc
        return self._group_undone(interrupted, aborted)

    def _member(self, index: int, phase: Phase, aborted: list[BaseException]) -> Flow:
        """One member of a parallel group (driven in a task of its own); it never
        raises: its end goes to ``_member_ended``, and an error of the queue's own
        after the call (its record, a listener) to ``aborted``."""
        action = self._actions[index]
        durable = self._durable
        error: BaseException | None = None
        try:
            if phase is _EXECUTE:
                if durable is not None:  # this task's own step context (D6)
                    durable.enter(index, self._step_name(index), phase, 1)
                self._results[index] = yield from self._again(index, phase, action.execute)
            else:
                if self._track:
                    try:
                        yield from self._step_started(index, phase, 1)
                    except JournalError as exc:  # the run must stop: not a rollback failure
                        self._member_ended(index, phase, None)
                        aborted.append(exc)
                        return
                yield from self._again(index, phase, action.rollback)
        except BaseException as exc:
            error = exc
        self._member_ended(index, phase, error)
        if error is not None:
            del self, error  # the error's traceback holds this frame: no cycle
            return
        if self._track:
            try:
                yield from self._step_succeeded(index, phase)
            except BaseException as exc:
                aborted.append(exc)
