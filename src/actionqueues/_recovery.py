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

import contextlib
import inspect
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ._action import ActionLike
from ._durable import DurableRun
from ._errors import InvalidArgumentError, InvalidPolicyError, StateError
from ._events import EventBus, Listener
from ._queue import ActionQueue
from ._registry import Registry
from ._registry import registry as default_registry
from ._report import RunReport
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._aio import AsyncActionQueue
from ._errors import JournalError, LeaseLostError
from ._status import (
    FINISHED,
    MODES,
    SETTLED,
    STEP_STATUSES,
    TO_UNDO,
    Mode,
    Outcome,
    RunStatus,
    StepStatus,
)
from .journal import Journal, RunRow, StepRow
from .journal._base import is_whole

# Step statuses that mean "execute was called": rolled back by recovery.


class Recovered(NamedTuple):
    """What recovery did with one interrupted run.

    Attributes:
        run_id: The run's id in the journal.
        name: The queue's name, or None.
        outcome: ``rolled_back``, ``rollback_failed``, ``completed`` (resumed to the
            end), ``skipped`` (left untouched: see ``problem``), ``lost`` (another
            recoverer took it over midway), or ``interrupted`` (its journal failed
            midway: what was done is recorded, and the run is left for the next
            recovery).
        problem: Why a run was skipped, lost or interrupted, else None.
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

    An interrupted run is an unfinished one whose lease has expired: its owner died,
    or dropped its queue unfinished. Each is claimed atomically (two recoverers never
    take the same run), then rolled back (every step whose execute was called, latest
    first, the one that was executing included), or, for a queue created with
    ``recovery="resume"`` that was still executing, executed on from the step that
    was executing. A run whose action names are not in ``registry``, or whose state
    cannot be read back, is left untouched and reported as ``skipped``.

    A failure of a resumed step is not raised: the run is rolled back, and its
    result says so.

    Args:
        journal: Where the runs are; opened to write.
        registry: Where action names are looked up; the default registry if None.
        listeners: Listeners for the recovered runs' events.
        retry: Retry policy for resumed steps' execute (policies are not journaled).
        rollback_retry: Retry policy for the rollbacks recovery makes.
        limit: Stop after this many runs; None (the default) for no limit.

    Returns:
        What happened to each run claimed, in the order they were claimed; empty
        when no run was interrupted.

    Raises:
        InvalidArgumentError: ``journal`` is not a journal, ``registry`` not a
            :class:`Registry`, or ``limit`` not a whole number of at least 0.
        InvalidPolicyError: ``retry`` or ``rollback_retry`` is not a
            :class:`RetryPolicy`.
        InvalidListenerError: A listener is not callable, or subscribes to
            something that is not an event.
        JournalError: The journal is closed, read-only, or cannot be read or
            written.

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
    """Like :func:`recover`, one result at a time, as each run is finished.

    For progress reports. Nothing happens until the first result is asked for: then
    the arguments are checked (the errors below are raised from there), before any
    run is claimed; each next run is claimed only when its result is asked for.

    Args:
        journal: Where the runs are; opened to write.
        registry: Where action names are looked up; the default registry if None.
        listeners: Listeners for the recovered runs' events.
        retry: Retry policy for resumed steps' execute (policies are not journaled).
        rollback_retry: Retry policy for the rollbacks recovery makes.
        limit: Stop after this many runs; None (the default) for no limit.

    Yields:
        What happened to each run, as it is finished.

    Raises:
        InvalidArgumentError: ``journal`` is not a journal, ``registry`` not a
            :class:`Registry`, or ``limit`` not a whole number of at least 0.
        InvalidPolicyError: ``retry`` or ``rollback_retry`` is not a
            :class:`RetryPolicy`.
        InvalidListenerError: A listener is not callable, or subscribes to
            something that is not an event.
        JournalError: The journal is closed, read-only, or cannot be read or
            written.

    .. versionadded:: 1.0
    """
    # Everything is checked before the first claim: a claimed run would stay held.
    names, chosen = _checked(journal, registry, listeners, retry, rollback_retry, limit)
    after: tuple[float, str] | None = None  # the last run claimed: the next is past it
    # Runs left interrupted in this pass (their journal failed): released for the next
    # recovery, and moved past the cursor by their own writes, so excluded here.
    left: list[str] = []
    count = 0
    while limit is None or count < limit:
        row = journal.claim(left, after=after)
        if row is None:
            return
        after = (row.updated, row.id)
        try:
            result = recover_run(journal, row, names, chosen, retry, rollback_retry)
        except Exception as exc:  # whatever a damaged run raises, the others go on (D8)
            problem = f"cannot be recovered: {exc!r}"
            result = Recovered(row.id, row.name, Outcome.SKIPPED.value, problem, None, [])
        if result.outcome == Outcome.SKIPPED:  # untouched, and free for a better-equipped recoverer
            with contextlib.suppress(JournalError):  # else its lease expires by itself
                journal.release(row.id, unclaim=True, claim=row.claims)
        elif result.outcome == Outcome.INTERRUPTED:
            left.append(row.id)
        count += 1
        yield result


def _checked(
    journal: object,
    registry: object,
    listeners: object,
    retry: object,
    rollback_retry: object,
    limit: object,
) -> tuple[Registry, list[Listener]]:
    """recover()'s arguments, checked: the registry, and the listeners as a list."""
    if not isinstance(journal, Journal):
        msg = (
            f"recover({journal!r}): not a journal. Pass one: "
            "recover(actionqueues.open_journal(path_or_url))."
        )
        raise InvalidArgumentError(msg)
    journal._check_open()  # a closed journal would claim runs and then hold them
    journal._check_writable()
    if registry is not None and not isinstance(registry, Registry):
        msg = f"recover(registry={registry!r}): not an actionqueues.Registry."
        raise InvalidArgumentError(msg)
    for key, policy in (("retry", retry), ("rollback_retry", rollback_retry)):
        if policy is not None and not isinstance(policy, RetryPolicy):
            msg = f"recover({key}={policy!r}): not a RetryPolicy. Pass RetryPolicy(on=...)."
            raise InvalidPolicyError(msg)
    if limit is not None and not (is_whole(limit) and limit >= 0):  # type: ignore[operator]
        msg = f"recover(limit={limit!r}): a limit is a whole number of runs, 0 or more, or None."
        raise InvalidArgumentError(msg)
    chosen = list(listeners) if isinstance(listeners, Iterable) else listeners
    EventBus(chosen)  # type: ignore[arg-type]  # checks each listener
    return default_registry if registry is None else registry, chosen  # type: ignore[return-value]


def check_rows(row: RunRow, steps: list[StepRow]) -> str | None:
    """Why the journal's rows of a run cannot be recovered as they are (edited or
    damaged by hand), or None: recovery skips such a run rather than guess."""
    mode, _, kind = str(row.mode).partition(":")
    if mode not in MODES or kind not in ("", "async"):
        return f"its mode {row.mode!r} is not one this actionqueues knows"
    if type(row.steps) is not int or any(type(s.index) is not int for s in steps):
        return f"its step count or indexes are not whole numbers ({row.steps!r})"
    if [s.index for s in steps] != list(range(len(steps))) or len(steps) != row.steps:
        return (
            f"its step rows are damaged: indexes {[s.index for s in steps]!r} where 0 to "
            f"{row.steps - 1} were recorded"
        )
    for s in steps:
        if s.action == "":  # made by ``with_events`` of an event alone
            return f"step {s.index + 1} has events but no step row: its step rows are damaged"
        if s.status not in STEP_STATUSES:
            return f"step {s.index + 1} has the unknown status {s.status!r}"
        if not isinstance(s.state, str):
            return f"step {s.index + 1}'s state is not JSON text"
        group = s.group
        if group is not None and not (
            type(group) is int and 0 <= group <= s.index and steps[group].group == group
        ):
            return f"step {s.index + 1}'s parallel group {s.group!r} is not one of the run's"
    return None


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
    problem = check_rows(row, steps)
    if problem is not None:
        return Recovered(row.id, row.name, Outcome.SKIPPED.value, problem, None, steps)
    try:
        prepared = _rebuild(journal, row, steps, names, listeners, retry, rollback_retry)
    except KeyError as exc:
        problem = f"action name {exc.args[0]!r} is not registered; register it and recover again"
        return Recovered(row.id, row.name, Outcome.SKIPPED.value, problem, None, steps)
    except Exception as exc:  # anything a decoder or add() raises: D8, the run untouched
        problem = str(exc) if isinstance(exc, StateError) else f"cannot rebuild it: {exc!r}"
        return Recovered(row.id, row.name, Outcome.SKIPPED.value, problem, None, steps)
    if isinstance(prepared, str):
        return Recovered(row.id, row.name, Outcome.SKIPPED.value, prepared, None, steps)
    queue, durable, finish, asynchronous = prepared
    problem = None
    try:
        if asynchronous:
            import asyncio

            asyncio.run(cast("Callable[[], Coroutine[Any, Any, object]]", finish)())
        else:
            finish()
    except LeaseLostError as exc:
        return Recovered(
            row.id, row.name, Outcome.LOST.value, str(exc), queue.report, _steps(journal, row)
        )
    except JournalError as exc:
        problem = str(exc)
    except Exception:  # noqa: S110 - a resumed step failed: run() rolled back; reported below
        pass
    report = queue.report
    # What the journal holds is the outcome: a run whose end could not be recorded is
    # still interrupted, whatever this process did (its records say how far it got).
    if durable.status in FINISHED:
        outcome = str(durable.status)  # plain text, as a journal row's status
    else:
        outcome = Outcome.INTERRUPTED.value
        problem = problem or "its end could not be recorded; it is left for the next recovery"
        if not durable.finished:  # the queue has not given it up already
            durable.give_up(JournalError(problem), release=True)
    try:
        after = _steps(journal, row)
    except JournalError:
        after = steps
    return Recovered(row.id, row.name, outcome, problem, report, after)


_Prepared = tuple["ActionQueue | AsyncActionQueue", DurableRun, "Callable[[], object]", bool]


def _rebuild(
    journal: Journal,
    row: RunRow,
    steps: list[StepRow],
    names: Registry,
    listeners: list[Listener],
    retry: RetryPolicy | None,
    rollback_retry: RetryPolicy | None,
) -> _Prepared | str:
    """The queue that finishes the run, its durable run, what to call, and whether it is
    async; or why the run cannot be recovered here."""
    actions = [names.decode(step.action, step.state) for step in steps]
    # A run of async actions is recovered by an AsyncActionQueue, on an event loop of
    # its own (from inside a running loop, call recover() in a thread).
    mode, _, kind = row.mode.partition(":")
    asynchronous = kind == "async" or any(_is_async(action) for action in actions)
    if asynchronous and _loop_running():
        return (
            "its actions are async, and recover() was called from a running event loop, "
            "which it would block: call it in a thread, "
            "await asyncio.to_thread(recover, journal)"
        )
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
        recovery=mode,
    )
    add_steps(queue, actions, steps)
    durable = queue._durable
    assert durable is not None
    durable.adopt(row.id, row.claims, row.status, [step.action for step in steps])
    undo = [step.index for step in steps if step.status in TO_UNDO]
    resume = mode == Mode.RESUME and row.status == RunStatus.RUNNING
    finish: Callable[[], object]
    if resume:
        done = 0
        while done < len(steps) and steps[done].status == StepStatus.EXECUTED:
            done += 1
        group = steps[done].group if done < len(steps) else None
        if group is not None:  # a group, some of whose members executed: start it again
            done = group
        executed = {s.index for s in steps[done:] if s.status == StepStatus.EXECUTED}
        queue._prepare_resume(done, executed, max(undo) + 1 if undo else 0)
        finish = queue.run
    else:
        # Rollbacks that failed for good under an earlier claim still count.
        earlier = {
            s.index: s.rollback_error for s in steps if s.status == StepStatus.ROLLBACK_FAILED
        }
        settled = [s.index for s in steps if s.status in SETTLED]
        queue._prepare_undo(max(undo) + 1 if undo else 0, earlier, settled)
        finish = queue.rollback
    return queue, durable, finish, asynchronous


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
