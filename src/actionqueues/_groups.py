"""The decisions of parallel groups (the async queue's ``add_parallel``).

A group's members start together, after every member's "executing" record (D1);
from then on every member counts as executed, whatever happens. The other members
run to their end when one fails; the first failed member's exception stops
execution, unless a cancellation or an error of the queue's own came meanwhile.
The members roll back together, after the steps that follow the group and before
the ones that precede it; a member's rollback failure is any rollback's (S5).
"""

from __future__ import annotations

from time import perf_counter

from ._core import Core
from ._errors import JournalError
from ._run import _EXECUTE
from ._status import Phase


class Groups(Core):
    """The core's decisions for parallel groups."""

    __slots__ = ()

    def _group_members(self, first: int, end: int, phase: Phase) -> list[int]:
        """The members of the group ``first`` to ``end`` to call, in ``phase``: a
        resumed (or recovered) run's members done before are not called again."""
        members = range(first, end) if phase is _EXECUTE else range(end - 1, first - 1, -1)
        return [i for i in members if i not in self._skip]

    def _group_started(self, first: int, end: int, todo: list[int], phase: Phase) -> None:
        """The group's members ``todo`` start together (after their D1 records, when
        executing): from now on every member counts as executed, and the members
        roll back together, after the steps that follow the group."""
        count = end - first
        if phase is _EXECUTE:
            self._results.extend([None] * count)
            if self._timed:
                self._starts.extend([perf_counter()] * count)
            if not self._errors:
                self._errors = {}
        else:
            self._rb_index = first
            if self._timed:
                self._rb_starts.extend([perf_counter()] * count)
        self._inflight = set(todo)
        self._calling = False  # members are shown as executing through _inflight
        if not self._ends:
            self._ends = {}

    def _member_ended(self, index: int, phase: Phase, error: BaseException | None) -> None:
        """A member's calls ended, with ``error`` if it failed for good: an execute's
        failure is kept, so that the other members run to their end; a rollback's is
        handled as any rollback's (S5)."""
        self._inflight.discard(index)
        if self._timed:
            self._ends[phase, index] = perf_counter()
        if error is not None:
            if phase is _EXECUTE:
                self._errors[index] = error
            else:
                self._rollback_failed(index, error)

    def _group_ended(
        self,
        first: int,
        end: int,
        interrupted: BaseException | None,
        aborted: list[BaseException],
    ) -> tuple[int, BaseException | None]:
        """Every member ended: the first failed member's index (or -1), and what
        stops execution: a cancellation that came meanwhile, else an error of the
        queue's own (``aborted``: a journal write, a listener), else that member's
        exception (the others stay in ``_errors``)."""
        self._calling = not self._track
        failures = [i for i in range(first, end) if i in self._errors]
        failed = failures[0] if failures else -1
        if interrupted is not None or aborted:
            return failed, interrupted if interrupted is not None else aborted[0]
        return failed, None if failed < 0 else self._errors.pop(failed)

    def _group_undone(
        self, interrupted: BaseException | None, aborted: list[BaseException]
    ) -> BaseException | None:
        """Every member's rollback ended: what must stop the rollback (another
        process took the run over, or a rollback could not be recorded, D10);
        a cancellation that came meanwhile, and anything else of the queue's own,
        is held until every rollback was tried."""
        self._calling = not self._track
        if interrupted is not None:
            self._hold(interrupted)
        for error in aborted:
            if isinstance(error, JournalError):
                return error
            self._hold(error)
        return None
