"""The step context: which durable step is running, and its idempotency key (D6)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple

from ._status import Phase


class StepContext(NamedTuple):
    """The durable step being executed or rolled back right now.

    Attributes:
        run_id: The run's id in the journal.
        index: The step's position, from 0.
        name: The step's name.
        phase: ``execute`` or ``rollback``.
        attempt: The call's attempt number in this phase, from 1.
        claim: How many times the run has been claimed: 0 for its first owner, then
            one more for each recovery.

    .. versionadded:: 1.0
    """

    run_id: str
    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose
    name: str
    phase: Phase
    attempt: int
    claim: int

    @property
    def key(self) -> str:
        """The step's idempotency key, the same across retries, rollback and recovery.

        It is ``"<run id>/<step index>"``; see :func:`idempotency_key`.
        """
        return f"{self.run_id}/{self.index}"


_CURRENT: ContextVar[StepContext | None] = ContextVar("actionqueues_step", default=None)


def current_step() -> StepContext:
    """The durable step whose ``execute`` or ``rollback`` is running now.

    Returns:
        The step's run id, index, name, phase, attempt and claim; its
        :attr:`StepContext.key`.

    Raises:
        LookupError: Not called from inside a durable queue's action.

    .. versionadded:: 1.0
    """
    step = _CURRENT.get()
    if step is None:
        msg = (
            "current_step() is only available inside execute() or rollback() of an "
            "action run by a durable queue (ActionQueue(journal=...))."
        )
        raise LookupError(msg)
    return step


def idempotency_key() -> str:
    """The running durable step's idempotency key.

    Pass it to payment APIs and the like, so that a step executed again after a
    crash (or retried) is not applied twice. It is the same for a step's every
    attempt, its rollback, and its recovery: ``"<run id>/<step index>"``.

    Returns:
        The key, ``current_step().key``.

    Raises:
        LookupError: Not called from inside a durable queue's action.

    .. versionadded:: 1.0
    """
    return current_step().key
