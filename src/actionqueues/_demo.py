"""``actionqueues demo``: a sign-up that writes to three systems, crashed and recovered.

Three SQLite files stand in for a user database, a billing ledger and a mail outbox.
Part 1 signs a user up while the mail system is down: execute, failure, rollback,
step by step. Part 2 signs another user up in a child process and kills it with
SIGKILL between "charged" and "mail queued"; the user and the charge are left
behind, and recovery, from the journal, undoes both.

With ``--dir`` the files are kept in a folder of the user's choosing. The demo writes
there only if the folder is new, holds none of the demo's file names, or was made
by an earlier demo (it holds the demo's marker file): someone's own ``users.db`` is
never written to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ._context import idempotency_key
from ._events import (
    Event,
    RollbackFailed,
    StepFailed,
    StepRetrying,
    StepRolledBack,
    StepStarted,
    StepSucceeded,
)
from ._queue import ActionQueue
from ._recovery import recover
from ._registry import Registry
from ._status import Phase
from .journal import SQLiteJournal

demo_actions = Registry()
LEASE = 1.0
#: The files the demo writes (each with SQLite's companions: -journal, -wal, -shm).
FILES = ("users.db", "billing.db", "mail.db", "journal.db")
#: In a ``--dir`` folder: the demo made these files, and may write them again.
MARKER = ".actionqueues-demo"


def prepare(folder: Path) -> str | None:
    """Make ``folder`` ready for the demo's files; what is wrong with it, if anything
    (and then nothing is touched): it is a file, it cannot be made or written, or it
    holds files by the demo's names that an earlier demo did not make."""
    if folder.exists() and not folder.is_dir():
        return f"demo --dir {folder}: that is a file; give a folder (new, or empty)"
    if folder.is_dir() and not (folder / MARKER).is_file():
        taken = [
            name
            for base in FILES
            for name in (base, f"{base}-journal", f"{base}-wal", f"{base}-shm")
            if os.path.lexists(folder / name)
        ]
        if taken:
            return (
                f"demo --dir {folder}: it holds {', '.join(taken)}, which the demo would "
                "write to and did not make; give a new or empty folder"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).write_text(
            "Made by `actionqueues demo`: its files here may be written again by it.\n"
        )
    except OSError as exc:
        return f"demo --dir {folder}: cannot write there: {exc.strerror or exc}"
    return None


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, value TEXT)")
    return db


@demo_actions.register("demo.write")
@dataclasses.dataclass
class WriteRow:
    """Write a row to one system; roll back by deleting it (harmless if absent)."""

    system: str
    path: str
    value: str
    down: bool = False
    pause: float = 0.0

    def execute(self) -> None:
        if self.down:
            msg = f"{self.system} is down"
            raise ConnectionError(msg)
        with contextlib.closing(connect(self.path)) as db:
            db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?)", (idempotency_key(), self.value))
        time.sleep(self.pause)  # part 2 is killed here, after the write

    def rollback(self) -> None:
        with contextlib.closing(connect(self.path)) as db:
            db.execute("DELETE FROM rows WHERE key = ?", (idempotency_key(),))


def sign_up(
    journal: SQLiteJournal,
    folder: Path,
    email: str,
    *,
    mail_down: bool,
    pause: float = 0.0,
    out: Callable[[str], None] = print,
) -> ActionQueue:
    """The sign-up queue: create the user, charge the card, queue the welcome mail."""
    queue = ActionQueue(
        name=f"sign up {email}", journal=journal, registry=demo_actions, listeners=[narrate(out)]
    )
    queue.add(WriteRow("users", str(folder / "users.db"), email), name="create user")
    queue.add(
        WriteRow("billing", str(folder / "billing.db"), f"charge {email} $10", pause=pause),
        name="charge card",
    )
    queue.add(
        WriteRow("mail", str(folder / "mail.db"), f"welcome {email}", down=mail_down),
        name="queue welcome mail",
    )
    return queue


def narrate(out: Callable[[str], None]) -> Callable[[Event], None]:
    def listener(event: Event) -> None:
        if isinstance(event, StepStarted) and event.attempt == 1:
            verb = "executing" if event.phase is Phase.EXECUTE else "rolling back"
            out(f"  {verb:<12} step {event.index + 1}: {event.step}")
        elif isinstance(event, StepSucceeded):
            out(f"  {'done':<12} step {event.index + 1}: {event.step}")
        elif isinstance(event, StepFailed):
            out(f"  {'FAILED':<12} step {event.index + 1}: {event.step}: {event.error}")
        elif isinstance(event, StepRetrying):
            out(f"  {'retrying':<12} step {event.index + 1}: {event.step}")
        elif isinstance(event, StepRolledBack):
            out(f"  {'undone':<12} step {event.index + 1}: {event.step}")
        elif isinstance(event, RollbackFailed):
            out(f"  {'UNDO FAILED':<12} step {event.index + 1}: {event.step}: {event.error}")

    return listener


def systems(folder: Path) -> dict[str, list[str]]:
    """What each system holds now."""
    found = {}
    for name in ("users", "billing", "mail"):
        with contextlib.closing(connect(str(folder / f"{name}.db"))) as db:
            found[name] = [v for (v,) in db.execute("SELECT value FROM rows ORDER BY value")]
    return found


def child(folder: Path) -> None:
    """Part 2's child process: a sign-up whose charge step pauses long enough to die."""
    journal = SQLiteJournal(folder / "journal.db", lease=LEASE)
    queue = sign_up(
        journal, folder, "bob@example.com", mail_down=False, pause=60.0, out=lambda _: None
    )
    queue.run()


def run_demo(folder: Path, out: Callable[[str], None] = print) -> bool:
    """Both parts; True when every system ended as it should."""
    journal = SQLiteJournal(folder / "journal.db", lease=LEASE)
    out("Part 1: sign up ada@example.com while the mail system is down")
    queue = sign_up(journal, folder, "ada@example.com", mail_down=True, out=out)
    with contextlib.suppress(ConnectionError):
        queue.run()
    out(f"  -> {queue.report.summary()}")
    after_one = systems(folder)
    out(f"  systems now: {after_one}")

    out("\nPart 2: sign up bob@example.com in a child process, killed with SIGKILL")
    out("        between 'charge card' and 'queue welcome mail'")
    # Our own interpreter and module, and a folder we made: nothing from outside.
    proc = subprocess.Popen([sys.executable, "-m", "actionqueues._demo", str(folder)])  # noqa: S603
    deadline = time.monotonic() + 30
    while not systems(folder)["billing"] and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out(f"  child {proc.pid} killed; systems now: {systems(folder)}")
    out(f"  waiting {LEASE:.0f} s for the dead owner's lease to expire, then recovering")
    time.sleep(LEASE + 0.2)
    for result in recover(journal, registry=demo_actions, listeners=[narrate(out)]):
        out(f"  -> recovered run {result.run_id[:8]}: {result.outcome}")
    journal.close()
    final = systems(folder)
    out(f"  systems now: {final}")
    ok = final == {"users": [], "billing": [], "mail": []}
    out("\nEvery system is as it was before either sign-up." if ok else "\nSomething is left over!")
    return ok


if __name__ == "__main__":
    child(Path(sys.argv[1]))
