"""The linters and the type checker are part of the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found is not None, f"{name} is not installed: pip install '.[dev]'"
    return found


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],  # --strict, on src/ and tests/typing/api.py (pyproject.toml)
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_passes(command: list[str]) -> None:
    """ruff and mypy --strict report nothing."""
    result = subprocess.run(
        [tool(command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert 0 == result.returncode, result.stdout + result.stderr


def test_the_sync_driver_is_generated_from_the_async_one() -> None:
    """_driver_sync.py is exactly what tools/async_to_sync.py makes of _driver_async.py."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "async_to_sync.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == result.returncode, result.stderr


def test_async_to_sync_rules() -> None:
    """Each rule of the AST transformer, on a sample."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import async_to_sync
    finally:
        sys.path.pop(0)
    sample = '''"""Doc."""
_ASYNC: Final = True
if _ASYNC:
    import asyncio
else:
    import time
class AsyncDriver:
    async def go(self) -> None:
        async with self.lock():
            await self.write()
        async for x in self.rows():
            pass
        if _ASYNC:
            await asyncio.sleep(1)
        elif done:
            time.sleep(1)
        if _ASYNC and ready:
            await self.group()
        else:
            raise AssertionError
        return AsyncDriver
'''
    expected = """import time

class SyncDriver:

    def go(self) -> None:
        with self.lock():
            self.write()
        for x in self.rows():
            pass
        if done:
            time.sleep(1)
        raise AssertionError
        return SyncDriver
"""
    assert async_to_sync.HEADER + expected == async_to_sync.async_to_sync(sample)
