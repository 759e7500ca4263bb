"""The journal interface: what a durable queue writes, and what recovery reads.

A backend (SQLite here; PostgreSQL later) implements :class:`Journal`. The engine
never talks to it directly: a :class:`RunRecorder` turns the engine's step
transitions into journal writes: two commits a step ("executing" before the call,
"executed" after it), or one with ``one_commit_per_step``.
"""

from __future__ import annotations

import abc
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from .._errors import ActionQueueError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

#: Run statuses that mean "not finished": a run in one of these whose lease has
#: expired has lost its owner and is recovered.
UNFINISHED = ("running", "failed", "rolling_back")
FINISHED = ("completed", "rolled_back", "rollback_failed")


class JournalError(ActionQueueError):
    """The journal cannot be opened, read or written (disk full, read-only, locked,
    corrupt, or written by a newer actionqueues).

    .. versionadded:: 1.0
    """


class LeaseLostError(JournalError):
    """This process no longer owns the run: its lease expired and a recoverer claimed
    it. The run stops here; the recoverer finishes it.

    .. versionadded:: 1.0
    """


class RunRow(NamedTuple):
    """A run as the journal holds it.

    .. versionadded:: 1.0
    """

    id: str
    name: str | None
    status: str
    mode: str  # "rollback" or "resume": what recovery does with it
    owner: str | None
    lease_until: float
    claims: int
    created: float
    updated: float
    error: str | None
    steps: int


class StepRow(NamedTuple):
    """A step as the journal holds it.

    .. versionadded:: 1.0
    """

    run_id: str
    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose
    action: str  # the registered name
    name: str
    state: str  # JSON
    status: str
    attempts: int
    rollback_attempts: int
    error: str | None
    rollback_error: str | None
    updated: float
    group: int | None = None  # a parallel group's first member's index


class NewRun(NamedTuple):
    """A run to insert, with its steps (action name, step name, JSON state) and, for
    a queue with parallel groups, each step's group (or None)."""

    name: str | None
    mode: str
    steps: Sequence[tuple[str, str, str]]
    groups: Sequence[int | None] = ()


class StepChange(NamedTuple):
    """One step's new status, and what else changed with it (None: unchanged)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose
    status: str
    state: str | None = None
    attempts: int | None = None
    error: str | None = None


def lease_lost(run_id: str, owner: str) -> LeaseLostError:
    """The error of a write refused because the run is no longer ``owner``'s."""
    return LeaseLostError(
        f"Run {run_id} is no longer owned by this process ({owner}): its lease expired "
        "and a recoverer claimed it. It stops here; the recoverer finishes it."
    )


def run_filters(
    mark: str,
    interrupted: tuple[str, Sequence[object]],
    status: str | None,
    name: str | None,
    before: float | None,
) -> tuple[str, list[object]]:
    """The WHERE clause and parameters of ``Journal.runs()``'s filters, in a backend's
    placeholder ``mark``; ``interrupted`` is its test for a lease that expired."""
    where, params = ["1 = 1"], []  # type: list[str], list[object]
    if status == "interrupted":
        where.append(interrupted[0])
        params += interrupted[1]
    elif status is not None:
        where.append(f"status = {mark}")
        params.append(status)
    if name is not None:
        where.append(f"name = {mark}")
        params.append(name)
    if before is not None:
        where.append(f"updated < {mark}")
        params.append(before)
    return " AND ".join(where), params


def new_owner() -> str:
    """An owner id: host, process, and a random part for this journal object."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Journal(abc.ABC):
    """Where durable queues record their runs.

    Args:
        lease: Seconds a run stays owned without a heartbeat; a run whose owner
            stopped renewing it for that long is recovered.

    .. versionadded:: 1.0
    """

    def __init__(self, *, lease: float = 30.0) -> None:
        if not isinstance(lease, int | float) or not 0 < lease < 86400:
            msg = f"lease={lease!r}: the lease must be a number of seconds, more than 0."
            raise JournalError(msg)
        self.lease = float(lease)
        self.owner = new_owner()
        self._live: weakref.WeakSet[RunRecorder] = weakref.WeakSet()
        self._heartbeat: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    #: How many threads make the writes of async queues (see ``writer``).
    write_threads: int = 1

    def writer(self) -> ThreadPoolExecutor:
        """The threads that make async queues' writes, so that an event loop never
        waits for a commit. Few: more would only contend for the GIL with the loop
        (one writer at a time gets SQLite's lock anyway); a journal that commits in
        groups (``SQLiteJournal(durability="power")``) has more, to fill them.

        Raises:
            JournalError: The journal is closed.
        """
        self._check_open()
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor  # async queues only

                self._pool = ThreadPoolExecutor(
                    self.write_threads, thread_name_prefix="actionqueues-journal"
                )
            return self._pool

    # -- what a backend provides ----------------------------------------------------

    @abc.abstractmethod
    def record(
        self,
        run_id: str,
        claim: int,
        changes: Sequence[StepChange],
        status: str | None = None,
        error: str | None = None,
        new: NewRun | None = None,
    ) -> None:
        """In one transaction: insert the run if ``new`` (owned by this journal, its
        steps pending), then apply ``changes`` and the run's new status.

        Raises:
            LeaseLostError: The run is no longer ours (``claim`` is not its latest).
            JournalError: It could not be written.
        """

    @abc.abstractmethod
    def renew(self, run_ids: Iterable[str]) -> None:
        """Extend the leases of these runs (ours) by ``lease`` seconds from now."""

    @abc.abstractmethod
    def claim(self, exclude: Iterable[str] = ()) -> RunRow | None:
        """Atomically take one unfinished run whose lease expired, or None."""

    @abc.abstractmethod
    def release(self, run_id: str) -> None:
        """Give up our claim on a run, leaving it for another recoverer at once."""

    @abc.abstractmethod
    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        """A run and its steps, or None if the journal has no such run."""

    @abc.abstractmethod
    def runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[RunRow]:
        """Runs, newest first, filtered by status, name, and last update before."""

    @abc.abstractmethod
    def prune(self, before: float) -> int:
        """Delete finished runs last updated before ``before``; how many."""

    def now(self) -> float:
        """The journal's clock, in seconds since the epoch, as its leases and times
        are measured: this machine's, unless the backend has its own (PostgreSQL)."""
        return time.time()

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the backend's resources."""

    # -- shared ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat and release the journal."""
        self._closed.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _watch(self, recorder: RunRecorder) -> None:
        """Keep ``recorder``'s run leased while the recorder lives and is unfinished."""
        if self._closed.is_set():
            msg = f"{self!r} is closed; open a journal again to record runs."
            raise JournalError(msg)
        with self._lock:
            self._live.add(recorder)
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._heartbeat = threading.Thread(
                    target=self._beat, name="actionqueues-heartbeat", daemon=True
                )
                self._heartbeat.start()

    def _beat(self) -> None:
        # Renew well before expiry; a queue object that is dropped unfinished stops
        # being renewed (the WeakSet forgets it) and is recovered like a crashed one.
        while not self._closed.wait(self.lease / 3):
            with self._lock:
                ids = [r.run_id for r in list(self._live) if not r.finished]
            if ids:
                try:
                    self.renew(ids)
                except Exception:  # noqa: S112 - a full or locked disk: next beat
                    continue

    def _check_open(self) -> None:
        """Writes after close() would run without a heartbeat: refuse them."""
        if self._closed.is_set():
            msg = f"{self!r} is closed; open a journal again to record runs."
            raise JournalError(msg)


class RunRecorder:
    """Turns a run's step transitions into journal writes (D1-D4).

    Before a step's first call its "executing" record is committed (D1); once the
    call returns, its "executed" record with the state after is committed (D2), so
    that a rollback after a crash sees, say, the key of the row the step created.
    Rollback likewise (D3), and the run's outcome (D4). The run itself is inserted
    with its first record.

    With ``fold``, a step's "executed" (or "rolled back") record is committed with
    the next write instead: one commit per step rather than two. A crash in between
    then leaves the step "executing" with its state from before, so its rollback
    must find what execute did by the idempotency key.
    """

    __slots__ = (
        "__weakref__",
        "claim",
        "finished",
        "fold",
        "journal",
        "lock",
        "new",
        "pending",
        "run_id",
    )

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        claim: int = 0,
        new: NewRun | None = None,
        *,
        fold: bool = False,
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.claim = claim
        self.fold = fold
        self.new = new  # a run not inserted yet: with the first write
        self.pending: list[StepChange] = []  # kept until a write succeeds
        # Guards ``pending`` and ``new``: an async queue's writes are made in a
        # worker thread while its loop may add a record to the next write.
        self.lock = threading.Lock()
        self.finished = False
        journal._watch(self)

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
        with self.lock:
            batch = [*self.pending, change] if change is not None else list(self.pending)
            new = self.new
        try:
            self.journal._check_open()
            self.journal.record(self.run_id, self.claim, batch, status, error, new)
        except BaseException:
            if keep and change is not None:
                with self.lock:
                    self.pending.append(change)
            raise
        with self.lock:  # what was written; what was added meanwhile stays
            written = {id(c) for c in batch}
            self.pending = [c for c in self.pending if id(c) not in written]
            if new is not None and self.new is new:
                self.new = None
        if status is not None:
            self.finished = status in FINISHED  # rollback() after completion: leased again

    def step_started(
        self, index: int, status: str, state: str, run_status: str | None = None
    ) -> None:
        """Commit that step ``index`` is executing (or rolling back), before its call."""
        self._write(StepChange(index, status, state), run_status, keep=False)

    def step_done(self, index: int, status: str, state: str | None, attempts: int) -> None:
        """Step ``index`` returned: committed now (D2), or with the next write if
        folding."""
        change = StepChange(index, status, state, attempts)
        if self.fold:
            with self.lock:
                self.pending.append(change)
        else:
            self._write(change)

    def step_failed(
        self, index: int, status: str, state: str | None, attempts: int, error: str
    ) -> None:
        """Step ``index`` failed for good: recorded with the next write (the run's
        outcome, or the step's rollback, follows at once)."""
        with self.lock:
            self.pending.append(StepChange(index, status, state, attempts, error))

    def finish(self, status: str, error: str | None = None) -> None:
        """Commit the run's outcome (with any pending step record)."""
        self._write(None, status, error)
