"""Durable actions shared by the durable tests and their child processes.

Each action writes its side effect to an external SQLite "system" (its own file), as
a real service would: a row keyed by the step's idempotency key, so executing again
is harmless; its rollback deletes the row and logs the compensation with the claim
it ran under, so a test can see whether a compensation ran twice in one claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3

import actionqueues

registry = actionqueues.Registry()

SYSTEM_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS compensations (key TEXT, claim INTEGER)",
)


def system(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for statement in SYSTEM_SCHEMA:
        db.execute(statement)
    return db


def effects(path: str) -> list[str]:
    """The values of the effects the system at ``path`` holds, sorted."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [r[0] for r in db.execute("SELECT value FROM effects ORDER BY value")]


def compensate(path: str, column: str, value: object, logged: str) -> None:
    """Delete the effect whose ``column`` is ``value``, and log the compensation as
    ``logged`` with the claim it runs under, in one transaction."""
    sql = {
        "key": "DELETE FROM effects WHERE key = ?",
        "rowid": "DELETE FROM effects WHERE rowid = ?",
    }
    with contextlib.closing(system(path)) as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(sql[column], (value,))
        db.execute(
            "INSERT INTO compensations VALUES (?, ?)", (logged, actionqueues.current_step().claim)
        )
        db.execute("COMMIT")


class Crasher:
    """Kills this process with SIGKILL at the n-th instrumented point, if asked."""

    at = int(os.environ.get("AQ_CRASH_AT", "0"))
    seen = 0

    @classmethod
    def point(cls) -> None:
        cls.seen += 1
        if cls.seen == cls.at:
            os.kill(os.getpid(), signal.SIGKILL)


@registry.register("test.write")
@dataclasses.dataclass
class Write:
    """Insert a row into the system at ``path``; fail first if ``fail`` is set."""

    path: str
    value: str
    fail: bool = False
    key: str | None = None

    def execute(self) -> None:
        Crasher.point()
        self.key = actionqueues.idempotency_key()
        with contextlib.closing(system(self.path)) as db:
            db.execute("INSERT OR IGNORE INTO effects VALUES (?, ?)", (self.key, self.value))
        Crasher.point()
        if self.fail:
            raise RuntimeError(f"{self.value} failed")

    def rollback(self) -> None:
        Crasher.point()
        step = actionqueues.current_step()
        compensate(self.path, "key", step.key, step.key)
        Crasher.point()


@registry.register("test.awrite")
@dataclasses.dataclass
class AsyncWrite(Write):
    """``Write`` with ``async def`` methods, for AsyncActionQueue."""

    async def execute(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        Write.execute(self)

    async def rollback(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        Write.rollback(self)


@registry.register("test.row")
@dataclasses.dataclass
class Row:
    """Insert a row into the system and keep its rowid, which only the system knows:
    the rollback deletes that row, and so needs the state after execute (D2). With
    ``kill``, execute kills the process first (before any side effect); with
    ``fail``, it raises instead. Its rollback kills the process first when
    ``$AQ_KILL_UNDO`` names its value (set in the process to kill only)."""

    path: str
    value: str
    row: int | None = None
    kill: bool = False
    fail: bool = False

    def execute(self) -> None:
        if self.kill:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fail:
            raise RuntimeError(f"{self.value} failed")
        with contextlib.closing(system(self.path)) as db:
            self.row = db.execute(
                "INSERT INTO effects VALUES (?, ?)", (f"{self.value}-{os.getpid()}", self.value)
            ).lastrowid

    def rollback(self) -> None:
        if os.environ.get("AQ_KILL_UNDO") == self.value:
            os.kill(os.getpid(), signal.SIGKILL)
        compensate(self.path, "rowid", self.row, self.value)


@registry.register("test.arow")
@dataclasses.dataclass
class AsyncRow(Row):
    """``Row`` with ``async def`` methods; with ``kill``, its execute waits for its
    parallel siblings to return before it kills the process."""

    async def execute(self) -> None:  # type: ignore[override]
        if self.kill:
            await asyncio.sleep(0.3)
        Row.execute(self)

    async def rollback(self) -> None:  # type: ignore[override]
        Row.rollback(self)
