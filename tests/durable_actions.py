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
        with contextlib.closing(system(self.path)) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM effects WHERE key = ?", (step.key,))
            db.execute("INSERT INTO compensations VALUES (?, ?)", (step.key, step.claim))
            db.execute("COMMIT")
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
