"""Shared fixtures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from _drivers import BlockingAsyncQueue

import actionqueues
from actionqueues.actionqueue import ActionQueue


@pytest.fixture
def log() -> list[tuple[str, str]]:
    """A fresh call log."""
    return []


@pytest.fixture
def instant() -> Iterator[None]:
    """Retry waits are instant for the test."""
    with actionqueues.set_testing():
        yield


@pytest.fixture(params=["sync", "async"])
def Queue(request: pytest.FixtureRequest) -> type:
    """The queue class under test: ``ActionQueue`` (from its 0.8.2 path), or an
    ``AsyncActionQueue`` driven from sync code (see ``_drivers``)."""
    return ActionQueue if request.param == "sync" else BlockingAsyncQueue


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the queues make (instantly), through time.sleep or asyncio.sleep."""
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(time, "sleep", waits.append)
    monkeypatch.setattr(asyncio, "sleep", asleep)
    return waits
