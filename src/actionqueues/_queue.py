"""``ActionQueue``: the synchronous queue, on the driver it shares with the async one."""

from __future__ import annotations

from ._driver_sync import SyncDriver


class ActionQueue(SyncDriver):
    """A queue of actions, executed in order and rolled back in reverse on failure.

    Add actions with :meth:`add`, then either call :meth:`run` (execute, and on
    failure roll back and re-raise) or, as in 0.8.2, :meth:`execute` and, when it
    raises, :meth:`rollback`. A queue runs once and is not safe to share between
    threads while it runs.

    Args:
        name: The run's name in reports, events, logs and the journal; None (the
            default) for an unnamed run.
        retry: Retry policy for every step's ``execute``, unless the step has its
            own. None (the default): nothing is retried, but for an action that
            raises :class:`ActionRetryException`.
        rollback_retry: Retry policy for every step's ``rollback``; None as for
            ``retry``.
        listeners: Callables that receive events (see :class:`Event` and
            :data:`Listener`); none by default. Rollback failures are logged
            whatever the listeners.
        strict: Raise :class:`RollbackError` from :meth:`rollback` (and :meth:`run`)
            when any rollback failed, after every rollback was tried. Off by default:
            rollback failures are logged and reported, not raised.
        timings: Measure durations (each step's, and the run's) for the report. Also
            on whenever listeners are attached or a retry policy is declared;
            otherwise the report's durations are None and the clock is never read.
        journal: Record the run there, so that it survives a crash (a durable
            queue); None (the default) keeps the run in memory only.
        registry: Where a durable queue's action classes are registered; the
            default registry (``@durable``) if None.
        recovery: What recovery does with the run if its process dies: ``"rollback"``
            (the default) or ``"resume"`` (execute again from the step that was
            executing, which must therefore be idempotent).
        run_id: The run's id in the journal, unique in it; a random one if None.
        one_commit_per_step: Deprecated, and without effect: a step's "executed"
            record goes with the next step's "executing" one whenever nothing runs
            between them (see the docs' "One commit per step"). Passing it warns.
        timeout: :class:`AsyncActionQueue`'s; ``ActionQueue`` cannot interrupt a
            call, and refuses anything but None.

    Raises:
        InvalidArgumentError: An argument is of the wrong type or out of range (a
            ``timeout``; with a ``journal``, a ``run_id`` or ``name`` it cannot
            store).
        InvalidPolicyError: ``retry`` or ``rollback_retry`` is not a
            :class:`RetryPolicy`.
        InvalidListenerError: A listener is not callable, or subscribes to
            something that is not an event.

    .. versionchanged:: 1.0
       Keyword arguments, :meth:`run` and :attr:`report`.
    """
