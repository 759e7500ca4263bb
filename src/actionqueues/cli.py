"""The ``actionqueues`` command: list, inspect, recover and prune runs; a demo.

It needs the ``[cli]`` extra (rich, for tables and progress); without it, it says
how to install it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._recovery import recovering
from .journal import UNFINISHED, Journal, JournalError, RunRow, StepRow, open_journal

if TYPE_CHECKING:
    from rich.console import Console

ENV = "ACTIONQUEUES_JOURNAL"
SCHEMA_ENV = "ACTIONQUEUES_SCHEMA"
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """A mistake in the command line: exit status 2."""


def age(text: str) -> float:
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w`` or plain seconds, as seconds."""
    match = _AGE.match(text.strip())
    if match is None:
        msg = f"{text!r} is not an age; write it like 30s, 15m, 12h, 7d or 2w"
        raise argparse.ArgumentTypeError(msg)
    return float(match.group(1)) * _UNITS[match.group(2)]


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="actionqueues",
        description="Inspect and recover the runs of durable action queues.",
    )
    main.add_argument(
        "--journal",
        help=f"the journal: a file path, sqlite:/// or postgresql:// URL (default: ${ENV})",
    )
    main.add_argument(
        "--schema",
        default=os.environ.get(SCHEMA_ENV, "actionqueues"),
        help=f"a PostgreSQL journal's schema (default: ${SCHEMA_ENV}, else actionqueues)",
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="a sign-up crashed with SIGKILL, and recovered")
    demo.add_argument("--dir", type=Path, help="keep the demo's files in this folder")
    runs = commands.add_parser("runs", help="list runs")
    runs.add_argument(
        "--status",
        choices=[
            "running",
            "failed",
            "rolling_back",
            "interrupted",
            "completed",
            "rolled_back",
            "rollback_failed",
        ],
    )
    runs.add_argument("--name", help="only runs of the queue with this name")
    runs.add_argument("--older-than", type=age, metavar="AGE", help="last updated before")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true", help="JSON lines, for scripts")
    show = commands.add_parser("show", help="one run's step timeline")
    show.add_argument("run", help="a run id, or a unique prefix of one")
    show.add_argument("--json", action="store_true")
    rec = commands.add_parser("recover", help="roll back (or resume) interrupted runs")
    rec.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, to register its durable action classes (repeatable)",
    )
    rec.add_argument("--watch", action="store_true", help="keep recovering until stopped")
    rec.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    rec.add_argument("--batch", type=int, default=100, help="runs to claim per round (default 100)")
    prune = commands.add_parser("prune", help="delete finished runs")
    prune.add_argument("--older-than", type=age, metavar="AGE", required=True)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit status."""
    try:
        from rich.console import Console
    except ImportError:
        sys.stderr.write(
            "The actionqueues command needs the [cli] extra: pip install 'actionqueues[cli]'\n"
        )
        return 2
    args = parser().parse_args(argv)
    out, err = Console(), Console(stderr=True)
    try:
        if args.command == "demo":
            return demo(out, args.dir)
        worker = args.command == "recover" and args.watch
        if worker and threading.current_thread() is threading.main_thread():
            # SIGTERM (a service manager stopping the worker): finish the run in
            # hand, then exit 0; a run not yet claimed stays for the next worker.
            signal.signal(signal.SIGTERM, lambda signum, frame: STOPPING.set())
        journal = opened_waiting(out, args) if worker else opened(args.journal, args.schema)
        if journal is None:  # stopped while waiting for the journal
            out.print("stopped (SIGTERM)")
            return 0
        try:
            return int(COMMANDS[args.command](out, journal, args))
        finally:
            journal.close()
    except UsageError as exc:
        err.print(f"actionqueues: {exc}", markup=False, highlight=False)
        return 2
    except JournalError as exc:
        err.print(f"actionqueues: {exc}", markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


STOPPING = threading.Event()  # set by SIGTERM in a worker (recover --watch)


def opened_waiting(out: Console, args: argparse.Namespace) -> Journal | None:
    """A worker's journal: while it cannot be opened (a database not up yet), try
    again with backoff; None if stopped meanwhile."""
    backoff = 0.0
    while not STOPPING.is_set():
        try:
            return opened(args.journal, args.schema)
        except JournalError as exc:
            backoff = wait_for_journal(out, args, exc, backoff)
    return None


def wait_for_journal(
    out: Console, args: argparse.Namespace, exc: JournalError, backoff: float
) -> float:
    """A worker's journal failed: say so, and wait twice as long as the last time
    (from 0.5 s, at most 30 s or --interval), or until SIGTERM; that wait."""
    backoff = min(max(2 * backoff, 0.5), max(args.interval, 30.0))
    out.print(f"journal unavailable ({exc}); trying again in {backoff:g} s", markup=False)
    STOPPING.wait(backoff)
    return backoff


def opened(where: str | None, schema: str = "actionqueues") -> Journal:
    target = where or os.environ.get(ENV)
    if not target:
        msg = (
            "say which journal: --journal PATH (or a sqlite:/// or postgresql:// URL), "
            f"or set ${ENV}"
        )
        raise UsageError(msg)
    if target.startswith("sqlite:///") or "://" not in target:
        path = Path(target.removeprefix("sqlite:///"))
        if not path.exists():
            msg = f"no journal at {path}"
            raise UsageError(msg)
    if target.startswith(("postgresql://", "postgres://")):
        return open_journal(target, schema=schema)
    return open_journal(target)


def when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def status_of(row: RunRow, now: float) -> str:
    """The run's status, or ``interrupted`` when its owner's lease expired by ``now``
    (the journal's clock: a PostgreSQL journal's is the database's)."""
    if row.status in UNFINISHED and row.lease_until < now:
        return "interrupted"
    return row.status


def cmd_runs(out: Console, journal: Journal, args: argparse.Namespace) -> int:
    now = journal.now()
    before = None if args.older_than is None else now - args.older_than
    rows = journal.runs(status=args.status, name=args.name, before=before, limit=args.limit)
    if args.json:
        for row in rows:  # JSON lines, unstyled, for scripts
            sys.stdout.write(json.dumps({**row._asdict(), "status": status_of(row, now)}) + "\n")
        return 0
    from rich.table import Table

    table = Table("run", "name", "status", "steps", "claims", "updated", "error")
    for row in rows:
        table.add_row(
            row.id,
            row.name or "",
            status_of(row, now),
            str(row.steps),
            str(row.claims),
            when(row.updated),
            row.error or "",
        )
    out.print(table)
    return 0


def find(journal: Journal, prefix: str) -> tuple[RunRow, list[StepRow]]:
    loaded = journal.load(prefix)
    if loaded is not None:
        return loaded
    matches = [r for r in journal.runs(limit=None) if r.id.startswith(prefix)]
    if len(matches) != 1:
        msg = f"no run {prefix!r}" if not matches else f"{prefix!r} matches {len(matches)} runs"
        raise UsageError(msg)
    found = journal.load(matches[0].id)
    assert found is not None
    return found


def cmd_show(out: Console, journal: Journal, args: argparse.Namespace) -> int:
    run, steps = find(journal, args.run)
    status = status_of(run, journal.now())
    if args.json:
        record = {
            **run._asdict(),
            "status": status,
            "step_list": [{**s._asdict(), "state": json.loads(s.state)} for s in steps],
        }
        sys.stdout.write(json.dumps(record) + "\n")
        return 0
    from rich.table import Table

    out.print(f"run {run.id} ({run.name or 'unnamed'}): {status}, claimed {run.claims}x")
    if run.error:
        out.print(f"error: {run.error}", markup=False)
    table = Table("#", "step", "action", "status", "tries", "undos", "updated", "error")
    for s in steps:
        table.add_row(
            str(s.index + 1),
            s.name,
            s.action,
            s.status,
            str(s.attempts),
            str(s.rollback_attempts),
            when(s.updated),
            s.rollback_error or s.error or "",
        )
    out.print(table)
    return 0


def cmd_recover(out: Console, journal: Journal, args: argparse.Namespace) -> int:
    for module in args.imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            msg = f"--import {module}: {exc}"
            raise UsageError(msg) from exc
    stopping = STOPPING
    unfinished = 0
    backoff = 0.0  # after the journal failed (a database restarting): the next wait
    while not stopping.is_set():
        try:
            done, failed = recover_round(out, journal, args, stopping)
        except JournalError as exc:
            if not args.watch:
                raise
            # Reconnect with backoff: nothing is lost meanwhile (a run claimed when
            # the journal failed is claimed again once its lease expires).
            backoff = wait_for_journal(out, args, exc, backoff)
            continue
        backoff = 0.0
        unfinished += failed
        if not args.watch:
            if not done:
                out.print("nothing to recover")
            return 1 if unfinished else 0
        if done < args.batch:  # caught up: wait for more
            stopping.wait(args.interval)
    out.print("stopped (SIGTERM)")
    return 0


def recover_round(
    out: Console, journal: Journal, args: argparse.Namespace, stopping: threading.Event
) -> tuple[int, int]:
    """Recover up to ``--batch`` runs; how many, and how many did not end well."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    waiting = min(len(journal.runs(status="interrupted", limit=None)), args.batch)
    done = unfinished = 0
    with Progress(
        TextColumn("recovering"),
        BarColumn(),
        MofNCompleteColumn(),
        console=out,
        transient=True,
        disable=not waiting,
    ) as progress:
        task = progress.add_task("runs", total=waiting)
        for r in recovering(journal, limit=args.batch):
            done += 1
            progress.advance(task)
            line = f"{r.run_id} ({r.name or 'unnamed'}): {r.outcome}"
            progress.console.print(line + (f" - {r.problem}" if r.problem else ""), markup=False)
            unfinished += r.outcome not in ("completed", "rolled_back")
            if stopping.is_set():
                break
    return done, unfinished


def cmd_prune(out: Console, journal: Journal, args: argparse.Namespace) -> int:
    count = journal.prune(journal.now() - args.older_than)
    out.print(f"pruned {count} finished run{'s' * (count != 1)}")
    return 0


def demo(out: Console, folder: Path | None) -> int:
    from ._demo import run_demo

    keep = folder is not None
    work = folder or Path(tempfile.mkdtemp(prefix="actionqueues-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ok = run_demo(
            work, out=lambda line: out.print(line, markup=False, highlight=False, soft_wrap=True)
        )
    finally:
        if keep:
            out.print(
                f"\nThe demo's files are in {work}: users.db, billing.db, mail.db, journal.db"
            )
        else:
            shutil.rmtree(work, ignore_errors=True)
            out.print(f"\n(The demo worked in {work}, now removed.)")
    return 0 if ok else 1


COMMANDS: dict[str, Any] = {
    "runs": cmd_runs,
    "show": cmd_show,
    "recover": cmd_recover,
    "prune": cmd_prune,
}
