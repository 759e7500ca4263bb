"""Durable steps per second: this tree's SQLite journal vs the raw floor vs DBOS.

usage: python bench/bench_durable.py [--rounds 5] [--runs 300] [--dbos-runs 100] [--no-dbos]

Run with the interpreter of a venv where this tree is installed. DBOS Transact is
installed on first use into ``bench/.venv-dbos`` (``pip install dbos`` and this
tree). Every round runs each measurement in a fresh process and a fresh folder, in a
shuffled order; the table shows medians over the rounds.

- floor: a bare sqlite3 ``INSERT`` + ``COMMIT`` per step, WAL, same ``synchronous``.
- ours: 10-step durable queues of no-op registered actions, one after another
  (one commit a step: a step's "executed" record goes with the next one's
  "executing" record).
- ours, 2 commits: the same with a listener attached, which runs between the two,
  so that "executed" is committed on its own.
- ours x8: the same in 8 threads at once, on one journal.
- DBOS: a workflow of 10 no-op ``@DBOS.step()`` functions on its SQLite database.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_durable_worker.py"
DBOS_VENV = HERE / ".venv-dbos"


def dbos_python() -> Path:
    python = DBOS_VENV / "bin" / "python"
    if not python.exists():
        venv.create(DBOS_VENV, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "dbos", str(HERE.parent)], check=True)
    return python


def measure(python: Path, kind: str, mode: str, runs: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run(
            [python, WORKER, kind, mode, str(runs), folder],
            check=True,
            capture_output=True,
            text=True,
            cwd=HERE,
        )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--dbos-runs", type=int, default=100)
    parser.add_argument("--no-dbos", action="store_true", help="leave DBOS out")
    args = parser.parse_args()
    ours = Path(sys.executable)
    cases = [
        ("floor", "normal", ours, args.runs),
        ("floor", "full", ours, args.runs),
        ("ours", "normal", ours, args.runs),
        ("ours", "full", ours, args.runs),
        ("ours2", "normal", ours, args.runs),
        ("ours2", "full", ours, args.runs),
        ("ours8", "normal", ours, args.runs),
        ("ours8", "full", ours, args.runs),
    ]
    if not args.no_dbos:
        cases.append(("dbos", "normal", dbos_python(), args.dbos_runs))
    results: dict[tuple[str, str], list[float]] = {(k, m): [] for k, m, _, _ in cases}
    for _ in range(args.rounds):
        random.shuffle(cases)
        for kind, mode, python, runs in cases:
            results[kind, mode].append(measure(python, kind, mode, runs))
    med = {key: statistics.median(values) for key, values in results.items()}
    print(f"{args.rounds} rounds; durable steps per second, median (10-step runs)")
    for mode in ("normal", "full"):
        floor, seq, par = med["floor", mode], med["ours", mode], med["ours8", mode]
        two = med["ours2", mode]
        print(
            f"synchronous={mode.upper():<7} floor {floor:>8.0f}  ours {seq:>7.0f} "
            f"(floor/ours {floor / seq:.2f}x per step)  ours, 2 commits {two:>7.0f} "
            f"({floor / two:.2f}x)  ours x8 {par:>7.0f} ({par / seq:.2f}x sequential)"
        )
    if not args.no_dbos:
        dbos, seq = med["dbos", "normal"], med["ours", "normal"]
        print(f"DBOS Transact on SQLite: {dbos:.0f} steps/s; ours (NORMAL) is {seq / dbos:.1f}x")


if __name__ == "__main__":
    main()
