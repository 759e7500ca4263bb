"""Generate the sync queue's driver from the async one, through the AST.

    python tools/async_to_sync.py          # write src/actionqueues/_driver_sync.py
    python tools/async_to_sync.py --check  # exit 1 if it is out of date

The driver is written once, as coroutines, in ``_driver_async.py``; its sync twin is
that module's syntax tree with the coroutine machinery taken out, as psycopg's
``tools/async_to_sync.py`` makes its sync classes:

* ``async def``, ``async with`` and ``async for`` lose ``async``; ``await x`` is ``x``;
* ``if _ASYNC: A else: B`` is ``B`` (an ``elif`` chain keeps what follows), and so is
  ``if _ASYNC and C: A else: B``; the ``_ASYNC`` constant itself goes;
* the name ``AsyncDriver`` is ``SyncDriver``.

Both files are ordinary Python, linted and type-checked as the rest. Imports left
unused are removed, and the result formatted, by ruff. Comments do not survive the
syntax tree: read them in ``_driver_async.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src/actionqueues/_driver_async.py"
TARGET = ROOT / "src/actionqueues/_driver_sync.py"
RUFF = Path(sys.executable).parent / "ruff"

HEADER = '''"""The sync queue's driver: GENERATED from ``_driver_async.py`` by
``tools/async_to_sync.py``. Do not edit; edit that file and run the tool.
"""
'''


def _is_async_test(test: ast.expr) -> bool:
    """``_ASYNC``, or ``_ASYNC and ...``: false in the sync driver."""
    if isinstance(test, ast.Name):
        return test.id == "_ASYNC"
    return (
        isinstance(test, ast.BoolOp)
        and isinstance(test.op, ast.And)
        and _is_async_test(test.values[0])
    )


class AsyncToSync(ast.NodeTransformer):
    """The rules of the module docstring, node by node."""

    def visit_If(self, node: ast.If) -> list[ast.stmt] | ast.stmt:
        if _is_async_test(node.test):
            return [self.visit(stmt) for stmt in node.orelse]
        return self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt | None:
        if isinstance(node.target, ast.Name) and node.target.id == "_ASYNC":
            return None
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.FunctionDef:
        self.generic_visit(node)
        fields = {name: getattr(node, name) for name in node._fields}
        return ast.copy_location(ast.FunctionDef(**fields), node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.With:
        self.generic_visit(node)
        return ast.copy_location(ast.With(items=node.items, body=node.body), node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.For:
        self.generic_visit(node)
        fields = {name: getattr(node, name) for name in node._fields}
        return ast.copy_location(ast.For(**fields), node)

    def visit_Await(self, node: ast.Await) -> ast.expr:
        return self.visit(node.value)  # type: ignore[no-any-return]

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == "AsyncDriver":
            node.id = "SyncDriver"
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        if node.name == "AsyncDriver":
            node.name = "SyncDriver"
        return self.generic_visit(node)  # type: ignore[return-value]


def async_to_sync(source: str) -> str:
    """The sync module's source, unformatted (the module docstring replaced)."""
    tree = ast.parse(source)
    if tree.body and isinstance(tree.body[0], ast.Expr):
        del tree.body[0]  # the module docstring: HEADER instead
    tree = ast.fix_missing_locations(AsyncToSync().visit(tree))
    return HEADER + ast.unparse(tree) + "\n"


def generate() -> str:
    """The sync driver, as it must be on disk: transformed, then tidied by ruff."""
    text = async_to_sync(SOURCE.read_text(encoding="utf-8"))
    for args in (
        ["check", "--fix", "--select", "F401,I001", "--quiet", "--exit-zero"],
        ["format"],
    ):
        text = subprocess.run(
            [str(RUFF), *args, "--stdin-filename", str(TARGET), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main() -> int:
    text = generate()
    if "--check" in sys.argv[1:]:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.name} is out of date: run tools/async_to_sync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
