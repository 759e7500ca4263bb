"""The journal interface: what a durable queue writes, and what recovery reads.

A backend (SQLite, PostgreSQL, memory) implements :class:`Journal`. Queues never
talk to it directly: a run's ``DurableRun`` (in ``actionqueues._durable``) turns its
step transitions into journal writes: a step's "executing" record before its call,
and its "executed" record after it, in the same commit as the next step's record
when nothing runs in between (one commit a step).
"""

from __future__ import annotations

import abc
import logging
import math
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .._errors import JournalError, LeaseLostError
from .._status import (
    FINISHED,
    INTERRUPTED,
    LISTABLE,
    PRUNABLE,
    ROLLBACK_STATUSES,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger("actionqueues")

#: The shortest lease: the heartbeat renews every third of it, and a shorter one
#: would spin; the longest, a day.
MIN_LEASE, MAX_LEASE = 0.1, 86400.0


def run_taken(run_id: str) -> JournalError:
    """The error of a new run whose id the journal already holds (D4: a run's record
    is never merged with another's, nor overwritten)."""
    return JournalError(
        f"The journal already holds a run with id {run_id!r}: run ids are unique, and a "
        "finished run keeps its id. Pass another run_id (or none, for a random one)."
    )


def is_number(value: object) -> bool:
    """Whether ``value`` is an int or a float (not a bool, which is an int too)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_whole(value: object) -> bool:
    """Whether ``value`` is an int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_before(before: object, where: str) -> float:
    """A time (seconds since the epoch) given to ``prune()`` or ``runs()``."""
    if not is_number(before) or not math.isfinite(before):  # type: ignore[arg-type]
        msg = (
            f"{where}(before={before!r}): a time is a number of seconds since the epoch, "
            "e.g. journal.now() - 7 * 86400 for a week ago."
        )
        raise JournalError(msg)
    return float(before)  # type: ignore[arg-type]


def check_prune(before: object, statuses: object) -> tuple[float, tuple[str, ...]]:
    """``prune()``'s arguments, checked: the time, and the statuses to delete
    (PRUNABLE by default; only finished ones: an unfinished run is yet to recover)."""
    when = check_before(before, "prune")
    if statuses is None:
        return when, PRUNABLE
    if isinstance(statuses, str) or not isinstance(statuses, Iterable):
        msg = f"prune(statuses={statuses!r}): pass a list of statuses, e.g. ['completed']."
        raise JournalError(msg)
    chosen = tuple(statuses)
    wrong = [s for s in chosen if s not in FINISHED]
    if wrong or not chosen:
        msg = (
            f"prune(statuses={chosen!r}): only finished runs can be pruned; choose among "
            f"{', '.join(FINISHED)} (an unfinished run is yet to be recovered)."
        )
        raise JournalError(msg)
    return when, chosen


def check_runs(status: object, name: object, before: object, limit: object) -> None:
    """``runs()``'s filters, checked before any query."""
    if status is not None and status not in LISTABLE:
        msg = f"runs(status={status!r}): choose among {', '.join(LISTABLE)}, or None for all."
        raise JournalError(msg)
    if name is not None and not isinstance(name, str):
        msg = f"runs(name={name!r}): a queue's name is a string, or None for all."
        raise JournalError(msg)
    if before is not None:
        check_before(before, "runs")
    if limit is not None and not (is_whole(limit) and limit >= 0):  # type: ignore[operator]
        msg = f"runs(limit={limit!r}): a limit is a whole number, 0 or more, or None for all."
        raise JournalError(msg)


class RunRow(NamedTuple):
    """A run as the journal holds it.

    Times are seconds since the epoch, by the journal's clock
    (:meth:`~actionqueues.journal.Journal.now`).

    Attributes:
        id: The run's id.
        name: The queue's name, or None.
        status: One of :data:`~actionqueues.journal.UNFINISHED` or
            :data:`~actionqueues.journal.FINISHED`.
        mode: What recovery does with the run: ``"rollback"`` or ``"resume"``, with
            ``":async"`` after it for a run of an ``AsyncActionQueue``.
        owner: The journal that owns (or last owned) the run: host, process id and
            a random part.
        lease_until: When the owner's lease expires; past it, an unfinished run is
            interrupted and may be recovered.
        claims: How many times recovery has claimed the run (0: never).
        created: When the run was first recorded.
        updated: When the run's status was last recorded.
        error: The ``repr()`` of the exception that stopped execution, or None.
        steps: How many steps the run has.

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

    Attributes:
        run_id: The id of the step's run.
        index: The step's position in the run, from 0.
        action: The name its action's class is registered under.
        name: The step's name.
        state: The action's state, as JSON text, as last recorded: when it was
            added, before ``execute`` was called, after it returned (and likewise
            around ``rollback``).
        status: ``"pending"``, ``"executing"``, ``"executed"``, ``"failed"``,
            ``"rolling_back"``, ``"rolled_back"`` or ``"rollback_failed"``.
        attempts: Calls made to ``execute`` (one is counted before the first call).
        rollback_attempts: Calls made to ``rollback``.
        error: The ``repr()`` of what ``execute`` raised when it failed for good, or
            None.
        rollback_error: The ``repr()`` of what ``rollback`` raised when it failed for
            good, or None.
        updated: When the step's row was last written (seconds since the epoch).
        group: For a member of a parallel group, the index of the group's first
            member; else None.

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
    """A run to insert, given to ``Journal.record()`` with the run's first write.

    Attributes:
        name: The queue's name, or None.
        mode: ``RunRow.mode``.
        steps: For each step, in order: its action's registered name, its name, and
            its state as JSON text. The steps are inserted pending.
        groups: For a queue with parallel groups, each step's group (the index of
            its first member) or None; empty otherwise.

    .. versionadded:: 1.0
    """

    name: str | None
    mode: str
    steps: Sequence[tuple[str, str, str]]
    groups: Sequence[int | None] = ()


class StepChange(NamedTuple):
    """One step's new status, and what else changed with it, for ``Journal.record()``.

    A status of the rollback phase (``"rolling_back"``, ``"rolled_back"``,
    ``"rollback_failed"``) sets the step's ``rollback_attempts`` and
    ``rollback_error``; any other, its ``attempts`` and ``error``.

    Attributes:
        index: The step's position in the run, from 0.
        status: The step's new status (see ``StepRow.status``).
        state: The action's state as JSON text; None: unchanged.
        attempts: The attempts of this phase so far; None: unchanged.
        error: The ``repr()`` of the error this phase failed with; None: unchanged.

    .. versionadded:: 1.0
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose
    status: str
    state: str | None = None
    attempts: int | None = None
    error: str | None = None


def with_events(
    run_id: str, steps: Sequence[Sequence[object]], events: Iterable[Sequence[object]]
) -> list[StepRow]:
    """The steps of run ``run_id`` as their rows (``steps``, as ``STEP_COLUMNS``
    reads them) and then their events, in order (``EVENT_COLUMNS``), leave them:
    each event sets its step's status and time, and the state, attempts and error
    it holds (those of its phase). An event of a step the run does not have (a
    damaged journal) makes a step of its own, which recovery refuses (D8)."""
    rows = {row[1]: list(row) for row in steps}
    for idx, status, state, attempts, error, at in events:
        row = rows.get(idx)
        if row is None:
            row = rows[idx] = [run_id, idx, "", "", "null", status, 0, 0, None, None, at, None]
        row[5], row[10] = status, at
        if state is not None:
            row[4] = state
        phase = 7 if status in ROLLBACK_STATUSES else 6
        if attempts is not None:
            row[phase] = attempts
        if error is not None:
            row[phase + 2] = error
    return [StepRow(*row) for row in rows.values()]  # type: ignore[arg-type]


def prefix_range(prefix: object, limit: object) -> tuple[str, str | None]:
    """``find_ids()``'s arguments, checked; the range of the ids that start with
    ``prefix``: from it, up to (not including) the least text after all of them
    (None: no end), by code point (UTF-8's byte order too)."""
    if not isinstance(prefix, str):
        msg = f"find_ids({prefix!r}): the start of a run id is text."
        raise JournalError(msg)
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        msg = f"find_ids({prefix!r}): the text holds a lone surrogate, which no run id does."
        raise JournalError(msg) from None
    if type(limit) is not int or limit < 1:
        msg = f"find_ids(limit={limit!r}): the most ids to return is a whole number, 1 or more."
        raise JournalError(msg)
    end = prefix.rstrip(chr(0x10FFFF))
    if not end:
        return prefix, None
    last = ord(end[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:  # no text holds a lone surrogate
        last = 0xE000
    return prefix, end[:-1] + chr(last)


class _Operation:
    """``Journal._using()``'s context manager: the operation counted in, and out."""

    __slots__ = ("journal", "write")

    def __init__(self, journal: Journal, write: bool) -> None:
        self.journal, self.write = journal, write

    def __enter__(self) -> None:
        if self.write:
            self.journal._check_writable()
        self.journal._enter()

    def __exit__(self, *exc: object) -> None:
        self.journal._exit()


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
    if status == INTERRUPTED:
        where.append(interrupted[0])
        params += interrupted[1]
    elif status is not None:
        where.append(f"status = {mark}")
        params.append(status)
    if name is not None:
        where.append(f"name = {mark}")
        params.append(name)
    if before is not None:  # created first: the runs_created index finds them
        where.append(f"created < {mark} AND updated < {mark}")
        params += (before, before)
    return " AND ".join(where), params


def new_owner() -> str:
    """An owner id: host, process, and a random part for this journal object."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def check_lease(lease: object) -> float:
    if not is_number(lease) or not MIN_LEASE <= lease <= MAX_LEASE:  # type: ignore[operator]
        msg = (
            f"lease={lease!r}: the lease is a number of seconds from {MIN_LEASE:g} to "
            f"{MAX_LEASE:g} (a day); the default is 30."
        )
        raise JournalError(msg)
    return float(lease)  # type: ignore[arg-type]


# Journals open in this process, for os.fork(): a child gets owners of its own.
_OPEN: weakref.WeakSet[Journal] = weakref.WeakSet()


def _in_child() -> None:
    for journal in list(_OPEN):
        journal._forked()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_in_child)


class Leased(Protocol):
    """A run the heartbeat renews while it is unfinished (a ``DurableRun``)."""

    run_id: str
    finished: bool


def _beat(ref: weakref.ReferenceType[Journal], closed: threading.Event, every: float) -> None:
    """The heartbeat: renew the leases of the journal's unfinished runs every ``every``
    seconds, until the journal is closed or dropped (it holds the journal weakly, so
    that a journal dropped without close() is collected, and this thread ends)."""
    failing = False
    while not closed.wait(every):
        journal = ref()
        if journal is None:
            return
        with journal._lock:
            ids = [r.run_id for r in list(journal._live) if not r.finished]
        if ids:
            try:
                journal.renew(ids)
            except Exception as exc:
                if closed.is_set():  # close() came in mid-beat: nothing to say
                    return
                # A full or locked disk, a database restarting: the next beat tries
                # again; the runs are recovered if the leases run out meanwhile.
                logger.warning(
                    "could not renew the leases of %d run(s) in %r: %s", len(ids), journal, exc
                )
                failing = True
            else:
                if failing:
                    logger.warning("renewing leases in %r again", journal)
                failing = False
        del journal


class Journal(abc.ABC):
    """Where durable queues record their runs: the base class of every journal.

    Open one with :func:`~actionqueues.open_journal`,
    :class:`~actionqueues.SQLiteJournal`, :class:`~actionqueues.journal.PostgresJournal`
    or :class:`~actionqueues.MemoryJournal`, and close it with :meth:`close`
    (or use it as a context manager, which closes it on exit). One journal may serve
    many queues and threads at once. While a run is unfinished, a heartbeat thread
    renews its lease every third of ``lease``.

    A backend subclasses it and implements the abstract methods; a queue writes each
    transition of its run through :meth:`record`.

    Args:
        lease: Seconds a run stays owned without a heartbeat (30 by default, from
            0.1 to a day); a run whose owner stopped renewing it for that long is
            recovered.
        readonly: Open to read only (listing and showing runs): nothing is created,
            migrated or written, and every write is refused with
            :class:`~actionqueues.JournalError`.

    Raises:
        JournalError: ``lease`` is out of range, or ``readonly`` is not a bool.

    .. versionadded:: 1.0
    """

    def __init__(self, *, lease: float = 30.0, readonly: bool = False) -> None:
        self.lease = check_lease(lease)
        if not isinstance(readonly, bool):
            msg = f"readonly={readonly!r}: pass True or False."
            raise JournalError(msg)
        #: Whether the journal was opened to read only (for listing and showing
        #: runs), in which case it creates, migrates and writes nothing.
        self.readonly = readonly
        self.owner = new_owner()
        self._live: weakref.WeakSet[Leased] = weakref.WeakSet()
        self._heartbeat: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._closing: list[Callable[[], None]] = []  # run by close(), after the last write
        # Operations in flight, which close() waits for (a connection closed under a
        # statement crashes the process).
        self._idle = threading.Condition(threading.Lock())
        self._busy = 0
        self._fork_error: str | None = None
        # The heartbeat holds the journal weakly: dropped unclosed, it stops too.
        weakref.finalize(self, self._closed.set)
        _OPEN.add(self)

    #: How many threads suit this journal for the writes of async queues (see
    #: ``actionqueues._writers``): one, unless a backend gains from more.
    write_threads: int = 1

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
        """Write one transition of a run, in one transaction.

        Insert the run if ``new`` is given (owned by this journal, its steps pending),
        then apply ``changes`` and the run's new status, all only while the run is
        this journal's under ``claim``. A write that sets ``status`` also renews the
        run's lease.

        Args:
            run_id: The run's id.
            claim: The claim the writer holds the run under: 0 for the run's first
                owner, ``RunRow.claims`` for a recoverer.
            changes: The steps' changes, applied in order.
            status: The run's new status, or None to leave it.
            error: The ``repr()`` of the exception that stopped execution, or None
                to leave it.
            new: The run to insert first, or None when it is in the journal.

        Raises:
            LeaseLostError: The run is no longer ours (``claim`` is not its latest,
                or another journal owns it); nothing was written.
            JournalError: It could not be written (nothing was), or ``new`` has the
                id of a run the journal already holds.
        """

    @abc.abstractmethod
    def renew(self, run_ids: Iterable[str]) -> None:
        """Extend the leases of these runs to ``lease`` seconds from now.

        The heartbeat calls it; runs another journal owns are left alone.

        Args:
            run_ids: The ids of runs this journal owns.

        Raises:
            JournalError: It could not be written.
        """

    @abc.abstractmethod
    def claim(
        self, exclude: Iterable[str] = (), *, after: tuple[float, str] | None = None
    ) -> RunRow | None:
        """Atomically take one unfinished run whose lease expired.

        The run becomes this journal's, leased, and its claim count goes up by one;
        two journals never take the same run. :func:`~actionqueues.recover` calls it.

        Args:
            exclude: Ids of runs not to take.
            after: The (last update, id) of the run last taken: only a run past it,
                in that order, is taken, so that a recoverer passes once over the
                runs it leaves, however many. None: from the first.

        Returns:
            The run as claimed (its ``claims`` already counting this claim), or None
            when no run is interrupted.

        Raises:
            JournalError: It could not be written.
        """

    @abc.abstractmethod
    def release(self, run_id: str, *, unclaim: bool = False, claim: int | None = None) -> None:
        """Give up this journal's claim on a run, leaving it for another recoverer at once.

        The run's lease is ended; a run another journal owns is left alone.

        Args:
            run_id: The run's id.
            unclaim: The claim did nothing (recovery skipped the run): take back its
                count, as far as an operator is concerned.
            claim: Only while the run is still under that claim (fencing); None:
                whatever the claim.

        Raises:
            JournalError: It could not be written.
        """

    @abc.abstractmethod
    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        """Read one run and its steps.

        Args:
            run_id: The run's id.

        Returns:
            The run, and its steps in order; None if the journal has no such run.

        Raises:
            JournalError: It could not be read.
        """

    def find_ids(self, prefix: str, *, limit: int = 2) -> list[str]:
        """The ids of the runs whose id starts with ``prefix``.

        For an operator's shortened id (``actionqueues show 3f2a``): looked up by key
        range, never by reading every run.

        Args:
            prefix: The start of the ids; "" matches every run.
            limit: At most this many ids (2 tells one match from an ambiguous one).

        Returns:
            The ids, in order (by code point).

        Raises:
            JournalError: ``prefix`` is not text (or holds a lone surrogate), ``limit``
                not a whole number of at least 1, or the journal cannot be read.

        .. versionadded:: 1.0
        """
        # A journal of one's own may keep this: it reads every run. The journals of
        # actionqueues read a range of their index of ids instead.
        prefix_range(prefix, limit)
        found = sorted(str(r.id) for r in self.runs(limit=None) if str(r.id).startswith(prefix))
        return found[:limit]

    @abc.abstractmethod
    def runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[RunRow]:
        """List runs, newest first (by creation), without their steps.

        Args:
            status: Only runs of this status (see
                :data:`~actionqueues.journal.UNFINISHED` and
                :data:`~actionqueues.journal.FINISHED`), or ``"interrupted"``:
                unfinished runs whose lease has expired. None: every status.
            name: Only the runs of queues of this name; None: every name.
            before: Only runs whose status was last recorded before this time, in
                seconds since the epoch (see :meth:`now`); None: any time.
            limit: At most this many runs; None: all of them.

        Returns:
            The runs.

        Raises:
            JournalError: A filter is not valid, or the journal cannot be read.
        """

    @abc.abstractmethod
    def prune(self, before: float, *, statuses: Iterable[str] | None = None) -> int:
        """Delete old finished runs, with their steps.

        Args:
            before: Delete runs whose status was last recorded before this time, in
                seconds since the epoch: ``journal.now() - 7 * 86400`` for a week
                ago.
            statuses: The statuses of the runs to delete, among
                :data:`~actionqueues.journal.FINISHED`; by default
                :data:`~actionqueues.journal.PRUNABLE` (completed and rolled back: a
                run whose rollback failed stays). An unfinished run is never deleted.

        Returns:
            How many runs were deleted.

        Raises:
            JournalError: ``before`` is not a time, a status is not a finished one,
                or the journal cannot be written.
        """

    def now(self) -> float:
        """The journal's clock, by which its leases and times are measured.

        This machine's clock, unless the backend has its own (PostgreSQL's).

        Returns:
            Seconds since the epoch.
        """
        return time.time()

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the backend's resources."""

    # -- shared ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat, wait for the writes in flight, and release the journal.

        Writes attempted from now on fail with :class:`~actionqueues.JournalError`; the runs still
        unfinished are left to recovery once their leases expire. Closing twice is
        harmless.
        """
        self._closed.set()
        heartbeat = self._heartbeat
        if heartbeat is not None and heartbeat is not threading.current_thread():
            heartbeat.join()
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0)
        for done in self._closing:
            done()
        self._closing = []
        self._close()
        _OPEN.discard(self)

    def _using(self, *, write: bool = True) -> _Operation:
        """One operation on the journal (a write, unless ``write`` is False), which
        close() waits for; refused once closed, in a forked child the backend cannot
        serve, or (a write) on a journal opened read-only. A plain context manager,
        not a generator's: every journal write of every step goes through it."""
        return _Operation(self, write)

    def _enter(self) -> None:
        """An operation starts: refused once the journal is closed (check and count
        under one lock, so that close() cannot slip in between)."""
        with self._idle:
            self._check_open()
            self._busy += 1

    def _exit(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def _refuse(self) -> None:
        msg = self._fork_error or f"{self!r} is closed; open a journal again to record runs."
        raise JournalError(msg)

    def _check_writable(self) -> None:
        """Writes to a journal opened read-only are refused."""
        if self.readonly:
            msg = (
                f"{self!r} was opened read-only (for listing and showing runs); open it "
                "without readonly=True to record, claim or prune runs."
            )
            raise JournalError(msg)

    def _forked(self) -> None:
        """In the child of an ``os.fork()``: the parent's runs and threads are not the
        child's. The child gets an owner of its own (so that it never renews the
        parent's leases); a backend whose connections cannot cross a fork refuses
        to be used there (``_fork_error``)."""
        self.owner = new_owner()
        self._live = weakref.WeakSet()
        self._heartbeat = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(threading.Lock())
        self._busy = 0
        self._closing = []
        self._fork_error = (
            f"{self!r} was opened in the parent of this process (os.fork()); its "
            "connections cannot be shared: open a journal again in the child."
        )

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _on_close(self, done: Callable[[], None]) -> None:
        """Call ``done`` when the journal closes, after its last operation."""
        self._closing.append(done)

    def _watch(self, run: Leased) -> None:
        """Keep ``run`` leased while it lives and is unfinished (a queue object
        dropped unfinished stops being renewed: the WeakSet forgets it, and its run
        is recovered like a crashed one)."""
        self._check_open()
        self._check_writable()
        with self._lock:
            self._live.add(run)
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._heartbeat = threading.Thread(
                    target=_beat,
                    args=(weakref.ref(self), self._closed, self.lease / 3),
                    name="actionqueues-heartbeat",
                    daemon=True,
                )
                self._heartbeat.start()

    def _check_open(self) -> None:
        """Writes after close() would run without a heartbeat: refuse them."""
        if self._closed.is_set() or self._fork_error is not None:
            self._refuse()
