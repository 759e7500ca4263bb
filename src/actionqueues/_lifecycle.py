"""The queue's lifecycle (rule S8): add any number of times, execute once, roll back once.

One table says which operation is allowed in which state and, when it is not, what the
caller should do instead. The engine and 0.8.2's ``AQStateMachine`` both read it.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

from ._errors import LifecycleError

Operation = Literal["add", "execute", "rollback"]


class QueueState(enum.Enum):
    """Where a queue is in its life."""

    NEW = "new"
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"

    # Enum's own __hash__ is written in Python; members are unique, so identity will do.
    __hash__ = object.__hash__


# Tuples, not sets: Enum's __hash__ is written in Python and slow.
ALLOWED: Final[dict[Operation, tuple[QueueState, ...]]] = {
    "add": (QueueState.NEW,),
    "execute": (QueueState.NEW,),
    "rollback": (QueueState.EXECUTED, QueueState.FAILED),
}

_NEW_QUEUE = "Create a new ActionQueue for a new run."
_REENTERED = "(from inside one of its actions?)"
_WHY: Final[dict[tuple[Operation, QueueState], str]] = {
    ("add", QueueState.EXECUTING): (
        "Cannot add an action while the queue is executing. Add every action before "
        "calling execute() or run()."
    ),
    ("add", QueueState.EXECUTED): (
        "Cannot add an action to a queue that has already been executed. " + _NEW_QUEUE
    ),
    ("add", QueueState.FAILED): (
        "Cannot add an action to a queue that has already been executed (it failed). " + _NEW_QUEUE
    ),
    ("add", QueueState.ROLLING_BACK): (
        f"Cannot add an action while the queue is rolling back {_REENTERED}. " + _NEW_QUEUE
    ),
    ("add", QueueState.ROLLED_BACK): (
        "Cannot add an action to a queue that has already been rolled back. " + _NEW_QUEUE
    ),
    ("execute", QueueState.EXECUTING): (
        f"execute() was called while the queue is already executing {_REENTERED}. A queue "
        "runs once; create a new ActionQueue for a new run."
    ),
    ("execute", QueueState.EXECUTED): (
        "Cannot execute a queue twice: it has already been executed. Call rollback() to "
        "undo it, or create a new ActionQueue for a new run."
    ),
    ("execute", QueueState.FAILED): (
        "Cannot execute a queue twice: its execution has already failed. Call rollback() "
        "to undo the executed steps, then create a new ActionQueue to try again."
    ),
    ("execute", QueueState.ROLLING_BACK): (
        f"execute() was called while the queue is rolling back {_REENTERED}. " + _NEW_QUEUE
    ),
    ("execute", QueueState.ROLLED_BACK): (
        "Cannot execute a queue that has already been executed and rolled back. " + _NEW_QUEUE
    ),
    ("rollback", QueueState.NEW): (
        "Cannot roll back a queue that has not been executed. Call execute() first, or "
        "use run(), which rolls back for you when an action fails."
    ),
    ("rollback", QueueState.EXECUTING): (
        "Cannot roll back while the queue is executing. Call rollback() after execute() "
        "has returned or raised."
    ),
    ("rollback", QueueState.ROLLING_BACK): (
        f"rollback() was called while the queue is already rolling back {_REENTERED}. A "
        "queue is rolled back at most once."
    ),
    ("rollback", QueueState.ROLLED_BACK): (
        "Cannot roll back a queue twice: it has already been rolled back. " + _NEW_QUEUE
    ),
}


def lifecycle_error(operation: Operation, state: QueueState) -> LifecycleError:
    """The error for ``operation`` attempted in ``state``, saying what to do instead."""
    return LifecycleError(_WHY[operation, state])


def check(operation: Operation, state: QueueState) -> None:
    """Raise :class:`LifecycleError` unless ``operation`` is allowed in ``state``."""
    if state not in ALLOWED[operation]:
        raise lifecycle_error(operation, state)


# 0.8.2's integer states, kept for code that reads AQStateMachine.state.
AQStateMachine_INIT: Final = 0
AQStateMachine_ADD: Final = 1
AQStateMachine_EXECUTE: Final = 2
AQStateMachine_ROLLBACK: Final = 3
AQStateMachine_EXECUTE_COMPLETE: Final = 4
AQStateMachine_ROLLBACK_COMPLETE: Final = 5

_FROM_LEGACY: Final[dict[int, QueueState]] = {
    AQStateMachine_INIT: QueueState.NEW,
    AQStateMachine_ADD: QueueState.NEW,
    AQStateMachine_EXECUTE: QueueState.EXECUTING,
    AQStateMachine_EXECUTE_COMPLETE: QueueState.EXECUTED,
    AQStateMachine_ROLLBACK: QueueState.ROLLING_BACK,
    AQStateMachine_ROLLBACK_COMPLETE: QueueState.ROLLED_BACK,
}


class AQStateMachine:
    """0.8.2's lifecycle object, kept for code that used it directly.

    ``state`` is one of the ``AQStateMachine_*`` integers. Moves follow the queue's
    table, with 0.8.2's two differences: ``transition_to_execute()`` needs a
    ``transition_to_add()`` first, and ``transition_to_rollback()`` is allowed from
    ``EXECUTE`` too (0.8.2 could not tell a failed execution from a running one). An
    illegal move raises :class:`LifecycleError`, an ``AssertionError``.
    """

    def __init__(self) -> None:
        self.state: int = AQStateMachine_INIT

    def _move(self, operation: Operation, to: int) -> None:
        current = _FROM_LEGACY.get(self.state) if isinstance(self.state, int) else None
        if current is None:
            msg = (
                f"AQStateMachine.state is {self.state!r}, which is none of the "
                "AQStateMachine_* states; set it to one of them."
            )
            raise LifecycleError(msg)
        if operation == "rollback" and current is QueueState.EXECUTING:
            current = QueueState.FAILED  # 0.8.2: a failed execute stays in EXECUTE
        if operation == "execute" and self.state == AQStateMachine_INIT:
            msg = "0.8.2's AQStateMachine needs transition_to_add() before transition_to_execute()."
            raise LifecycleError(msg)
        check(operation, current)
        self.state = to

    def transition_to_add(self) -> None:
        """Record an ``add()``: from ``INIT`` or ``ADD``, to ``ADD``.

        Raises:
            LifecycleError: The queue has started executing, or ``state`` is not one
                of the ``AQStateMachine_*`` states.
        """
        self._move("add", AQStateMachine_ADD)

    def transition_to_execute(self) -> None:
        """Record the start of ``execute()``: from ``ADD``, to ``EXECUTE``.

        Raises:
            LifecycleError: Nothing was added yet (0.8.2 needed an ``add()`` first),
                the queue was already executed, or ``state`` is not one of the
                ``AQStateMachine_*`` states.
        """
        self._move("execute", AQStateMachine_EXECUTE)

    def transition_to_execute_complete(self) -> None:
        """Record that ``execute()`` finished without an exception: to ``EXECUTE_COMPLETE``.

        Raises:
            LifecycleError: The state is not ``EXECUTE``.
        """
        if self.state != AQStateMachine_EXECUTE:
            msg = (
                "transition_to_execute_complete() is only valid while executing; "
                "call transition_to_execute() first."
            )
            raise LifecycleError(msg)
        self.state = AQStateMachine_EXECUTE_COMPLETE

    def transition_to_rollback(self) -> None:
        """Record the start of ``rollback()``: from ``EXECUTE`` or ``EXECUTE_COMPLETE``.

        Raises:
            LifecycleError: The queue was not executed, was already rolled back, or
                ``state`` is not one of the ``AQStateMachine_*`` states.
        """
        self._move("rollback", AQStateMachine_ROLLBACK)

    def transition_to_rollback_complete(self) -> None:
        """Record that ``rollback()`` finished: to ``ROLLBACK_COMPLETE``.

        Raises:
            LifecycleError: The state is not ``ROLLBACK``.
        """
        if self.state != AQStateMachine_ROLLBACK:
            msg = (
                "transition_to_rollback_complete() is only valid while rolling back; "
                "call transition_to_rollback() first."
            )
            raise LifecycleError(msg)
        self.state = AQStateMachine_ROLLBACK_COMPLETE
