"""``open_journal()``: a journal from a file path or a URL."""

from __future__ import annotations

import os
import re
from typing import Final

from .._errors import JournalError
from ._base import Journal
from ._memory import MemoryJournal
from ._sqlite import SQLiteJournal

# A libpq keyword/value connection string ("host=db port=5432 ..."): one that starts
# with a libpq keyword, or has a password= anywhere. Never a file path to create.
_LIBPQ_KEYWORDS: Final = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
]
_KEYWORD_DSN: Final = re.compile(
    rf"^\s*(?:{'|'.join(_LIBPQ_KEYWORDS)})\s*=|(?<!\S)(?:ssl)?password\s*=", re.IGNORECASE
)


def looks_like_dsn(text: str) -> bool:
    """Whether ``text`` reads as a keyword/value connection string, not a path."""
    return _KEYWORD_DSN.search(text) is not None


_ACCEPTED: Final = (
    "a file path, a sqlite:///relative.db or sqlite:////absolute.db URL, a "
    "postgresql://user@host:port/database URL, or memory: (a journal in memory, for tests)"
)


def open_journal(
    url: str | os.PathLike[str], *, readonly: bool = False, **options: object
) -> Journal:
    """Open a journal from a file path or a URL.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a plain file path open a
    :class:`~actionqueues.SQLiteJournal`; ``postgresql://...`` (or ``postgres://...``) a
    :class:`~actionqueues.journal.PostgresJournal` (the ``[postgres]`` extra); the string
    ``memory:`` a new, empty :class:`~actionqueues.MemoryJournal` (for tests: each
    call opens another, which shares no run with the last; a file of that name is
    ``./memory:``).

    Args:
        url: Where the journal is.
        readonly: Open an existing journal to read only: nothing is created,
            migrated or written; a file or schema that holds no journal is refused.
        **options: The journal class's other keyword arguments (``lease=``,
            ``durability=``, ``schema=``...).

    Returns:
        The journal, open; close it with :meth:`~actionqueues.journal.Journal.close`, or use it as a
        context manager.

    Raises:
        JournalError: ``url`` is none of the accepted forms (a keyword/value
            connection string is refused: give it to
            :class:`~actionqueues.journal.PostgresJournal`), or the journal cannot be
            opened; or ``memory:`` is opened ``readonly`` (a new memory journal
            holds nothing to read).

    .. versionadded:: 1.0
    """
    if not isinstance(url, str | os.PathLike):
        msg = f"open_journal({url!r}): pass {_ACCEPTED}."
        raise JournalError(msg)
    text = os.fspath(url)
    if isinstance(url, str) and text == "memory:":
        if readonly:
            msg = (
                "open_journal('memory:', readonly=True): a new memory journal is empty, "
                "and only its own queues write it; open it without readonly=True."
            )
            raise JournalError(msg)
        return MemoryJournal(**options)  # type: ignore[arg-type]
    if text.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresJournal

        return PostgresJournal(text, readonly=readonly, **options)  # type: ignore[arg-type]
    if looks_like_dsn(text):
        # Never echoed: it may hold a password.
        msg = (
            "open_journal() was given a keyword/value connection string (host=... "
            f"dbname=...), which is neither a URL nor a file path; pass {_ACCEPTED}, or "
            "give the string to PostgresJournal() directly."
        )
        raise JournalError(msg)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif text.startswith("sqlite:"):
        msg = (
            f"open_journal({text!r}): a SQLite URL has three slashes, sqlite:///runs.db "
            "for a relative path (four for an absolute one: sqlite:////var/runs.db)."
        )
        raise JournalError(msg)
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        msg = f"Unsupported journal URL scheme {scheme!r}; pass {_ACCEPTED}."
        raise JournalError(msg)
    return SQLiteJournal(text, readonly=readonly, **options)  # type: ignore[arg-type]
