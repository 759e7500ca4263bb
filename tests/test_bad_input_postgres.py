"""Bad input to the PostgreSQL journal gets a clear error, naming the problem and the
fix, before anything connects, and never showing a password (see conftest's pg_url).
"""

from __future__ import annotations

import logging
import math

import psycopg
import pytest
from durable_actions import Write, registry

from actionqueues import ActionQueue, InvalidArgumentError, JournalError
from actionqueues.journal import PostgresJournal

# Nothing listens there: a parameter checked only after connecting would fail with
# "cannot be opened" instead of its own message.
NOWHERE = "postgresql://postgres@127.0.0.1:1/test"


@pytest.mark.parametrize(
    "schema",
    ["name\n", "Robert'); DROP TABLE x;--", "", "UPPER", "1abc", "a" * 64, "a-b", 7, None],
)
def test_a_schema_that_is_not_a_plain_identifier_is_refused(schema: object) -> None:
    """A trailing newline included (the check matches the whole name)."""
    with pytest.raises(JournalError, match="a schema name is lower-case") as caught:
        PostgresJournal(NOWHERE, schema=schema)  # type: ignore[arg-type]
    assert "cannot be opened" not in str(caught.value)


def test_a_schema_name_of_63_characters_is_accepted_up_to_connecting() -> None:
    """PostgreSQL's longest identifier passes the check (and fails only to connect)."""
    with pytest.raises(JournalError, match="cannot be opened"):
        PostgresJournal(NOWHERE, schema="a" * 63)


@pytest.mark.parametrize("pool_size", [0, -1, True, False, 1.5, 4.0, "4", None])
def test_a_pool_size_that_is_not_a_whole_number_of_1_or_more_is_refused(
    pool_size: object,
) -> None:
    """pool_size names itself and says what it must be, before connecting."""
    with pytest.raises(JournalError) as caught:
        PostgresJournal(NOWHERE, pool_size=pool_size)  # type: ignore[arg-type]
    assert (True, True) == (
        str(caught.value).startswith(f"pool_size={pool_size!r}:"),
        "a whole number, 1 or more" in str(caught.value),
    )


@pytest.mark.parametrize(
    "connect_timeout", [0, -1, 0.0, True, math.nan, math.inf, -math.inf, "5", None]
)
def test_a_connect_timeout_that_is_not_a_finite_positive_number_is_refused(
    connect_timeout: object,
) -> None:
    """connect_timeout names itself and says what it must be, before connecting."""
    with pytest.raises(JournalError) as caught:
        PostgresJournal(NOWHERE, connect_timeout=connect_timeout)  # type: ignore[arg-type]
    assert (True, True) == (
        str(caught.value).startswith(f"connect_timeout={connect_timeout!r}:"),
        "a finite number, more than 0" in str(caught.value),
    )


def test_a_url_that_is_not_a_string_is_refused() -> None:
    """A connection string is text; bytes are refused without being echoed."""
    with pytest.raises(JournalError, match="a connection string \\(str\\) is needed") as caught:
        PostgresJournal(b"postgresql://u:Bq4Wz9@127.0.0.1:1/test")  # type: ignore[arg-type]
    assert "Bq4Wz9" not in str(caught.value)


@pytest.mark.parametrize(
    ("conninfo", "pieces"),
    [
        # libpq quotes the token it cannot parse: here, the password.
        ("postgresql://u:Hj5%zzNt8@127.0.0.1:1/test", ("Hj5", "Nt8")),
        ("postgresql://u:Hj5 Nt8@127.0.0.1:1/test", ("Hj5", "Nt8")),
        ("postgresql://u:Hj5Nt8@127.0.0.1:1/test?password", ("Hj5Nt8",)),
        ("postgresql://u:Hj5Nt8@[::1/test", ("Hj5Nt8",)),
        ("postgresql://127.0.0.1:1/test?password=Hj5Nt8&bogus=1", ("Hj5Nt8",)),
        ("host=127.0.0.1 port=1 password=Hj5 Nt8", ("Hj5", "Nt8")),  # unquoted space
        ("host=127.0.0.1 port=1 password='Hj5 Nt8", ("Hj5", "Nt8")),  # unterminated
        ("host=127.0.0.1 port=1 password=Hj5Nt8 bogus=1", ("Hj5Nt8",)),
    ],
)
def test_a_connection_string_that_cannot_be_parsed_never_shows_its_password(
    conninfo: str, pieces: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    """Not valid: the error says why, quotes no part of the password, logs nothing."""
    with pytest.raises(psycopg.Error):
        psycopg.conninfo.conninfo_to_dict(conninfo)  # the premise: psycopg refuses it
    with caplog.at_level(logging.DEBUG), pytest.raises(JournalError) as caught:
        PostgresJournal(conninfo)
    message = str(caught.value)
    assert "connection string is not valid" in message
    for piece in pieces:
        assert (False, False) == (piece in message, piece in caplog.text)


@pytest.mark.parametrize(
    ("conninfo", "pieces"),
    [
        # Parsed, but not as meant: the password's parts land in host, port or database.
        ("postgresql://u:Hj5/Nt8@127.0.0.1:1/test", ("Hj5", "Nt8")),
        ("postgresql://u:Hj5@Nt8@127.0.0.1:1/test", ("Hj5", "Nt8")),
        ("postgresql://u:Hj5Nt8@127.0.0.1:1/test?sslmode=Hj5Nt8", ("Hj5Nt8",)),
    ],
)
def test_a_mistyped_connection_string_never_shows_its_password(
    conninfo: str, pieces: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    """Wherever libpq put the password's parts, the error and the logs hide them."""
    with caplog.at_level(logging.DEBUG), pytest.raises(JournalError) as caught:
        PostgresJournal(conninfo)
    for piece in pieces:
        assert (False, False) == (piece in str(caught.value), piece in caplog.text)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda j: j.prune("yesterday"), "a time is a number of seconds"),
        (lambda j: j.prune(math.nan), "a time is a number of seconds"),
        (lambda j: j.prune(0, statuses="completed"), "pass a list of statuses"),
        (lambda j: j.prune(0, statuses=["running"]), "only finished runs can be pruned"),
        (lambda j: j.prune(0, statuses=[]), "only finished runs can be pruned"),
        (lambda j: j.runs(limit=-1), "a limit is a whole number"),
        (lambda j: j.runs(limit=True), "a limit is a whole number"),
        (lambda j: j.runs(status="bogus"), "choose among"),
        (lambda j: j.runs(name=3), "a queue's name is a string"),
        (lambda j: j.runs(before="now"), "a time is a number of seconds"),
    ],
)
def test_bad_arguments_to_prune_and_runs_are_refused(
    pg_url: str, pg_schema: str, call: object, match: str
) -> None:
    """Checked before any query, with what to pass instead; nothing is deleted."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    try:
        with pytest.raises(JournalError, match=match):
            call(journal)  # type: ignore[operator]
    finally:
        journal.close()


def test_a_run_id_too_long_for_an_index_is_refused_before_anything_is_written(
    pg_url: str, pg_schema: str, sysdb: str
) -> None:
    """A 5,000-character id (over PostgreSQL's btree row limit) fails at the queue."""
    journal = PostgresJournal(pg_url, schema=pg_schema)
    try:
        with pytest.raises(InvalidArgumentError, match="at most"):
            ActionQueue(journal=journal, registry=registry, run_id="a" * 5000).add(
                Write(sysdb, "never")
            )
        assert [] == journal.runs()
    finally:
        journal.close()
