"""Every public name has a docstring in Napoleon form and a place in the API reference.

The public names are those of ``actionqueues.__all__`` and ``actionqueues.journal.__all__``,
and the public methods and properties of their classes (inherited ones included, where
actionqueues defines them). A docstring opens with a one-line summary ending in a full
stop; it has ``Args:`` naming every parameter, ``Returns:`` (or ``Yields:``) when
something is returned, and ``Raises:`` when the function raises an error of its own.
A constant has a ``#:`` comment, which autodoc shows.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

import actionqueues
import actionqueues.journal

DOCS = Path(__file__).resolve().parent.parent / "docs"
PACKAGE = Path(actionqueues.__file__).resolve().parent
SECTION = re.compile(r"^(\w[\w ]*):$", re.MULTILINE)
DIRECTIVE = re.compile(r"^\.\. (auto\w+):: (\S+)$", re.MULTILINE)


def public() -> list[tuple[str, object]]:
    """Every public name once, under the first module that exports it."""
    seen: set[int] = set()
    names = []
    for module in (actionqueues, actionqueues.journal):
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            names.append((f"{module.__name__}.{name}", obj))
    return names


def ours(obj: object) -> bool:
    return getattr(obj, "__module__", "").startswith("actionqueues")


def members(cls: type) -> Iterator[tuple[str, object]]:
    """A class's public methods and properties that actionqueues itself defines."""
    if issubclass(cls, Enum) or getattr(cls, "__total__", None) is not None:
        return  # an Enum's members, a TypedDict's keys: described by the class
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next(k for k in cls.__mro__ if name in vars(k))
        if not ours(owner):
            continue
        value = vars(owner)[name]
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            yield name, value


def sections(doc: str) -> dict[str, str]:
    """The Napoleon sections of a docstring, each with its text."""
    found: dict[str, str] = {}
    parts = SECTION.split(doc)
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        found[title] = body
    return found


def own_raises(func: Callable[..., Any]) -> bool:
    """Whether ``func``'s own body raises a new exception (not a re-raise)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError):
        return False
    body = tree.body[0]
    stack = list(ast.iter_child_nodes(body))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def problems_of_function(qual: str, func: Callable[..., Any], *, method: bool) -> list[str]:
    doc = inspect.getdoc(func) or ""
    found = summary_problems(qual, doc)
    if found:
        return found
    parts = sections(doc)
    params = list(inspect.signature(func).parameters.values())
    if method and params and params[0].name in ("self", "cls"):
        params = params[1:]
    if params:
        documented = parts.get("Args", "")
        for p in params:
            star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
            if not re.search(rf"^\s*{re.escape(star + p.name)}\b", documented, re.MULTILINE):
                found.append(f"{qual}: Args: does not describe {star}{p.name}")
    returns = func.__annotations__.get("return")
    if (
        returns not in (None, "None", "NoReturn")
        and func.__name__ != "__init__"
        and not ({"Returns", "Yields"} & parts.keys())
    ):
        found.append(f"{qual}: returns {returns} but has no Returns: section")
    if own_raises(func) and "Raises" not in parts:
        found.append(f"{qual}: raises errors of its own but has no Raises: section")
    return found


def summary_problems(qual: str, doc: str) -> list[str]:
    if not doc.strip():
        return [f"{qual}: no docstring"]
    lines = doc.splitlines()
    if not lines[0].rstrip().endswith((".", ":")) or (len(lines) > 1 and lines[1].strip()):
        return [f"{qual}: the docstring does not open with a one-line summary"]
    return []


def problems_of_class(qual: str, cls: type) -> list[str]:
    doc = inspect.getdoc(cls) or ""
    found = summary_problems(qual, doc)
    if found:
        return found
    if issubclass(cls, Enum) or getattr(cls, "__total__", None) is not None:
        return found  # an Enum's members, a TypedDict's keys: described by the class
    constructor = next(
        (k for k in cls.__mro__ if "__init__" in vars(k) or "_fields" in vars(k)), object
    )
    if not getattr(cls, "_is_protocol", False) and (ours(constructor) or "_fields" in vars(cls)):
        parts = sections(doc)
        described = parts.get("Args", "") + parts.get("Attributes", "")
        for p in list(inspect.signature(cls).parameters.values()):
            star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
            if not re.search(rf"^\s*{re.escape(star + p.name)}\b", described, re.MULTILINE):
                found.append(f"{qual}: neither Args: nor Attributes: describes {star}{p.name}")
    for name, member in members(cls):
        if isinstance(member, property):
            assert member.fget is not None
            found += summary_problems(f"{qual}.{name}", inspect.getdoc(member) or "")
        else:
            found += problems_of_function(f"{qual}.{name}", member, method=True)  # type: ignore[arg-type]
    return found


def has_doc_comment(module: object, name: str) -> bool:
    """Whether the module that exports a constant assigns it under a ``#:`` comment.

    That module, not the one the value comes from: autodoc reads the comments of the
    module named in the reference.
    """
    source = Path(inspect.getsourcefile(module) or "").read_text()  # type: ignore[arg-type]
    assignment = re.compile(rf"^(#:.*\n)+{re.escape(name)}\b[^=\n]*=", re.MULTILINE)
    return bool(assignment.search(source))


def problems(qual: str, obj: object) -> list[str]:
    if inspect.ismodule(obj):
        return summary_problems(qual, inspect.getdoc(obj) or "")
    if inspect.isclass(obj):
        return problems_of_class(qual, obj)
    if inspect.isfunction(obj):
        return problems_of_function(qual, obj, method=False)
    module_name, _, name = qual.rpartition(".")
    module = {"actionqueues": actionqueues, "actionqueues.journal": actionqueues.journal}
    return (
        []
        if has_doc_comment(module[module_name], name)
        else [f"{qual}: a constant without a #: comment"]
    )


@pytest.mark.parametrize(("qual", "obj"), public(), ids=[q for q, _ in public()])
def test_public_name_is_documented(qual: str, obj: object) -> None:
    """The name (and its methods) have docstrings in Napoleon form."""
    assert [] == problems(qual, obj)


def referenced() -> set[str]:
    """The targets of the autodoc directives of the API reference."""
    return {
        match.group(2)
        for page in DOCS.rglob("*.rst")
        for match in DIRECTIVE.finditer(page.read_text())
    }


def test_every_public_name_is_in_the_api_reference() -> None:
    """Each public name is the target of an autodoc directive (once, by one of its names)."""
    targets = referenced()
    missing = []
    for module in (actionqueues, actionqueues.journal):
        for name in module.__all__:
            obj = getattr(module, name)
            names = {
                f"{m.__name__}.{n}"
                for m in (actionqueues, actionqueues.journal)
                for n in m.__all__
                if getattr(m, n) is obj
            }
            if inspect.ismodule(obj):
                names.add(obj.__name__)
            if not names & targets:
                missing.append(f"{module.__name__}.{name}")
    assert [] == missing


def test_the_api_reference_documents_only_what_exists() -> None:
    """Every autodoc target names a public object (a renamed one would leave a hole)."""
    strays = []
    for target in referenced():
        module_name, _, attribute = target.rpartition(".")
        module = {"actionqueues": actionqueues, "actionqueues.journal": actionqueues.journal}.get(
            module_name
        )
        exists = target in {"actionqueues", "actionqueues.journal"} or (
            module is not None and attribute in module.__all__
        )
        if not exists:
            strays.append(target)
    assert [] == strays


def test_the_checker_finds_what_is_missing() -> None:
    """The rules above really refuse a bare or incomplete docstring."""

    def bare(x: int) -> int:
        return x

    def no_args(x: int) -> int:
        """Double it.

        Returns:
            Twice x.
        """
        return 2 * x

    def raises(x: int) -> None:
        """Refuse it.

        Args:
            x: Anything.
        """
        raise ValueError(x)

    assert ["t.bare: no docstring"] == problems_of_function("t.bare", bare, method=False)
    assert ["t.f: Args: does not describe x"] == problems_of_function("t.f", no_args, method=False)
    assert ["t.r: raises errors of its own but has no Raises: section"] == problems_of_function(
        "t.r", raises, method=False
    )
    assert not has_doc_comment(actionqueues, "NO_SUCH_CONSTANT")


def test_the_error_tree_in_the_reference_is_the_real_one() -> None:
    """The hierarchy drawn on the API page is the classes' own, every error included."""
    text = (DOCS / "api.rst").read_text()
    tree = re.findall(r"^   ([│ ]*)(?:[├└]── )?(\w+(?:Error|Exception))\b", text, re.MULTILINE)
    parents: list[str] = []
    drawn = set()
    for indent, name in tree:
        depth = len(indent) // 4 + (0 if name == "ActionQueueError" else 1)
        del parents[depth:]
        if parents:
            assert parents[-1] == getattr(actionqueues, name).__mro__[1].__name__, name
        parents.append(name)
        drawn.add(name)
    errors = {
        n
        for n in actionqueues.__all__
        if inspect.isclass(getattr(actionqueues, n))
        and issubclass(getattr(actionqueues, n), actionqueues.ActionQueueError)
    }
    assert errors == drawn
