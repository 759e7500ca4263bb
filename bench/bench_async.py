"""The async queue: per-step cost, 10,000 concurrent queues, event-loop stalls.

usage: python bench/bench_async.py [--rounds 5] [--n 5000] [--queues 10000] [--durable 100]
                                   [--durable-runs 300]

Run with the interpreter of a venv where this tree is installed (``pip install .``).
Each round runs every measurement in a fresh process, in a shuffled order; the
printed figures are medians over the rounds (see ``_async_worker.py`` for what each
measures).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_async_worker.py"


def measure(kind: str, n: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run(
            [sys.executable, WORKER, kind, str(n), folder],
            check=True,
            capture_output=True,
            text=True,
            cwd=HERE,  # never import the source tree by accident
        )
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000, help="queues per per-step timing")
    parser.add_argument("--queues", type=int, default=10000, help="concurrent queues")
    parser.add_argument("--durable", type=int, default=100, help="concurrent durable queues")
    parser.add_argument("--durable-runs", type=int, default=300, help="runs per durable timing")
    args = parser.parse_args()
    sizes = {
        "sync": args.n,
        "async": args.n,
        "bare": args.n,
        "wall": args.queues,
        "memory": args.queues,
        "stall": args.durable,
        "stall-inline": args.durable,
        "dsync": args.durable_runs,
        "dasync": args.durable_runs,
        "dasync-inline": args.durable_runs,
    }
    kinds = list(sizes)
    results: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        random.shuffle(kinds)
        for kind in kinds:
            results[kind].append(measure(kind, sizes[kind]))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{args.rounds} rounds; medians")
    print(
        f"per step (10-step queue, built, added, run()): sync {med['sync']:.0f} ns, "
        f"async {med['async']:.0f} ns, bare async loop {med['bare']:.0f} ns; "
        f"async/sync {med['async'] / med['sync']:.2f}, async/bare {med['async'] / med['bare']:.1f}"
    )
    print(
        f"{args.queues} concurrent 10-step queues: {med['wall']:.3f} s, "
        f"peak {med['memory'] / 1024:.2f} KiB per queue (actions and tasks included)"
    )
    print(
        f"{args.durable} concurrent durable queues (SQLite, NORMAL): longest loop stall "
        f"{med['stall']:.2f} ms (writes in the journal's threads); "
        f"{med['stall-inline']:.2f} ms with the writes made on the loop (control)"
    )
    print(
        f"durable step, one run at a time (SQLite, NORMAL): sync {med['dsync']:.1f} us, "
        f"async {med['dasync']:.1f} us; async/sync {med['dasync'] / med['dsync']:.2f}; "
        f"async with the writes on the loop (control) {med['dasync-inline']:.1f} us"
    )
    print("all rounds:", {k: [round(x, 3) for x in v] for k, v in results.items()})


if __name__ == "__main__":
    main()
