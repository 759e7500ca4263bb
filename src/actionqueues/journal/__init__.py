"""Journals: where durable queues record their runs (SQLite, PostgreSQL, or memory)."""

import typing as _typing

from .. import _status
from .._errors import JournalError, LeaseLostError
from . import _schema
from ._base import Journal, NewRun, RunRow, StepChange, StepRow
from ._memory import MemoryJournal
from ._open import open_journal
from ._postgres import PostgresJournal
from ._sqlite import SQLiteJournal

# The constants are assigned here, not imported: autodoc reads the ``#:`` comment of
# the module the reference names, and that is this one.

#: The run statuses that are not final.
#:
#: ``"running"``, ``"failed"`` (execution stopped, rollback not yet finished) and
#: ``"rolling_back"``. A run in one of these whose lease has expired has lost its
#: owner, and :func:`~actionqueues.recover` claims it.
UNFINISHED: _typing.Final = _status.UNFINISHED

#: The run statuses that are final.
#:
#: ``"completed"``, ``"rolled_back"`` and ``"rollback_failed"``. Recovery never
#: claims such a run.
FINISHED: _typing.Final = _status.FINISHED

#: The run statuses :meth:`~actionqueues.journal.Journal.prune` deletes by default.
#:
#: ``"completed"`` and ``"rolled_back"``, runs that need nothing more from anyone.
#: A run whose rollback failed stays until an operator acts on it.
PRUNABLE: _typing.Final = _status.PRUNABLE

#: The version of the journal schema this actionqueues writes.
#:
#: An older journal is migrated when opened to write (read as it is when opened
#: ``readonly``); a newer one is refused with :class:`~actionqueues.JournalError`.
SCHEMA_VERSION: _typing.Final = _schema.SCHEMA_VERSION

__all__ = [
    "FINISHED",
    "PRUNABLE",
    "SCHEMA_VERSION",
    "UNFINISHED",
    "Journal",
    "JournalError",
    "LeaseLostError",
    "MemoryJournal",
    "NewRun",
    "PostgresJournal",
    "RunRow",
    "SQLiteJournal",
    "StepChange",
    "StepRow",
    "open_journal",
]
