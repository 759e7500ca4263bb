"""One status vocabulary: phases, step and run statuses, recovery's outcomes, and the sets.

The engine, the reports, the journal's rows, recovery and the command all speak it.
Every enum is a ``StrEnum`` whose values are the strings journals store, so a member
and the text read back from a journal compare equal, and nothing stored changes.
"""

from __future__ import annotations

import enum
from typing import Final


class Phase(enum.StrEnum):
    """Which method of an action a step event or attempt belongs to.

    .. versionadded:: 1.0
    """

    EXECUTE = "execute"
    ROLLBACK = "rollback"


class StepStatus(enum.StrEnum):
    """Where one step is.

    ``FAILED`` steps count as executed: rollback covers them (their ``execute`` was
    called, and may have done part of its work).

    .. versionadded:: 1.0
    """

    PENDING = "pending"
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


class RunStatus(enum.StrEnum):
    """A run's overall outcome.

    ``FAILED`` means execution stopped at a failure and nothing has been rolled back
    yet (``execute()`` raised and ``rollback()`` has not been called).

    .. versionadded:: 1.0
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


class Mode(enum.StrEnum):
    """What recovery does with a durable run whose process died (``recovery=``)."""

    ROLLBACK = "rollback"
    RESUME = "resume"


#: The values ``recovery=`` takes (a set of plain text, to check an argument against).
MODES: Final[frozenset[str]] = frozenset(Mode)


class Outcome(enum.StrEnum):
    """What recovery did with one run (``Recovered.outcome``)."""

    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    SKIPPED = "skipped"
    LOST = "lost"
    INTERRUPTED = "interrupted"


#: Not a status a journal stores: an unfinished run whose lease has expired, as
#: listings (``runs(status=...)``, the command) name it.
INTERRUPTED: Final = "interrupted"

#: Runs not finished: one of these whose lease has expired is recovered.
UNFINISHED: Final = (RunStatus.RUNNING, RunStatus.FAILED, RunStatus.ROLLING_BACK)
#: Runs finished: recovery never claims them.
FINISHED: Final = (RunStatus.COMPLETED, RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED)
#: What pruning deletes by default: runs that need nothing more from anyone. A run
#: that failed to roll back stays until an operator acts (DESIGN O3).
PRUNABLE: Final = (RunStatus.COMPLETED, RunStatus.ROLLED_BACK)
#: Every status a listing may ask for: the stored ones, and ``interrupted``.
LISTABLE: Final = (*UNFINISHED, INTERRUPTED, *FINISHED)

#: Every status a step's row may hold.
STEP_STATUSES: Final = frozenset(StepStatus)
#: Steps that recovery rolls back: their ``execute`` was called (the executing one's
#: outcome is unknown, D5), or their rollback had begun.
TO_UNDO: Final = frozenset(
    {StepStatus.EXECUTING, StepStatus.EXECUTED, StepStatus.FAILED, StepStatus.ROLLING_BACK}
)
#: Step statuses of the rollback phase: their attempts and error are the rollback's.
ROLLBACK_STATUSES: Final = frozenset(
    {StepStatus.ROLLING_BACK, StepStatus.ROLLED_BACK, StepStatus.ROLLBACK_FAILED}
)
#: A step's rollback is over, well or not: recovery does not run it again.
SETTLED: Final = frozenset({StepStatus.ROLLED_BACK, StepStatus.ROLLBACK_FAILED})
