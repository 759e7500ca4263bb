"""A run's state, and what it tells: its report, and the events listeners receive.

:class:`RunState` holds every field of a run (a queue is one), laid out in slots
for the speed of the hot path: the steps, their results, attempts and times, the
failures, and where execution and rollback are. It builds the report (E4) and the
events (E6) from them. What changes those fields is decided in ``_core``; ``_build``
checks and keeps what ``add()`` is given.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, ClassVar, Final, NoReturn

from ._action import ActionLike, FunctionAction
from ._durable import DurableRun
from ._events import (
    Event,
    EventBus,
    StepRolledBack,
    StepStarted,
    StepSucceeded,
)
from ._lifecycle import QueueState
from ._retry import RetryPolicy
from ._status import Phase

# Enum members are slow to look up on their class; the hot paths use these.
_NEW: Final = QueueState.NEW
_EXECUTING: Final = QueueState.EXECUTING
_EXECUTED: Final = QueueState.EXECUTED
_FAILED: Final = QueueState.FAILED
_ROLLING_BACK: Final = QueueState.ROLLING_BACK
_ROLLED_BACK: Final = QueueState.ROLLED_BACK
_EXECUTE: Final = Phase.EXECUTE
_ROLLBACK: Final = Phase.ROLLBACK


class _NoEntries(dict[Any, Any]):
    """The empty mapping queues share until a step needs an entry of its own."""

    def __setitem__(self, key: object, value: object) -> NoReturn:
        msg = "internal error: write to the shared empty mapping"
        raise TypeError(msg)

    def __reduce__(self) -> tuple[type[dict[Any, Any]], tuple[()]]:
        return dict, ()  # a pickled queue gets a plain dict of its own


_EMPTY: Final = _NoEntries()
_EMPTY_SET: Final[set[Any]] = frozenset()  # type: ignore[assignment]
_EMPTY_LIST: Final[list[float]] = []
_DEFAULT_BUS: Final = EventBus(())


class RunState:
    """A run's fields, its report and its events; the base of every queue."""

    _asynchronous: ClassVar[bool] = False

    # Set by the queue's constructor (``_build``); the rest by ``__init__`` below.
    _name: str | None
    _execute_policy: RetryPolicy | None
    _rollback_policy: RetryPolicy | None
    _strict: bool
    _timeout: float | None
    _bus: EventBus
    _track: bool  # someone observes step transitions: listeners, or the journal
    _report_finish: bool  # someone listens for RunFinished
    _report_end: bool  # someone listens for RunFinished or StepFailed
    _durable: DurableRun | None
    _may_retry: bool  # any failure but ActionRetryException may be retried
    _timed: bool  # per-step clock reads: asked for, or needed

    # Slots: a fixed layout keeps every attribute access on the hot path cheap.
    # ``__dict__`` keeps 0.8.2's freedom to set attributes on a queue.
    __slots__ = (
        "__dict__",
        "_actions",
        "_attempts",
        "_bus",
        "_called",
        "_calling",
        "_durable",
        "_end",
        "_ends",
        "_error",
        "_errors",
        "_execute_policy",
        "_executed",
        "_failed_step",
        "_groups",
        "_inflight",
        "_interrupt",
        "_may_retry",
        "_member_of",
        "_name",
        "_names",
        "_policies",
        "_rb_end",
        "_rb_errors",
        "_rb_index",
        "_rb_starts",
        "_rb_t0",
        "_report_end",
        "_report_finish",
        "_results",
        "_rollback_policy",
        "_skip",
        "_skipped",
        "_starts",
        "_state",
        "_strict",
        "_t0",
        "_timed",
        "_timeout",
        "_timeouts",
        "_track",
    )

    def __init__(self) -> None:

        self._state = _NEW
        self._actions: list[ActionLike] = []
        # Sparse per-step details, shared and empty until a step needs one.
        self._names: dict[int, str] = _EMPTY
        self._policies: dict[tuple[Phase, int], RetryPolicy] = _EMPTY
        self._attempts: dict[tuple[Phase, int], int] = _EMPTY
        self._skipped: dict[tuple[Phase, int], float] = _EMPTY
        self._rb_errors: dict[int, BaseException] = _EMPTY
        self._errors: dict[int, BaseException] = _EMPTY  # other failed group members
        self._timeouts: dict[int, float] = _EMPTY
        # Parallel groups: first member's index -> one past the last member's.
        self._groups: dict[int, int] = _EMPTY
        self._member_of: dict[int, int] = _EMPTY  # each member's group's first index
        self._inflight: set[int] = _EMPTY_SET  # group members being called now
        self._skip: set[int] = _EMPTY_SET  # group members a resumed run executed before
        self._ends: dict[tuple[Phase, int], float] = _EMPTY  # group members' end times
        # A result per step that returned; a start time per step when timed.
        self._results: list[object] = []
        self._starts: list[float] = []
        self._executed = 0  # steps that count as executed, once execution ended
        # Steps a resumed run's journal holds as called (by the crashed process): they
        # count as executed whatever happens now, so that rollback covers them (D5).
        self._called = 0
        self._failed_step = -1  # the step whose failure stopped execution
        self._calling = False  # a step's method is being called (for mid-run reports)
        self._rb_starts: list[float] = _EMPTY_LIST
        self._rb_index = 0  # the step rolling back now; later executed steps are done
        self._t0 = self._end = self._rb_t0 = self._rb_end = 0.0
        self._error: BaseException | None = None
        self._interrupt: BaseException | None = None

    # -- names and policies ---------------------------------------------------------

    def _step_name(self, index: int) -> str:
        if self._names and index in self._names:
            return self._names[index]
        action = self._actions[index]
        if type(action) is FunctionAction:
            return action.name
        return type(action).__qualname__.rpartition("<locals>.")[2]

    def _policy(self, phase: Phase, index: int) -> RetryPolicy | None:
        policy = self._policies.get((phase, index))
        if policy is not None:
            return policy
        return self._execute_policy if phase is _EXECUTE else self._rollback_policy

    # -- events ---------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        """Deliver an event. A listener's Exception is logged by the bus; a
        KeyboardInterrupt or SystemExit from one during a rollback waits until every
        rollback has been tried, like one raised by a rollback itself."""
        try:
            self._bus.emit(event)
        except BaseException as exc:
            if self._state is not _ROLLING_BACK:
                raise
            if self._interrupt is None:
                self._interrupt = exc

    def _announce_started(self, index: int, phase: Phase, attempt: int) -> None:
        """Tell StepStarted listeners (callers check ``wants`` first)."""
        self._emit(
            StepStarted(
                queue=self._name,
                step=self._step_name(index),
                index=index,
                phase=phase,
                attempt=attempt,
            )
        )

    def _announce_succeeded(self, index: int, phase: Phase) -> None:
        """Tell StepSucceeded (or StepRolledBack) listeners that step ``index``'s call
        returned."""
        bus = self._bus
        if phase is _EXECUTE:
            if bus.wants(StepSucceeded):
                self._emit(
                    StepSucceeded(
                        queue=self._name,
                        step=self._step_name(index),
                        index=index,
                        attempt=self._attempts.get((phase, index), 1),
                        result=self._results[index],
                        duration=self._ends.get((phase, index), perf_counter())
                        - self._starts[index],
                    )
                )
        elif bus.wants(StepRolledBack):
            self._emit(
                StepRolledBack(
                    queue=self._name,
                    step=self._step_name(index),
                    index=index,
                    attempt=self._attempts.get((phase, index), 1),
                    duration=self._ends.get((phase, index), perf_counter()) - self._rb_start(index),
                )
            )

    def _failures(self) -> list[int]:
        """The steps whose calls failed for good: the one that stopped execution, and
        any other member of its parallel group that failed too."""
        if not self._errors:
            return [] if self._failed_step < 0 else [self._failed_step]
        return sorted({self._failed_step, *self._errors} - {-1})

    def _executed_count(self) -> int:
        """Steps that count as executed so far (the one being called included)."""
        if self._state is _EXECUTING:
            return len(self._results) + self._calling
        return self._executed

    def _failed_index(self) -> int:
        """The step whose failure stopped execution, or -1."""
        return self._failed_step

    def _rb_start(self, index: int) -> float:
        """When step ``index``'s rollback started (steps roll back latest first)."""
        return self._rb_starts[self._executed - 1 - index]

    def _group_of(self, index: int) -> int | None:
        """The parallel group of step ``index``: its first member's index, or None."""
        return self._member_of.get(index)
