"""The decision core: what each event of a run leads to, and no I/O.

The queue's fields live in ``_run.RunState``, its report in ``_reporting``; this
module changes them (and ``_groups``, for parallel groups). Each rule has one home:

* S8, the lifecycle: ``_begin_execute`` and ``_begin_rollback`` refuse an operation
  the run's state does not allow (``_lifecycle`` holds the table).
* S3, S4, S11, which steps count as executed and roll back, latest first:
  ``_end_execute`` (the failed step counts, a resumed run's called steps too) and
  ``_begin_rollback``.
* E5 and S6, retries: ``_retry`` says, of a failed call, the wait before the next
  call or the exception that propagates because retrying ends.
* S5 and E3, a compensation that fails for good: ``_rollback_failed`` records it,
  and the rollback goes on; ``_rollback_outcome`` says what ``rollback()`` raises at
  its end (an interrupt held back, strict mode's ``RollbackError``).
* D2 with one commit per step: ``_done_waits`` says whether a step's "executed"
  (or "rolled back") record may go with the next write.
* D10, a journal record that fails: ``_journal_failed`` says whether the run stops,
  goes on, or is left to recovery.
* Interrupts during rollback (a KeyboardInterrupt, a cancellation, a listener's):
  ``_hold``, until every rollback was tried.
* Resume and recovery's bookkeeping: ``_prepare_resume``, ``_prepare_undo``.

It neither calls actions, nor sleeps, nor writes the journal: the flows of
``_flow`` put these decisions in order, as operations that the drivers carry out.
It tells listeners (through the event bus; they are synchronous callbacks, as
tenacity's ``iter()`` calls its ``before_sleep``). In the order the flows follow:

* ``_begin_execute()``. For each step ``i`` in order (``i`` is ``len(_results)``):
  when ``_timed``, its start time goes to ``_starts``; when ``_track``, its D1
  record, then ``StepStarted``; then the call of ``execute``. It returned: the
  result goes to ``_results``; when ``_track``, its D2 record and
  ``StepSucceeded``. It raised: ``_retry(i, EXECUTE, exc, attempt)`` says to wait
  and call again, or what propagates. At the end, ``_end_execute(error, failed)``
  (``failed`` is the step whose calls the error came out of, or -1 when it came
  from between two steps), the run's record and ``_announce_end()``.
* ``_begin_rollback()`` gives the indices to roll back, latest first. For each, the
  same, with ``ROLLBACK``; a call that failed for good goes to
  ``_rollback_failed(i, exc)`` and the loop goes on. Then ``_end_rollback()``, the
  run's record, and ``_rollback_outcome()``.
* A journal record that failed goes to ``_journal_failed`` (the records' flows, in
  ``_records``, do what it says).
* A parallel group (the async queue's): ``_group_members``, ``_group_started``,
  ``_member_ended``, then ``_group_ended`` (or ``_group_undone``), in ``_groups``.

``_track`` is set when someone observes step transitions: listeners, or the journal.
``_timed`` is set when per-step durations are asked for or needed. With neither, the
in-memory happy path does no work for observers nobody attached, nor reads the clock
for a report nobody reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from time import perf_counter
from typing import Final

from . import _retry
from ._action import ActionLike
from ._errors import (
    ActionQueueError,
    ActionRetryException,
    InvalidActionError,
    JournalError,
    LeaseLostError,
    RollbackError,
)
from ._events import RollbackFailed, StepRetrying, StepRolledBack, StepSucceeded
from ._lifecycle import ALLOWED, lifecycle_error
from ._reporting import Reporting
from ._retry import next_wait
from ._run import (
    _EMPTY_SET,
    _EXECUTE,
    _EXECUTED,
    _EXECUTING,
    _FAILED,
    _ROLLBACK,
    _ROLLED_BACK,
    _ROLLING_BACK,
)
from ._status import Mode, Phase, RunStatus, StepStatus

_EXECUTE_FROM: Final = ALLOWED["execute"]
_ROLLBACK_FROM: Final = ALLOWED["rollback"]


# The journal records a failure of which ``_journal_failed`` decides (D10): a step's
# "executing" record, its "executed" one, and likewise for its rollback ("undoing",
# "undone", and the state after an undo); how execution ended, completed or failed;
# how the rollback ended.
STARTED: Final = 1
DONE: Final = 2
UNDOING: Final = 3
UNDONE: Final = 4
UNDONE_STATE: Final = 5
COMPLETED: Final = 6
FAILED: Final = 7
ROLLED_BACK: Final = 8
# What a failed record leads to, flags: the error propagates (the run stops), or is
# held until every rollback was tried (an interrupt); the run's lease is no longer
# renewed (recovery takes it over once it expires), or is released now; the rollback
# stops with a JournalError saying why. With none, the run goes on (the message is
# logged).
RAISE: Final = 1
HOLD: Final = 2
EXPIRE: Final = 4
RELEASE: Final = 8
STOP: Final = 16


class _UnawaitedError(InvalidActionError):
    """A coroutine returned to the sync queue: a mistake in the code, not retried."""


class Core(Reporting):
    """The decisions of a run: what each event of it leads to."""

    __slots__ = ()

    def _timeout_of(self, index: int) -> float | None:
        """The timeout of step ``index``'s execute (the async queue's), if any."""
        timeouts = self._timeouts
        if timeouts and index in timeouts:
            return timeouts[index]
        return self._timeout

    def _hold(self, interrupt: BaseException) -> None:
        """An interrupt (KeyboardInterrupt, cancellation) during rollback: raised once
        every rollback was tried."""
        if self._interrupt is None:
            self._interrupt = interrupt

    def _unawaited(self, result: object, index: int, phase: Phase) -> InvalidActionError:
        """The sync queue's refusal of a coroutine an action returned (closed, so
        that Python does not warn that it was never awaited); never retried."""
        result.close()  # type: ignore[attr-defined]
        return _UnawaitedError(
            f"Step {index + 1} ({self._step_name(index)!r}) returned a coroutine from "
            f"{phase.value}(), which ActionQueue never awaits. Make {phase.value}() a "
            "plain function, or run the queue with AsyncActionQueue."
        )

    def _timed_out(self, index: int, timeout: float) -> TimeoutError:
        """The error of a call of step ``index``'s execute that outran its timeout."""
        name = self._step_name(index)
        return TimeoutError(
            f"step {index + 1} ({name!r}) took longer than its timeout of {timeout:g} s"
        )

    # -- execution ------------------------------------------------------------------

    def _begin_execute(self) -> list[ActionLike]:
        if self._state not in _EXECUTE_FROM:
            raise lifecycle_error("execute", self._state)
        self._state = _EXECUTING
        # Untracked, a report can only be read from inside a step's call.
        self._calling = not self._track
        if self._timed:
            self._t0 = perf_counter()
        durable = self._durable
        if durable is not None and not durable.begun:
            try:  # D1 starts here: the run and its steps are recorded before any call
                names = [self._step_name(i) for i in range(len(self._actions))]
                groups = [self._group_of(i) for i in range(len(names))] if self._groups else None
                durable.begin(self._name, names, asynchronous=self._asynchronous, groups=groups)
            except BaseException as exc:
                self._state, self._error, self._executed = _FAILED, exc, 0
                raise
        # Resumed by recovery, execution picks up after the steps already executed.
        return self._actions[len(self._results) :] if self._results else self._actions

    def _prepare_resume(self, done: int, executed: Iterable[int] = (), called: int = 0) -> None:
        """Recovery resumes a run whose first ``done`` steps executed, and of whose
        later steps (members of a parallel group) ``executed`` did too; the first
        ``called`` steps had their execute called (the one a crash interrupted
        included), and are rolled back should the resumed run fail, even before
        it calls one of them again."""
        self._called = called
        self._skip = set(executed) or _EMPTY_SET
        self._results = [None] * done
        if self._timed:  # those steps took no time in this process
            self._starts = [perf_counter()] * done

    def _prepare_undo(
        self, executed: int, earlier: dict[int, str | None], settled: Iterable[int] = ()
    ) -> None:
        """Recovery rolls back a run whose first ``executed`` steps were called, and
        some of whose later steps' rollbacks failed for good under an earlier claim;
        ``settled`` steps (members of a parallel group, which roll back in any order)
        were rolled back already, or failed to be, and are not rolled back again."""
        self._skip = set(settled) or _EMPTY_SET
        self._state = _FAILED
        self._results = [None] * executed
        self._executed = executed
        if earlier:
            self._rb_errors = {
                i: JournalError(f"rollback failed under an earlier claim: {text}")
                for i, text in earlier.items()
            }

    def _retry(
        self, index: int, phase: Phase, error: BaseException, attempt: int
    ) -> float | BaseException:
        """E5 and S6, whole: call ``attempt`` of step ``index``'s ``phase`` raised
        ``error``; the seconds to wait before calling again, or the exception that
        propagates because retrying ends (then the call has failed for good).

        A plain failure with no policy anywhere is its own answer at once (the cheap
        test that keeps it off the retry path). A policy's attempts, timeout and
        exception filter decide (``next_wait``); an ``ActionRetryException`` is
        retried, by the factory's waits, without a policy (S6); a coroutine the sync
        queue refused never is; an interrupt held back during rollback stops the
        step's retries too. When retrying ends, the action's own exception
        propagates: a spent ``ActionRetryException`` stands for its
        ``original_exception``, when it has one. In testing mode the wait is recorded
        as skipped and 0 is returned, so that the policy's timeout still counts it.
        """
        retry_exception = isinstance(error, ActionRetryException)
        if not (self._may_retry or retry_exception):
            return error
        policy = self._policy(phase, index)
        if (policy is None and not retry_exception) or isinstance(error, _UnawaitedError):
            return error
        key = (phase, index)
        if not self._attempts:
            self._attempts = {}
        self._attempts[key] = attempt
        skipped = self._skipped.get(key, 0.0)
        elapsed = skipped
        if policy is not None:  # a policy turned timing on: the step's start is known
            start = self._starts[index] if phase is _EXECUTE else self._rb_start(index)
            elapsed += perf_counter() - start
        wait = next_wait(policy, error, attempt, elapsed, self._step_name(index))
        if wait is None or self._interrupt is not None:
            if isinstance(error, ActionRetryException) and error.original_exception is not None:
                return error.original_exception
            return error
        if self._bus.wants(StepRetrying):
            self._emit(
                StepRetrying(
                    queue=self._name,
                    step=self._step_name(index),
                    index=index,
                    phase=phase,
                    attempt=attempt,
                    error=error,
                    wait=wait,
                )
            )
        if _retry._testing:
            if not self._skipped:
                self._skipped = {}
            self._skipped[key] = skipped + wait
            return 0.0
        return float(wait)

    def _done_waits(self, index: int, phase: Phase) -> bool:
        """D2 (and D3) at one commit per step: whether step ``index``'s record of a
        call that returned may wait for the next write, the next step's "executing"
        record or the run's end, rather than be committed now.

        It may when nothing of the user's runs before that write but the next
        action's state being taken: a crash in between is then the crash before a
        commit of its own, and the step's rollback sees the same state. A listener
        of the step's end (``StepSucceeded``, ``StepRolledBack``) runs in between, and
        so do the other members of a parallel group (a member that returned waits
        for its siblings): then the record is committed first.
        """
        if self._groups and self._group_of(index) is not None:
            return False
        return not self._bus.wants(StepSucceeded if phase is _EXECUTE else StepRolledBack)

    def _journal_failed(
        self, record: int, index: int, error: BaseException
    ) -> tuple[int, str | None]:
        """D10, whole: what a journal record that failed (its write, or the state it
        holds) leads to, and the message to log or raise; ``record`` says which
        (``STARTED``, ..., ``ROLLED_BACK``), ``index`` its step (-1 for the run's).

        Before a step's call, nothing is done unrecorded: the run stops there (a
        step's "executed" record too, which the next step's call must follow). A
        completed run unrecorded does not count as done. A failed run's record
        failing is logged, not raised: the action's own exception is what
        propagates, and its rollback writes again. During rollback the
        compensation matters more than its record: the rollback goes on, logged;
        but not when another process owns the run (it finishes it), nor when a
        resumable run still recorded as running would be resumed past a step undone
        now (then recovery takes the run over). An interrupt during rollback is held
        until every rollback was tried.
        """
        durable = self._durable
        assert durable is not None
        lost = isinstance(error, LeaseLostError)
        ours = isinstance(error, JournalError | ActionQueueError)
        if record in (STARTED, DONE):
            return RAISE, None
        if record == COMPLETED:
            self._state, self._error = _FAILED, error
            return RAISE | (EXPIRE if isinstance(error, JournalError) and not lost else 0), None
        if record in (FAILED, ROLLED_BACK):
            if lost:
                return 0, f"run {durable.run_id}: {error}"
            if not ours:  # an interrupt: after execution it goes out; in rollback, held
                return (RAISE if record == FAILED else HOLD), None
            if record == FAILED:
                return EXPIRE, None
            return RELEASE, f"could not record the end of run {durable.run_id}'s rollback: {error}"
        if lost:
            return RAISE, None
        if not ours:
            return HOLD, None
        step = index + 1
        if record == UNDONE_STATE:
            return 0, f"step {step} rolled back, its state not recorded: {error}"
        if record == UNDONE:
            return 0, f"step {step} rolled back, not yet recorded: {error}"
        if durable.mode == Mode.RESUME and durable.status == RunStatus.RUNNING:
            return RELEASE | STOP, (
                f"Run {durable.run_id}: the start of step {step}'s rollback could "
                f"not be recorded ({error}). The journal holds the run as running, which "
                "recovery would resume past a step undone now: the rollback stops "
                "here, and recovery takes the run over."
            )
        return 0, f"rolling back step {step} without a journal record: {error}"

    def _end_execute(self, error: BaseException | None, failed: int = -1) -> None:
        """Execution ended: with no error, or with ``error`` from the calls of step
        ``failed`` (which counts as executed, S3/S11), or from between steps (-1). A
        durable queue's driver then awaits :meth:`_record_end` before, as for every
        queue, :meth:`_announce_end`."""
        if self._timed:
            self._end = perf_counter()
        self._calling = False
        executed = len(self._results)
        if error is None:
            self._state = _EXECUTED
            self._executed = executed
        else:
            self._state = _FAILED
            self._error = error
            self._failed_step = failed
            self._executed = max(executed if failed < executed else failed + 1, self._called)

    # -- rollback -------------------------------------------------------------------

    def _begin_rollback(self) -> range:
        """Check the lifecycle; the indices to roll back, latest first (S3, S4)."""
        if self._state not in _ROLLBACK_FROM:
            raise lifecycle_error("rollback", self._state)
        self._state = _ROLLING_BACK
        self._rb_index = self._executed
        self._calling = not self._track
        if self._timed:
            self._rb_starts = []
            self._rb_t0 = perf_counter()
        return range(self._executed - 1, -1, -1)

    def _end_rollback(self) -> None:
        """Every rollback was tried. A durable queue's driver then records the outcome
        before asking :meth:`_rollback_outcome` what to raise."""
        if self._timed:
            self._rb_end = perf_counter()
        self._state = _ROLLED_BACK
        self._rb_index = 0
        self._calling = False

    def _rollback_outcome(self) -> BaseException | None:
        """Tell listeners the run finished; the exception ``rollback()`` must raise.

        A KeyboardInterrupt, SystemExit or cancellation raised by a rollback (or a
        listener) did not stop the other rollbacks; it is raised now. In strict mode,
        rollback failures are raised together as a :class:`RollbackError`.
        """
        if self._report_finish:
            self._finished()
        if self._interrupt is not None:
            return self._interrupt
        if self._strict and self._rb_errors:
            report = self.report
            report.steps  # noqa: B018 - built now: the error must not keep the queue alive
            # With no interrupt pending, every rollback failure is an Exception.
            failures = [e for e in report.rollback_errors if isinstance(e, Exception)]
            group = RollbackError(report.summary(), failures, report=report)
            group.__cause__ = self._error
            return group
        return None

    def _rollback_failed(self, index: int, error: BaseException) -> None:
        """A rollback gave up: record, log and report it; rollback goes on (S5, E3)."""
        self._calling = False
        if not self._rb_errors:
            self._rb_errors = {}
        self._rb_errors[index] = error
        if self._interrupt is None and not isinstance(error, Exception):
            self._interrupt = error
        if self._durable is not None:
            self._durable.step_failed(
                index,
                StepStatus.ROLLBACK_FAILED,
                None,
                self._attempts.get((_ROLLBACK, index), 1),
                repr(error),
            )
        self._emit(
            RollbackFailed(
                queue=self._name,
                step=self._step_name(index),
                index=index,
                attempt=self._attempts.get((_ROLLBACK, index), 1),
                error=error,
            )
        )
