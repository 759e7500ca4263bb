"""The ``actionqueues`` command's arguments: the parser, and argument types that
each refuse what the command cannot use, saying what it can (exit status 2)."""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from ._status import FINISHED, LISTABLE, PRUNABLE
from .journal._schema import SCHEMA_NAME

ENV = "ACTIONQUEUES_JOURNAL"
SCHEMA_ENV = "ACTIONQUEUES_SCHEMA"
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MOST = 2**63 - 1  # the largest LIMIT both databases take
_LONGEST_INTERVAL = 86400.0  # a day: longer waits overflow timers, and help nobody

EXIT_STATUS = """\
exit status:
  0    done
  1    the journal cannot be used (unreachable, corrupt, not a journal, written by
       a newer actionqueues), or the work did not end well (recover left a run
       unfinished or skipped it; the demo left something over)
  2    the command cannot run as given: bad arguments, no journal named, a journal
       path that does not exist, a run id that matches no run, an --import module
       that cannot be imported, a demo folder holding files the demo did not make,
       or the [cli] extra missing
  130  interrupted (Ctrl-C)

--journal and --schema may be given before the command or after it."""


class UsageError(Exception):
    """A mistake in the command line: exit status 2."""


# -- argument types: each refuses what it cannot use, saying what it can -------------


def age(text: str) -> float:
    """``30s``, ``15m``, ``12h``, ``7d`` or ``2w``, as seconds. A bare number is
    refused: ``7`` could mean seven seconds or seven days, and pruning guesses not."""
    match = _AGE.match(text.strip())
    if match is None:
        unit = " (a number needs a unit: s, m, h, d or w)" if _number(text) else ""
        msg = (
            f"{text!r} is not an age{unit}; write it like 30s, 15m, 12h, 7d or 2w "
            "(seconds, minutes, hours, days, weeks)"
        )
        raise argparse.ArgumentTypeError(msg)
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):
        msg = f"{text!r} is longer than any journal's history; write it like 7d or 2w"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def count(text: str) -> int:
    """A number of runs: a whole number, 1 or more (0 would do nothing, and a
    negative one means "unlimited" to SQLite but is refused by PostgreSQL)."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= _MOST:
        msg = f"{text!r} is not a number of runs: give a whole number, 1 or more"
        raise argparse.ArgumentTypeError(msg)
    return number


def interval(text: str) -> float:
    """Seconds between rounds: more than 0 (0 would spin a core) and at most a day."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= _LONGEST_INTERVAL:  # NaN fails too
        msg = (
            f"{text!r} is not an interval: give a number of seconds, more than 0 "
            f"and at most {_LONGEST_INTERVAL:g} (a day), like 5 or 0.5"
        )
        raise argparse.ArgumentTypeError(msg)
    return seconds


def schema_name(text: str) -> str:
    """A PostgreSQL schema's name, checked here so that a bad one is a usage error
    (exit 2), not a journal that cannot be used (1)."""
    if not SCHEMA_NAME.fullmatch(text):  # what PostgresJournal accepts
        msg = (
            f"{text!r} is not a schema name: lower-case letters, digits and underscores, "
            f"starting with a letter or underscore (from --schema or ${SCHEMA_ENV})"
        )
        raise argparse.ArgumentTypeError(msg)
    return text


def schema_of(given: str | None) -> str:
    """A PostgreSQL journal's schema: ``--schema``, else ``$ACTIONQUEUES_SCHEMA`` (checked
    only now, when a PostgreSQL journal needs it), else ``actionqueues``.

    Raises:
        UsageError: The environment's name is not a schema name.
    """
    if given is not None:
        return given
    try:
        return schema_name(os.environ.get(SCHEMA_ENV, "actionqueues"))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None


def global_options(where: argparse.ArgumentParser, *, suppress: bool) -> None:
    """``--journal`` and ``--schema``: on the main parser with their defaults, and on
    every subcommand's with none (``SUPPRESS``), so that given after the command they
    are taken, and not given there they leave the main parser's values alone."""
    where.add_argument(
        "--journal",
        default=argparse.SUPPRESS if suppress else None,
        help=f"the journal: a file path, sqlite:/// or postgresql:// URL (default: ${ENV})",
    )
    where.add_argument(
        "--schema",
        type=schema_name,
        # Not $ACTIONQUEUES_SCHEMA here: argparse would check it for every journal,
        # and a bad one in the environment would break SQLite ones (see schema_of).
        default=argparse.SUPPRESS if suppress else None,
        help=f"a PostgreSQL journal's schema (default: ${SCHEMA_ENV}, else actionqueues)",
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="actionqueues",
        description="Inspect and recover the runs of durable action queues.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    global_options(main, suppress=False)
    shared = argparse.ArgumentParser(add_help=False)
    global_options(shared, suppress=True)
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="a sign-up crashed with SIGKILL, and recovered")
    demo.add_argument(
        "--dir",
        type=Path,
        help="keep the demo's files in this folder (new, empty, or an earlier demo's)",
    )
    runs = commands.add_parser("runs", help="list runs", parents=[shared])
    runs.add_argument("--status", choices=[str(s) for s in LISTABLE])
    runs.add_argument("--name", help="only runs of the queue with this name")
    runs.add_argument(
        "--older-than", type=age, metavar="AGE", help="last updated before: 30s, 15m, 12h, 7d, 2w"
    )
    runs.add_argument("--limit", type=count, default=50, help="at most this many (default 50)")
    runs.add_argument("--json", action="store_true", help="JSON lines, for scripts")
    show = commands.add_parser("show", help="one run's step timeline", parents=[shared])
    show.add_argument("run", help="a run id, or a unique prefix of one")
    show.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    rec = commands.add_parser(
        "recover", help="roll back (or resume) interrupted runs", parents=[shared]
    )
    rec.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (from the current folder too), to register its "
        "durable action classes (repeatable)",
    )
    rec.add_argument("--watch", action="store_true", help="keep recovering until stopped")
    rec.add_argument(
        "--interval",
        type=interval,
        default=5.0,
        help="seconds between rounds, more than 0 (default 5)",
    )
    rec.add_argument(
        "--batch", type=count, default=100, help="runs to claim per round, 1 or more (default 100)"
    )
    prune = commands.add_parser(
        "prune",
        help="delete finished runs (by default completed and rolled back ones)",
        parents=[shared],
    )
    prune.add_argument(
        "--older-than",
        type=age,
        metavar="AGE",
        required=True,
        help="last updated before: 30s, 15m, 12h, 7d, 2w",
    )
    prune.add_argument(
        "--status",
        dest="statuses",
        action="append",
        choices=[str(s) for s in FINISHED],
        help=f"prune runs of this status instead (repeatable; default: {', '.join(PRUNABLE)})",
    )
    return main
