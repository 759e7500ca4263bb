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


# Tuples, not sets: Enum's __hash__ is written in Python and slow.
ALLOWED: Final[dict[Operation, tuple[QueueState, ...]]] = {
    "add": (QueueState.NEW,),
    "execute": (QueueState.NEW,),
    "rollback": (QueueState.EXECUTED, QueueState.FAILED),
}

_NEW_QUEUE = "Create a new ActionQueue for a new run."
_WHY: Final[dict[tuple[Operation, QueueState], str]] = {
    ("add", QueueState.EXECUTING): (
        "Cannot add an action while the queue is executing. Add every action before "
        "calling execute() or run()."
    ),
    ("execute", QueueState.EXECUTING): (
        "execute() was called while the queue is already executing (from inside one of "
        "its actions?). A queue runs once; " + _NEW_QUEUE[0].lower() + _NEW_QUEUE[1:]
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
        "rollback() was called while the queue is already rolling back (from inside one "
        "of its actions?). A queue is rolled back at most once."
    ),
    ("rollback", QueueState.ROLLED_BACK): (
        "Cannot roll back a queue twice: it has already been rolled back. " + _NEW_QUEUE
    ),
}


def lifecycle_error(operation: Operation, state: QueueState) -> LifecycleError:
    """The error for ``operation`` attempted in ``state``, saying what to do instead."""
    message = _WHY.get((operation, state))
    if message is None:
        verb = {"add": "add an action to", "execute": "execute", "rollback": "roll back"}
        message = (
            f"Cannot {verb[operation]} a queue that has already been {state.value}. " + _NEW_QUEUE
        )
    return LifecycleError(message)


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

_LEGACY: Final[dict[QueueState, int]] = {
    QueueState.NEW: AQStateMachine_ADD,
    QueueState.EXECUTING: AQStateMachine_EXECUTE,
    # 0.8.2 left a failed execution in EXECUTE; rollback was allowed from there.
    QueueState.FAILED: AQStateMachine_EXECUTE,
    QueueState.EXECUTED: AQStateMachine_EXECUTE_COMPLETE,
    QueueState.ROLLING_BACK: AQStateMachine_ROLLBACK,
    QueueState.ROLLED_BACK: AQStateMachine_ROLLBACK_COMPLETE,
}


class AQStateMachine:
    """0.8.2's lifecycle object, kept for code that used it directly.

    ``state`` is one of the ``AQStateMachine_*`` integers. Moves follow the same table as
    the queue; an illegal move raises :class:`LifecycleError` (an ``AssertionError``).
    Because 0.8.2 could not tell a failed execution from a running one,
    ``transition_to_rollback()`` is allowed from ``EXECUTE`` too.
    """

    def __init__(self) -> None:
        self._state = QueueState.NEW
        self._added = False

    @property
    def state(self) -> int:
        """The 0.8.2 integer for the current state."""
        if self._state is QueueState.NEW and not self._added:
            return AQStateMachine_INIT
        return _LEGACY[self._state]

    def transition_to_add(self) -> None:
        """Record an ``add()``."""
        check("add", self._state)
        self._added = True

    def transition_to_execute(self) -> None:
        """Record the start of ``execute()``."""
        check("execute", self._state)
        self._state = QueueState.EXECUTING

    def transition_to_execute_complete(self) -> None:
        """Record that ``execute()`` finished without an exception."""
        if self._state is not QueueState.EXECUTING:
            raise LifecycleError(
                "transition_to_execute_complete() is only valid while executing; "
                "call transition_to_execute() first."
            )
        self._state = QueueState.EXECUTED

    def transition_to_rollback(self) -> None:
        """Record the start of ``rollback()``."""
        state = self._state
        if state is QueueState.EXECUTING:  # 0.8.2: a failed execute stays in EXECUTE
            state = QueueState.FAILED
        check("rollback", state)
        self._state = QueueState.ROLLING_BACK

    def transition_to_rollback_complete(self) -> None:
        """Record that ``rollback()`` finished."""
        if self._state is not QueueState.ROLLING_BACK:
            raise LifecycleError(
                "transition_to_rollback_complete() is only valid while rolling back; "
                "call transition_to_rollback() first."
            )
        self._state = QueueState.ROLLED_BACK
