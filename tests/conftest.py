"""Shared fixtures."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
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


PG_ENV = "ACTIONQUEUES_TEST_POSTGRES"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL server the tests may create schemas in. Without one the
    PostgreSQL tests skip, saying how to enable them; in CI (CI set) they fail."""
    url = os.environ.get(PG_ENV)
    if not url:
        msg = (
            f"the PostgreSQL tests need a server: set {PG_ENV}=postgresql://USER@HOST:PORT/DB "
            "(a database the tests may create and drop schemas in)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{msg}; in CI they must run")
        pytest.skip(msg)
    return url


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A schema of the test's own, dropped afterwards."""
    import psycopg

    name = f"aq_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
