"""Crash injection: durable queues killed with SIGKILL at random points, then recovered.

Every trial runs a durable queue in a child process that is killed (SIGKILL, by
itself, at a random instrumented point: inside an action before or after its side
effect, between steps, during rollback) or not, and recovery processes that may be
killed too, until no run is left unfinished. The external "system" (its own SQLite
file) must then hold every effect of a completed run and none of a rolled-back one,
and no compensation may have run twice under one claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from durable_actions import registry

from actionqueues import open_journal, recover
from actionqueues.journal import PostgresJournal, RunRow

HERE = Path(__file__).resolve().parent
CHILD = HERE / "crash_child.py"
TRIALS = int(os.environ.get("AQ_CRASH_TRIALS", "200"))
BATCH = 10
KILLED = -9


def child(*args: object, crash_at: int = 0, schema: str = "") -> int:
    done = subprocess.run(
        [sys.executable, str(CHILD), *map(str, args)],
        env=child_env(crash_at, schema),
        timeout=120,
        check=False,
    )
    return done.returncode


def child_env(crash_at: int = 0, schema: str = "") -> dict[str, str]:
    return {
        **os.environ,
        "AQ_CRASH_AT": str(crash_at),
        "AQ_PG_SCHEMA": schema,
        "PYTHONPATH": str(HERE),
    }


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        return db.execute(sql).fetchall()


def unfinished(journal: Path) -> int:
    return len(
        rows(journal, "SELECT id FROM runs WHERE status NOT IN ('completed', 'rolled_back')")
    )


def recover_all(journal: Path, rng: random.Random) -> int:
    """Recover until nothing is unfinished; recoverers are killed at random. Kills."""
    kills = 0
    for _ in range(100):
        if not unfinished(journal):
            return kills
        time.sleep(0.35)  # leases (0.3 s) of dead owners expire
        code = child("recover", journal, crash_at=rng.choice([0, 0, rng.randint(1, 8)]))
        assert code in (0, KILLED)
        kills += code == KILLED
    pytest.fail(f"{unfinished(journal)} runs still unfinished after 100 recoveries")


def check_systems(journal: Path | list[RunRow], system: Path) -> Counter[str]:
    """Every run finished; effects match the outcome; no compensation twice per claim."""
    if isinstance(journal, Path):
        runs = rows(journal, "SELECT id, status, steps, name FROM runs")
    else:
        runs = [(r.id, r.status, r.steps, r.name) for r in journal]
    effects = Counter(str(k).split("/")[0] for (k,) in rows(system, "SELECT key FROM effects"))
    outcomes: Counter[str] = Counter()
    for run_id, status, steps, name in runs:
        outcomes[str(status)] += 1
        mode, fail_at = str(name).split()
        if fail_at != "-1":  # a failing step: rolled back, resumed or not
            assert "rolled_back" == status, (run_id, name)
        elif mode == "resume":  # nothing fails: a resumed run always completes
            assert "completed" == status, (run_id, name)
        if status == "completed":
            assert steps == effects[str(run_id)], (run_id, "completed run missing effects")
        else:
            assert status == "rolled_back", (run_id, status)
            assert 0 == effects[str(run_id)], (run_id, "rolled back run left effects")
    twice = rows(
        system,
        "SELECT key, claim, COUNT(*) FROM compensations GROUP BY key, claim HAVING COUNT(*) > 1",
    )
    assert [] == twice, "a compensation ran twice under one claim"
    return outcomes


def batch(command: str, journal: Path, system: Path, rng: random.Random, fewest: int) -> int:
    """BATCH runs of ``fewest`` to 5 steps, each failing at a random step or none,
    each killed at a random point or not; how many were killed."""
    kills = 0
    for _ in range(BATCH):
        steps = rng.randint(fewest, 5)
        fail_at = rng.choice([-1, -1, rng.randrange(steps)])
        mode = rng.choice(["rollback", "resume"])
        crash_at = rng.randint(1, 5 * steps)
        code = child(command, journal, system, steps, fail_at, mode, crash_at=crash_at)
        assert code in (0, KILLED)
        kills += code == KILLED
    return kills


def test_sigkill_anywhere_then_recovery_restores_every_system(tmp_path: Path) -> None:
    """D1-D7 under SIGKILL: runs end completed or rolled back, systems consistent."""
    rng = random.Random(20261126)
    journal, system = tmp_path / "journal.db", tmp_path / "system.db"
    kills = recoverer_kills = 0
    for _ in range(max(1, TRIALS // BATCH)):
        kills += batch("run", journal, system, rng, 2)
        recoverer_kills += recover_all(journal, rng)
    outcomes = check_systems(journal, system)
    assert TRIALS // BATCH * BATCH == sum(outcomes.values())
    # The test is only worth its time if it really crashed things, everywhere.
    assert kills > TRIALS // 3, kills
    assert recoverer_kills > 0
    assert outcomes["completed"] > 0
    assert outcomes["rolled_back"] > 0


def test_async_queues_with_parallel_groups_killed_anywhere(tmp_path: Path) -> None:
    """D1-D7 for AsyncActionQueue: async actions, a parallel group, SIGKILL, recovery
    (which runs async actions on an event loop of its own)."""
    rng = random.Random(4)
    journal, system = tmp_path / "journal.db", tmp_path / "system.db"
    kills = 0
    trials = max(BATCH, TRIALS // 4)
    for _ in range(trials // BATCH):
        kills += batch("arun", journal, system, rng, 3)
        recover_all(journal, rng)
    outcomes = check_systems(journal, system)
    assert trials // BATCH * BATCH == sum(outcomes.values())
    assert kills > trials // 3, kills
    assert outcomes["completed"] > 0
    assert outcomes["rolled_back"] > 0


def test_group_commit_killed_mid_flight(tmp_path: Path) -> None:
    """durability="power": four threads sharing commits, killed at random, recover."""
    rng = random.Random(99)
    journal, system = tmp_path / "journal.db", tmp_path / "system.db"
    env = {**os.environ, "AQ_CRASH_AT": "0", "PYTHONPATH": str(HERE)}
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), "threads", str(journal), str(system)], env=env
        )
        time.sleep(rng.uniform(0.4, 1.2))
        proc.kill()
        assert KILLED == proc.wait(timeout=30)
        recover_all(journal, rng)
    outcomes = check_systems(journal, system)
    assert outcomes["completed"] > 0
    assert outcomes["rolled_back"] > 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("case", ["next", "listener", "group", "rollback"])
def test_one_commit_per_step_keeps_what_a_step_learned(
    case: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """D2 and D3 at one commit per step: a process killed after step b returned, before
    anything else commits (in the next step's execute, in a listener of b's end, in
    b's parallel sibling, in the rollback that follows b's) has committed b's record
    with its state after: the rollback deletes the row b made by the rowid b learned,
    and a compensation done is not done again."""
    system = tmp_path / "system.db"
    if backend == "sqlite":
        where, schema = str(tmp_path / "journal.db"), ""
    else:
        where, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
    assert KILLED == child("d2", where, system, case, schema=schema)
    options: dict[str, object] = {"lease": 0.3, **({"schema": schema} if schema else {})}
    journal = open_journal(where, **options)
    try:
        loaded = journal.load("d2")
        assert loaded is not None
        b = loaded[1][1]
        assert ("rolled_back" if case == "rollback" else "executed") == b.status
        assert json.loads(b.state)["row"] is not None, "b's state after was not recorded"
        time.sleep(0.35)  # the dead owner's lease expires
        [result] = recover(journal, registry=registry)
    finally:
        journal.close()
    assert "rolled_back" == result.outcome
    assert [] == rows(system, "SELECT * FROM effects")
    done = Counter(str(k) for (k,) in rows(system, "SELECT key FROM compensations"))
    # c never started when the listener killed the process; else it counts (D5).
    assert {"a": 1, "b": 1, **({} if case == "listener" else {"c": 1})} == done


def test_concurrent_recoverers_never_take_the_same_run(tmp_path: Path) -> None:
    """D7: three recoverers at once on one journal; each run is claimed by one."""
    rng = random.Random(7)
    journal, system = tmp_path / "journal.db", tmp_path / "system.db"
    for _ in range(12):  # killed right after their third step's side effect
        assert KILLED == child("run", journal, system, 4, -1, "rollback", crash_at=8)
    time.sleep(0.35)
    env = {**os.environ, "AQ_CRASH_AT": "0", "PYTHONPATH": str(HERE)}
    procs = [
        subprocess.Popen([sys.executable, str(CHILD), "recover", str(journal)], env=env)
        for _ in range(3)
    ]
    assert [0, 0, 0] == [p.wait(timeout=120) for p in procs]
    recover_all(journal, rng)
    outcomes = check_systems(journal, system)
    assert {"rolled_back": 12} == dict(outcomes)
    claims = rows(journal, "SELECT claims FROM runs")
    assert all(c == (1,) for c in claims), claims


# -- the PostgreSQL journal: a fleet of workers ------------------------------------------


def pg_runs(url: str, schema: str) -> list[RunRow]:
    journal = PostgresJournal(url, schema=schema)
    try:
        return journal.runs()
    finally:
        journal.close()


def pg_unfinished(url: str, schema: str) -> int:
    return sum(r.status not in ("completed", "rolled_back") for r in pg_runs(url, schema))


def start_workers(url: str, schema: str, count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, str(CHILD), "worker", url], env=child_env(0, schema))
        for _ in range(count)
    ]


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.kill()
        worker.wait(timeout=30)


def settle(url: str, schema: str, workers: list[subprocess.Popen[bytes]]) -> None:
    """Wait until the workers have finished every run, then stop them."""
    for _ in range(600):
        if not pg_unfinished(url, schema):
            break
        time.sleep(0.1)
    stop(workers)
    assert 0 == pg_unfinished(url, schema), "runs left unfinished by the workers"


def test_postgres_fleet_sigkill_anywhere(pg_url: str, pg_schema: str, tmp_path: Path) -> None:
    """D1-D7 on PostgreSQL: queue processes killed at random points while four worker
    processes recover, and the workers themselves killed at random and restarted."""
    rng = random.Random(515)
    system = tmp_path / "system.db"
    PostgresJournal(pg_url, schema=pg_schema).close()  # the schema, made once
    workers = start_workers(pg_url, pg_schema, 4)
    kills = worker_kills = 0
    for _ in range(max(1, TRIALS // BATCH)):
        batch = []
        for _ in range(BATCH):  # ten queue processes at once
            steps = rng.randint(2, 5)
            fail_at = rng.choice([-1, -1, rng.randrange(steps)])
            mode = rng.choice(["rollback", "resume"])
            args = ["run", pg_url, system, steps, fail_at, mode]
            env = child_env(rng.randint(1, 5 * steps), pg_schema)
            batch.append(subprocess.Popen([sys.executable, str(CHILD), *map(str, args)], env=env))
        victim = rng.randrange(len(workers))
        time.sleep(rng.uniform(0, 0.3))
        workers[victim].kill()  # a worker dies, mid-recovery or idle
        workers[victim].wait(timeout=30)
        worker_kills += 1
        workers[victim] = start_workers(pg_url, pg_schema, 1)[0]
        codes = [p.wait(timeout=120) for p in batch]
        assert set(codes) <= {0, KILLED}, codes
        kills += codes.count(KILLED)
    settle(pg_url, pg_schema, workers)
    outcomes = check_systems(pg_runs(pg_url, pg_schema), system)
    assert TRIALS // BATCH * BATCH == sum(outcomes.values())
    assert kills > TRIALS // 3, kills
    assert worker_kills == TRIALS // BATCH
    assert outcomes["completed"] > 0
    assert outcomes["rolled_back"] > 0


def started_at(url: str) -> object:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


def pg_ctlcluster(action: str) -> None:
    """Stop, start or restart the local PostgreSQL cluster (Debian's tool)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    tool = shutil.which("pg_ctlcluster")
    assert tool is not None, "pg_ctlcluster (Debian's postgresql-common) is not installed"
    subprocess.run(
        [tool, "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def restart_postgres(down: float = 0.0) -> None:
    """Restart the server; with ``down``, leave it stopped that many seconds first."""
    if not down:
        pg_ctlcluster("restart")
        return
    pg_ctlcluster("stop")
    try:
        time.sleep(down)
    finally:
        pg_ctlcluster("start")


def test_postgres_restart_while_queues_and_workers_run(
    pg_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """The database restarts under running queues and workers: writes in flight fail
    (a queue stops before its next side effect), the workers reconnect, and in the end
    every run is completed or rolled back, none compensated twice under one claim."""
    if not Path("/etc/postgresql").is_dir():
        pytest.fail("this test restarts the local PostgreSQL cluster with pg_ctlcluster")
    rng = random.Random(616)
    system = tmp_path / "system.db"
    PostgresJournal(pg_url, schema=pg_schema).close()
    workers = start_workers(pg_url, pg_schema, 4)
    queues = []
    for n in range(24):
        steps = rng.randint(2, 5)
        args = ["run", pg_url, system, steps, rng.choice([-1, 1]), "rollback"]
        queues.append(
            subprocess.Popen(
                [sys.executable, str(CHILD), *map(str, args)], env=child_env(0, pg_schema)
            )
        )
        if n == 8:
            before = started_at(pg_url)
            restart_postgres()
            assert before != started_at(pg_url)  # it really restarted
    codes = [p.wait(timeout=120) for p in queues]
    assert set(codes) <= {0, 1}, codes  # 1: a write refused while the server was down
    assert all(w.poll() is None for w in workers), "a worker died with the database"
    settle(pg_url, pg_schema, workers)
    outcomes = check_systems(pg_runs(pg_url, pg_schema), system)
    assert sum(outcomes.values()) > 0
