"""The actionqueues command, through real subprocess calls."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

import pytest

from actionqueues import SQLiteJournal

COMMAND = shutil.which("actionqueues", path=str(Path(sys.executable).parent))


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    module: bool = False,
) -> subprocess.CompletedProcess[str]:
    """The command (``python -m actionqueues`` if ``module``), run to its end; an
    ``env`` value of "" removes the variable."""
    assert COMMAND is not None, "the actionqueues console script is not installed"
    merged = {**os.environ, "COLUMNS": "200", **(env or {})}
    start = [sys.executable, "-m", "actionqueues"] if module else [COMMAND]
    return subprocess.run(
        [*start, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={key: value for key, value in merged.items() if value},
        cwd=cwd,
    )


ACTIONS = textwrap.dedent(
    """
    import dataclasses, actionqueues

    @actionqueues.durable("cli.note")
    @dataclasses.dataclass
    class Note:
        text: str
        fail: bool = False

        def execute(self):
            if self.fail:
                raise RuntimeError("no")

        def rollback(self):
            pass

    @actionqueues.durable("cli.stubborn")
    @dataclasses.dataclass
    class Stubborn:  # fails, and its rollback fails too: a rollback_failed run

        def execute(self):
            raise RuntimeError("no")

        def rollback(self):
            raise RuntimeError("cannot undo")

    @actionqueues.durable("cli.crash")
    @dataclasses.dataclass
    class Crash:  # dies in the middle of its execute: a step left executing

        def execute(self):
            import os

            os._exit(0)

        def rollback(self):
            pass
    """
)


def make_journal(folder: Path, body: str) -> Path:
    """``folder``/runs.db, written by ``body`` (Python, with ``j`` the journal and
    ``cli_actions`` imported) in a child process."""
    (folder / "cli_actions.py").write_text(ACTIONS)
    path = folder / "runs.db"
    script = "import actionqueues, cli_actions\n"
    script += f"j = actionqueues.SQLiteJournal({str(path)!r}, lease=60)\n"
    script += textwrap.dedent(body)
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        cwd=folder,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(folder)},
    )
    return path


def cells(table: str, first: str) -> list[str]:
    """The cells of the row of a rich table whose first cell is ``first``."""
    for line in table.splitlines():
        parts = [part.strip() for part in line.split("│")]
        if len(parts) > 2 and parts[1] == first:
            return parts[1:-1]
    raise AssertionError(f"no row {first!r} in:\n{table}")


def tamper(path: Path, *statements: str) -> None:
    """Change a journal's rows behind its back, NOT NULL constraints dropped first."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') "
            "WHERE name IN ('runs', 'steps')"
        )
        db.execute("PRAGMA writable_schema = OFF")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for statement in statements:
            db.execute(statement)


def users_db(path: Path) -> bytes:
    """A SQLite file of someone else's (a table of its own), as the demo's users.db;
    its bytes."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("CREATE TABLE users (email TEXT PRIMARY KEY)")
        db.execute("INSERT INTO users VALUES ('ada@example.com')")
    return path.read_bytes()


def empty_journal(path: Path) -> Path:
    """A journal with no runs."""
    SQLiteJournal(path).close()
    return path


def schemas(url: str) -> set[str]:
    """The schemas of the PostgreSQL database at ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace")}


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """A journal with one completed run and one interrupted run (lease expired)."""
    (tmp_path / "cli_actions.py").write_text(ACTIONS)
    path = tmp_path / "runs.db"
    script = textwrap.dedent(
        f"""
        import actionqueues, cli_actions
        j = actionqueues.SQLiteJournal({str(path)!r}, lease=0.2)
        ok = actionqueues.ActionQueue(name="good", journal=j)
        ok.add(cli_actions.Note("a"))
        ok.run()
        bad = actionqueues.ActionQueue(name="bad", journal=j)
        bad.add(cli_actions.Note("b"))
        bad.add(cli_actions.Note("c", fail=True))
        try:
            bad.execute()
        except RuntimeError:
            pass
        import os
        os._exit(0)  # no rollback, no heartbeat: an interrupted run
        """
    )
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    time.sleep(0.3)
    return path


def test_demo_runs_and_cleans_up() -> None:
    """`actionqueues demo` crashes a sign-up and recovers it; exit 0; nothing left."""
    done = cli("demo")
    assert 0 == done.returncode, done.stderr
    assert "Every system is as it was before either sign-up." in done.stdout
    assert "killed" in done.stdout
    assert "recovered run" in done.stdout
    folder = done.stdout.split("The demo worked in ")[1].split(",")[0]
    assert not Path(folder).exists()


def test_demo_keeps_its_files_when_asked(tmp_path: Path) -> None:
    """`demo --dir` leaves the systems and the journal there, and says so."""
    done = cli("demo", "--dir", str(tmp_path / "d"))
    assert 0 == done.returncode
    assert {"users.db", "billing.db", "mail.db", "journal.db"} <= {
        p.name for p in (tmp_path / "d").iterdir()
    }


def test_runs_lists_and_filters(journal: Path) -> None:
    """`runs` shows both runs; --status interrupted and --json filter and format."""
    table = cli("--journal", str(journal), "runs")
    assert 0 == table.returncode, table.stderr
    assert "good" in table.stdout
    assert "interrupted" in table.stdout
    lines = cli("--journal", f"sqlite:///{journal}", "runs", "--status", "interrupted", "--json")
    [run] = [json.loads(line) for line in lines.stdout.splitlines() if line.strip()]
    assert ("bad", "interrupted", 2) == (run["name"], run["status"], run["steps"])
    old = cli("--journal", str(journal), "runs", "--older-than", "1h", "--json")
    assert "" == old.stdout.strip()
    newest = cli("--journal", str(journal), "runs", "--limit", "1", "--json")
    assert ["bad"] == [json.loads(line)["name"] for line in newest.stdout.splitlines()]


def test_show_and_recover_and_prune(journal: Path, tmp_path: Path) -> None:
    """`show` gives the timeline; `recover --import` rolls back; `prune` deletes."""
    env = {"ACTIONQUEUES_JOURNAL": str(journal), "PYTHONPATH": str(tmp_path)}
    listing = json.loads(cli("runs", "--status", "interrupted", "--json", env=env).stdout)
    shown = cli("show", listing["id"][:10], env=env)
    assert 0 == shown.returncode, shown.stderr
    assert "cli.note" in shown.stdout
    assert "RuntimeError('no')" in shown.stdout
    as_json = json.loads(cli("show", listing["id"], "--json", env=env).stdout)
    assert ["executed", "failed"] == [s["status"] for s in as_json["step_list"]]
    assert {"text": "b", "fail": False} == as_json["step_list"][0]["state"]

    unknown = cli("recover", env={"ACTIONQUEUES_JOURNAL": str(journal)})
    assert 1 == unknown.returncode  # the action name is not registered: skipped
    assert "skipped" in unknown.stdout
    assert "'cli.note' is not registered" in unknown.stdout
    recovered = cli("recover", "--import", "cli_actions", env=env, cwd=tmp_path)
    assert 0 == recovered.returncode, recovered.stdout + recovered.stderr
    assert "rolled_back" in recovered.stdout
    again = cli("recover", "--import", "cli_actions", env=env, cwd=tmp_path)
    assert "nothing to recover" in again.stdout

    pruned = cli("prune", "--older-than", "0s", env=env)
    assert "pruned 2 completed or rolled_back runs" in pruned.stdout
    assert "" == cli("runs", "--json", env=env).stdout.strip()


def test_errors_and_exit_codes(tmp_path: Path) -> None:
    """Usage mistakes exit 2 with a message naming the fix; journal errors exit 1."""
    env = {"ACTIONQUEUES_JOURNAL": ""}
    nothing = cli("runs", env=env)
    assert 2 == nothing.returncode
    assert "--journal PATH" in nothing.stderr
    missing = cli("--journal", str(tmp_path / "nope.db"), "runs")
    assert (2, True) == (missing.returncode, "no journal at" in missing.stderr)
    bad_age = cli("--journal", "x.db", "prune", "--older-than", "soon")
    assert 2 == bad_age.returncode
    assert "write it like 30s" in bad_age.stderr
    notes = tmp_path / "notes.db"
    notes.write_text("not a database at all, just some text that is long enough")
    corrupt = cli("--journal", str(notes), "runs")
    assert 1 == corrupt.returncode
    assert "not a database" in corrupt.stderr
    bad_import = cli("--journal", str(notes), "recover", "--import", "no_such_module_here")
    assert 2 == bad_import.returncode  # a usage error, found before the journal is opened
    journal = empty_journal(tmp_path / "j.db")
    missing_module = cli("--journal", str(journal), "recover", "--import", "no_such_mod")
    assert 2 == missing_module.returncode
    assert "no_such_mod" in missing_module.stderr
    unknown_run = cli("--journal", str(journal), "show", "abc")
    assert (2, True) == (unknown_run.returncode, "no run 'abc'" in unknown_run.stderr)


def test_python_dash_m_and_missing_extra(tmp_path: Path) -> None:
    """`python -m actionqueues` works; without rich the command says how to get it."""
    help_text = subprocess.run(
        [sys.executable, "-m", "actionqueues", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == help_text.returncode
    assert "Inspect and recover" in help_text.stdout
    no_rich = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['rich'] = None\n"
            "from actionqueues.cli import main; sys.exit(main(['runs']))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert 2 == no_rich.returncode
    assert "pip install 'actionqueues[cli]'" in no_rich.stderr


def test_recover_watch_stops_cleanly_on_sigterm(journal: Path, tmp_path: Path) -> None:
    """`recover --watch` is a long-running worker; SIGTERM ends it with status 0."""
    assert COMMAND is not None
    worker = subprocess.Popen(
        [
            COMMAND,
            "--journal",
            str(journal),
            "recover",
            "--watch",
            "--interval",
            "0.2",
            "--import",
            "cli_actions",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = cli("--journal", str(journal), "runs", "--status", "rolled_back", "--json")
        if done.stdout.strip():
            break
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert 0 == worker.returncode, err
    assert "rolled_back" in out
    assert "stopped (SIGTERM)" in out


def test_a_worker_waits_for_a_journal_it_cannot_open_yet(tmp_path: Path) -> None:
    """`recover --watch` started before its journal can be opened keeps trying, with
    backoff, and still stops cleanly on SIGTERM."""
    assert COMMAND is not None
    broken = tmp_path / "not-a-journal.db"
    broken.write_bytes(b"this is not a database" * 100)
    worker = subprocess.Popen(
        [COMMAND, "--journal", str(broken), "recover", "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    time.sleep(2.5)
    assert worker.poll() is None  # still waiting, not gone
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert 0 == worker.returncode, err
    assert out.count("journal unavailable") >= 2
    assert ".)" not in out  # the reason's own full stop does not end the parenthesis
    assert "trying again in 0.5 s" in out
    assert "trying again in 1 s" in out
    assert "stopped (SIGTERM)" in out


# -- item 13: reading never writes (DESIGN O2) ----------------------------------------


@pytest.mark.parametrize("command", [["runs"], ["runs", "--json"], ["show", "abc"]])
def test_reading_a_file_that_is_not_a_journal_changes_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    """`runs` and `show` on someone's SQLite file refuse it (exit 1) and leave it
    byte-identical, with no file added beside it."""
    users = tmp_path / "users.db"
    before = users_db(users)
    done = cli("--journal", str(users), *command)
    assert (1, "") == (done.returncode, done.stdout)
    assert "not an actionqueues journal" in done.stderr
    assert before == users.read_bytes()
    assert ["users.db"] == sorted(p.name for p in tmp_path.iterdir())


def test_reading_an_empty_file_changes_nothing(tmp_path: Path) -> None:
    """An empty file is not a journal either: refused, and still empty."""
    empty = tmp_path / "empty.db"
    empty.touch()
    done = cli("--journal", str(empty), "runs")
    assert 1 == done.returncode
    assert "not an actionqueues journal" in done.stderr
    assert b"" == empty.read_bytes()
    assert ["empty.db"] == sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "command", [["runs"], ["show", "abc"], ["prune", "--older-than", "1d"], ["recover"]]
)
def test_a_schema_that_does_not_exist_is_not_created(
    pg_url: str, pg_schema: str, command: list[str]
) -> None:
    """Every command on `--schema nosuch` says there is no journal there (exit 1),
    and the schema still does not exist."""
    done = cli("--journal", pg_url, "--schema", pg_schema, *command)
    assert 1 == done.returncode, done.stdout + done.stderr
    assert f"no journal in schema {pg_schema}" in done.stderr
    assert pg_schema not in schemas(pg_url)


@pytest.mark.parametrize("command", [["prune", "--older-than", "1d"], ["recover"]])
def test_writing_commands_refuse_a_file_that_is_not_a_journal(
    tmp_path: Path, command: list[str]
) -> None:
    """`prune` and `recover` do not make a journal of someone's SQLite file either."""
    users = tmp_path / "users.db"
    before = users_db(users)
    done = cli("--journal", str(users), *command)
    assert 1 == done.returncode
    assert "not an actionqueues journal" in done.stderr
    assert before == users.read_bytes()


# -- item 14: prune --------------------------------------------------------------------


def test_prune_keeps_what_an_operator_needs(tmp_path: Path) -> None:
    """By default prune deletes completed and rolled back runs only, and says so; a
    rollback_failed run stays until `--status rollback_failed` is asked for."""
    path = make_journal(
        tmp_path,
        """
        ok = actionqueues.ActionQueue(name="good", journal=j)
        ok.add(cli_actions.Note("a"))
        ok.run()
        undone = actionqueues.ActionQueue(name="undone", journal=j)
        undone.add(cli_actions.Note("b", fail=True))
        try:
            undone.run()
        except RuntimeError:
            pass
        stuck = actionqueues.ActionQueue(name="stuck", journal=j)
        stuck.add(cli_actions.Stubborn())
        try:
            stuck.run()
        except RuntimeError:
            pass
        j.close()
        """,
    )
    env = {"ACTIONQUEUES_JOURNAL": str(path)}
    pruned = cli("prune", "--older-than", "0s", env=env)
    assert 0 == pruned.returncode, pruned.stderr
    assert "pruned 2 completed or rolled_back runs last updated before" in pruned.stdout
    left = [json.loads(line)["name"] for line in cli("runs", "--json", env=env).stdout.splitlines()]
    assert ["stuck"] == left
    chosen = cli("prune", "--older-than", "0s", "--status", "rollback_failed", env=env)
    assert 0 == chosen.returncode, chosen.stderr
    assert "pruned 1 rollback_failed run last updated before" in chosen.stdout
    assert "" == cli("runs", "--json", env=env).stdout


def test_an_age_needs_a_unit(tmp_path: Path) -> None:
    """`--older-than 7` is refused, for prune and runs alike, saying which units."""
    journal = empty_journal(tmp_path / "j.db")
    for command in ("prune", "runs"):
        done = cli("--journal", str(journal), command, "--older-than", "7")
        assert 2 == done.returncode
        assert "a number needs a unit: s, m, h, d or w" in done.stderr


# -- item 16: --import ---------------------------------------------------------------


@pytest.mark.parametrize("module", [False, True], ids=["console script", "python -m"])
def test_recover_imports_from_the_current_folder(
    journal: Path, tmp_path: Path, module: bool
) -> None:
    """`recover --import cli_actions` run in the module's folder finds it, with no
    PYTHONPATH, from the console script as from `python -m actionqueues`."""
    done = cli(
        "--journal",
        str(journal),
        "recover",
        "--import",
        "cli_actions",
        env={"PYTHONPATH": ""},
        cwd=tmp_path,
        module=module,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "rolled_back" in done.stdout


def test_a_skipped_run_names_the_import_option(journal: Path, tmp_path: Path) -> None:
    """A run skipped for an unregistered action name says to pass --import."""
    done = cli("--journal", str(journal), "recover", env={"PYTHONPATH": ""})
    assert 1 == done.returncode
    assert (
        "action name 'cli.note' is not registered: pass --import MODULE with the module "
        "that registers it"
    ) in done.stdout


# -- item 17: messages, not tracebacks -------------------------------------------------


def test_tampered_rows_are_shown_as_they_are(journal: Path) -> None:
    """`runs` and `show` (tables and JSON) print rows whose state is not JSON, whose
    numbers are NULL or text, whose status nobody knows, whose name looks like rich
    markup: what can be printed, and never a traceback."""
    listing = cli("--journal", str(journal), "runs", "--json")
    ids = {row["name"]: row["id"] for row in map(json.loads, listing.stdout.splitlines())}
    tamper(
        journal,
        "UPDATE steps SET state = 'not json {', attempts = NULL, updated = 'now', "
        "idx = 'first', rollback_attempts = 'many' "
        "WHERE run_id = (SELECT id FROM runs WHERE name = 'bad') AND idx = 0",
        "UPDATE steps SET state = X'ff00', updated = 1e999 "
        "WHERE run_id = (SELECT id FROM runs WHERE name = 'bad') AND idx = 1",
        # The steps' statuses and states after they were added are their events'.
        "UPDATE events SET state = 'not json {', attempts = NULL, at = 'now', idx = 'first' "
        "WHERE id / 4294967296 = (SELECT num FROM runs WHERE name = 'bad') AND idx = 0",
        "UPDATE events SET state = X'ff00', at = 1e999 "
        "WHERE id / 4294967296 = (SELECT num FROM runs WHERE name = 'bad') AND idx = 1",
        "UPDATE runs SET lease_until = NULL, claims = 'x', updated = 1e300 WHERE name = 'bad'",
        "UPDATE runs SET status = 'weird', updated = 'yesterday', steps = NULL, "
        "name = '[/bold] [red' WHERE name = 'good'",
    )
    for command in (["runs"], ["runs", "--json"]):
        done = cli("--journal", str(journal), *command)
        assert (0, "") == (done.returncode, done.stderr)
        assert "[/bold] [red" in done.stdout
        assert "weird" in done.stdout
    table = cli("--journal", str(journal), "runs").stdout
    assert ["weird", "", "0", "yesterday"] == cells(table, ids["good"])[2:6]
    assert ["failed", "2", "x", "1e+300"] == cells(table, ids["bad"])[2:6]
    shown = cli("--journal", str(journal), "show", ids["bad"])
    assert (0, "") == (shown.returncode, shown.stderr)
    assert ["first", "Note", "cli.note", "executed", "?", "many", "now", ""] == cells(
        shown.stdout, "first"
    )
    as_json = cli("--journal", str(journal), "show", ids["bad"], "--json")
    assert (0, "") == (as_json.returncode, as_json.stderr)
    [step] = [s for s in json.loads(as_json.stdout)["step_list"] if s["index"] == "first"]
    assert ("not json {", None, "first") == (step["state"], step["attempts"], step["index"])
    assert step["state_error"].startswith("not JSON")
    [blob] = [s for s in json.loads(as_json.stdout)["step_list"] if s["index"] == 1]
    assert ("\ufffd\x00", "inf") == (blob["state"], blob["updated"])
    assert ["2", "Note", "cli.note", "failed"] == cells(shown.stdout, "2")[:4]
    assert "inf" == cells(shown.stdout, "2")[6]
    marked = cli("--journal", str(journal), "show", ids["good"])
    assert (0, "") == (marked.returncode, marked.stderr)
    assert f"run {ids['good']} ([/bold] [red): weird" in marked.stdout


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    """`demo --dir` at a file, or at a folder holding someone's users.db, is refused
    (exit 2) and touches nothing."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    at_file = cli("demo", "--dir", str(a_file))
    assert (2, "") == (at_file.returncode, at_file.stdout)
    assert "that is a file" in at_file.stderr
    assert "mine" == a_file.read_text()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    before = users_db(theirs / "users.db")
    refused = cli("demo", "--dir", str(theirs))
    assert 2 == refused.returncode
    assert "it holds users.db, which the demo would write to and did not make" in refused.stderr
    assert before == (theirs / "users.db").read_bytes()
    assert ["users.db"] == sorted(p.name for p in theirs.iterdir())


def test_demo_runs_again_in_its_own_folder(tmp_path: Path) -> None:
    """`demo --dir` takes a folder that holds none of its files (leaving the others
    alone), and runs again in a folder an earlier demo made."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "readme.txt").write_text("mine")
    for _ in range(2):
        done = cli("demo", "--dir", str(folder))
        assert 0 == done.returncode, done.stdout + done.stderr
        assert "Every system is as it was before either sign-up." in done.stdout
    assert "mine" == (folder / "readme.txt").read_text()


# -- item 18: an unreachable PostgreSQL ----------------------------------------------


def test_an_unreachable_database_is_one_line(pg_url: str) -> None:
    """A database that does not exist: the server's reason on one line, exit 1, soon."""
    parts = urllib.parse.urlsplit(pg_url)
    url = urllib.parse.urlunsplit(parts._replace(path="/nosuchdb_xyz"))
    start = time.monotonic()
    done = cli("--journal", url, "runs")
    took = time.monotonic() - start
    assert (1, "") == (done.returncode, done.stdout)
    [line] = done.stderr.splitlines()
    assert line.startswith("actionqueues: ")
    assert 'database "nosuchdb_xyz" does not exist' in line
    assert took < 5


# -- item 19: the small ones -----------------------------------------------------------


def test_help_states_the_exit_status_rule() -> None:
    """`--help` says what exit statuses 1 and 2 mean."""
    done = cli("--help")
    assert 0 == done.returncode
    assert "exit status:" in done.stdout
    assert "1    the journal cannot be used" in done.stdout
    assert "2    the command cannot run as given" in done.stdout


def test_help_usage_errors_and_json_work_without_rich(tmp_path: Path) -> None:
    """Without the [cli] extra, --help, usage errors and --json output work; a table
    says how to install it (exit 2)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "rich.py").write_text('raise ImportError("no rich here, for the test")\n')
    journal = empty_journal(tmp_path / "j.db")
    env = {"PYTHONPATH": str(blocker)}
    helped = cli("--help", env=env)
    assert (0, "") == (helped.returncode, helped.stderr)
    assert "Inspect and recover" in helped.stdout
    for command in (["runs", "--help"], ["recover", "--help"]):
        assert 0 == cli(*command, env=env).returncode
    wrong = cli("--journal", str(journal), "runs", "--limit", "0", env=env)
    assert 2 == wrong.returncode
    assert "give a whole number, 1 or more" in wrong.stderr
    no_journal = cli("runs", "--json", env={**env, "ACTIONQUEUES_JOURNAL": ""})
    assert (2, True) == (no_journal.returncode, "--journal PATH" in no_journal.stderr)
    listed = cli("--journal", str(journal), "runs", "--json", env=env)
    assert (0, "", "") == (listed.returncode, listed.stdout, listed.stderr)
    table = cli("--journal", str(journal), "runs", env=env)
    assert 2 == table.returncode
    assert "pip install 'actionqueues[cli]'" in table.stderr


def test_global_options_after_the_command(journal: Path) -> None:
    """`runs --journal X` and `show ID --journal X` work as `--journal X runs` does."""
    env = {"ACTIONQUEUES_JOURNAL": ""}
    listed = cli("runs", "--journal", str(journal), "--json", env=env)
    assert 0 == listed.returncode, listed.stderr
    [first, _] = [json.loads(line) for line in listed.stdout.splitlines()]
    shown = cli("show", first["id"], "--json", "--journal", str(journal), env=env)
    assert 0 == shown.returncode, shown.stderr
    assert first["id"] == json.loads(shown.stdout)["id"]
    schema = cli("runs", "--journal", str(journal), "--schema", "other", env=env)
    assert 0 == schema.returncode, schema.stderr


def test_recover_says_which_runs_wait_for_their_lease(tmp_path: Path) -> None:
    """Right after a crash (lease not expired yet) recover says how many runs wait,
    and when the first lease expires."""
    crash = """
        q = actionqueues.ActionQueue(name="crashed", journal=j)
        q.add(cli_actions.Note("a"))
        q.add(cli_actions.Crash())
        q.execute()
        """
    path = make_journal(tmp_path, crash)
    done = cli("--journal", str(path), "recover")
    assert 0 == done.returncode, done.stderr
    assert "nothing to recover yet: 1 unfinished run is still leased by its owner, until " in (
        done.stdout
    )
    seconds = int(done.stdout.split("(in ")[1].split(" s)")[0])
    assert 50 <= seconds <= 60
    make_journal(tmp_path, crash)  # a second crashed run in the same journal
    two = cli("--journal", str(path), "recover")
    assert 0 == two.returncode, two.stderr
    assert "2 unfinished runs are still leased by their owners, the first until " in two.stdout


def test_show_counts_the_try_of_a_step_killed_mid_execute(tmp_path: Path) -> None:
    """A step killed in its execute is shown executing with 1 try, also from a journal
    that recorded 0 tries for it (as earlier versions did)."""
    path = make_journal(
        tmp_path,
        """
        q = actionqueues.ActionQueue(name="crashed", journal=j)
        q.add(cli_actions.Note("a"), name="note")
        q.add(cli_actions.Crash(), name="crash")
        q.execute()
        """,
    )
    listed = cli("--journal", str(path), "runs", "--json").stdout
    [run] = [json.loads(line) for line in listed.splitlines()]
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("UPDATE events SET attempts = 0 WHERE status = 'executing'")
    shown = cli("--journal", str(path), "show", run["id"])
    assert 0 == shown.returncode, shown.stderr
    assert ["2", "crash", "cli.crash", "executing", "1", "0"] == cells(shown.stdout, "2")[:6]
    assert ["1", "note", "cli.note", "executed", "1", "0"] == cells(shown.stdout, "1")[:6]
