"""Shared fixtures."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _drivers import BlockingAsyncQueue
from durable_actions import system

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


@pytest.fixture
def sysdb(tmp_path: Path) -> str:
    """An external system's database file (see ``durable_actions``), created empty."""
    path = str(tmp_path / "system.db")
    system(path).close()
    return path


PG_ENV = "ACTIONQUEUES_TEST_POSTGRES"
# Where this kind of machine runs PostgreSQL (trust auth, database "test"); used when
# ACTIONQUEUES_TEST_POSTGRES is not set and the server answers there.
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> str | None:
    """Why the server at ``url`` cannot be used, or None when it answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install '.[dev]')"
    try:
        psycopg.connect(url, connect_timeout=3, autocommit=True).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL server the tests may create schemas in: $ACTIONQUEUES_TEST_POSTGRES,
    else the local default when it answers. Without one the PostgreSQL tests skip,
    saying why in the summary; in CI (CI set) they fail."""
    url = os.environ.get(PG_ENV)
    problem = _answers(url or PG_DEFAULT)
    if problem is None:
        return url or PG_DEFAULT
    msg = (
        f"no PostgreSQL server at {url or PG_DEFAULT} ({problem}); to run the PostgreSQL "
        f"tests, start it or set {PG_ENV}=postgresql://USER@HOST:PORT/DB (a database the "
        "tests may create and drop schemas in)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{msg}; in CI they must run")
    pytest.skip(msg)


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A schema of the test's own, dropped afterwards."""
    import psycopg

    name = f"aq_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
