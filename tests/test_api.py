"""The public API: one front door, complete and sorted; typed; versioned."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect

import actionqueues


def test_all_is_sorted() -> None:
    """__all__ is sorted, as httpx's test_exported_members asks."""
    assert sorted(actionqueues.__all__) == actionqueues.__all__


def test_all_is_complete() -> None:
    """Every public name defined in the package is in __all__, and every entry exists."""
    public = {
        name
        for name, value in vars(actionqueues).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value) or inspect.ismodule(value))
        and getattr(value, "__name__", "").startswith(("actionqueues", name))
    }
    assert public - {"annotations"} <= set(actionqueues.__all__)
    for name in actionqueues.__all__:
        assert hasattr(actionqueues, name), name


def test_public_objects_present_themselves_as_actionqueues() -> None:
    """Classes exported here live in actionqueues modules."""
    for name in actionqueues.__all__:
        value = getattr(actionqueues, name)
        if inspect.ismodule(value):
            module = value.__name__
        elif inspect.isclass(value) or inspect.isfunction(value):
            module = value.__module__
        else:
            continue  # a type alias such as Listener
        assert module.startswith("actionqueues"), (name, module)


def test_package_ships_py_typed() -> None:
    """py.typed is installed, so type checkers read the hints."""
    assert importlib.resources.files("actionqueues").joinpath("py.typed").is_file()


def test_version_matches_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert importlib.metadata.version("actionqueues") == actionqueues.__version__
    assert "1.0.0.dev0" == actionqueues.__version__


def test_no_runtime_dependencies() -> None:
    """The core installs nothing else."""
    requires = importlib.metadata.requires("actionqueues") or []
    assert [] == [r for r in requires if "extra ==" not in r]
