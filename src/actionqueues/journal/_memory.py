"""The memory journal: runs kept in this process's memory, for tests and for trying out.

It holds what a SQLite journal's tables hold, as the same rows (states as the JSON
text the durable run gives, statuses as plain text), and answers every call as
:class:`~actionqueues.SQLiteJournal` does: the same checks (shared with it, in
``_base``), the same fencing, leases, claims and order. It survives nothing: not the
process, not :meth:`~actionqueues.journal.Journal.close`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .._status import INTERRUPTED, ROLLBACK_STATUSES, UNFINISHED
from ._base import (
    Journal,
    NewRun,
    RunRow,
    StepChange,
    StepRow,
    check_prune,
    check_runs,
    lease_lost,
    run_taken,
)


def _changed(step: StepRow, change: StepChange, now: float) -> StepRow:
    """``step`` after ``change``, as SQLite's update of its row leaves it: a value
    given as None leaves the column as it was; the attempts and error set are those
    of the change's phase."""
    rollback = change.status in ROLLBACK_STATUSES
    fields: dict[str, Any] = {"status": str(change.status), "updated": now}
    if change.state is not None:
        fields["state"] = change.state
    if change.attempts is not None:
        fields["rollback_attempts" if rollback else "attempts"] = change.attempts
    if change.error is not None:
        fields["rollback_error" if rollback else "error"] = change.error
    return step._replace(**fields)


def _listed(run: RunRow, status: str | None, now: float) -> bool:
    """Whether ``runs(status=status)`` lists ``run``: "interrupted" is an unfinished
    run whose lease has expired."""
    if status is None:
        return True
    if status == INTERRUPTED:
        return run.status in UNFINISHED and run.lease_until < now
    return run.status == status


class MemoryJournal(Journal):
    """A journal in this process's memory: for tests, and for trying durable code without a file.

    It keeps runs as a :class:`~actionqueues.SQLiteJournal` does, and answers every
    call as one would: run ids are unique; leases expire unless the heartbeat renews
    them; :func:`~actionqueues.recover` claims only the runs whose lease expired, one
    recoverer at a time; a queue whose run was claimed meanwhile is stopped by its
    next write with :class:`~actionqueues.LeaseLostError`; listing, loading and
    pruning give the same rows. So tests of durable code, recovery included, need
    no file.

    It survives nothing: its runs are gone with the process (a crash included, which
    is what a journal is for) and with :meth:`close`. Use a
    :class:`~actionqueues.SQLiteJournal` for runs that must be recovered after a
    crash. One process, and one object: there is no second journal over the same
    runs, so there is no ``readonly`` either (a read-only memory journal would be
    empty forever). In the child of an ``os.fork()`` it is refused, like a
    PostgreSQL journal: the child's copy of the runs is no one else's.

    Args:
        lease: Seconds a run stays owned without a heartbeat (30 by default, from
            0.1 to a day).

    Raises:
        JournalError: ``lease`` is out of range.

    .. versionadded:: 1.0
    """

    def __init__(self, *, lease: float = 30.0) -> None:
        super().__init__(lease=lease)
        self._data = threading.Lock()  # guards the two dicts: one call at a time
        self._runs: dict[str, RunRow] = {}  # by id, in the order inserted
        self._steps: dict[str, list[StepRow]] = {}

    def __repr__(self) -> str:
        return f"MemoryJournal(lease={self.lease:g})"

    def _close(self) -> None:
        # No lock: close() waited for the calls in flight, and refuses new ones (in a
        # forked child the lock may have been copied held).
        self._runs, self._steps = {}, {}

    # -- writes ---------------------------------------------------------------------

    def _insert(self, run_id: str, new: NewRun, now: float) -> tuple[RunRow, list[StepRow]]:
        """The run ``new``, ours, leased, with its steps pending (not stored yet)."""
        name, mode, steps, groups = new
        run = RunRow(
            id=run_id,
            name=name,
            status="running",
            mode=str(mode),
            owner=self.owner,
            lease_until=now + self.lease,
            claims=0,
            created=now,
            updated=now,
            error=None,
            steps=len(steps),
        )
        rows = []
        for i, (action, step, state) in enumerate(steps):
            group = groups[i] if groups else None
            rows.append(
                StepRow(run_id, i, action, step, state, "pending", 0, 0, None, None, now, group)
            )
        return run, rows

    def record(
        self,
        run_id: str,
        claim: int,
        changes: Sequence[StepChange],
        status: str | None = None,
        error: str | None = None,
        new: NewRun | None = None,
    ) -> None:
        with self._using(), self._data:
            now = time.time()
            run = self._runs.get(run_id)
            steps = list(self._steps.get(run_id, ()))
            if new is not None:
                if run is not None:
                    raise run_taken(run_id)
                run, steps = self._insert(run_id, new, now)
            # Fencing, as SQLite's statements do it: the run's status and each step's
            # row are written only while the run is ours under ``claim``, and a part
            # that finds nothing to write fails the whole write. Nothing is stored
            # until every part succeeded.
            ours = run is not None and run.owner == self.owner and run.claims == claim
            if status is not None:
                if run is None or not ours:
                    raise lease_lost(run_id, self.owner)
                run = run._replace(
                    updated=now,
                    lease_until=now + self.lease,
                    status=str(status),
                    error=run.error if error is None else error,
                )
            for change in changes:
                if not ours or not 0 <= change.index < len(steps):
                    raise lease_lost(run_id, self.owner)
                steps[change.index] = _changed(steps[change.index], change, now)
            if run is not None:
                self._runs[run_id], self._steps[run_id] = run, steps

    def renew(self, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        with self._using(), self._data:
            until = time.time() + self.lease
            for run_id in ids:
                run = self._runs.get(run_id)
                if run is not None and run.owner == self.owner:
                    self._runs[run_id] = run._replace(lease_until=until)

    def claim(
        self, exclude: Iterable[str] = (), *, after: tuple[float, str] | None = None
    ) -> RunRow | None:
        skip = set(exclude)
        with self._using(), self._data:
            now = time.time()
            # As SQLite's: in the order of (last update, id), past ``after``.
            claimable = [
                run
                for run in self._runs.values()
                if run.status in UNFINISHED
                and run.lease_until < now
                and run.id not in skip
                and (after is None or (run.updated, run.id) > after)
            ]
            if not claimable:
                return None
            found = min(claimable, key=lambda run: (run.updated, run.id))
            row = found._replace(
                owner=self.owner, lease_until=now + self.lease, claims=found.claims + 1
            )
            self._runs[row.id] = row
        return row

    def release(self, run_id: str, *, unclaim: bool = False, claim: int | None = None) -> None:
        with self._using(), self._data:
            run = self._runs.get(run_id)
            if run is None or run.owner != self.owner or claim not in (None, run.claims):
                return
            claims = run.claims - 1 if unclaim and run.claims > 0 else run.claims
            self._runs[run_id] = run._replace(lease_until=0.0, claims=claims)

    def prune(self, before: float, *, statuses: Iterable[str] | None = None) -> int:
        when, chosen = check_prune(before, statuses)
        with self._using(), self._data:
            ids = [r.id for r in self._runs.values() if r.status in chosen and r.updated < when]
            for run_id in ids:
                del self._runs[run_id], self._steps[run_id]
        return len(ids)

    # -- reads ----------------------------------------------------------------------

    def load(self, run_id: str) -> tuple[RunRow, list[StepRow]] | None:
        with self._using(write=False), self._data:
            run = self._runs.get(run_id)
            return None if run is None else (run, list(self._steps[run_id]))

    def runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[RunRow]:
        check_runs(status, name, before, limit)
        with self._using(write=False), self._data:
            now = time.time()
            found = [
                run
                for run in self._runs.values()
                if _listed(run, status, now)
                and (name is None or run.name == name)
                and (before is None or run.updated < before)
            ]
        # Newest first, ties by id, as the SQL journals' RUNS_ORDER.
        found.sort(key=lambda run: (run.created, run.id), reverse=True)
        return found if limit is None else found[:limit]
