"""The run as the core decides it: flows that say, step by step, what to do next.

A flow is a generator of operations (``_ops``), which a driver carries out: the
execution of a run (S3, S11, E5, D1, D2, D4), its rollback (S3-S5, E3), ``run()``'s
rollback after a failure (E1), and a parallel group's members. The decisions are
the core's (``_core``, ``_groups``); the records ``_records``'.

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

Designed in for what comes next (DESIGN 3b, 3c). A saga's steps are added while
its run executes: the observed loop of :meth:`Flows._execute_flow` reads
``len(self._actions)`` at each step, so that a step appended meanwhile (``add()``
allowed in the ``executing`` state for a saga) is the next one run, with its D1 and
D2 records and its retries; its undo is an action's rollback. A pivot step is a
field of the run (the index of the pivot, once executed): ``_end_execute`` then
ends a failed run as failed forward, ``_begin_rollback`` refuses it (the lifecycle
table), and ``_run_failed`` does not roll back; recovery resumes it whatever its
mode. Each is one more decision in the core, not a change in a driver.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter

from ._action import ActionLike
from ._errors import JournalError
from ._lifecycle import check
from ._ops import BATCH, CALL, GROUP, SLEEP, UNDO, UNDO_BATCH, Flow
from ._records import Records
from ._run import _EXECUTE, _ROLLBACK
from ._status import Phase


class Flows(Records):
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
                groups = self._groups
                timed, track = self._timed, self._track
                i = len(results)
                while i < len(actions):
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
                    results.append((yield from self._again(i, _EXECUTE, actions[i].execute)))
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
        if self._observed_undo():
            return None
        return self._begin_rollback().start

    def _observed_undo(self) -> bool:
        """Whether rollbacks must be called one by one, each recorded or told (or a
        parallel group); else they are called in a row (a batch)."""
        return bool(self._track or self._groups)

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
            if self._observed_undo():
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

    # -- parallel groups (the async queue's; decisions in ``_groups``) ----------------

    def _execute_group(self, first: int, end: int) -> Flow:
        """Start the members ``first`` to ``end`` together, after every member's
        "executing" record (D1), and wait for them all; what ``_group_ended`` says."""
        todo = self._group_members(first, end, _EXECUTE)
        if self._track:
            for i in todo:
                yield from self._step_started(i, _EXECUTE, 1)
        interrupted, aborted = yield from self._members(first, end, todo, _EXECUTE)
        return self._group_ended(first, end, interrupted, aborted)

    def _rollback_group(self, first: int, end: int) -> Flow:
        """Roll back the members ``first`` to ``end`` together; what must stop the
        rollback (``_group_undone``)."""
        todo = self._group_members(first, end, _ROLLBACK)
        interrupted, aborted = yield from self._members(first, end, todo, _ROLLBACK)
        return self._group_undone(interrupted, aborted)

    def _members(self, first: int, end: int, todo: list[int], phase: Phase) -> Flow:
        """Start the members ``todo`` of the group ``first`` to ``end`` together, in
        ``phase``, and wait for them all: what cancelled the wait (or None), and the
        errors of the queue's own that came of the members (see :meth:`_member`)."""
        self._group_started(first, end, todo, phase)
        aborted: list[BaseException] = []
        interrupted: BaseException | None = None
        try:
            yield GROUP, [self._member(i, phase, aborted) for i in todo]
        except BaseException as exc:  # cancelled: every member has ended, cancelled too
            interrupted = exc
        return interrupted, aborted

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
