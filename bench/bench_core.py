"""Per-step cost of a 10-step in-memory queue: this tree vs actionqueues 0.8.2 vs bare.

usage: python bench/bench_core.py [--rounds 15] [--n 20000]

Run with the interpreter of a venv where this tree is installed (``pip install .``).
0.8.2 is installed from the package index into ``bench/.venv-seed`` on first use.
Each round runs every (implementation, path) pair in a fresh process, in a shuffled
order, so the three are measured interleaved on the same noisy machine; the printed
figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _harness import interleaved, venv_python

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_core_worker.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    here = Path(sys.executable)
    seed = venv_python(".venv-seed", "actionqueues==0.8.2")
    pythons = {"seed": seed, "ours": here, "ours-run": here, "bare": here}
    results = interleaved(pythons, WORKER, ("happy", "fail"), args.rounds, args.n)
    print(f"{args.rounds} rounds, {args.n} queues of 10 steps per timing; ns per step, median")
    print("ours: execute() then rollback() on failure, as 0.8.2; ours-run: run()")
    print(
        f"{'path':<8}{'bare':>8}{'0.8.2':>8}{'ours':>8}{'ours-run':>10}"
        f"{'ours/0.8.2':>12}{'run/0.8.2':>11}{'ours/bare':>11}"
    )
    for path in ("happy", "fail"):
        med = {impl: statistics.median(results[impl, path]) for impl in pythons}
        print(
            f"{path:<8}{med['bare']:>8.0f}{med['seed']:>8.0f}{med['ours']:>8.0f}"
            f"{med['ours-run']:>10.0f}{med['ours'] / med['seed']:>12.2f}"
            f"{med['ours-run'] / med['seed']:>11.2f}{med['ours'] / med['bare']:>11.1f}"
        )


if __name__ == "__main__":
    main()
