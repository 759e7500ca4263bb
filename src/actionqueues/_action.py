"""Actions: 0.8.2's ``Action`` base class, and plain functions as actions."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import FunctionType
from typing import Final, Generic, Protocol, TypeVar, runtime_checkable

T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class ActionLike(Protocol):
    """Anything with ``execute()`` and ``rollback()`` methods is an action.

    A protocol for type hints and ``isinstance`` checks; nothing needs to inherit
    from it. Subclass :class:`Action` for methods that do nothing by default.

    .. versionadded:: 1.0
    """

    def execute(self) -> object:
        """Do the step's work; raise to fail it.

        Raise :class:`ActionRetryException` to be called again; any other exception
        fails the step (unless a retry policy retries it) and stops the queue.

        Returns:
            Anything, kept on the report (``StepReport.result``). An
            ``AsyncActionQueue`` awaits an awaitable first; ``ActionQueue`` refuses a
            coroutine.
        """

    def rollback(self) -> object:
        """Undo what ``execute`` did, as far as it got.

        Called for a step whose ``execute`` was called, the one that raised included,
        so it must tolerate a step that did only part of its work, or none.

        Returns:
            Anything; it is ignored (an ``AsyncActionQueue`` awaits an awaitable).
        """


class Action:
    """A base class for actions whose methods do nothing (0.8.2).

    Subclass it and override :meth:`execute` and :meth:`rollback`; keep on ``self``
    whatever the rollback needs, such as the primary key of a row the execute created.
    """

    def execute(self) -> object:
        """Execute this action; the base class does nothing.

        Save state on the object to allow for rollback of side-effects. Raise
        :class:`ActionRetryException` to be called again, any other exception to fail.

        Returns:
            What the step returns, kept on the report (``StepReport.result``);
            None here.
        """
        return None

    def rollback(self) -> object:
        """Roll back the side-effects of the action; the base class does nothing.

        Called when a later action in the queue fails, or this action's own
        ``execute`` raised: rollbacks must tolerate a step that got only part way.

        Returns:
            Anything; the queue ignores it. None here.
        """
        return None


def _nothing() -> None:
    return None


class FunctionAction(Generic[T_co]):
    """A pair of plain functions used as an action.

    ``queue.add(create, delete)`` wraps its arguments in one of these. Both functions
    are called with no arguments; bind what they need with a closure or
    :func:`functools.partial`. What ``execute`` returns is kept on the report.

    Args:
        execute: Does the work.
        rollback: Undoes it; omitted, rollback does nothing.
        name: The step's name in reports and events; the function's name by default.

    .. versionadded:: 1.0
    """

    __slots__ = ("_name", "execute", "rollback")

    execute: Callable[[], T_co]
    rollback: Callable[[], object]

    def __init__(
        self,
        execute: Callable[[], T_co],
        rollback: Callable[[], object] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.execute = execute
        self.rollback = _nothing if rollback is None else rollback
        self._name = name  # the function's, taken when first asked for (add() is hot)

    @property
    def name(self) -> str:
        """The step's name in reports and events."""
        if self._name is None:
            self._name = callable_name(self.execute)
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __repr__(self) -> str:
        return f"FunctionAction({self.execute!r}, {self.rollback!r}, name={self.name!r})"


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` makes a coroutine: an ``async def`` function (or an
    object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the method itself, not callable()
    )


_CO_COROUTINE: Final = inspect.CO_COROUTINE


def function_action(fn: object, undo: object) -> FunctionAction[object] | None:
    """add(fn, undo)'s fast path: the action of two plain ``def`` functions (``undo``
    may be None) with no attributes of their own (nothing that would make one an
    action object, or mark it async): a few attribute reads, where inspect's test
    costs microseconds. None for anything else, which add() checks in full."""
    if type(fn) is not FunctionType or fn.__dict__ or fn.__code__.co_flags & _CO_COROUTINE:
        return None
    if undo is not None and (
        type(undo) is not FunctionType or undo.__dict__ or undo.__code__.co_flags & _CO_COROUTINE
    ):
        return None
    return FunctionAction(fn, undo)  # its name, callable_name()'s, when asked for


def callable_name(fn: object) -> str:
    """A readable name for a function, a partial, or any other callable."""
    inner = getattr(fn, "func", fn)  # functools.partial
    name = getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None)
    if not isinstance(name, str):
        name = type(inner).__qualname__
    return name.rpartition("<locals>.")[2]  # "outer.<locals>.inner" -> "inner"
