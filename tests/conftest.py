"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import actionqueues


@pytest.fixture
def log() -> list[tuple[str, str]]:
    """A fresh call log."""
    return []


@pytest.fixture
def instant() -> Iterator[None]:
    """Retry waits are instant for the test."""
    with actionqueues.set_testing():
        yield
