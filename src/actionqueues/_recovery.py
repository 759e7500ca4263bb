"""Recovery: claim interrupted runs and finish them (D5, D7, D8).

A run is interrupted when it is unfinished (running, failed, or rolling back) and
its lease has expired: its owner died, or dropped the queue without finishing. A
recoverer claims such runs one at a time, atomically, so that two recoverers never
take the same run, and then rolls back every step that is executing, executed or
rolling back, latest first, the executing one included (its outcome is unknown), or,
for a queue created with ``recovery="resume"`` that was still executing, executes it
again from the step that was executing (which must therefore be idempotent).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ._action import ActionLike
from ._durable import Registry, StateError
from ._durable import registry as default_registry
from ._errors import ActionQueueError
from ._events import Listener
from ._queue import ActionQueue
from ._report import RunReport
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._aio import AsyncActionQueue
from .journal import Journal, LeaseLostError, RunRecorder, RunRow, StepRow

# Step statuses that mean "execute was called": rolled back by recovery.
_TO_UNDO = frozenset({"executing", "executed", "failed", "rolling_back"})


class Recovered(NamedTuple):
    """What recovery did with one interrupted run.

    Attributes:
        run_id: The run's id in the journal.
        name: The queue's name.
        outcome: ``rolled_back``, ``rollback_failed``, ``completed`` (resumed to the
            end), ``skipped`` (left untouched: see ``problem``), or ``lost`` (another
            recoverer took it over midway).
        problem: Why a run was skipped or lost, else None.
        report: The report of what recovery ran, or None when it ran nothing.
        steps: The run's steps as the journal holds them afterwards.

    .. versionadded:: 1.0
    """

    run_id: str
    name: str | None
    outcome: str
    problem: str | None
    report: RunReport | None
    steps: list[StepRow]


def recover(
    journal: Journal,
    *,
    registry: Registry | None = None,
    listeners: Iterable[Listener] = (),
    retry: RetryPolicy | None = None,
    rollback_retry: RetryPolicy | None = None,
    limit: int | None = None,
) -> list[Recovered]:
    """Finish every interrupted run in ``journal``; one result per run claimed.

    A run whose action names are not in ``registry``, or whose state cannot be read
    back, is left untouched and reported as ``skipped`` (D8).

    Args:
        journal: Where the runs are.
        registry: Where action names are looked up; the default registry if None.
        listeners: Listeners for the recovered runs' events.
        retry: Retry policy for resumed steps' execute (policies are not journaled).
        rollback_retry: Retry policy for the rollbacks recovery makes.
        limit: Stop after this many runs.

    .. versionadded:: 1.0
    """
    return list(
        recovering(
            journal,
            registry=registry,
            listeners=listeners,
            retry=retry,
            rollback_retry=rollback_retry,
            limit=limit,
        )
    )


def recovering(
    journal: Journal,
    *,
    registry: Registry | None = None,
    listeners: Iterable[Listener] = (),
    retry: RetryPolicy | None = None,
    rollback_retry: RetryPolicy | None = None,
    limit: int | None = None,
) -> Iterator[Recovered]:
    """Like :func:`recover`, one result at a time, as each run is finished (for
    progress reports).

    .. versionadded:: 1.0
    """
    journal._check_open()  # a closed journal would claim runs and then hold them
    names = default_registry if registry is None else registry
    chosen = list(listeners)
    skipped: set[str] = set()
    count = 0
    while limit is None or count < limit:
        row = journal.claim(exclude=skipped)
        if row is None:
            return
        result = recover_run(journal, row, names, chosen, retry, rollback_retry)
        if result.outcome == "skipped":  # untouched, and free for a better-equipped recoverer
            skipped.add(row.id)
            journal.release(row.id)
        count += 1
        yield result


def recover_run(
    journal: Journal,
    row: RunRow,
    names: Registry,
    listeners: list[Listener],
    retry: RetryPolicy | None = None,
    rollback_retry: RetryPolicy | None = None,
) -> Recovered:
    """Finish one run this journal has just claimed."""
    steps = _steps(journal, row)
    try:
        actions = [names.decode(step.action, step.state) for step in steps]
    except KeyError as exc:
        problem = f"action name {exc.args[0]!r} is not registered; register it and recover again"
        return Recovered(row.id, row.name, "skipped", problem, None, steps)
    except StateError as exc:
        return Recovered(row.id, row.name, "skipped", str(exc), None, steps)
    # A run of async actions is recovered by an AsyncActionQueue, on an event loop of
    # its own (from inside a running loop, call recover() in a thread).
    mode, _, kind = row.mode.partition(":")
    asynchronous = kind == "async" or any(_is_async(action) for action in actions)
    if asynchronous and _loop_running():
        problem = (
            "its actions are async, and recover() was called from a running event loop, "
            "which it would block: call it in a thread, "
            "await asyncio.to_thread(recover, journal)"
        )
        return Recovered(row.id, row.name, "skipped", problem, None, steps)
    queue_class: type[ActionQueue | AsyncActionQueue] = ActionQueue
    if asynchronous:
        from ._aio import AsyncActionQueue  # imports asyncio: only when needed

        queue_class = AsyncActionQueue
    queue = queue_class(
        name=row.name,
        listeners=listeners,
        journal=journal,
        registry=names,
        retry=retry,
        rollback_retry=rollback_retry,
    )
    try:
        add_steps(queue, actions, steps)
    except ActionQueueError as exc:  # a decoder that built something add() refuses
        return Recovered(row.id, row.name, "skipped", str(exc), None, steps)
    recorder = RunRecorder(journal, row.id, row.claims)
    durable = queue._durable
    assert durable is not None
    durable.adopt(recorder, [step.action for step in steps])
    undo = [step.index for step in steps if step.status in _TO_UNDO]
    resume = mode == "resume" and row.status == "running"
    finish: Callable[[], object]
    if resume:
        done = 0
        while done < len(steps) and steps[done].status == "executed":
            done += 1
        group = steps[done].group if done < len(steps) else None
        if group is not None:  # a group, some of whose members executed: start it again
            done = group
        executed = {s.index for s in steps[done:] if s.status == "executed"}
        queue._prepare_resume(done, executed)
        finish = queue.run
    else:
        # Rollbacks that failed for good under an earlier claim still count.
        earlier = {s.index: s.rollback_error for s in steps if s.status == "rollback_failed"}
        settled = [s.index for s in steps if s.status in ("rolled_back", "rollback_failed")]
        queue._prepare_undo(max(undo) + 1 if undo else 0, earlier, settled)
        finish = queue.rollback
    try:
        if asynchronous:
            import asyncio

            asyncio.run(cast("Callable[[], Coroutine[Any, Any, object]]", finish)())
        else:
            finish()
    except LeaseLostError as exc:
        return Recovered(row.id, row.name, "lost", str(exc), queue.report, _steps(journal, row))
    except Exception:  # noqa: S110 - a resumed step failed: run() rolled back; reported below
        pass
    report = queue.report
    return Recovered(row.id, row.name, report.status.value, None, report, _steps(journal, row))


def add_steps(
    queue: ActionQueue | AsyncActionQueue, actions: list[object], steps: list[StepRow]
) -> None:
    """Add the journal's steps to ``queue``, with their names, and their parallel
    groups as groups again (only an async queue's run has any)."""
    i = 0
    while i < len(steps):
        first = steps[i].group
        if first is None:
            queue.add(cast("ActionLike", actions[i]), name=steps[i].name)
            i += 1
            continue
        end = i
        while end < len(steps) and steps[end].group == first:
            end += 1
        members = [cast("ActionLike", a) for a in actions[i:end]]
        queue._add_group(tuple(members), {}, [s.name for s in steps[i:end]])
        i = end


def _loop_running() -> bool:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # not even imported: no loop runs
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _is_async(action: object) -> bool:
    return any(
        inspect.iscoroutinefunction(getattr(action, method, None))
        for method in ("execute", "rollback")
    )


def _steps(journal: Journal, row: RunRow) -> list[StepRow]:
    loaded = journal.load(row.id)
    return [] if loaded is None else loaded[1]
