"""Reports: what happened to every step of a run, built only when someone asks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NamedTuple, cast

from ._status import RunStatus, StepStatus


class StepReport(NamedTuple):
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
        group: For a member of a parallel group (``AsyncActionQueue.add_parallel``),
            the index of the group's first member; else None.

    .. versionadded:: 1.0
    .. versionchanged:: 1.0
       ``group``.
    """

    # A named tuple: immutable, and about ten times cheaper to build than a frozen
    # dataclass, which matters because a report has one per step.
    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose
    name: str
    status: StepStatus
    attempts: int = 0
    duration: float | None = None
    result: object = None
    error: BaseException | None = None
    rollback_attempts: int = 0
    rollback_duration: float | None = None
    rollback_error: BaseException | None = None
    group: int | None = None


class RunReport:
    """What happened to a run and every one of its steps.

    A report is a snapshot taken when it is asked for; its per-step part is built on
    first use, so a report nobody reads costs next to nothing. Queues build reports
    (:attr:`ActionQueue.report`, ``run()``'s result, :func:`report_of`); there is no
    need to make one by hand.

    Args:
        name: The queue's name, or None.
        status: The run's outcome so far.
        steps: The steps' reports, or a function that builds them on first use.
        total: The number of steps in the run.
        error: The exception that stopped execution, or None.
        duration: Seconds the run took, or None when not measured.
        failed: The index and name of the step whose failure stopped execution, or
            None.
        rolled_back: How many steps' rollbacks have been tried so far.
        rollback_failures: The name of each step whose rollback failed for good,
            with its exception, in the order the steps were rolled back.

    Attributes:
        name: The queue's name, if it was given one.
        status: The run's outcome so far.
        steps: One report per step, in the order they were added.
        error: The exception that stopped execution, if any.
        duration: Seconds spent in ``execute`` and ``rollback`` together, or None
            when the queue did not measure time (see ``ActionQueue(timings=)``).

    .. versionadded:: 1.0
    """

    __slots__ = (
        "_build",
        "_failed",
        "_rollback_failures",
        "_rolled_back",
        "_steps",
        "_total",
        "duration",
        "error",
        "name",
        "status",
    )

    name: str | None
    status: RunStatus
    error: BaseException | None
    duration: float | None

    def __init__(
        self,
        name: str | None,
        status: RunStatus,
        steps: tuple[StepReport, ...] | Callable[[], tuple[StepReport, ...]],
        total: int,
        error: BaseException | None = None,
        duration: float | None = None,
        failed: tuple[int, str] | None = None,
        rolled_back: int = 0,
        rollback_failures: tuple[tuple[str, BaseException], ...] = (),
    ) -> None:
        # Built by the queue, not by hand (positional arguments: a run() returns one,
        # so this is on the hot path). ``steps`` may be a function that builds them;
        # ``failed`` is the index and name of the step that failed.
        self.name = name
        self.status = status
        self.error = error
        self.duration = duration
        self._total = total
        self._failed = failed
        self._rolled_back = rolled_back
        self._rollback_failures = rollback_failures
        if callable(steps):
            self._steps: tuple[StepReport, ...] | None = None
            self._build: Callable[[], tuple[StepReport, ...]] | None = steps
        else:
            self._steps, self._build = steps, None

    @property
    def steps(self) -> tuple[StepReport, ...]:
        """One report per step, in the order they were added."""
        steps = self._steps
        if steps is None:
            # Two threads may both build: the same content, and ``_build`` stays set.
            steps = self._steps = cast("Callable[[], tuple[StepReport, ...]]", self._build)()
        return steps

    def __reduce__(self) -> tuple[object, ...]:
        # Pickle data only, never the queue a lazy report would build from.
        return (
            RunReport,
            (
                self.name,
                self.status,
                self.steps,
                self._total,
                self.error,
                self.duration,
                self._failed,
                self._rolled_back,
                self._rollback_failures,
            ),
        )

    @property
    def failed_step(self) -> StepReport | None:
        """The step whose failure stopped execution, if any."""
        return None if self._failed is None else self.steps[self._failed[0]]

    @property
    def cancelled(self) -> bool:
        """True when execution was stopped by a cancellation or an interrupt.

        That is, the task running an ``AsyncActionQueue`` was cancelled
        (``CancelledError``), or a step got a ``KeyboardInterrupt``.

        .. versionadded:: 1.0
        """
        error = self.error
        if isinstance(error, KeyboardInterrupt):
            return True
        aio = sys.modules.get("asyncio")  # no asyncio imported: nothing was cancelled
        return aio is not None and isinstance(error, aio.CancelledError)

    @property
    def ok(self) -> bool:
        """True when every step executed and nothing was rolled back."""
        return self.status is RunStatus.COMPLETED

    @property
    def rollback_errors(self) -> tuple[BaseException, ...]:
        """Rollback failures, in the order the steps were rolled back."""
        return tuple(error for _, error in self._rollback_failures)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunReport):
            return NotImplemented
        return (self.name, self.status, self.error, self.duration, self.steps) == (
            other.name,
            other.status,
            other.error,
            other.duration,
            other.steps,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"RunReport(name={self.name!r}, status={self.status!r}, "
            f"steps=<{self._total} steps>, error={self.error!r})"
        )

    def summary(self) -> str:
        """One line saying how the run ended.

        Returns:
            The line, for instance
            ``run 'signup': step 2 of 3 ('charge') failed with ValueError; rolled back 2 steps``.
        """
        label = f"run {self.name!r}" if self.name else "run"
        if self._failed is None:
            head = f"{label} {self.status.value.replace('_', ' ')}"
            if self.error is not None:  # it came between two steps, not from one
                head += f" after {type(self.error).__name__} between steps"
        else:
            index, name = self._failed
            kind = type(self.error).__name__
            how = f"was cancelled ({kind})" if self.cancelled else f"failed with {kind}"
            head = f"{label}: step {index + 1} of {self._total} ({name!r}) {how}"
        undone = self._rolled_back
        if undone:
            head += f"; rolled back {undone} step{'s' * (undone != 1)}"
            bad = self._rollback_failures
            if bad:
                names = ", ".join(f"{n!r} ({type(e).__name__}: {e})" for n, e in bad)
                head += f", {len(bad)} of them failed: {names}"
        return head

    def format(self) -> str:
        """A table of the steps, one line each, under the summary; also ``str(report)``.

        A parallel group's members are marked with the number of the group's first
        step, in brackets.

        Returns:
            The :meth:`summary` line, then a header row, then one row per step with
            its number, name, status, tries, rollback tries, seconds, and the error,
            if any.
        """
        rows = [("#", "step", "status", "tries", "undos", "seconds", "detail")]
        for s in self.steps:
            timed = [d for d in (s.duration, s.rollback_duration) if d is not None]
            bad = s.rollback_error if s.rollback_error is not None else s.error
            mark = f" [{s.group + 1}]" if s.group is not None else ""
            rows.append(
                (
                    str(s.index + 1),
                    s.name + mark,
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
