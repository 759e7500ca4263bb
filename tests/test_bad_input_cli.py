"""Bad command lines: each gets a message naming the problem, and its exit status (2
for a usage error, 1 for a journal that cannot be used), never a traceback.

A catalogue: add a case for every bad command line found; never remove one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from actionqueues import SQLiteJournal

COMMAND = shutil.which("actionqueues", path=str(Path(sys.executable).parent))
J = ("--journal", "{dir}/journal.db")  # an empty journal
UNIT = "a number needs a unit: s, m, h, d or w"
COUNT = "give a whole number, 1 or more"
INTERVAL = "give a number of seconds, more than 0 and at most 86400"

CASES: list[tuple[tuple[str, ...], int, str]] = [
    # no command, an unknown one, options without their values
    ((), 2, "the following arguments are required: COMMAND"),
    ((*J, "nosuch"), 2, "invalid choice: 'nosuch'"),
    (("runs", "--journal"), 2, "expected one argument"),
    # which journal
    (("runs",), 2, "say which journal: --journal PATH"),
    (("--journal", "{dir}/missing.db", "runs"), 2, "no journal at"),
    (("--journal", "sqlite:///{dir}/missing.db", "show", "abc"), 2, "no journal at"),
    (("runs", "--journal", "{dir}/missing.db"), 2, "no journal at"),
    (("--journal", "{dir}/missing.db", "prune", "--older-than", "1d"), 2, "no journal at"),
    (("--journal", "{dir}/missing.db", "recover"), 2, "no journal at"),
    (("--journal", "{dir}", "runs"), 2, "is a folder"),
    (("--journal", "mysql://localhost/db", "runs"), 2, "not a journal URL"),
    (("--journal", "sqlite://journal.db", "runs"), 2, "not a journal URL"),
    (("--schema", "Bad-Name", *J, "runs"), 2, "'Bad-Name' is not a schema name"),
    (("runs", *J, "--schema", ""), 2, "'' is not a schema name"),
    (("runs", *J, "--schema", "name\n"), 2, "'name\\n' is not a schema name"),
    # a file that is not a journal: it cannot be used
    (("--journal", "{dir}/users.db", "runs"), 1, "not an actionqueues journal"),
    (("--journal", "{dir}/users.db", "show", "abc"), 1, "not an actionqueues journal"),
    (("--journal", "{dir}/users.db", "prune", "--older-than", "1d"), 1, "not an actionqueues"),
    (("--journal", "{dir}/users.db", "recover"), 1, "not an actionqueues journal"),
    (("--journal", "{dir}/notes.txt", "runs"), 1, "notes.txt"),
    # runs
    ((*J, "runs", "--limit", "0"), 2, COUNT),
    ((*J, "runs", "--limit=-1"), 2, COUNT),
    ((*J, "runs", "--limit", "x"), 2, COUNT),
    ((*J, "runs", "--limit", "1.5"), 2, COUNT),
    ((*J, "runs", "--limit", "99999999999999999999"), 2, COUNT),
    ((*J, "runs", "--older-than", "7"), 2, UNIT),
    ((*J, "runs", "--older-than", "1.5"), 2, UNIT),
    ((*J, "runs", "--older-than", "1e3s"), 2, "write it like 30s"),
    ((*J, "runs", "--older-than", "9" * 400 + "d"), 2, "longer than any journal's history"),
    ((*J, "runs", "--status", "done"), 2, "invalid choice: 'done'"),
    # show
    ((*J, "show"), 2, "the following arguments are required: run"),
    ((*J, "show", "abc"), 2, "no run 'abc'"),
    (("show", "abc", *J, "--json"), 2, "no run 'abc'"),
    # prune
    ((*J, "prune"), 2, "the following arguments are required: --older-than"),
    ((*J, "prune", "--older-than", "7"), 2, UNIT),
    ((*J, "prune", "--older-than", "soon"), 2, "write it like 30s"),
    ((*J, "prune", "--older-than=-7d"), 2, "write it like 30s"),
    ((*J, "prune", "--older-than", "1d", "--status", "running"), 2, "invalid choice: 'running'"),
    ((*J, "prune", "--older-than", "1d", "--status", "interrupted"), 2, "invalid choice"),
    # recover
    ((*J, "recover", "--batch", "0"), 2, COUNT),
    ((*J, "recover", "--batch=-1"), 2, COUNT),
    ((*J, "recover", "--interval", "0"), 2, INTERVAL),
    ((*J, "recover", "--watch", "--interval", "0"), 2, INTERVAL),
    ((*J, "recover", "--interval=-1"), 2, INTERVAL),
    ((*J, "recover", "--interval", "nan"), 2, INTERVAL),
    ((*J, "recover", "--watch", "--interval", "inf"), 2, INTERVAL),
    ((*J, "recover", "--interval", "1e10"), 2, INTERVAL),
    ((*J, "recover", "--interval", "soon"), 2, INTERVAL),
    ((*J, "recover", "--import", "no_such_mod_xyz"), 2, "--import no_such_mod_xyz: Module"),
    ((*J, "recover", "--import", "no_such_mod_xyz"), 2, "add that folder to PYTHONPATH"),
    ((*J, "recover", "--import", "raising"), 2, "--import raising: RuntimeError: boom"),
    ((*J, "recover", "--import", "broken"), 2, "--import broken: SyntaxError"),
    ((*J, "recover", "--import", "needs_other"), 2, "No module named 'no_such_dep_xyz'"),
    ((*J, "recover", "--import", ""), 2, "--import : ValueError"),
    ((*J, "recover", "--watch", "--import", "raising"), 2, "RuntimeError: boom"),
    (("--journal", "{dir}/notes.txt", "recover", "--import", "raising"), 2, "RuntimeError"),
    # a password in a mistyped --journal is never echoed
    (("--journal", "postgresql+psycopg://bob:S3cretPw@h/d", "runs"), 2, "not a journal URL"),
    (("--journal", "host=db user=bob password=S3cretPw", "runs"), 2, "not a journal URL"),
    (("--journal", "target_session_attrs=any password=S3cretPw", "runs"), 2, "not a journal"),
    (("--journal", "{dir}/x sslpassword=S3cretPw", "runs"), 2, "not a journal URL"),
    # demo
    (("demo", "--dir", "{dir}/notes.txt"), 2, "that is a file"),
    (("demo", "--dir", "{dir}/taken"), 2, "it holds users.db, which the demo would write to"),
    (("demo", "--dir", "{dir}/notes.txt/sub"), 2, "cannot write there"),
]


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """A folder with an empty journal, someone's SQLite file, a text file, a folder
    holding someone's users.db, and modules that fail to import."""
    SQLiteJournal(tmp_path / "journal.db").close()
    for path in (tmp_path / "users.db", tmp_path / "taken" / "users.db"):
        path.parent.mkdir(exist_ok=True)
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE users (email TEXT)")
    (tmp_path / "notes.txt").write_text("not a database, just some text that is long enough")
    (tmp_path / "raising.py").write_text('raise RuntimeError("boom")\n')
    (tmp_path / "broken.py").write_text("def broken(:\n")
    (tmp_path / "needs_other.py").write_text("import no_such_dep_xyz\n")
    return tmp_path


def test_a_bad_schema_in_the_environment_concerns_only_postgresql(place: Path) -> None:
    """$ACTIONQUEUES_SCHEMA is checked when a PostgreSQL journal needs it: a SQLite
    journal's commands ignore a bad one; a PostgreSQL one's refuse it (exit 2),
    before connecting."""
    assert COMMAND is not None
    env = {k: v for k, v in os.environ.items() if k not in ("ACTIONQUEUES_JOURNAL", "PYTHONPATH")}
    env["ACTIONQUEUES_SCHEMA"] = "Bad-Name"
    journal = place / "journal.db"
    SQLiteJournal(journal).close()
    sqlite = subprocess.run(
        [COMMAND, "--journal", str(journal), "runs", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert (0, "") == (sqlite.returncode, sqlite.stderr)
    postgres = subprocess.run(
        [COMMAND, "--journal", "postgresql://nobody@127.0.0.1:1/none", "runs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert 2 == postgres.returncode
    assert "'Bad-Name' is not a schema name" in postgres.stderr
    assert "$ACTIONQUEUES_SCHEMA" in postgres.stderr


@pytest.mark.parametrize(
    ("argv", "code", "fragment"), CASES, ids=[" ".join(c[0]) or "(nothing)" for c in CASES]
)
def test_bad_command_line(place: Path, argv: tuple[str, ...], code: int, fragment: str) -> None:
    """A bad command line: its exit status, a message with the fragment, no traceback."""
    assert COMMAND is not None, "the actionqueues console script is not installed"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("ACTIONQUEUES_JOURNAL", "ACTIONQUEUES_SCHEMA", "PYTHONPATH")
    }
    done = subprocess.run(
        [COMMAND, *(arg.replace("{dir}", str(place)) for arg in argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=place,
        env={**env, "COLUMNS": "200"},
    )
    assert (code, "") == (done.returncode, done.stdout)
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert "S3cretPw" not in done.stderr  # no secret in any message
