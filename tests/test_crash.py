"""Crash injection: durable queues killed with SIGKILL at random points, then recovered.

Every trial runs a durable queue in a child process that is killed (SIGKILL, by
itself, at a random instrumented point: inside an action before or after its side
effect, between steps, during rollback) or not, and recovery processes that may be
killed too, until no run is left unfinished. The external "system" (its own SQLite
file) must then hold every effect of a completed run and none of a rolled-back one,
and no compensation may have run twice under one claim.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHILD = HERE / "crash_child.py"
TRIALS = int(os.environ.get("AQ_CRASH_TRIALS", "200"))
BATCH = 10
KILLED = -9


def child(*args: object, crash_at: int = 0) -> int:
    env = {**os.environ, "AQ_CRASH_AT": str(crash_at), "PYTHONPATH": str(HERE)}
    done = subprocess.run(
        [sys.executable, str(CHILD), *map(str, args)], env=env, timeout=120, check=False
    )
    return done.returncode


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
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


def check_systems(journal: Path, system: Path) -> Counter[str]:
    """Every run finished; effects match the outcome; no compensation twice per claim."""
    runs = rows(journal, "SELECT id, status, steps, name FROM runs")
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
