"""What the in-memory benchmarks share: a reference library in a venv of its own,
and workers run interleaved, each timing in a fresh process."""

from __future__ import annotations

import random
import subprocess
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent


def venv_python(name: str, requirement: str) -> Path:
    """The interpreter of ``bench/<name>``, a venv holding ``requirement`` (made and
    installed from the package index on first use)."""
    python = HERE / name / "bin" / "python"
    if not python.exists():
        venv.create(HERE / name, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "-q", requirement], check=True)
    return python


def interleaved(
    pythons: dict[str, Path], worker: Path, paths: tuple[str, ...], rounds: int, n: int
) -> dict[tuple[str, str], list[float]]:
    """Each round, every (implementation, path) pair in a fresh process, in a shuffled
    order: ``python worker impl path n``, which prints one figure."""
    runs = [(impl, path) for impl in pythons for path in paths]
    results: dict[tuple[str, str], list[float]] = {r: [] for r in runs}
    for _ in range(rounds):
        random.shuffle(runs)
        for impl, path in runs:
            out = subprocess.run(
                [pythons[impl], worker, impl, path, str(n)],
                check=True,
                capture_output=True,
                text=True,
                cwd=HERE,  # never import the source tree by accident
            )
            results[impl, path].append(float(out.stdout))
    return results
