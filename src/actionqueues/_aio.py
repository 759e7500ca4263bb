"""``AsyncActionQueue``: the asyncio queue, on the same engine as ``ActionQueue``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar, Unpack

from ._action import ActionLike
from ._driver_async import AsyncDriver, _uncancelled
from ._engine import StepOptions
from ._lifecycle import check
from ._report import RunReport


class AsyncActionQueue(AsyncDriver):
    """A queue of actions for asyncio: ``ActionQueue``'s contract, awaited.

    Actions may have ``async def`` execute and rollback methods, or plain ones (called
    in the event loop's thread, so they should be quick). Retries wait with
    ``asyncio.sleep``. :meth:`add_parallel` adds actions that start together; the
    ``timeout=`` of the queue or of a step bounds each call of execute.

    Takes the keyword arguments of :class:`ActionQueue`, and:

    Args:
        timeout: Seconds each call of a step's ``execute`` may take; one that takes
            longer is cancelled and fails with ``TimeoutError`` (the step counts as
            executed, and is retried if its policy says so). None: no limit.

    A durable queue's journal writes are made in worker threads: the event loop never
    waits for a commit.

    .. versionadded:: 1.0
    """

    _asynchronous: ClassVar[bool] = True
    __slots__ = ()

    def add_parallel(
        self, *actions: ActionLike | Callable[[], object], **options: Unpack[StepOptions]
    ) -> None:
        """Add a parallel group: actions started together, each a step of its own.

        The queue waits for every member to end. If any failed, execution stops, and
        :meth:`rollback` covers every member (they all started), rolling them back
        together, after the steps that follow the group and before the ones that
        precede it. Reports give each member's ``group``.

        Args:
            *actions: Actions, or functions (with no rollback; wrap a function and
                its rollback in :class:`FunctionAction`).
            **options: ``add()``'s options, for every member; a ``name`` names the
                members ``name[1]``, ``name[2]``, ...

        Raises:
            InvalidArgumentError: No actions, or a bad option.
            InvalidActionError: One of them cannot be run as an action.
            LifecycleError: The queue has already started executing.
        """
        self._add_group(actions, options)

    async def run(self) -> RunReport:
        """Execute; if that fails, roll back and re-raise the original exception.

        The rollback is shielded: if the task is cancelled (during a step, or during
        the rollback itself), every executed step is still rolled back, and then
        ``CancelledError`` propagates; the report says ``cancelled``. The exception
        gets a note (PEP 678) saying how the rollback went, and :func:`report_of`
        gives its report.

        Returns:
            The report of the completed run.

        Raises:
            BaseException: Whatever the failed action raised, after the rollback.
            LifecycleError: The queue was already executed.
            RollbackError: In strict mode, when any rollback failed.
        """
        check("execute", self._state)  # outside the try: a refused run rolls nothing back
        try:
            await self.execute()
        except BaseException as exc:
            try:
                # In a task of its own, shielded; what it raises comes back as a value
                # (asyncio would let a KeyboardInterrupt out of the loop, not to us).
                raised = await _uncancelled(asyncio.ensure_future(self._rollback_quietly()))
                if raised is not None:
                    raise raised
            finally:
                self._annotate(exc)
                del self  # no queue → error → traceback → frame → queue cycle
            raise
        return self.report

    async def _rollback_quietly(self) -> BaseException | None:
        try:
            await self.rollback()
        except BaseException as exc:
            return exc
        return None
