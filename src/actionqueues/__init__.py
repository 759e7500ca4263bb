"""Run a sequence of side-effecting actions, with rollback on failure and retries.

The public API lives here; the 0.8.2 modules (``actionqueues.actionqueue``,
``actionqueues.action``, ``actionqueues.exceptionfactory``,
``actionqueues.aqstatemachine``) re-export their old names.
"""

import typing as _typing

from . import _events, _registry, action, actionqueue, aqstatemachine, exceptionfactory, journal
from ._action import Action, ActionLike, FunctionAction
from ._build import StepOptions
from ._context import StepContext, current_step, idempotency_key
from ._errors import (
    ActionQueueError,
    ActionRetryException,
    InvalidActionError,
    InvalidArgumentError,
    InvalidBackoffError,
    InvalidListenerError,
    InvalidPolicyError,
    LifecycleError,
    RollbackError,
    StateError,
)
from ._events import (
    Event,
    LoggingListener,
    RollbackFailed,
    RunFinished,
    StepEvent,
    StepFailed,
    StepRetrying,
    StepRolledBack,
    StepStarted,
    StepSucceeded,
)
from ._lifecycle import AQStateMachine
from ._queue import ActionQueue
from ._recovery import Recovered, recover, recovering
from ._registry import Registry, durable
from ._report import RunReport, StepReport
from ._reporting import report_of
from ._retry import (
    DoublingBackoffExceptionFactory,
    RetryPolicy,
    is_testing,
    set_testing,
)
from ._status import Phase, RunStatus, StepStatus
from .journal import JournalError, LeaseLostError, MemoryJournal, SQLiteJournal, open_journal

if _typing.TYPE_CHECKING:
    from ._aio import AsyncActionQueue

__version__ = "1.0.0.dev0"

# Assigned here, not imported: autodoc reads the ``#:`` comment of the module the
# reference names, and that is this one.

#: The type of a listener, any callable that takes one :class:`Event`.
#:
#: What it returns is ignored. Give it an ``events`` attribute, an event class or
#: a collection of them, to receive only those (a base class such as
#: :class:`StepEvent` stands for all its subclasses). A listener is called
#: synchronously, in the thread (or event loop) that runs the queue; one that
#: raises is logged and ignored.
Listener: _typing.TypeAlias = _events.Listener

#: The default :class:`Registry`, where :func:`durable` registers action classes.
#:
#: Durable queues and :func:`recover` look names up there unless given
#: ``registry=``.
registry: _typing.Final = _registry.registry

__all__ = [
    "AQStateMachine",
    "Action",
    "ActionLike",
    "ActionQueue",
    "ActionQueueError",
    "ActionRetryException",
    "AsyncActionQueue",
    "DoublingBackoffExceptionFactory",
    "Event",
    "FunctionAction",
    "InvalidActionError",
    "InvalidArgumentError",
    "InvalidBackoffError",
    "InvalidListenerError",
    "InvalidPolicyError",
    "JournalError",
    "LeaseLostError",
    "LifecycleError",
    "Listener",
    "LoggingListener",
    "MemoryJournal",
    "Phase",
    "Recovered",
    "Registry",
    "RetryPolicy",
    "RollbackError",
    "RollbackFailed",
    "RunFinished",
    "RunReport",
    "RunStatus",
    "SQLiteJournal",
    "StateError",
    "StepContext",
    "StepEvent",
    "StepFailed",
    "StepOptions",
    "StepReport",
    "StepRetrying",
    "StepRolledBack",
    "StepStarted",
    "StepStatus",
    "StepSucceeded",
    "action",
    "actionqueue",
    "aqstatemachine",
    "current_step",
    "durable",
    "exceptionfactory",
    "idempotency_key",
    "is_testing",
    "journal",
    "open_journal",
    "recover",
    "recovering",
    "registry",
    "report_of",
    "set_testing",
]


def __getattr__(name: str) -> _typing.Any:
    # AsyncActionQueue is imported on first use: it brings asyncio (some 25 ms),
    # which a sync program (or the command) need not load.
    if name == "AsyncActionQueue":
        from ._aio import AsyncActionQueue

        return AsyncActionQueue
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
