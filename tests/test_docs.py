"""Every Python block of the README and of the docs' pages runs, and shows what it prints.

The blocks of one page run in order in one namespace (a page reads as one session,
each block going on from the last), in a fresh working directory. An ```` ```output ````
block right after a Python block is what that block prints, exactly. Pages that need
PostgreSQL read its URL from ``$ACTIONQUEUES_JOURNAL``, which the test sets to the test
database, and put their tables in schemas whose names begin with ``docs_``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
#: The pages whose examples use a PostgreSQL journal.
POSTGRES_PAGES = {"fleets.md"}


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """A page's fenced blocks: language, text, and the line the text starts on."""
    text = page.read_text()
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2) for m in FENCE.finditer(text)
    ]


def python_blocks(page: Path) -> list[tuple[str, str | None, int]]:
    """Each Python block, with the ``output`` block right after it, if any."""
    found = blocks(page)
    result = []
    for i, (lang, code, line) in enumerate(found):
        if lang == "python":
            nxt = found[i + 1] if i + 1 < len(found) else None
            shown = nxt[1] if nxt is not None and nxt[0] == "output" else None
            result.append((code, shown, line))
    return result


def run_page(page: Path) -> None:
    """Run a page's blocks in one module of its own (dataclasses look their module up)."""
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    sys.modules[module.__name__] = module
    try:
        for code, shown, line in python_blocks(page):
            out = io.StringIO()
            # Line numbers in a traceback are the page's own.
            source = "\n" * (line - 1) + code
            with contextlib.redirect_stdout(out):
                exec(compile(source, str(page), "exec"), module.__dict__)  # noqa: S102
            if shown is not None:
                assert shown.splitlines() == out.getvalue().splitlines(), (
                    f"{page.name}, the block at line {line}: it printed other than the page shows"
                )
    finally:
        del sys.modules[module.__name__]


@pytest.fixture
def page_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A fresh working directory; for a PostgreSQL page, the test database's URL."""
    monkeypatch.chdir(tmp_path)
    page: Path = request.node.callspec.params["page"]
    if page.name not in POSTGRES_PAGES:
        yield
        return
    url = request.getfixturevalue("pg_url")
    monkeypatch.setenv("ACTIONQUEUES_JOURNAL", url)
    try:
        yield
    finally:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            schemas = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'docs\\_%'"
            ).fetchall()
            for (schema,) in schemas:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
@pytest.mark.usefixtures("page_env")
def test_page_examples_run(page: Path) -> None:
    """Each Python block of the page runs; shown output matches exactly."""
    run_page(page)


def test_pages_have_examples() -> None:
    """The examples are really collected, and every output block follows a Python one."""
    assert len(python_blocks(README)) >= 1
    assert sum(len(python_blocks(p)) for p in PAGES) >= 30
    for page in PAGES:
        text = page.read_text()
        # No Python block hides where this test would not find it (inside a directive).
        assert text.count("```python") == len(python_blocks(page)), page.name
        assert "code-block} python" not in text
        assert "code-block:: python" not in text
        found = blocks(page)
        for i, (lang, _, line) in enumerate(found):
            if lang == "output":
                assert i > 0, f"{page.name}:{line}"
                assert "python" == found[i - 1][0], f"{page.name}:{line}"


def test_readme_opens_with_the_two_setup_commands() -> None:
    """The first block is the two set-up commands that .ci/run also runs."""
    lang, code, _ = blocks(README)[0]
    assert "sh" == lang
    install, tests = code.strip().splitlines()
    assert install.endswith("actionqueues demo")
    assert tests.endswith("-m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci


def test_readme_is_short() -> None:
    """The README stays a front page: at most 150 lines, the rest in the docs."""
    assert len(README.read_text().splitlines()) <= 150


def test_readme_links_resolve_to_pages() -> None:
    """Each link into the docs from the README names a page that exists."""
    linked = re.findall(r"\]\((docs/[\w./-]+?)(?:#[\w-]+)?\)", README.read_text())
    assert linked
    assert [] == [target for target in linked if not (ROOT / target).exists()]


def test_demo_output_is_what_getting_started_shows() -> None:
    """The demo prints what the Getting started page shows (ids, pids and paths aside)."""
    (_, shown, _) = next(b for b in blocks(DOCS / "getting-started.md") if b[0] == "console")
    command, *expected = shown.splitlines()
    assert "$ actionqueues demo" == command
    demo = subprocess.run(
        [sys.executable, "-m", "actionqueues", "demo"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )

    def normal(lines: list[str]) -> list[str]:
        # A run id, a process id and the demo's temporary folder differ every time.
        return [
            re.sub(r"\b[0-9a-f]{8}\b|\b\d{2,}\b|/tmp/\S+", "#", line).rstrip() for line in lines
        ]

    assert normal(expected) == normal(demo.stdout.splitlines())


def help_blocks() -> list[tuple[str, list[str]]]:
    """The command's ``--help`` texts that the docs show: the command line, and the text."""
    found = []
    for page in PAGES:
        for lang, text, _ in blocks(page):
            first, *rest = text.splitlines() or [""]
            if lang == "console" and re.fullmatch(r"\$ actionqueues( \w+)? --help", first):
                found.append((first[2:], rest))
    return found


@pytest.mark.parametrize(("command", "shown"), help_blocks(), ids=[c for c, _ in help_blocks()])
def test_help_shown_in_the_docs_is_the_real_help(command: str, shown: list[str]) -> None:
    """What a page shows of ``--help`` is what the command prints (80 columns)."""
    printed = subprocess.run(
        [sys.executable, "-m", "actionqueues", *command.split()[1:]],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "80"},
    ).stdout
    assert shown == printed.replace("usage: __main__.py", "usage: actionqueues").splitlines()


def test_the_docs_show_the_help_of_every_command() -> None:
    """Each sub-command's ``--help`` is on the command's page, and checked above."""
    shown = {command for command, _ in help_blocks()}
    assert {f"actionqueues {c} --help" for c in ("demo", "runs", "show", "recover", "prune")} <= (
        shown
    )
    assert "actionqueues --help" in shown
