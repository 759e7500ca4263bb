"""Reports: what happened to every step of a run, built only when someone asks."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(enum.StrEnum):
    """Which method of an action a step event or attempt belongs to."""

    EXECUTE = "execute"
    ROLLBACK = "rollback"


class StepStatus(enum.StrEnum):
    """Where one step is.

    ``FAILED`` steps count as executed: rollback covers them (rule S3).
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
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepReport:
    """What happened to one step.

    Attributes:
        index: Position in the queue, from 0.
        name: The step's name (``add(..., name=)``, else the function's or class's).
        status: Where the step ended up.
        attempts: Calls to ``execute`` (0 if it was never called).
        duration: Seconds spent executing, retries and waits included, or None
            when the queue did not measure time (see ``ActionQueue(timings=)``).
        result: What ``execute`` returned on success.
        error: What ``execute`` raised when it failed for good.
        rollback_attempts: Calls to ``rollback``.
        rollback_duration: Seconds spent rolling back, or None.
        rollback_error: What ``rollback`` raised when it failed for good.

    .. versionadded:: 1.0
    """

    index: int
    name: str
    status: StepStatus
    attempts: int = 0
    duration: float | None = None
    result: object = None
    error: BaseException | None = None
    rollback_attempts: int = 0
    rollback_duration: float | None = None
    rollback_error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    """What happened to a run and every one of its steps.

    Attributes:
        name: The queue's name, if it was given one.
        status: The run's outcome so far.
        steps: One report per step, in the order they were added.
        error: The exception that stopped execution, if any.
        duration: Seconds spent in ``execute`` and ``rollback`` together, or None
            when the queue did not measure time (see ``ActionQueue(timings=)``).

    .. versionadded:: 1.0
    """

    name: str | None
    status: RunStatus
    steps: tuple[StepReport, ...]
    error: BaseException | None = None
    duration: float | None = None

    @property
    def ok(self) -> bool:
        """True when every step executed and nothing was rolled back."""
        return self.status is RunStatus.COMPLETED

    @property
    def failed_step(self) -> StepReport | None:
        """The step whose failure stopped execution, if any."""
        for step in self.steps:
            if step.error is not None:
                return step
        return None

    @property
    def rollback_errors(self) -> tuple[BaseException, ...]:
        """Rollback failures, in the order the steps were rolled back."""
        return tuple(s.rollback_error for s in reversed(self.steps) if s.rollback_error is not None)

    def summary(self) -> str:
        """One line saying how the run ended."""
        label = f"run {self.name!r}" if self.name else "run"
        total = len(self.steps)
        failed = self.failed_step
        if failed is None:
            head = f"{label} {self.status.value.replace('_', ' ')}"
        else:
            head = (
                f"{label}: step {failed.index + 1} of {total} ({failed.name!r}) failed "
                f"with {type(failed.error).__name__}"
            )
        undone = [s for s in self.steps if s.rollback_attempts]
        if undone:
            head += f"; rolled back {len(undone)} step{'s' * (len(undone) != 1)}"
            bad = [s for s in reversed(self.steps) if s.rollback_error is not None]
            if bad:
                names = ", ".join(
                    f"{s.name!r} ({type(s.rollback_error).__name__}: {s.rollback_error})"
                    for s in bad
                )
                head += f", {len(bad)} of them failed: {names}"
        return head

    def format(self) -> str:
        """A table of the steps, one line each, under the summary."""
        rows = [("#", "step", "status", "tries", "undos", "seconds", "detail")]
        for s in self.steps:
            timed = [d for d in (s.duration, s.rollback_duration) if d is not None]
            bad = s.rollback_error if s.rollback_error is not None else s.error
            rows.append(
                (
                    str(s.index + 1),
                    s.name,
                    s.status.value,
                    str(s.attempts),
                    str(s.rollback_attempts),
                    f"{sum(timed):.6f}" if timed else "-",
                    f"{type(bad).__name__}: {bad}" if bad is not None else "",
                )
            )
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r[:6], widths, strict=True)) + "  " + r[6]
            for r in rows
        ]
        return "\n".join([self.summary(), *(line.rstrip() for line in lines)])

    def __str__(self) -> str:
        return self.format()
