"""The durable run: what a durable queue adds to a run, and its journal records.

The driver tells it each step transition; it encodes the actions' states, sets the
step context that :func:`~actionqueues.current_step` reads, and turns each
transition into a journal write (D1-D4).
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING

from ._action import FunctionAction
from ._context import _CURRENT, StepContext
from ._errors import InvalidActionError
from ._registry import Registry
from ._status import Phase

if TYPE_CHECKING:
    import asyncio
from ._status import FINISHED, RunStatus
from .journal import Journal, NewRun, StepChange
from .journal._base import logger


class DurableRun:
    """What a durable queue adds to a run: its journal records, its states, its context.

    The driver tells it each step transition. It encodes the actions' states, sets
    the step context that :func:`~actionqueues.current_step` reads, and turns each
    transition into a journal write: before a step's first call its "executing"
    record is committed (D1); once the call returns, its "executed" record with the
    state after (D2), so that a rollback after a crash sees, say, the key of the row
    the step created. Rollback likewise (D3), and the run's outcome (D4). The run
    itself is inserted with its first record.

    A step's "executed" (or "rolled back") record may wait for the next write
    instead (:meth:`step_pending`): one commit per step rather than two, when the
    core says nothing runs between the two (``Core._done_waits``).

    While the run is begun (or adopted) and unfinished, and this object lives, the
    journal's heartbeat renews the run's lease.
    """

    __slots__ = (
        "__weakref__",
        "_guard",
        "_lock",
        "begun",
        "claim",
        "entered",
        "finished",
        "journal",
        "mode",
        "names",
        "new",
        "pending",
        "previous",
        "registry",
        "run_id",
        "states",
        "status",
    )

    def __init__(
        self,
        journal: Journal,
        registry: Registry,
        mode: str,
        run_id: str | None,
    ) -> None:
        self.journal = journal
        self.registry = registry
        self.mode = mode
        self.run_id = run_id or uuid.uuid4().hex
        self.names: list[str] = []  # the registered name of each step's action
        self.states: list[str] = []  # each action's state when it was added
        self.claim = 0
        self.entered = False  # the step context is set (and ``previous`` kept)
        self.previous: StepContext | None = None
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        # The journal records: none until begin() (or adopt(), for recovery).
        self.begun = False
        self.new: NewRun | None = None  # a run not inserted yet: with the first write
        self.status: str = RunStatus.RUNNING  # the run's status as last committed
        self.pending: list[StepChange] = []  # kept until a write succeeds
        # Guards ``pending`` and ``new``: an async queue's writes are made in a
        # worker thread while its loop may add a record to the next write.
        self._guard = threading.Lock()
        self.finished = False  # finished, or given up: the lease is no longer renewed

    def lock(self) -> asyncio.Lock:
        """The async queue's lock: one journal write of the run at a time (the
        members of a parallel group write from tasks of their own). One per event
        loop: ``execute()`` and ``rollback()`` may each run on a loop of their own."""
        import asyncio  # only async queues need it

        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    def check_add(self, action: object) -> tuple[str, str]:
        """D11: refuse, at add(), an action a journal could not record or rebuild; its
        registered name and its state, to :meth:`accept` once add() succeeds."""
        name = self.registry.name_of(action)
        if name is None:
            what = (
                "a function"
                if isinstance(action, FunctionAction)
                else f"{type(action).__qualname__}, which is not registered"
            )
            msg = (
                f"A durable queue records its actions by registered name, and this is "
                f'{what}. Register the action class, e.g. @actionqueues.durable("name"), '
                "so that recovery can rebuild it."
            )
            raise InvalidActionError(msg)
        return name, self.registry.encode(name, action, exact=True)  # a StateError now

    def accept(self, entry: tuple[str, str]) -> None:
        """The action checked by :meth:`check_add` was added."""
        self.names.append(entry[0])
        self.states.append(entry[1])

    def begin(
        self,
        queue_name: str | None,
        step_names: list[str],
        *,
        asynchronous: bool = False,
        groups: list[int | None] | None = None,
    ) -> None:
        """Prepare the run's record: the run and its steps, pending, are inserted with
        the first write, the first step's "executing" record (D1). The run's mode says
        what recovery does (``rollback`` or ``resume``) and, for a run of the async
        queue, that recovery must run it on an event loop (``:async``)."""
        # The pending steps' states as added; each is recorded again, as it is then,
        # when the step starts (D1).
        steps = list(zip(self.names, step_names, self.states, strict=True))
        mode = f"{self.mode}:async" if asynchronous else self.mode
        self.new = NewRun(queue_name, mode, steps, groups or ())
        self._watch()

    def adopt(self, run_id: str, claim: int, status: str, names: list[str]) -> None:
        """Continue a run claimed by recovery, under ``claim``, as the journal holds it.

        Raises:
            JournalError: The journal is closed, or opened read-only.
        """
        self.run_id, self.claim, self.status, self.names = run_id, claim, status, names
        self._watch()

    def _watch(self) -> None:
        self.journal._watch(self)  # refused by a closed or read-only journal
        self.begun = True

    def state(self, index: int, action: object) -> str:
        return self.registry.encode(self.names[index], action)

    def enter(self, index: int, name: str, phase: Phase, attempt: int) -> None:
        """Set the step context for the call about to be made."""
        step = StepContext(self.run_id, index, name, phase, attempt, self.claim)
        if not self.entered:
            self.previous, self.entered = _CURRENT.get(), True
        _CURRENT.set(step)

    def leave(self) -> None:
        """The phase is over: restore the caller's step context."""
        # Set back rather than reset with a token: the async queue calls steps in
        # tasks of their own (parallel groups, a shielded rollback), each with a copy
        # of the context, and a token only resets the context it was made in.
        if self.entered:
            _CURRENT.set(self.previous)
            self.entered = False

    # -- the journal's records (D1-D4) ---------------------------------------------

    def _write(
        self,
        change: StepChange | None,
        status: str | None = None,
        error: str | None = None,
        *,
        keep: bool = True,
    ) -> None:
        """Commit ``change`` with every pending record. If the write fails, records of
        what already happened stay pending for the next write; a record of a call
        about to be made (``keep=False``) is dropped, since the call will not be."""
        with self._guard:
            pending = bool(self.pending)
            if pending:
                batch = [*self.pending, change] if change is not None else list(self.pending)
            else:
                batch = [change] if change is not None else []
            new = self.new
        if new is not None and self.finished:
            return  # given up before it was ever recorded: there is nothing to record
        try:
            self.journal.record(self.run_id, self.claim, batch, status, error, new)
        except BaseException:
            if keep and change is not None:
                with self._guard:
                    self.pending.append(change)
            raise
        if pending or new is not None:
            with self._guard:  # what was written; what was added meanwhile stays
                if pending:
                    written = {id(c) for c in batch}
                    self.pending = [c for c in self.pending if id(c) not in written]
                if new is not None and self.new is new:
                    self.new = None
        if status is not None:
            self.status = status
            self.finished = status in FINISHED  # rollback() after completion: leased again

    def step_started(
        self, index: int, status: str, state: str, run_status: str | None = None
    ) -> None:
        """Commit that a step is executing (or rolling back), before its first call.

        The step's attempts are set to 1, so that a step killed mid-call shows as
        tried once. If the write fails, the record is dropped (the call will not be
        made); the records pending before it stay pending.

        Args:
            index: The step's position, from 0.
            status: ``"executing"`` or ``"rolling_back"``.
            state: The action's state, as JSON text, before the call.
            run_status: The run's new status with it (``"rolling_back"`` for a
                rollback's first step), or None to leave it.

        Raises:
            LeaseLostError: The run is no longer this process's.
            JournalError: It could not be written.
        """
        self._write(StepChange(index, status, state, 1), run_status, keep=False)

    def give_up(self, why: BaseException, release: bool) -> None:
        """Stop recording this run, and leave it to recovery.

        For when the journal failed the record of how execution (or rollback) ended.
        The run's lease is no longer renewed, and, with ``release``, given up at
        once, so that recovery takes the run over from what the journal holds;
        records not yet written are dropped, as in a crash. A run never recorded
        (its first write failed) has nothing to leave to anyone. What happens is
        logged; nothing is raised.

        Args:
            why: The error that made the queue give up, for the log.
            release: End the lease now rather than let it expire.
        """
        self.finished = True  # the heartbeat skips it; a later write re-arms it
        with self._guard:
            self.pending.clear()
        if self.new is not None:
            return
        # The error's message is a sentence; here it is a clause of a longer one.
        reason = str(why).rstrip(".")
        if not release:
            logger.warning(
                "run %s: %s; its lease is no longer renewed, and recovery takes it over "
                "once the lease expires, in %g s",
                self.run_id,
                reason,
                self.journal.lease,
            )
            return
        if self.journal._closed.is_set():
            logger.warning(
                "run %s: %s; recovery takes it over once its lease expires, in %g s",
                self.run_id,
                reason,
                self.journal.lease,
            )
            return
        try:
            self.journal.release(self.run_id, claim=self.claim)
        except Exception as exc:
            logger.warning(
                "run %s: %s; it could not be released either (%s): recovery takes it "
                "over once its lease expires, in %g s",
                self.run_id,
                reason,
                exc,
                self.journal.lease,
            )
        else:
            logger.warning(
                "run %s: %s; it is released, for recovery to take over now", self.run_id, why
            )

    def step_done(self, index: int, status: str, state: str | None, attempts: int) -> None:
        """Commit that a step's call returned (D2, D3), with every pending record.

        Args:
            index: The step's position, from 0.
            status: ``"executed"`` or ``"rolled_back"``.
            state: The action's state, as JSON text, after the call; None to leave
                the recorded one.
            attempts: The calls this phase took.

        Raises:
            LeaseLostError: The run is no longer this process's.
            JournalError: It could not be written; the record stays pending, for
                the next write.
        """
        self._write(StepChange(index, status, state, attempts))

    def step_pending(self, index: int, status: str, state: str | None, attempts: int) -> None:
        """Record that a step's call returned, with the next write (the next step's
        record, or the run's end), which follows with nothing run in between: the
        arguments are :meth:`step_done`'s."""
        with self._guard:
            self.pending.append(StepChange(index, status, state, attempts))

    def step_failed(
        self, index: int, status: str, state: str | None, attempts: int, error: str
    ) -> None:
        """Record that a step failed for good, with the next write.

        The run's outcome, or the step's rollback, follows at once, and commits it.

        Args:
            index: The step's position, from 0.
            status: ``"failed"`` or ``"rollback_failed"``.
            state: The action's state, as JSON text; None to leave the recorded one.
            attempts: The calls this phase took.
            error: The ``repr()`` of what the last call raised.
        """
        with self._guard:
            self.pending.append(StepChange(index, status, state, attempts, error))

    def finish(self, status: str, error: str | None = None) -> None:
        """Commit the run's outcome, with any pending step record.

        Args:
            status: The run's new status: ``"completed"``, ``"failed"``,
                ``"rolled_back"`` or ``"rollback_failed"``.
            error: The ``repr()`` of the exception that stopped execution, or None.

        Raises:
            LeaseLostError: The run is no longer this process's.
            JournalError: It could not be written; pending records stay pending.
        """
        self._write(None, status, error)
