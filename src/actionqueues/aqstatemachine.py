"""0.8.2 import path: ``from actionqueues.aqstatemachine import AQStateMachine``."""

from ._lifecycle import (
    AQStateMachine,
    AQStateMachine_ADD,
    AQStateMachine_EXECUTE,
    AQStateMachine_EXECUTE_COMPLETE,
    AQStateMachine_INIT,
    AQStateMachine_ROLLBACK,
    AQStateMachine_ROLLBACK_COMPLETE,
)

__all__ = [
    "AQStateMachine",
    "AQStateMachine_ADD",
    "AQStateMachine_EXECUTE",
    "AQStateMachine_EXECUTE_COMPLETE",
    "AQStateMachine_INIT",
    "AQStateMachine_ROLLBACK",
    "AQStateMachine_ROLLBACK_COMPLETE",
]
