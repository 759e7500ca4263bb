"""Generate the sync queue's driver from the async one.

    python tools/unasync.py          # write src/actionqueues/_driver_sync.py
    python tools/unasync.py --check  # exit 1 if it is out of date

The rules live in the engine; the driver that carries them out is written once, as
coroutines, in ``_driver_async.py``. The sync driver is that file with the
coroutine machinery taken out, line by line:

* ``async def`` becomes ``def``, ``async with`` ``with``; ``await`` goes;
* a line ending in ``# sync: CODE`` becomes ``CODE`` (same indentation);
* a comment line ``# sync-only: CODE`` becomes ``CODE``, and a comment line
  ``# sync-next: CODE`` goes, ``CODE`` taking the place of the line after it;
* a line ending in ``# async-only`` goes, and so do the lines from
  ``# begin async-only`` to ``# end async-only``;
* ``AsyncDriver`` becomes ``SyncDriver``.

The result is formatted with ruff, as the rest of the code is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src/actionqueues/_driver_async.py"
TARGET = ROOT / "src/actionqueues/_driver_sync.py"

HEADER = '''"""The sync queue's driver: GENERATED from ``_driver_async.py`` by
``tools/unasync.py``. Do not edit; edit that file and run the tool.
"""
'''

_SYNC_LINE = re.compile(r"^(\s*)(.*?)\s*# sync: (.*)$")
_SYNC_ONLY = re.compile(r"^(\s*)# sync-only: (.*)$")
_SYNC_NEXT = re.compile(r"^(\s*)# sync-next: (.*)$")


def unasync(text: str) -> str:
    """The sync driver's source, unformatted."""
    out: list[str] = []
    skipping = False
    lines = text.splitlines()
    # The module docstring is replaced by HEADER.
    end = -1
    if lines and lines[0].startswith('"""'):
        end = 0
        while not (lines[end].rstrip().endswith('"""') and (end or len(lines[0]) > 3)):
            end += 1
    instead: str | None = None  # what replaces the next line
    for line in lines[end + 1 :]:
        stripped = line.strip()
        if instead is not None:
            line, instead = line[: len(line) - len(line.lstrip())] + instead, None
        elif match := _SYNC_NEXT.match(line):
            instead = match[2]
            continue
        if stripped == "# begin async-only":
            skipping = True
            continue
        if stripped == "# end async-only":
            skipping = False
            continue
        if skipping or line.rstrip().endswith("# async-only"):
            continue
        if match := _SYNC_ONLY.match(line):
            line = match[1] + match[2]
        elif match := _SYNC_LINE.match(line):
            line = match[1] + match[3]
        line = re.sub(r"\basync def\b", "def", line)
        line = re.sub(r"\basync with\b", "with", line)
        line = re.sub(r"\bawait\s+", "", line)
        line = line.replace("AsyncDriver", "SyncDriver")
        out.append(line)
    return HEADER + "\n".join(out) + "\n"


def formatted(source: str) -> str:
    """``source`` as ruff formats (and import-sorts) it."""
    ruff = Path(sys.executable).parent / "ruff"
    command = str(ruff) if ruff.exists() else "ruff"
    fixed = subprocess.run(
        [command, "check", "--select", "I,F401", "--fix-only", "--quiet", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return subprocess.run(
        [command, "format", "--stdin-filename", str(TARGET), "-"],
        input=fixed,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def generate() -> str:
    return formatted(unasync(SOURCE.read_text()))


def main() -> int:
    text = generate()
    if "--check" in sys.argv[1:]:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python tools/unasync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
