"""The actionqueues command, through real subprocess calls."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

COMMAND = shutil.which("actionqueues", path=str(Path(sys.executable).parent))


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    assert COMMAND is not None, "the actionqueues console script is not installed"
    return subprocess.run(
        [COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
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
    """
)


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
    assert "pruned 2 finished runs" in pruned.stdout
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
    assert 1 == bad_import.returncode  # the journal fails first
    (tmp_path / "j.db").touch()
    missing_module = cli("--journal", str(tmp_path / "j.db"), "recover", "--import", "no_such_mod")
    assert 2 == missing_module.returncode
    assert "no_such_mod" in missing_module.stderr
    unknown_run = cli("--journal", str(tmp_path / "j.db"), "show", "abc")
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
    assert "trying again in 0.5 s" in out
    assert "trying again in 1 s" in out
    assert "stopped (SIGTERM)" in out
