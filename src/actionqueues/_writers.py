"""The threads that make async queues' journal writes, so that an event loop never
waits for a commit: a few per journal, made on first use, shut down with it.

A journal says how many suit it (``Journal.write_threads``): few, since more would
only contend for the GIL with the loop (one writer at a time gets SQLite's lock
anyway); a journal that commits in groups (``SQLiteJournal(durability="power")``)
or a PostgreSQL one has more, to fill the groups or the connections.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from .journal import Journal

_pools: weakref.WeakKeyDictionary[Journal, ThreadPoolExecutor] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def writer(journal: Journal) -> ThreadPoolExecutor:
    """``journal``'s writer threads, made on first use and shut down by its ``close()``.

    Raises:
        JournalError: The journal is closed.
    """
    journal._check_open()
    with _lock:
        pool = _pools.get(journal)
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor  # async queues only

            pool = ThreadPoolExecutor(
                journal.write_threads, thread_name_prefix="actionqueues-journal"
            )
            _pools[journal] = pool
            # Weakly: a journal dropped unclosed is collected, and its threads end.
            ref = weakref.ref(journal)
            journal._on_close(lambda: _shut(ref))
        return pool


def _shut(ref: weakref.ReferenceType[Journal]) -> None:
    """After the journal's last write: its threads end."""
    journal = ref()
    if journal is None:
        return
    with _lock:
        pool = _pools.pop(journal, None)
    if pool is not None:
        pool.shutdown()


def _in_child() -> None:
    """A forked child has none of its parent's threads: it makes its own, if any."""
    global _lock
    _lock = threading.Lock()
    _pools.clear()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_in_child)
