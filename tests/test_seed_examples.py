"""Both examples of the 0.8.2 README run unchanged and behave as it says."""

from __future__ import annotations

import random
import runpy
import time
from pathlib import Path

import pytest

SEED = Path(__file__).parent / "seed"


def run_example(name: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    runpy.run_path(str(SEED / name), run_name="__main__")
    return capsys.readouterr().out.splitlines()


def expected_random_output(seed: int) -> list[str]:
    """What the README's rules say the first example prints for a given seed."""
    rng = random.Random(seed)
    lines: list[str] = []
    executed: list[str] = []
    failed = False
    for name in ("a", "b"):
        executed.append(name)
        while True:
            choice = rng.choice([0, 1, 2])
            if choice == 1:
                lines.append(f"{name} Throwing retry exception")
                continue
            if choice == 2:
                lines.append(f"{name} Throwing failure exception")
                failed = True
            else:
                lines.append(f"{name} Executing success action")
            break
        if failed:
            break
    if failed:
        lines += [f"{n} Rolling back action" for n in reversed(executed)]
    return lines


@pytest.mark.parametrize("seed", range(40))
def test_first_example_follows_the_readme(seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Example 1: retries repeat, a failure stops the queue and rolls back the executed."""
    random.seed(seed)
    assert expected_random_output(seed) == run_example("example_random.py", capsys)


def test_first_example_covers_every_outcome() -> None:
    """The seeds above include a retry, a failure of a, and a failure of b."""
    outputs = [expected_random_output(s) for s in range(40)]
    assert any("a Throwing retry exception" in o for o in outputs)
    assert any(o[-1] == "a Rolling back action" and "b Rolling back action" in o for o in outputs)
    assert any(o == ["a Throwing failure exception", "a Rolling back action"] for o in outputs)
    assert any(o[-1] == "b Executing success action" for o in outputs)


def test_second_example_retries_five_times_then_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Example 2: 5 retries at 100, 200, 400, 800 and 1600 ms, then the failure."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    lines = run_example("example_factory.py", capsys)
    assert [f"Executing action {n}" for n in range(1, 7)] + ["boom"] == lines
    assert slept == [0.1, 0.2, 0.4, 0.8, 1.6]
