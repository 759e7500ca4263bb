"""The ``actionqueues`` command: list, inspect, recover and prune runs; a demo.

Reading never writes (DESIGN O2): ``runs`` and ``show`` open the journal read-only,
and refuse a file or a schema that is not a journal rather than make one of it.
``recover`` and ``prune`` act on a journal that exists, and refuse one that does not
in the same way (a mistyped path or ``--schema`` must not become a new, empty
journal with nothing to recover). The global options (``--journal``, ``--schema``)
may be given before the command or after it.

Exit status, the same rule for every command:

* 0: done;
* 1: the journal cannot be used (unreachable, corrupt, not a journal, written by a
  newer actionqueues), or the work did not end well (``recover`` left a run
  unfinished or skipped it; the demo left something over);
* 2: the command cannot run as given: bad arguments, no journal named, a journal
  path that does not exist, a run id that matches no run, an ``--import`` module
  that cannot be imported, a demo folder holding files the demo did not make, or
  the ``[cli]`` extra missing;
* 130: interrupted (Ctrl-C).

Tables and progress need the ``[cli]`` extra (rich), imported only when they are
printed: ``--help``, usage errors and ``--json`` output work without it, and
otherwise the command says how to install it. Errors are one line on stderr,
without rich, and psycopg's pool logs nothing (the journal's error says why).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli_args import ENV, UsageError, parser, schema_of
from ._recovery import Recovered, recovering
from ._registry import registry
from ._status import INTERRUPTED, PRUNABLE, UNFINISHED, Outcome, StepStatus
from .journal import Journal, JournalError, RunRow, StepRow, open_journal
from .journal._open import looks_like_dsn
from .journal._redact import redact

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

NEEDS_RICH = (
    "this command prints tables and progress with rich, which is not installed: "
    "pip install 'actionqueues[cli]' (or use --json where the command has it)"
)
_POSTGRES = ("postgresql://", "postgres://")


# -- output ---------------------------------------------------------------------------


class Output:
    """Where the command prints. rich (the ``[cli]`` extra) is imported when a table
    or progress is first printed, so that what needs no rich works without it."""

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            try:
                from rich.console import Console
            except ImportError:
                raise UsageError(NEEDS_RICH) from None
            self._console = Console()
        return self._console

    def line(self, text: str) -> None:
        """``text`` as it is: no markup, no highlighting, never wrapped."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def one_line(text: str) -> str:
    """``text`` on one line: a database server's reason may span several."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def fail(text: str) -> None:
    """An error: one line on stderr, without rich (which may be missing)."""
    sys.stderr.write(f"actionqueues: {one_line(text)}\n")


def cell(value: object) -> Text:
    """A table cell holding ``value`` as plain text: a queue's name or an error with
    square brackets is not rich markup."""
    from rich.text import Text

    return Text("" if value is None else str(value))


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def when(timestamp: object) -> str:
    """A journal's time, local; a tampered one (text, NULL) as it is."""
    if _real(timestamp):
        try:
            moment = datetime.datetime.fromtimestamp(timestamp)  # type: ignore[arg-type]
        except (OverflowError, OSError, ValueError):
            return str(timestamp)
        return moment.isoformat(sep=" ", timespec="seconds")
    return "?" if timestamp is None else str(timestamp)


def _plain(value: object) -> object:
    """``value`` as JSON can hold it: a tampered column's bytes or infinity as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def record(row: RunRow | StepRow) -> dict[str, object]:
    """A row for ``--json``: its columns, each as JSON can hold it."""
    return {key: _plain(value) for key, value in row._asdict().items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit status (see the module's docstring)."""
    args = parser().parse_args(argv)
    # psycopg_pool logs each failed connection attempt; with no handler configured,
    # Python's last-resort handler would print them all. The journal's error says why.
    psycopg_log = logging.getLogger("psycopg")
    if not any(isinstance(h, logging.NullHandler) for h in psycopg_log.handlers):
        psycopg_log.addHandler(logging.NullHandler())
    out = Output()
    try:
        if args.command == "demo":
            return demo(out, args.dir)
        if not getattr(args, "json", False):
            out.console  # noqa: B018 - without rich, say so before touching the journal
        worker = args.command == "recover" and args.watch
        if args.command == "recover":
            import_modules(args.imports)  # a module that cannot be imported: before the journal
        if worker and threading.current_thread() is threading.main_thread():
            # SIGTERM (a service manager stopping the worker): finish the run in
            # hand, then exit 0; a run not yet claimed stays for the next worker.
            signal.signal(signal.SIGTERM, lambda signum, frame: STOPPING.set())
        readonly = args.command in ("runs", "show")
        journal = opened_waiting(out, args) if worker else opened(args, readonly=readonly)
        if journal is None:  # stopped while waiting for the journal
            out.line("stopped (SIGTERM)")
            return 0
        try:
            return int(COMMANDS[args.command](out, journal, args))
        finally:
            journal.close()
    except UsageError as exc:
        fail(str(exc))
        return 2
    except JournalError as exc:
        fail(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


STOPPING = threading.Event()  # set by SIGTERM in a worker (recover --watch)


def opened_waiting(out: Output, args: argparse.Namespace) -> Journal | None:
    """A worker's journal: while it cannot be opened (a database not up yet, a schema
    not made yet), try again with backoff; None if stopped meanwhile."""
    backoff = 0.0
    while not STOPPING.is_set():
        try:
            return opened(args, readonly=False)
        except JournalError as exc:
            backoff = wait_for_journal(out, args, exc, backoff)
    return None


def wait_for_journal(
    out: Output, args: argparse.Namespace, exc: JournalError, backoff: float
) -> float:
    """A worker's journal failed: say so, and wait twice as long as the last time
    (from 0.5 s, at most 30 s or --interval), or until SIGTERM; that wait."""
    backoff = min(max(2 * backoff, 0.5), max(args.interval, 30.0))
    out.line(
        f"journal unavailable ({one_line(str(exc)).rstrip('.')}); trying again in {backoff:g} s"
    )
    STOPPING.wait(backoff)
    return backoff


def target_of(args: argparse.Namespace) -> str:
    """The journal the command line (or ``$ACTIONQUEUES_JOURNAL``) names; a usage
    error if none, if a file path that does not exist, or if no known kind."""
    target: str | None = args.journal or os.environ.get(ENV)
    if not target:
        msg = (
            "say which journal: --journal PATH (or a sqlite:/// or postgresql:// URL), "
            f"or set ${ENV}"
        )
        raise UsageError(msg)
    if target.startswith(_POSTGRES):
        return target
    # What the user typed is shown only redacted: a mistyped URL or a keyword/value
    # connection string may hold a password.
    shown = redact(target)
    if ("://" in target and not target.startswith("sqlite:///")) or looks_like_dsn(target):
        msg = (
            f"--journal {shown!r}: not a journal URL; give a file path, "
            "sqlite:///PATH or postgresql://USER@HOST/DATABASE"
        )
        raise UsageError(msg)
    path = Path(target.removeprefix("sqlite:///"))
    if not path.exists():
        msg = f"no journal at {redact(str(path))}: give the path of an existing journal file"
        raise UsageError(msg)
    if path.is_dir():
        msg = f"--journal {redact(str(path))} is a folder: give the path of a journal file"
        raise UsageError(msg)
    return target


def opened(args: argparse.Namespace, *, readonly: bool) -> Journal:
    """The journal, opened read-only for reading commands. A writing command
    (recover, prune) first opens it read-only too, which refuses a file or schema
    that is not a journal; only then for writing, which may migrate it."""
    target = target_of(args)
    options: dict[str, Any] = (
        {"schema": schema_of(args.schema)} if target.startswith(_POSTGRES) else {}
    )
    reader = open_journal(target, readonly=True, **options)
    if readonly:
        return reader
    reader.close()
    return open_journal(target, **options)


def status_of(row: RunRow, now: float) -> str:
    """The run's status, or ``interrupted`` when its owner's lease expired by ``now``
    (the journal's clock: a PostgreSQL journal's is the database's)."""
    if row.status in UNFINISHED and _real(row.lease_until) and row.lease_until < now:
        return INTERRUPTED
    return str(row.status)


# -- the commands ---------------------------------------------------------------------


def cmd_runs(out: Output, journal: Journal, args: argparse.Namespace) -> int:
    now = journal.now()
    before = None if args.older_than is None else now - args.older_than
    rows = journal.runs(status=args.status, name=args.name, before=before, limit=args.limit)
    if args.json:
        for row in rows:  # JSON lines, unstyled, for scripts
            line = {**record(row), "status": status_of(row, now)}
            sys.stdout.write(json.dumps(line, default=str) + "\n")
        return 0
    from rich.table import Table

    table = Table("run", "name", "status", "steps", "claims", "updated", "error")
    for row in rows:
        table.add_row(
            cell(row.id),
            cell(row.name),
            cell(status_of(row, now)),
            cell(row.steps),
            cell(row.claims),
            cell(when(row.updated)),
            cell(row.error),
        )
    out.console.print(table)
    return 0


def find(journal: Journal, prefix: str) -> tuple[RunRow, list[StepRow]]:
    loaded = journal.load(prefix)
    if loaded is not None:
        return loaded
    matches = journal.find_ids(prefix, limit=2)
    if len(matches) != 1:
        msg = (
            f"no run {prefix!r}: `actionqueues runs` lists them"
            if not matches
            else f"{prefix!r} matches more than one run: give more of the id"
        )
        raise UsageError(msg)
    found = journal.load(matches[0])
    if found is None:  # pruned meanwhile
        msg = f"no run {prefix!r}: `actionqueues runs` lists them"
        raise UsageError(msg)
    return found


def state_of(step: StepRow) -> dict[str, object]:
    """A step's state for ``show --json``: parsed, or, when the journal's text is not
    JSON (tampered with), that text as it is, and why."""
    try:
        return {"state": json.loads(step.state)}
    except (TypeError, ValueError, RecursionError) as exc:
        return {"state": _plain(step.state), "state_error": f"not JSON: {exc}"}


def tries(value: object, status: object, running: str) -> str:
    """A step's attempts as shown: at least 1 for a step whose call was started
    (``running``: executing, or rolling back), which earlier versions recorded as 0
    until the call returned (a step killed mid-call showed "tries 0")."""
    if status == running and _real(value) and value < 1:  # type: ignore[operator]
        return "1"
    return "?" if value is None else str(value)


def cmd_show(out: Output, journal: Journal, args: argparse.Namespace) -> int:
    run, steps = find(journal, args.run)
    status = status_of(run, journal.now())
    if args.json:
        whole = {
            **record(run),
            "status": status,
            "step_list": [{**record(s), **state_of(s)} for s in steps],
        }
        sys.stdout.write(json.dumps(whole, default=str) + "\n")
        return 0
    from rich.table import Table

    out.line(f"run {run.id} ({run.name or 'unnamed'}): {status}, claimed {run.claims}x")
    if run.error:
        out.line(f"error: {run.error}")
    table = Table("#", "step", "action", "status", "tries", "undos", "updated", "error")
    for s in steps:
        table.add_row(
            cell(s.index + 1 if _real(s.index) else s.index),
            cell(s.name),
            cell(s.action),
            cell(s.status),
            cell(tries(s.attempts, s.status, StepStatus.EXECUTING)),
            cell(tries(s.rollback_attempts, s.status, StepStatus.ROLLING_BACK)),
            cell(when(s.updated)),
            cell(s.rollback_error or s.error),
        )
    out.console.print(table)
    return 0


def import_modules(modules: Sequence[str]) -> None:
    """Import the ``--import`` modules, which register durable action classes.

    The current folder is searched first, as ``python -m actionqueues`` does: the
    console script's ``sys.path`` holds its own folder instead, and a module of
    one's own is usually where one runs the command. Only for these imports.

    Raises:
        UsageError: A module cannot be imported: missing, not compiling, or raising.
    """
    if not modules:
        return
    here = os.getcwd()
    sys.path.insert(0, here)
    try:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as exc:
                if isinstance(exc, ModuleNotFoundError) and exc.name == module:
                    hint = "run the command in its folder, or add that folder to PYTHONPATH"
                else:
                    hint = "importing it failed; fix the module"
                msg = f"--import {module}: {type(exc).__name__}: {exc} ({hint})"
                raise UsageError(msg) from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(here)


def cmd_recover(out: Output, journal: Journal, args: argparse.Namespace) -> int:
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
                out.line("nothing to recover" + leased(journal))
            return 1 if unfinished else 0
        if done < args.batch:  # caught up: wait for more
            stopping.wait(args.interval)
    out.line("stopped (SIGTERM)")
    return 0


def leased(journal: Journal) -> str:
    """What "nothing to recover" leaves out: unfinished runs whose owner's lease has
    not expired (right after a crash, until the lease runs out), and when the first
    does, by the journal's clock."""
    now = journal.now()
    waiting = [
        row.lease_until
        for status in UNFINISHED
        for row in journal.runs(status=status)
        if _real(row.lease_until) and row.lease_until >= now
    ]
    if not waiting:
        return ""
    first = min(waiting)
    until = f"until {when(first)} (in {first - now:.0f} s)"
    if len(waiting) == 1:
        return (
            f" yet: 1 unfinished run is still leased by its owner, {until}; the owner "
            "may still be running it, and if it crashed, recover after that"
        )
    return (
        f" yet: {len(waiting)} unfinished runs are still leased by their owners, the "
        f"first {until}; an owner may still be running its run, and if one crashed, "
        "recover after that"
    )


def describe(result: Recovered) -> str:
    """One line for a recovered run: its outcome, and what to do about a problem."""
    line = f"{result.run_id} ({result.name or 'unnamed'}): {result.outcome}"
    problem = result.problem
    unknown = sorted({str(s.action) for s in result.steps} - set(registry.names()))
    if result.outcome == Outcome.SKIPPED and unknown:
        names = ", ".join(repr(name) for name in unknown)
        (noun, verb, it) = ("name", "is", "it") if len(unknown) == 1 else ("names", "are", "them")
        problem = (
            f"action {noun} {names} {verb} not registered: pass --import MODULE with the "
            f"module that registers {it}"
        )
    return line + (f" - {problem}" if problem else "")


def recover_round(
    out: Output, journal: Journal, args: argparse.Namespace, stopping: threading.Event
) -> tuple[int, int]:
    """Recover up to ``--batch`` runs; how many, and how many did not end well."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    waiting = min(len(journal.runs(status=INTERRUPTED, limit=None)), args.batch)
    done = unfinished = 0
    with Progress(
        TextColumn("recovering"),
        BarColumn(),
        MofNCompleteColumn(),
        console=out.console,
        transient=True,
        disable=not waiting,
    ) as progress:
        task = progress.add_task("runs", total=waiting)
        for r in recovering(journal, limit=args.batch):
            done += 1
            progress.advance(task)
            progress.console.print(describe(r), markup=False, highlight=False, soft_wrap=True)
            unfinished += r.outcome not in PRUNABLE
            if stopping.is_set():
                break
    return done, unfinished


def cmd_prune(out: Output, journal: Journal, args: argparse.Namespace) -> int:
    before = journal.now() - args.older_than
    if args.statuses is None:  # the journal's default: what nobody needs (DESIGN O3)
        statuses = PRUNABLE
        count = journal.prune(before)
    else:
        statuses = tuple(dict.fromkeys(args.statuses))
        count = journal.prune(before, statuses=statuses)
    runs = "run" if count == 1 else "runs"
    out.line(f"pruned {count} {' or '.join(statuses)} {runs} last updated before {when(before)}")
    return 0


def demo(out: Output, folder: Path | None) -> int:
    from ._demo import FILES, prepare, run_demo

    out.console  # noqa: B018 - without rich, say so before making anything
    if folder is not None:
        problem = prepare(folder)
        if problem is not None:
            raise UsageError(problem)
    work = folder or Path(tempfile.mkdtemp(prefix="actionqueues-demo-"))
    try:
        ok = run_demo(work, out=out.line)
    finally:
        if folder is not None:
            out.line(f"\nThe demo's files are in {work}: {', '.join(FILES)}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            out.line(f"\n(The demo worked in {work}, now removed.)")
    return 0 if ok else 1


COMMANDS: dict[str, Any] = {
    "runs": cmd_runs,
    "show": cmd_show,
    "recover": cmd_recover,
    "prune": cmd_prune,
}
