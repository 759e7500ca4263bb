"""``AsyncActionQueue``: the asyncio queue, on the same engine as ``ActionQueue``."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Unpack

from ._action import ActionLike
from ._build import StepOptions
from ._driver_async import AsyncDriver


class AsyncActionQueue(AsyncDriver):
    """A queue of actions for asyncio: ``ActionQueue``'s contract, awaited.

    Actions may have ``async def`` execute and rollback methods, or plain ones (called
    in the event loop's thread, so they should be quick). Retries wait with
    ``asyncio.sleep``. :meth:`add_parallel` adds actions that start together; the
    ``timeout=`` of the queue or of a step bounds each call of execute. A durable
    queue's journal writes are made in worker threads: the event loop never waits
    for a commit.

    The arguments are :class:`ActionQueue`'s, and ``timeout``.

    Args:
        name: The run's name in reports, events, logs and the journal; None for an
            unnamed run.
        retry: Retry policy for every step's ``execute``, unless the step has its
            own; None: nothing is retried but :class:`ActionRetryException`.
        rollback_retry: Retry policy for every step's ``rollback``.
        listeners: Callables that receive events (see :class:`Event`); they are
            called synchronously, in the event loop's thread.
        strict: Raise :class:`RollbackError` from :meth:`rollback` (and :meth:`run`)
            when any rollback failed, after every rollback was tried.
        timings: Measure durations for the report (see :class:`ActionQueue`).
        journal: Record the run there, so that it survives a crash (a durable
            queue); None keeps the run in memory only.
        registry: Where a durable queue's action classes are registered; the
            default registry (``@durable``) if None.
        recovery: What recovery does with the run if its process dies: ``"rollback"``
            (the default) or ``"resume"``.
        run_id: The run's id in the journal, unique in it; a random one if None.
        one_commit_per_step: Deprecated, and without effect (see
            :class:`ActionQueue`).
        timeout: Seconds each call of a step's ``execute`` may take (an awaitable
            one: a plain function's call cannot be interrupted); one that takes
            longer is cancelled and fails with ``TimeoutError`` (the step counts as
            executed, and is retried if its policy says so). None: no limit. A
            step's own ``timeout=`` (:meth:`add`) overrides it.

    Raises:
        InvalidArgumentError: An argument is of the wrong type or out of range
            (``timeout`` must be a positive number of seconds).
        InvalidPolicyError: ``retry`` or ``rollback_retry`` is not a
            :class:`RetryPolicy`.
        InvalidListenerError: A listener is not callable, is an ``async def``
            function, or subscribes to something that is not an event.

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
        precede it. Reports give each member's ``group``. Every member is checked
        before any is added: a refused group adds nothing.

        Args:
            *actions: Actions, or functions (with no rollback; wrap a function and
                its rollback in :class:`FunctionAction`).
            **options: ``add()``'s options, for every member; a ``name`` names the
                members ``name[1]``, ``name[2]``, ...

        Raises:
            InvalidArgumentError: No actions, or a bad option (see :meth:`add`).
            InvalidActionError: One of them cannot be run as an action, or, in a
                durable queue, its class is not registered.
            StateError: In a durable queue, a member's state cannot be written as
                JSON, or would not come back the same.
            LifecycleError: The queue has already started executing.
        """
        self._add_group(actions, options)
