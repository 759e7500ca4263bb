"""Both drivers behind one face, so that the contract tests run against each.

``BlockingAsyncQueue`` is an ``AsyncActionQueue`` whose methods are called from sync
test code: each call runs on one event loop kept for the tests, and every action
added is made asynchronous first (its methods become ``async def`` ones that give
way to the loop once before calling the original), so that the async driver really
awaits what it drives.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import types
from collections.abc import Callable, Generator
from typing import Any

from actionqueues import AsyncActionQueue, FunctionAction, RunReport
from actionqueues._action import callable_name

_RUNNER: asyncio.Runner | None = None


def runner() -> asyncio.Runner:
    """The event loop the tests share (closed when the interpreter exits)."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = asyncio.Runner()
        atexit.register(_RUNNER.close)
    return _RUNNER


@types.coroutine
def pause() -> Generator[None, None, None]:
    """Give way to the event loop once (a bare yield, unlike asyncio.sleep, which a
    test may be recording)."""
    yield


def asyncify_function(fn: Callable[[], object]) -> Callable[[], Any]:
    """``fn`` as an ``async def`` function of the same name."""

    @functools.wraps(fn)
    async def call() -> object:
        await pause()
        return fn()

    call.__qualname__ = callable_name(fn)  # what the step is named after
    return call


_CLASSES: dict[type, type] = {}


class _Async:
    """Base of the async stand-ins of action classes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def execute(self) -> object:
        await pause()
        return self.inner.execute()

    async def rollback(self) -> object:
        await pause()
        return self.inner.rollback()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def asyncify(action: Any) -> Any:
    """An async stand-in for an action object (its class's name kept, for reports)."""
    if isinstance(action, FunctionAction):
        return FunctionAction(
            asyncify_function(action.execute),
            asyncify_function(action.rollback),
            name=action.name,
        )
    cls = type(action)
    if cls not in _CLASSES:
        _CLASSES[cls] = type(cls.__name__, (_Async,), {"__qualname__": cls.__qualname__})
    return _CLASSES[cls](action)


class BlockingAsyncQueue:
    """An ``AsyncActionQueue`` with sync methods (see the module's docstring)."""

    def __init__(self, **options: Any) -> None:
        self.queue = AsyncActionQueue(**options)

    def add(self, action: Any, rollback: Any = None, **options: Any) -> None:
        if self.queue._durable is not None:  # registered classes: added as they are
            self.queue.add(action, rollback, **options)
            return
        if hasattr(action, "execute") or hasattr(action, "rollback"):
            action = asyncify(action)
        elif callable(action):
            action = asyncify_function(action)
        if callable(rollback):
            rollback = asyncify_function(rollback)
        self.queue.add(action, rollback, **options)

    def execute(self) -> None:
        runner().run(self.queue.execute())

    def rollback(self) -> None:
        runner().run(self.queue.rollback())

    def run(self) -> RunReport:
        return runner().run(self.queue.run())

    @property
    def report(self) -> RunReport:
        return self.queue.report

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)
