"""Journals: where durable queues record their runs (SQLite, or PostgreSQL)."""

from ._base import (
    FINISHED,
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
from ._postgres import PostgresJournal
from ._sqlite import SCHEMA_VERSION, SQLiteJournal, open_journal

__all__ = [
    "FINISHED",
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
