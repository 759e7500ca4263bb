"""The engine: every rule of the queue contract, and no I/O.

The engine keeps a run's state and decides what happens next: whether an operation is
allowed now (S8), which steps roll back and in what order (S3, S4), whether a failed
call is retried and after what wait (S6, E5), what the report says (E4), which events
go out (E6), and what ``rollback()`` must raise at its end (E3 strict mode, S11).

It neither calls actions nor sleeps. The drivers do: the sync ``ActionQueue`` with
plain calls and ``time.sleep``, the asyncio twin with ``await``. A driver tells the
engine of every transition, before and after each call to an action:

* ``_begin_execute()`` → for each step ``i`` in order (``i == len(_results)``):
  append its start time to ``_starts`` when ``_timed``; ``_step_started(i,
  EXECUTE, attempt)`` when ``_track``; call ``execute``. On an exception, a step
  with no retry possible (neither ``_may_retry`` nor an ``ActionRetryException``)
  fails at once; otherwise ``_failed(...)`` gives the wait before the next call, or
  None to give up. On success append the result to ``_results`` and, when
  tracking, ``_step_succeeded(i, EXECUTE)``. Finally ``_end_execute(error)``.
* ``_begin_rollback()`` gives the indices to roll back, latest first; for each,
  set ``_rb_index``, then the same per-step protocol with ``_rb_starts``, and
  ``_rollback_failed(i, exc)`` when a rollback gives up. Finally
  ``_end_rollback()`` returns the exception ``rollback()`` must raise, if any.

``_track`` is false when nobody listens to step events, and ``_timed`` false unless
per-step durations were asked for or are needed, so the in-memory happy path does no
work for listeners (or, later, a journal) nobody attached, nor reads the clock per
step for a report nobody reads.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from time import perf_counter
from types import MappingProxyType
from typing import Final, TypedDict, Unpack

from . import _retry
from ._action import ActionLike, FunctionAction, callable_name
from ._errors import ActionRetryException, InvalidActionError, InvalidPolicyError, RollbackError
from ._events import (
    EventBus,
    Listener,
    RollbackFailed,
    RunFinished,
    StepFailed,
    StepRetrying,
    StepRolledBack,
    StepStarted,
    StepSucceeded,
)
from ._lifecycle import ALLOWED, QueueState, lifecycle_error
from ._report import Phase, RunReport, RunStatus, StepReport, StepStatus
from ._retry import RetryPolicy, next_wait

# Enum members are slow to look up on the class; the hot paths use these.
_NEW: Final = QueueState.NEW
_EXECUTING: Final = QueueState.EXECUTING
_EXECUTED: Final = QueueState.EXECUTED
_FAILED: Final = QueueState.FAILED
_ROLLING_BACK: Final = QueueState.ROLLING_BACK
_ROLLED_BACK: Final = QueueState.ROLLED_BACK
_EXECUTE: Final = Phase.EXECUTE
_ROLLBACK: Final = Phase.ROLLBACK
_ROLLBACK_FROM: Final = ALLOWED["rollback"]

_CHECKED: Final[dict[bool, set[type]]] = {False: set(), True: set()}
_EMPTY: Final[MappingProxyType[object, object]] = MappingProxyType({})
_EMPTY_LIST: Final[list[float]] = []
_DEFAULT_BUS: Final = EventBus(())

_RUN_STATUS: Final = {
    QueueState.NEW: RunStatus.PENDING,
    QueueState.EXECUTING: RunStatus.RUNNING,
    QueueState.EXECUTED: RunStatus.COMPLETED,
    QueueState.FAILED: RunStatus.FAILED,
    QueueState.ROLLING_BACK: RunStatus.ROLLING_BACK,
    QueueState.ROLLED_BACK: RunStatus.ROLLED_BACK,
}


class StepOptions(TypedDict, total=False):
    """The keyword options of ``add()``.

    .. versionadded:: 1.0
    """

    name: str
    retry: RetryPolicy | None
    rollback_retry: RetryPolicy | None


def _describe(obj: object) -> str:
    return f"{obj!r} (a {type(obj).__qualname__})"


def _check_policy(policy: object, what: str) -> RetryPolicy | None:
    if policy is None or isinstance(policy, RetryPolicy):
        return policy
    msg = f"{what}={policy!r} is not a RetryPolicy. Pass actionqueues.RetryPolicy(on=...)."
    raise InvalidPolicyError(msg)


class Engine:
    """Run state and decisions shared by the sync and async queues."""

    _asynchronous: bool = False

    # Slots: a fixed layout keeps every attribute access on the hot path cheap.
    # ``__dict__`` keeps 0.8.2's freedom to set attributes on a queue.
    __slots__ = (
        "__dict__",
        "_actions",
        "_attempts",
        "_bus",
        "_checked",
        "_end",
        "_error",
        "_execute_policy",
        "_executed",
        "_interrupt",
        "_may_retry",
        "_name",
        "_names",
        "_policies",
        "_rb_end",
        "_rb_errors",
        "_rb_index",
        "_rb_starts",
        "_rb_t0",
        "_report_finish",
        "_results",
        "_rollback_policy",
        "_skipped",
        "_starts",
        "_state",
        "_strict",
        "_t0",
        "_timed",
        "_track",
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        rollback_retry: RetryPolicy | None = None,
        listeners: Iterable[Listener] = (),
        strict: bool = False,
        timings: bool = False,
    ) -> None:
        if name is not None and not isinstance(name, str):
            msg = f"name={name!r} must be a string (or None)."
            raise TypeError(msg)
        self._name = name
        self._execute_policy = None if retry is None else _check_policy(retry, "retry")
        self._rollback_policy = (
            None if rollback_retry is None else _check_policy(rollback_retry, "rollback_retry")
        )
        self._strict = strict
        if listeners == ():
            self._bus = _DEFAULT_BUS
            self._track = self._report_finish = False
        else:
            self._bus = bus = EventBus(listeners)
            self._track = (
                bus.wants(StepStarted) or bus.wants(StepSucceeded) or bus.wants(StepRolledBack)
            )
            self._report_finish = bus.wants(RunFinished)
        # Whether any failure other than ActionRetryException can be retried: the cheap
        # test that keeps plain failures off the retry path.
        self._may_retry = self._execute_policy is not None or self._rollback_policy is not None
        # Per-step clock reads: asked for, carried by events, or needed because a retry
        # policy's timeout counts from the first attempt's start.
        self._timed = bool(timings or self._track or self._may_retry)
        self._state = _NEW
        # Classes whose execute/rollback were checked already, per kind of queue.
        self._checked = _CHECKED[self._asynchronous]
        self._actions: list[ActionLike] = []
        # Sparse per-step details, shared empty until a step needs one.
        self._names: dict[int, str] = _EMPTY  # type: ignore[assignment]
        self._policies: dict[tuple[Phase, int], RetryPolicy] = _EMPTY  # type: ignore[assignment]
        self._attempts: dict[tuple[Phase, int], int] = _EMPTY  # type: ignore[assignment]
        self._skipped: dict[tuple[Phase, int], float] = _EMPTY  # type: ignore[assignment]
        self._rb_errors: dict[int, BaseException] = _EMPTY  # type: ignore[assignment]
        # A result per step that returned; a start time per step when timed.
        self._results: list[object] = []
        self._starts: list[float] = []
        # Steps that count as executed (S3, S11), set when execution ends.
        self._executed = 0
        self._rb_starts: list[float] = _EMPTY_LIST
        # The step whose rollback runs now; every later executed step is done.
        self._rb_index = 0
        self._t0 = self._end = self._rb_t0 = self._rb_end = 0.0
        self._error: BaseException | None = None
        self._interrupt: BaseException | None = None

    # -- building the queue ---------------------------------------------------------

    def add(
        self,
        action: ActionLike | Callable[[], object],
        rollback: Callable[[], object] | None = None,
        **options: Unpack[StepOptions],
    ) -> None:
        """Add a step to the end of the queue.

        Args:
            action: An object with ``execute()`` and ``rollback()`` methods, or a
                function to call as the step's execute.
            rollback: With a function ``action``: the function that undoes it.
            **options: Keywords of :class:`StepOptions`: ``name`` (the step's name
                in reports and events), ``retry`` (the retry policy for this step's
                ``execute``, overriding the queue's) and ``rollback_retry`` (for its
                ``rollback``).

        Raises:
            InvalidActionError: ``action`` cannot be run as an action.
            InvalidPolicyError: ``retry`` or ``rollback_retry`` is not a RetryPolicy.
            LifecycleError: The queue has already started executing.
            TypeError: An unknown option, or a name that is not a string.
        """
        # ``**options`` rather than keyword-only parameters: CPython calls a function
        # with keyword-only parameters by a slower path, and add() is on the hot path.
        if self._state is not _NEW:
            raise lifecycle_error("add", self._state)
        if rollback is not None or type(action) not in self._checked:
            action = self._as_action(action, rollback)
        if options:
            self._set_options(len(self._actions), options)
        self._actions.append(action)  # type: ignore[arg-type]

    def _set_options(self, index: int, options: StepOptions) -> None:
        unknown = options.keys() - StepOptions.__annotations__.keys()
        if unknown:
            msg = (
                f"add() got unknown option(s) {', '.join(sorted(unknown))}; the options "
                "are name=, retry= and rollback_retry=."
            )
            raise TypeError(msg)
        name = options.get("name")
        if name is not None:
            if not isinstance(name, str):
                msg = f"add(name={name!r}): a step's name must be a string."
                raise TypeError(msg)
            if not self._names:
                self._names = {}
            self._names[index] = name
        for phase, key in ((_EXECUTE, "retry"), (_ROLLBACK, "rollback_retry")):
            policy = _check_policy(options.get(key), f"add({key}")
            if policy is not None:
                if not self._policies:
                    self._policies = {}
                self._policies[phase, index] = policy
                self._timed = self._may_retry = True

    def _as_action(self, obj: object, rollback: object) -> ActionLike:
        """Check ``obj`` (and ``rollback``) and return the action to run."""
        if isinstance(obj, type):
            msg = (
                f"add() was given the class {obj.__qualname__}, not an instance of it. "
                f"Pass {obj.__qualname__}(...) instead."
            )
            raise InvalidActionError(msg)
        execute = getattr(obj, "execute", None)
        if execute is not None or hasattr(obj, "rollback"):
            undo = getattr(obj, "rollback", None)
            missing = [
                f"{attr}()"
                for attr, method in (("execute", execute), ("rollback", undo))
                if not callable(method)
            ]
            if missing:
                msg = (
                    f"add() was given {_describe(obj)}, which has no callable "
                    f"{' or '.join(missing)}. An action needs both execute() and "
                    "rollback() methods (subclass actionqueues.Action for do-nothing "
                    "defaults), or pass a function: add(do, undo)."
                )
                raise InvalidActionError(msg)
            if rollback is not None:
                msg = (
                    f"add() was given the action {_describe(obj)} and rollback="
                    f"{rollback!r}, but an action object brings its own rollback(). "
                    "Pass rollback= only with a function."
                )
                raise InvalidActionError(msg)
            self._check_sync(execute, undo, obj)
            cls = type(obj)
            if callable(getattr(cls, "execute", None)) and callable(getattr(cls, "rollback", None)):
                self._checked.add(cls)
            return obj  # type: ignore[return-value]
        if not callable(obj):
            msg = (
                f"add() was given {_describe(obj)}, which is neither an action (an object "
                "with execute() and rollback() methods) nor a function. Pass an Action, "
                "or a function and optionally its rollback: add(do, undo)."
            )
            raise InvalidActionError(msg)
        if rollback is not None and not callable(rollback):
            msg = (
                f"add({callable_name(obj)}, rollback={rollback!r}): rollback must be a "
                "function that takes no arguments, or None."
            )
            raise InvalidActionError(msg)
        self._check_sync(obj, rollback, obj)
        return FunctionAction(obj, rollback)

    def _check_sync(self, execute: object, rollback: object, obj: object) -> None:
        if self._asynchronous:
            return
        for method in (execute, rollback):
            if inspect.iscoroutinefunction(method):
                msg = (
                    f"{callable_name(method)} of {_describe(obj)} is a coroutine function "
                    "(async def); ActionQueue calls actions synchronously and would never "
                    "await it. Use a plain function or method."
                )
                raise InvalidActionError(msg)

    # -- names and policies ---------------------------------------------------------

    def _step_name(self, index: int) -> str:
        name = self._names.get(index)
        if name is not None:
            return name
        action = self._actions[index]
        if isinstance(action, FunctionAction):
            return action.name
        return callable_name(type(action))

    def _policy(self, phase: Phase, index: int) -> RetryPolicy | None:
        policy = self._policies.get((phase, index))
        if policy is not None:
            return policy
        return self._execute_policy if phase is _EXECUTE else self._rollback_policy

    # -- execution ------------------------------------------------------------------

    def _begin_execute(self) -> list[ActionLike]:
        if self._state is not _NEW:
            raise lifecycle_error("execute", self._state)
        self._state = _EXECUTING
        if self._timed:
            self._t0 = perf_counter()
        return self._actions

    def _end_execute(self, error: BaseException | None) -> None:
        """Execution ended, with ``error`` or without.

        The step in progress when ``error`` arrived counts as executed (S3, S11): a
        KeyboardInterrupt landing between two steps counts the next one too, so its
        rollback, like any after a crash (D5), must tolerate a step that never ran.
        """
        if self._timed:
            self._end = perf_counter()
        if error is None:
            self._state = _EXECUTED
            self._executed = len(self._results)
        else:
            self._state = _FAILED
            self._error = error
            self._executed = min(len(self._results) + 1, len(self._actions))
            if self._bus.wants(StepFailed) and (index := self._failed_index()) >= 0:
                self._bus.emit(
                    StepFailed(
                        queue=self._name,
                        step=self._step_name(index),
                        index=index,
                        attempt=self._attempts.get((_EXECUTE, index), 1),
                        error=error,
                    )
                )
        if self._report_finish:
            self._finished()

    def _executed_count(self) -> int:
        """Steps that count as executed so far (the one in progress included)."""
        if self._state is _EXECUTING:
            return min(len(self._results) + 1, len(self._actions))
        return self._executed

    def _failed_index(self) -> int:
        """The step whose failure stopped execution, or -1."""
        if self._error is not None and len(self._results) < self._executed:
            return self._executed - 1
        return -1

    def _step_started(self, index: int, phase: Phase, attempt: int) -> None:
        if self._bus.wants(StepStarted):
            self._bus.emit(
                StepStarted(
                    queue=self._name,
                    step=self._step_name(index),
                    index=index,
                    phase=phase,
                    attempt=attempt,
                )
            )

    def _step_succeeded(self, index: int, phase: Phase) -> None:
        bus = self._bus
        if phase is _EXECUTE:
            if bus.wants(StepSucceeded):
                bus.emit(
                    StepSucceeded(
                        queue=self._name,
                        step=self._step_name(index),
                        index=index,
                        attempt=self._attempts.get((phase, index), 1),
                        result=self._results[index],
                        duration=perf_counter() - self._starts[index],
                    )
                )
        elif bus.wants(StepRolledBack):
            bus.emit(
                StepRolledBack(
                    queue=self._name,
                    step=self._step_name(index),
                    index=index,
                    attempt=self._attempts.get((phase, index), 1),
                    duration=perf_counter() - self._rb_starts[-1],
                )
            )

    def _failed(self, index: int, phase: Phase, error: BaseException, attempt: int) -> float | None:
        """A call failed: the seconds to wait before calling again, or None to give up.

        In testing mode the wait is recorded as skipped and 0 is returned, so the
        policy's timeout still counts it.
        """
        policy = self._policy(phase, index)
        if policy is None and not isinstance(error, ActionRetryException):
            return None
        key = (phase, index)
        if not self._attempts:
            self._attempts = {}
        self._attempts[key] = attempt
        skipped = self._skipped.get(key, 0.0)
        elapsed = skipped
        if policy is not None:  # a policy turned timing on: the step's start is known
            start = self._starts[index] if phase is _EXECUTE else self._rb_starts[-1]
            elapsed += perf_counter() - start
        wait = next_wait(policy, error, attempt, elapsed, self._step_name(index))
        if wait is None:
            return None
        self._attempts[key] = attempt + 1
        if self._bus.wants(StepRetrying):
            self._bus.emit(
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
        return wait

    # -- rollback -------------------------------------------------------------------

    def _begin_rollback(self) -> range:
        """Check the lifecycle; the indices to roll back, latest first (S3, S4)."""
        if self._state not in _ROLLBACK_FROM:
            raise lifecycle_error("rollback", self._state)
        self._state = _ROLLING_BACK
        self._rb_starts = []
        if self._timed:
            self._rb_t0 = perf_counter()
        self._rb_index = self._executed
        return range(self._executed - 1, -1, -1)

    def _rollback_failed(self, index: int, error: BaseException) -> None:
        """A rollback gave up: record, log and report it; rollback goes on (S5, E3)."""
        if not self._rb_errors:
            self._rb_errors = {}
        self._rb_errors[index] = error
        if self._interrupt is None and not isinstance(error, Exception):
            self._interrupt = error
        self._bus.emit(
            RollbackFailed(
                queue=self._name,
                step=self._step_name(index),
                index=index,
                attempt=self._attempts.get((_ROLLBACK, index), 1),
                error=error,
            )
        )

    def _end_rollback(self) -> BaseException | None:
        """Finish the rollback; the exception ``rollback()`` must raise, if any.

        A KeyboardInterrupt, SystemExit or cancellation raised by a rollback did not
        stop the other rollbacks; it is raised now. In strict mode, rollback failures
        are raised together as a :class:`RollbackError`.
        """
        if self._timed:
            self._rb_end = perf_counter()
        self._state = _ROLLED_BACK
        self._rb_index = 0
        if self._report_finish:
            self._finished()
        if self._interrupt is not None:
            return self._interrupt
        if self._strict and self._rb_errors:
            report = self.report
            failures = [e for e in report.rollback_errors if isinstance(e, Exception)]
            group = RollbackError(report.summary(), failures, report=report)
            group.__cause__ = self._error
            return group
        return None

    def _finished(self) -> None:
        self._bus.emit(RunFinished(queue=self._name, report=self.report))

    # -- reporting ------------------------------------------------------------------

    @property
    def report(self) -> RunReport:
        """What has happened so far to the run and to each of its steps.

        .. versionadded:: 1.0
        """
        state = self._state
        starts, rb_starts = self._starts, self._rb_starts
        executed = self._executed_count()
        # Steps from first_undone on have had rollback called (the current one included).
        rolling = state is _ROLLING_BACK or state is _ROLLED_BACK
        first_undone = self._rb_index if rolling else executed
        failed = self._failed_index()
        now = perf_counter()
        end = now if state is _EXECUTING else self._end
        rb_end = now if state is _ROLLING_BACK else self._rb_end
        timed = self._timed
        steps = []
        for i in range(len(self._actions)):
            fields: dict[str, object] = {}
            if i < executed:
                fields["attempts"] = self._attempts.get((_EXECUTE, i), 1)
                if timed and i < len(starts):
                    fields["duration"] = (starts[i + 1] if i + 1 < len(starts) else end) - starts[i]
                if i < len(self._results):
                    fields["result"] = self._results[i]
                if i == failed:
                    fields["error"] = self._error
            if first_undone <= i < executed:
                k = executed - 1 - i  # position in rollback order
                fields["rollback_attempts"] = self._attempts.get((_ROLLBACK, i), 1)
                if timed and k < len(rb_starts):
                    fields["rollback_duration"] = (
                        rb_starts[k + 1] if k + 1 < len(rb_starts) else rb_end
                    ) - rb_starts[k]
                fields["rollback_error"] = self._rb_errors.get(i)
            steps.append(
                StepReport(
                    index=i,
                    name=self._step_name(i),
                    status=self._step_status(i, executed, first_undone, failed),
                    **fields,  # type: ignore[arg-type]
                )
            )
        status = _RUN_STATUS[state]
        if status is RunStatus.ROLLED_BACK and self._rb_errors:
            status = RunStatus.ROLLBACK_FAILED
        duration: float | None = None
        if timed:
            duration = (end - self._t0 if state is not _NEW else 0.0) + (
                rb_end - self._rb_t0 if self._rb_t0 else 0.0
            )
        return RunReport(
            name=self._name,
            status=status,
            steps=tuple(steps),
            error=self._error,
            duration=duration,
        )

    def _step_status(self, i: int, executed: int, first_undone: int, failed: int) -> StepStatus:
        if i >= executed:
            return StepStatus.PENDING
        if i >= first_undone:
            if i in self._rb_errors:
                return StepStatus.ROLLBACK_FAILED
            if i == first_undone and self._state is _ROLLING_BACK:
                return StepStatus.ROLLING_BACK
            return StepStatus.ROLLED_BACK
        if i == failed:
            return StepStatus.FAILED
        if i == executed - 1 and self._state is _EXECUTING:
            return StepStatus.EXECUTING
        return StepStatus.EXECUTED

    def _annotate(self, error: BaseException) -> None:
        """Attach the rollback's outcome to the exception ``run()`` re-raises (E1)."""
        report = self.report
        error.add_note(f"actionqueues: {report.summary()}")
        # Exceptions cannot be weakly referenced; the report rides on the exception.
        error._actionqueues_report = report  # type: ignore[attr-defined]


def report_of(error: BaseException) -> RunReport | None:
    """The report of the ``run()`` that raised ``error``, or None.

    .. versionadded:: 1.0
    """
    report = getattr(error, "_actionqueues_report", None)
    return report if isinstance(report, RunReport) else None
