"""Building a queue: its constructor's checks, and ``add()`` with its checks (S9, D11).

Everything is checked before anything is kept: a refused ``add()`` leaves the queue
as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Final, TypedDict, Unpack, cast

from ._action import (
    ActionLike,
    FunctionAction,
    callable_name,
    function_action,
    is_async_callable,
)
from ._durable import DurableRun
from ._errors import InvalidActionError, InvalidArgumentError, InvalidPolicyError
from ._events import (
    EventBus,
    Listener,
    RunFinished,
    StepFailed,
    StepRolledBack,
    StepStarted,
    StepSucceeded,
)
from ._flow import Flows
from ._lifecycle import ALLOWED, lifecycle_error
from ._registry import MAX_RUN_ID, Registry, check_text, registry
from ._retry import RetryPolicy
from ._run import _DEFAULT_BUS, _EXECUTE, _ROLLBACK, RunState
from ._status import MODES
from .journal import Journal

_ADD_FROM: Final = ALLOWED["add"]

# Classes whose instances passed add()'s checks for the sync queue (callable, plain
# execute and rollback): later instances skip them. A global, not an attribute, for
# the speed of add(). Bounded, so that classes made on the fly are not kept forever.
_CHECKED: Final[set[type]] = set()
# Likewise for the async queue, classes with an ``async def`` execute or rollback.
_CHECKED_ASYNC: Final[set[type]] = set()
_CHECKED_MAX: Final = 1024


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


def _describe(obj: object) -> str:
    return f"{obj!r} (a {type(obj).__qualname__})"


def _check_policy(policy: object, where: str) -> RetryPolicy | None:
    if policy is None or isinstance(policy, RetryPolicy):
        return policy
    msg = f"{where}={policy!r}): not a RetryPolicy. Pass actionqueues.RetryPolicy(on=...)."
    raise InvalidPolicyError(msg)


class Engine(Flows):
    """A queue's constructor and ``add()``: the base of the drivers."""

    __slots__ = ()

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
        one_commit_per_step: bool | None = None,
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
        RunState.__init__(self)

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
        if fold is not None:
            if not isinstance(fold, bool):
                msg = f"ActionQueue(one_commit_per_step={fold!r}): pass True or False."
                raise InvalidArgumentError(msg)
            warnings.warn(
                "ActionQueue(one_commit_per_step=...) has no effect since 1.0: a step "
                "costs one commit whenever that keeps D2 (see 'One commit per step' in "
                "the docs); drop the argument.",
                DeprecationWarning,
                stacklevel=3,
            )
        if run_id is not None and not (isinstance(run_id, str) and run_id):
            msg = f"ActionQueue(run_id={run_id!r}): a run id is a non-empty string."
            raise InvalidArgumentError(msg)
        if run_id is not None:
            check_text(run_id, "ActionQueue(run_id", longest=MAX_RUN_ID)
        return DurableRun(journal, names or registry, recovery, run_id)

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
            action = function_action(action, rollback) or self._as_action(action, rollback)
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
