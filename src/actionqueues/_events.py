"""Typed events and the listeners that receive them.

A listener is any callable taking one event. It receives every event unless it has an
``events`` attribute naming the event types it wants, which lets the queue skip all
work for events nobody wants. A listener that raises is logged and ignored: it never
stops a run nor skips a rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

from ._action import is_async_callable
from ._errors import InvalidListenerError
from ._report import RunReport
from ._status import Phase

logger: Final = logging.getLogger("actionqueues")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event.

    Attributes:
        queue: The queue's name, or None.

    .. versionadded:: 1.0
    """

    queue: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEvent(Event):
    """Base of the events about one step.

    Subscribe to it (``events = (StepEvent,)``) to receive every step event.

    Attributes:
        queue: The queue's name, or None.
        step: The step's name.
        index: The step's position, from 0.

    .. versionadded:: 1.0
    """

    step: str
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(StepEvent):
    """An ``execute`` or ``rollback`` call is about to be made (once per attempt).

    Attributes:
        queue: The queue's name, or None.
        step: The step's name.
        index: The step's position, from 0.
        phase: Which method is about to be called.
        attempt: The call's number in this phase, from 1.

    .. versionadded:: 1.0
    """

    phase: Phase
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSucceeded(StepEvent):
    """``execute`` returned.

    Attributes:
        queue: The queue's name, or None.
        step: The step's name.
        index: The step's position, from 0.
        attempt: The number of the call that returned, from 1.
        result: What ``execute`` returned.
        duration: Seconds since the step's first attempt started, retries and
            waits included.

    .. versionadded:: 1.0
    """

    attempt: int
    result: object
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRetrying(StepEvent):
    """A call failed and will be made again after ``wait`` seconds.

    Attributes:
        queue: The queue's name, or None.
        step: The step's name.
        index: The step's position, from 0.
        phase: Which method failed.
        attempt: The number of the call that failed, from 1.
        error: What it raised.
        wait: Seconds until the next call, as the policy (or the
            ``ActionRetryException``) decided; under :func:`set_testing` the wait is
            skipped, but still reported here.

    .. versionadded:: 1.0
    """

    phase: Phase
    attempt: int
    error: BaseException
    wait: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFailed(StepEvent):
    """``execute`` failed for good; the run stops here.

    Attributes:
        queue: The queue's name, or None.
        step: The step's name.
        index: The step's position, from 0.
        attempt: The number of calls made, the failed one included.
        error: What the step's last call raised.

    .. versionadded:: 1.0
    """

    attempt: int
    error: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRolledBack(StepEvent):
    """``rollback`` returned.

    Attributes:
        queue: The queue's name, or None.
        step: The step's name.
        index: The step's position, from 0.
        attempt: The number of the call that returned, from 1.
        duration: Seconds since the step's first rollback attempt started, retries
            and waits included.

    .. versionadded:: 1.0
    """

    attempt: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackFailed(StepEvent):
    """``rollback`` failed for good; rollback goes on with the earlier steps.

    Attributes:
        queue: The queue's name, or None.
        step: The step's name.
        index: The step's position, from 0.
        attempt: The number of calls made, the failed one included.
        error: What the last call raised (recorded on the report, and logged).

    .. versionadded:: 1.0
    """

    attempt: int
    error: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """``execute()`` or ``rollback()`` has ended; ``report.status`` says how.

    Attributes:
        queue: The queue's name, or None.
        report: The run's report at that moment.

    .. versionadded:: 1.0
    """

    report: RunReport


Listener: TypeAlias = Callable[[Event], object]

_ALL_EVENTS: Final = (
    StepStarted,
    StepSucceeded,
    StepRetrying,
    StepFailed,
    StepRolledBack,
    RollbackFailed,
    RunFinished,
)


class LoggingListener:
    """Log events on the ``actionqueues`` logger (or another).

    Rollback failures are logged at ERROR with their traceback, failures and retries
    at WARNING, the rest at DEBUG. Messages count steps from 1, as reports do.
    Every queue has one of these subscribed to :class:`RollbackFailed` alone, so
    rollback failures are always logged; add ``LoggingListener()`` to a queue's
    listeners to log everything.

    Args:
        logger: Where to log; the ``actionqueues`` logger by default.
        events: The event types to log; all by default.

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        logger: logging.Logger = logger,
        *,
        events: Iterable[type[Event]] = _ALL_EVENTS,
    ) -> None:
        self.logger = logger
        self.events = frozenset(events)

    def __call__(self, event: Event) -> None:
        log = self.logger
        if isinstance(event, RollbackFailed):
            log.error(
                "rollback of step %d (%r)%s failed after %d attempt(s)%s",
                event.index + 1,
                event.step,
                _of(event.queue),
                event.attempt,
                "; rolling back the earlier steps anyway" if event.index else "",
                exc_info=event.error,
            )
        elif isinstance(event, StepFailed):
            log.warning(
                "step %d (%r)%s failed after %d attempt(s): %r",
                event.index + 1,
                event.step,
                _of(event.queue),
                event.attempt,
                event.error,
            )
        elif isinstance(event, StepRetrying):
            log.warning(
                "%s of step %d (%r)%s failed (attempt %d: %r); retrying in %.3fs",
                event.phase.value,
                event.index + 1,
                event.step,
                _of(event.queue),
                event.attempt,
                event.error,
                event.wait,
            )
        elif isinstance(event, RunFinished):
            log.debug("%s", event.report.summary())
        else:
            log.debug("%r", event)


def _of(queue: str | None) -> str:
    """The words " of queue 'name'", or nothing for an unnamed queue."""
    return "" if queue is None else f" of queue {queue!r}"


#: Always subscribed: rule E3, rollback failures are logged at ERROR.
_ROLLBACK_FAILURE_LOG: Final = LoggingListener(events=(RollbackFailed,))


class EventBus:
    """Delivers each event to the listeners subscribed to its type."""

    __slots__ = ("_by_type",)

    def __init__(self, listeners: Iterable[Listener]) -> None:
        try:
            chosen = list(listeners)
        except TypeError:
            msg = (
                f"listeners={listeners!r} is not a list of listeners. Pass a list, even "
                "for one listener: listeners=[my_listener]."
            )
            raise InvalidListenerError(msg) from None
        by_type: dict[type[Event], list[Listener]] = {}
        logged = False  # does a listener already log rollback failures on our logger?
        for listener in chosen:
            if not callable(listener):
                msg = (
                    f"Listener {listener!r} is not callable. A listener is a function (or "
                    "an object with __call__) that takes one event."
                )
                raise InvalidListenerError(msg)
            if is_async_callable(listener):
                msg = (
                    f"Listener {listener!r} is a coroutine function (async def); listeners "
                    "are called synchronously, also by AsyncActionQueue, and would never "
                    "be awaited. Use a plain function (it may schedule a task)."
                )
                raise InvalidListenerError(msg)
            kinds = _events_of(listener)
            for kind in kinds:
                by_type.setdefault(kind, []).append(listener)
            logged = logged or (
                type(listener) is LoggingListener
                and (listener.logger is logger or listener.logger.name.startswith("actionqueues."))
                and RollbackFailed in kinds
            )
        if not logged:  # rule E3: rollback failures are always logged
            by_type.setdefault(RollbackFailed, []).append(_ROLLBACK_FAILURE_LOG)
        self._by_type = {k: tuple(v) for k, v in by_type.items()}

    def wants(self, kind: type[Event]) -> bool:
        """Whether any listener is subscribed to ``kind``."""
        return kind in self._by_type

    def emit(self, event: Event) -> None:
        """Deliver ``event``; a listener's exception is logged, never propagated."""
        for listener in self._by_type.get(type(event), ()):
            try:
                listener(event)
            except Exception:
                logger.exception(
                    "listener %r raised while handling %s; ignored",
                    listener,
                    type(event).__name__,
                )


def _events_of(listener: Listener) -> frozenset[type[Event]]:
    wanted = getattr(listener, "events", None)
    if wanted is None:
        return frozenset(_ALL_EVENTS)
    try:
        kinds = frozenset(wanted)
    except TypeError:
        kinds = frozenset({wanted})
    bad = [k for k in kinds if not (isinstance(k, type) and issubclass(k, Event))]
    if bad:
        msg = (
            f"Listener {listener!r} has events={wanted!r}, but {bad[0]!r} is not an event "
            "type. Name event classes such as actionqueues.StepFailed."
        )
        raise InvalidListenerError(msg)
    # A base class (Event, StepEvent) subscribes to all its subclasses.
    return frozenset(e for e in _ALL_EVENTS if any(issubclass(e, k) for k in kinds))
