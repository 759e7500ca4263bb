"""The engine: every rule of the queue contract, and no I/O.

The engine keeps a run's state and decides what happens next: whether an operation is
allowed now (S8), which steps count as executed and roll back, in what order (S3, S4,
S11), whether a failed call is retried and after what wait (S6, E5), what propagates
when retrying ends (E5), what the report says (E4), which events go out (E6), and what
``rollback()`` must raise at its end (E3 strict mode, S5, S11).

It neither calls actions, nor sleeps, nor writes the journal. The driver does
(``_driver_async.py``, written once for ``AsyncActionQueue``, from which the sync
queue's ``_driver_sync.py`` is generated). It tells the engine of every transition,
before and after each call to an action, in this order:

* ``_begin_execute()`` returns the actions. For each step ``i`` in order (``i`` is
  ``len(_results)``): when ``_timed``, append its start time to ``_starts``; when
  ``_track``, the driver's ``_step_started`` (the journal's D1 record, then
  ``_announce_started``); call ``execute``.

  - It returned: append the result to ``_results``; when ``_track``, the driver's
    ``_step_succeeded`` (D2, then ``_announce_succeeded``).
  - It raised: unless ``_retryable(exc)``, the step has failed. Otherwise, in a
    loop: ``_failed(i, EXECUTE, exc, attempt)`` gives the wait before the next call,
    or None: then raise ``_final_error(exc)``, the step has failed. Sleep, count
    the attempt, and call again.

  Finally ``_end_execute(error, failed)``: ``error`` is None on success; ``failed``
  is the step whose calls it came out of (that step counts as executed), or -1 when
  it came from between two steps. Then the journal's record of it, and
  ``_announce_end()`` when ``_report_end``.
* ``_begin_rollback()`` returns the indices to roll back, latest first. For each:
  set ``_rb_index``; when ``_timed``, append a start time to ``_rb_starts``; the
  same calls as above with ``ROLLBACK``, except that a rollback that gives up (or
  raises anything, retry decisions included) is handed to ``_rollback_failed(i,
  exc)`` and the loop goes on. Finally ``_end_rollback()``, the journal's record,
  and ``_rollback_outcome()``: the exception ``rollback()`` must raise, if any.
* A parallel group (the async queue's) starts its members together after their
  D1 records; every member counts as executed; failures go to ``_errors``, the first
  one to ``_failed_step``; the members roll back together (``_inflight`` says which
  are being called, for reports).

``_track`` is set when someone observes step transitions: listeners, or the journal.
``_timed`` is set when per-step durations are asked for or needed. With neither, the
in-memory happy path does no work for observers nobody attached, nor reads the clock
for a report nobody reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any, ClassVar, Final, NamedTuple, NoReturn, TypedDict, Unpack, cast

from . import _retry
from ._action import ActionLike, FunctionAction, callable_name, is_async_callable
from ._durable import DurableRun
from ._errors import (
    ActionRetryException,
    InvalidActionError,
    InvalidArgumentError,
    InvalidPolicyError,
    RollbackError,
)
from ._events import (
    Event,
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
from ._registry import MAX_RUN_ID, Registry, check_text, registry
from ._report import RunReport, StepReport
from ._retry import RetryPolicy, next_wait
from ._status import MODES, Phase, RunStatus, StepStatus
from .journal import Journal, JournalError

# Enum members are slow to look up on their class; the hot paths use these.
_NEW: Final = QueueState.NEW
_EXECUTING: Final = QueueState.EXECUTING
_EXECUTED: Final = QueueState.EXECUTED
_FAILED: Final = QueueState.FAILED
_ROLLING_BACK: Final = QueueState.ROLLING_BACK
_ROLLED_BACK: Final = QueueState.ROLLED_BACK
_EXECUTE: Final = Phase.EXECUTE
_ROLLBACK: Final = Phase.ROLLBACK
_ADD_FROM: Final = ALLOWED["add"]
_EXECUTE_FROM: Final = ALLOWED["execute"]
_ROLLBACK_FROM: Final = ALLOWED["rollback"]

# Classes whose instances passed add()'s checks for the sync queue (callable, plain
# execute and rollback): later instances skip them. A global, not an attribute, for
# the speed of add(). Bounded, so that classes made on the fly are not kept forever.
_CHECKED: Final[set[type]] = set()
# Likewise for the async queue, classes with an ``async def`` execute or rollback.
_CHECKED_ASYNC: Final[set[type]] = set()
_CHECKED_MAX: Final = 1024


class _UnawaitedError(InvalidActionError):
    """A coroutine returned to the sync queue: a mistake in the code, not retried."""


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


class StepOptions(TypedDict, total=False):
    """The keyword options of ``add()`` and ``add_parallel()``; every one may be left out.

    Attributes:
        name: The step's name in reports, events and the journal; by default the
            function's name, or the action's class name.
        retry: The retry policy of this step's ``execute``, in place of the queue's.
        rollback_retry: The retry policy of this step's ``rollback``, in place of
            the queue's.
        timeout: :class:`AsyncActionQueue` only: seconds each call of this step's
            ``execute`` may take, in place of the queue's ``timeout``.

    .. versionadded:: 1.0
    """

    name: str
    retry: RetryPolicy | None
    rollback_retry: RetryPolicy | None
    timeout: float | None


class _Snapshot(NamedTuple):
    """Where a run was when its report was asked for."""

    state: QueueState
    executed: int  # steps that count as executed
    first_undone: int  # steps from here to ``executed`` have had rollback called
    failed: int  # the step whose failure stopped execution, or -1
    end: float  # when execution ended (or now)
    rb_end: float  # when rollback ended (or now)
    calling: bool  # the last executed step's execute is being called


def _describe(obj: object) -> str:
    return f"{obj!r} (a {type(obj).__qualname__})"


def _check_policy(policy: object, where: str) -> RetryPolicy | None:
    if policy is None or isinstance(policy, RetryPolicy):
        return policy
    msg = f"{where}={policy!r}): not a RetryPolicy. Pass actionqueues.RetryPolicy(on=...)."
    raise InvalidPolicyError(msg)


class Engine:
    """Run state and decisions shared by the sync and async queues."""

    _asynchronous: ClassVar[bool] = False

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

    def __init__(
        self,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        rollback_retry: RetryPolicy | None = None,
        listeners: Iterable[Listener] = (),
        strict: bool = False,
        timings: bool = False,
        journal: Journal | None = None,
        registry: Registry | None = None,
        recovery: str = "rollback",
        run_id: str | None = None,
        one_commit_per_step: bool = False,
        timeout: float | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            msg = f"ActionQueue(name={name!r}): the name must be a string, or None."
            raise InvalidArgumentError(msg)
        # Identity tests: the cheapest check, on the path of every queue's creation.
        if (strict is not False and strict is not True) or (
            timings is not False and timings is not True
        ):
            flag, value = (
                ("strict", strict) if not isinstance(strict, bool) else ("timings", timings)
            )
            msg = f"ActionQueue({flag}={value!r}): pass True or False."
            raise InvalidArgumentError(msg)
        self._name = name
        self._execute_policy = _check_policy(retry, "ActionQueue(retry")
        self._rollback_policy = _check_policy(rollback_retry, "ActionQueue(rollback_retry")
        self._strict = strict
        self._timeout = (
            None if timeout is None else self._check_timeout(timeout, f"{type(self).__name__}(")
        )
        if listeners == ():
            self._bus = _DEFAULT_BUS
            self._track = self._report_finish = self._report_end = False
        else:
            self._bus = bus = EventBus(listeners)
            self._track = (
                bus.wants(StepStarted) or bus.wants(StepSucceeded) or bus.wants(StepRolledBack)
            )
            self._report_finish = bus.wants(RunFinished)
            self._report_end = self._report_finish or bus.wants(StepFailed)
        self._durable = (
            None
            if journal is None
            else self._durable_run(journal, registry, recovery, run_id, one_commit_per_step)
        )
        if self._durable is not None:
            if name is not None:
                check_text(name, "ActionQueue(name")
            self._track = True  # the journal observes every step transition
        # Whether any failure other than ActionRetryException can be retried: the cheap
        # test that keeps plain failures off the retry path.
        self._may_retry = retry is not None or rollback_retry is not None
        # Per-step clock reads: asked for, carried by events, or needed because a retry
        # policy's timeout counts from the first attempt's start.
        self._timed = bool(timings or self._track or self._may_retry)
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

    @staticmethod
    def _durable_run(
        journal: object, names: object, recovery: object, run_id: object, fold: object
    ) -> DurableRun:
        if not isinstance(journal, Journal):
            msg = (
                f"ActionQueue(journal={journal!r}): not a journal. Pass "
                "actionqueues.SQLiteJournal(path) or open_journal(url)."
            )
            raise InvalidArgumentError(msg)
        if names is not None and not isinstance(names, Registry):
            msg = f"ActionQueue(registry={names!r}): not an actionqueues.Registry."
            raise InvalidArgumentError(msg)
        if recovery not in MODES:
            msg = (
                f"ActionQueue(recovery={recovery!r}): after a crash a run is either rolled "
                "back ('rollback', the default) or resumed ('resume')."
            )
            raise InvalidArgumentError(msg)
        if not isinstance(fold, bool):
            msg = f"ActionQueue(one_commit_per_step={fold!r}): pass True or False."
            raise InvalidArgumentError(msg)
        if run_id is not None and not (isinstance(run_id, str) and run_id):
            msg = f"ActionQueue(run_id={run_id!r}): a run id is a non-empty string."
            raise InvalidArgumentError(msg)
        if run_id is not None:
            check_text(run_id, "ActionQueue(run_id", longest=MAX_RUN_ID)
        return DurableRun(journal, names or registry, recovery, run_id, fold=fold)

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name else ""
        count = len(self._actions)
        kind = "AsyncActionQueue" if self._asynchronous else "ActionQueue"
        return f"<{kind}{name}: {count} step{'s' * (count != 1)}, {self._state.value}>"

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
                function, called with no arguments, as the step's execute.
            rollback: With a function ``action``: the function, called with no
                arguments, that undoes it; None (the default): nothing to undo.
            **options: Keywords of :class:`StepOptions`: ``name`` (the step's name
                in reports and events), ``retry`` (the retry policy for this step's
                ``execute``, overriding the queue's), ``rollback_retry`` (for its
                ``rollback``) and, for :class:`AsyncActionQueue`, ``timeout``
                (seconds each call of its ``execute`` may take).

        Raises:
            InvalidActionError: ``action`` cannot be run as an action (a class, an
                object without both methods, ``rollback=`` with an action object, an
                ``async def`` function or method given to ``ActionQueue``), or, in a
                durable queue, its class is not registered.
            InvalidPolicyError: ``retry`` or ``rollback_retry`` is not a RetryPolicy.
            InvalidArgumentError: An unknown option, a name that is not a string,
                or a ``timeout`` that is not a positive number of seconds (or given
                to ``ActionQueue``).
            StateError: In a durable queue, the action's state cannot be written as
                JSON, or would not come back the same.
            LifecycleError: The queue has already started executing.
        """
        # ``**options`` rather than keyword-only parameters: CPython calls a function
        # with keyword-only parameters by a slower path, and add() is on the hot path.
        if self._state not in _ADD_FROM:
            raise lifecycle_error("add", self._state)
        if rollback is not None or type(action) not in _CHECKED:
            action = self._as_action(action, rollback)
        if self._durable is not None:
            self._add_durable(action, options)
            return
        if options:
            self._set_options(len(self._actions), options)
        self._actions.append(action)  # type: ignore[arg-type]

    def _add_group(
        self,
        actions: tuple[ActionLike | Callable[[], object], ...],
        options: StepOptions,
        names: list[str] | None = None,
    ) -> None:
        """Add a parallel group (the async queue's ``add_parallel``): all its members
        are checked before any is kept. ``names``: each member's own (recovery's)."""
        if self._state not in _ADD_FROM:
            raise lifecycle_error("add", self._state)
        if not actions:
            msg = (
                "add_parallel() was given no actions. Pass the actions to start "
                "together: add_parallel(a, b, c)."
            )
            raise InvalidArgumentError(msg)
        members = [
            cast("ActionLike", a) if type(a) in _CHECKED else self._as_action(a, None)
            for a in actions
        ]
        durable = self._durable
        entries = [durable.check_add(a) for a in members] if durable is not None else []
        first = len(self._actions)
        name = options.get("name")
        if name is not None and not isinstance(name, str):
            msg = f"add_parallel(name={name!r}): a group's name must be a string."
            raise InvalidArgumentError(msg)
        if durable is not None and name is not None:
            check_text(name, "add_parallel(name")
        for k in range(len(members)):
            if options:
                own = dict(options)
                if name is not None:
                    own["name"] = f"{name}[{k + 1}]"
                self._set_options(first + k, cast("StepOptions", own))
        if names is not None:
            if not self._names:
                self._names = {}
            self._names.update(enumerate(names, first))
        self._actions.extend(members)
        for entry in entries:
            durable.accept(entry)  # type: ignore[union-attr]
        if not self._groups:
            self._groups, self._member_of = {}, {}
        self._groups[first] = len(self._actions)
        self._member_of.update(dict.fromkeys(range(first, len(self._actions)), first))

    def _add_durable(self, action: object, options: StepOptions) -> None:
        """add() for a durable queue: D11 checks first; nothing is kept if one fails."""
        durable = self._durable
        assert durable is not None
        entry = durable.check_add(action)
        if options:
            if isinstance(options.get("name"), str):  # before anything is kept
                check_text(options["name"], "add(name")
            self._set_options(len(self._actions), options)
        self._actions.append(action)  # type: ignore[arg-type]
        durable.accept(entry)

    def _set_options(self, index: int, options: StepOptions) -> None:
        unknown = options.keys() - StepOptions.__annotations__.keys()
        if unknown:
            msg = (
                f"add() got unknown option(s) {', '.join(sorted(unknown))}; the options "
                "are name=, retry=, rollback_retry= and (AsyncActionQueue) timeout=."
            )
            raise InvalidArgumentError(msg)
        name = options.get("name")
        if name is not None and not isinstance(name, str):
            msg = f"add(name={name!r}): a step's name must be a string."
            raise InvalidArgumentError(msg)
        timeout = options.get("timeout")
        if timeout is not None:
            timeout = self._check_timeout(timeout, "add(")
        policies = [
            (phase, _check_policy(options.get(key), f"add({key}"))
            for phase, key in ((_EXECUTE, "retry"), (_ROLLBACK, "rollback_retry"))
        ]
        # Everything checked: now keep it (a refused add() leaves nothing behind).
        if name is not None:
            if not self._names:
                self._names = {}
            self._names[index] = name
        if timeout is not None:
            if not self._timeouts:
                self._timeouts = {}
            self._timeouts[index] = timeout
        for phase, policy in policies:
            if policy is not None:
                if not self._policies:
                    self._policies = {}
                self._policies[phase, index] = policy
                self._timed = self._may_retry = True

    def _check_timeout(self, timeout: object, where: str) -> float:
        """A per-call timeout: a positive number of seconds, for the async queue."""
        if not self._asynchronous:
            msg = (
                f"{where}timeout={timeout!r}): ActionQueue calls actions synchronously and "
                "cannot interrupt them. Timeouts are for AsyncActionQueue."
            )
            raise InvalidArgumentError(msg)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < float("inf")
        ):
            msg = f"{where}timeout={timeout!r}): a timeout is a number of seconds, more than 0."
            raise InvalidArgumentError(msg)
        return float(timeout)

    def _as_action(self, obj: object, rollback: object) -> ActionLike:
        """Check ``obj`` (and ``rollback``) and return the action to run."""
        if rollback is None and type(obj) in _CHECKED_ASYNC and self._asynchronous:
            return obj  # type: ignore[return-value]
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
            plain = self._check_sync(obj, execute, undo)
            cls = type(obj)
            if callable(getattr(cls, "execute", None)) and callable(getattr(cls, "rollback", None)):
                # Later instances skip the checks: one whose instance attributes hide
                # the class's methods (with a non-callable, or an async def function)
                # is then found out only when called.
                checked = _CHECKED if plain else _CHECKED_ASYNC
                if len(checked) >= _CHECKED_MAX:
                    checked.clear()
                checked.add(cls)
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
        self._check_sync(obj, obj, rollback)
        return FunctionAction(obj, rollback)

    def _check_sync(self, obj: object, *methods: object) -> bool:
        """Whether ``methods`` are all plain (not ``async def``); the sync queue, which
        never awaits, refuses the others up front."""
        for method in methods:
            if method is not None and is_async_callable(method):
                if self._asynchronous:
                    return False
                msg = (
                    f"{callable_name(method)} of {_describe(obj)} is a coroutine function "
                    "(async def); ActionQueue calls actions synchronously and would never "
                    "await it. Use a plain function or method."
                )
                raise InvalidActionError(msg)
        return True

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

    def _finished(self) -> None:
        """Tell RunFinished listeners (callers check ``_report_finish`` first)."""
        self._emit(RunFinished(queue=self._name, report=self.report))

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

    def _retryable(self, error: BaseException) -> bool:
        """Whether a failed call may be retried at all: the cheap test that keeps a
        plain failure off the retry path (no policy anywhere, not S6's exception)."""
        return self._may_retry or isinstance(error, ActionRetryException)

    def _failed(self, index: int, phase: Phase, error: BaseException, attempt: int) -> float | None:
        """A call failed: the seconds to wait before calling again, or None to give up.

        In testing mode the wait is recorded as skipped and 0 is returned, so the
        policy's timeout still counts it.
        """
        policy = self._policy(phase, index)
        if (policy is None and not isinstance(error, ActionRetryException)) or isinstance(
            error, _UnawaitedError
        ):
            return None
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
            # An interrupt held back during rollback stops this step's retries too.
            return None
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
        return wait

    def _rb_start(self, index: int) -> float:
        """When step ``index``'s rollback started (steps roll back latest first)."""
        return self._rb_starts[self._executed - 1 - index]

    @staticmethod
    def _final_error(error: BaseException) -> BaseException:
        """What propagates when retrying gives up: the action's own exception (E5).

        A spent ``ActionRetryException`` stands for its ``original_exception`` (which
        ``DoublingBackoffExceptionFactory`` sets), when it has one.
        """
        if isinstance(error, ActionRetryException) and error.original_exception is not None:
            return error.original_exception
        return error

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

    def _group_of(self, index: int) -> int | None:
        """The parallel group of step ``index``: its first member's index, or None."""
        return self._member_of.get(index)

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
