"""Journals: where durable queues record their runs (SQLite, or PostgreSQL)."""

from ._base import (
    FINISHED,
    PRUNABLE,
    UNFINISHED,
    Journal,
    JournalError,
    LeaseLostError,
    NewRun,
    RunRecorder,
    RunRow,
    StepChange,
    StepRow,
)
from ._open import open_journal
from ._postgres import PostgresJournal
from ._sqlite import SCHEMA_VERSION, SQLiteJournal

__all__ = [
    "FINISHED",
    "PRUNABLE",
    "SCHEMA_VERSION",
    "UNFINISHED",
    "Journal",
    "JournalError",
    "LeaseLostError",
    "NewRun",
    "PostgresJournal",
    "RunRecorder",
    "RunRow",
    "SQLiteJournal",
    "StepChange",
    "StepRow",
    "open_journal",
]
