"""Every Python block in the README runs, and the shown output is what it prints."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PG_ENV

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(README.read_text())]


def python_blocks() -> list[tuple[int, str, str | None]]:
    """Each Python block, with the untagged block right after it (its output), if any."""
    found = blocks()
    result = []
    for i, (lang, code) in enumerate(found):
        if lang == "python":
            nxt = found[i + 1] if i + 1 < len(found) else None
            shown = nxt[1] if nxt is not None and nxt[0] == "" else None
            result.append((i, code, shown))
    return result


def run_block(code: str) -> str:
    """Run a block as a module of its own (dataclasses look their module up)."""
    out = io.StringIO()
    module = types.ModuleType("readme_block")
    sys.modules[module.__name__] = module
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), module.__dict__)  # noqa: S102
    finally:
        del sys.modules[module.__name__]
    return out.getvalue()


@pytest.fixture(scope="module", autouse=True)
def drop_readme_schema() -> Iterator[None]:
    """The PostgreSQL example's schema goes when the examples are done."""
    yield
    url = os.environ.get(PG_ENV)
    if url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS readme_fleet CASCADE")


@pytest.mark.parametrize(("index", "code", "shown"), python_blocks())
def test_readme_block_runs(index: int, code: str, shown: str | None) -> None:
    """Each README block runs without error; shown output matches, line by line."""
    printed = run_block(code)
    if shown is not None:
        assert shown.splitlines() == printed.splitlines()[-len(shown.splitlines()) :]


def test_readme_opens_with_the_two_setup_commands() -> None:
    """The first block is the two set-up commands that .ci/run also runs."""
    lang, code = blocks()[0]
    assert "sh" == lang
    install, tests = code.strip().splitlines()
    assert install.endswith("actionqueues demo")
    assert tests.endswith("-m pytest")
    ci = (README.parent / ".ci" / "run").read_text()
    assert "README.md" in ci


def test_readme_has_python_blocks() -> None:
    """The README's examples are really collected."""
    assert len(python_blocks()) >= 6
