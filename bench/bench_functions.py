"""Per-step cost of a 10-step in-memory run of plain functions: ours vs saga-py 1.1.0.

usage: python bench/bench_functions.py [--rounds 15] [--n 20000]

Run with the interpreter of a venv where this tree is installed. saga-py, the
package index's function-pair saga library, is installed into
``bench/.venv-sagapy`` on first use. Each round runs every (implementation, path)
pair in a fresh process, in a shuffled order; the figures are medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _harness import interleaved, venv_python

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_functions_worker.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    pythons = {
        "sagapy": venv_python(".venv-sagapy", "saga-py==1.1.0"),
        "ours": Path(sys.executable),
    }
    results = interleaved(pythons, WORKER, ("happy", "fail"), args.rounds, args.n)
    print(f"{args.rounds} rounds, {args.n} runs of 10 function steps; ns per step, median")
    print(f"{'path':<8}{'saga-py':>9}{'ours':>8}{'ours/saga-py':>14}")
    for path in ("happy", "fail"):
        saga = statistics.median(results["sagapy", path])
        ours = statistics.median(results["ours", path])
        print(f"{path:<8}{saga:>9.0f}{ours:>8.0f}{ours / saga:>14.2f}")


if __name__ == "__main__":
    main()
