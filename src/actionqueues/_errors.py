"""Errors raised by actionqueues.

Every error class of the library is here; the hierarchy::

    Exception
    ├── ActionRetryException            an action asks to be called again (0.8.2)
    └── ActionQueueError                base of every error the library raises itself
        ├── LifecycleError              (also AssertionError) a method called out of order
        ├── InvalidArgumentError        (also TypeError, ValueError) bad input
        │   ├── InvalidActionError      add() was given something that is not an action
        │   ├── InvalidPolicyError      a bad retry policy (or a predicate's bad answer)
        │   ├── InvalidListenerError    a listener that cannot be called
        │   └── InvalidBackoffError     an action raised ActionRetryException(bad ms_backoff)
        ├── StateError                  (also ValueError) a durable action's state is not JSON
        ├── JournalError                the journal cannot be opened, read or written
        │   └── LeaseLostError          a recoverer took the run over
        └── RollbackError               (also ExceptionGroup) strict mode: rollbacks failed

Bad arguments are refused before any action runs; only ``InvalidBackoffError`` (and a
retry predicate's bad answer) can arise while a queue runs, and then it fails the step
that caused it; and, in a durable queue, a ``StateError`` or a ``JournalError``, which
stops the run. The user's own exceptions are never wrapped: they propagate as the very
objects the actions raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import RunReport


class ActionRetryException(Exception):
    """Raised by an action's ``execute`` or ``rollback`` to be called again.

    The queue sleeps ``ms_backoff`` milliseconds and calls the same method again, for as
    long as the action keeps raising it. Under a declared retry policy each retry spends
    one of the policy's attempts; when they run out, ``original_exception`` propagates
    if one was given, else this exception.

    Args:
        ms_backoff: Milliseconds to wait before the next call. Checked by the queue when
            the exception arrives: a negative, infinite or non-numeric value fails the
            action with :class:`InvalidBackoffError`.
        original_exception: The failure being retried, if any.

    .. versionchanged:: 1.0
       ``original_exception``.
    """

    def __init__(
        self, ms_backoff: float = 0, original_exception: BaseException | None = None
    ) -> None:
        # 0.8.2 did not call Exception.__init__, so ``args`` holds whatever was passed
        # positionally; keep it that way.
        self.ms_backoff = ms_backoff
        self.original_exception = original_exception


class ActionQueueError(Exception):
    """Base class of every error raised by actionqueues itself.

    .. versionadded:: 1.0
    """


class LifecycleError(ActionQueueError, AssertionError):
    """A queue method was called out of order (add → execute → rollback).

    It is an ``AssertionError`` because 0.8.2 signalled these with ``assert``; unlike an
    ``assert`` it is raised under ``python -O`` too.

    .. versionadded:: 1.0
    """


class InvalidArgumentError(ActionQueueError, TypeError, ValueError):
    """An argument is of the wrong type or out of range; the message names the fix.

    .. versionadded:: 1.0
    """


class InvalidActionError(InvalidArgumentError):
    """An object cannot be run as an action, or registered as a durable one.

    Raised by ``add()`` (and ``add_parallel()``), by :meth:`Registry.register` and
    :func:`durable`, before anything runs.

    .. versionadded:: 1.0
    """


class InvalidPolicyError(InvalidArgumentError):
    """A retry policy's argument is out of range or of the wrong type.

    Also raised while a queue runs when a retry predicate returns an unusable answer;
    it then fails the step (or its rollback) whose exception was being judged.

    .. versionadded:: 1.0
    """


class InvalidListenerError(InvalidArgumentError):
    """A listener is not callable, or subscribes to something that is not an event.

    .. versionadded:: 1.0
    """


class InvalidBackoffError(InvalidArgumentError):
    """An action raised ``ActionRetryException`` with an unusable ``ms_backoff``.

    It fails the step (or the rollback) whose action raised it, like any failure of
    that call, and is not retried.

    Args:
        message: What was wrong, and what to pass instead.
        step: The name of the step whose action raised it.

    Attributes:
        step: The name of the step whose action raised it.

    .. versionadded:: 1.0
    """

    def __init__(self, message: str, step: str = "") -> None:
        super().__init__(message, step)
        self.step = step

    def __str__(self) -> str:
        return str(self.args[0])


class RollbackError(ActionQueueError, ExceptionGroup[Exception]):
    """Strict mode: one or more rollbacks failed after every rollback was tried.

    Raised by ``rollback()`` and ``run()`` of a queue created with ``strict=True``,
    once every rollback has been tried. Its ``__cause__`` is the execution failure
    that led to the rollback, if execution failed.

    Args:
        message: The run's summary.
        exceptions: The rollback failures, latest step first (the order they were
            rolled back in).
        report: The run's report.

    Attributes:
        exceptions: The rollback failures, as given.
        report: The run's report, or None.

    .. versionadded:: 1.0
    """

    report: RunReport | None

    def __new__(
        cls, message: str, exceptions: Sequence[Exception], *, report: RunReport | None = None
    ) -> RollbackError:
        self = super().__new__(cls, message, exceptions)
        self.report = report
        return self

    def __init__(
        self, message: str, exceptions: Sequence[Exception], *, report: RunReport | None = None
    ) -> None:
        super().__init__(message, exceptions)


class StateError(ActionQueueError, ValueError):
    """An action's state cannot be written as JSON, or read back.

    .. versionadded:: 1.0
    """


class JournalError(ActionQueueError):
    """The journal cannot be opened, read or written.

    The disk is full, the file or database is read-only, locked, corrupt, or was
    written by a newer actionqueues; the journal is closed; or an argument given to
    it is wrong. A durable queue raises it before the side effect of the step whose
    record could not be written.

    .. versionadded:: 1.0
    """


class LeaseLostError(JournalError):
    """This process no longer owns the run: its lease expired and a recoverer claimed it.

    The run stops here; the recoverer finishes it.

    .. versionadded:: 1.0
    """
