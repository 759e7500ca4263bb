"""Passwords out of sight: what may be shown of a libpq connection string, and of
psycopg's and libpq's messages about one (in errors, ``repr()`` and log lines).

Where a password may be, in every form libpq accepts, each is read the way libpq
reads it and also the way a mistyped string meant it (an unencoded "@", "/" or space
in a URL's password, an unquoted space in a keyword's value): redacting too much is
harmless, too little is a leak.
"""

from __future__ import annotations

import logging
import re
from typing import Final

# A URL's user:password@. libpq ends the user part at the first "@" (before any "/"):
_URL_PASSWORD: Final = re.compile(r"://[^:@/]*:([^@/]*)@")
# ...and a mistyped URL meant its password to run to its last "@".
_URL_PASSWORD_GREEDY: Final = re.compile(r"://[^:/?\n]*:([^\n]*)@")
# ?password=... or &password=..., to the next parameter (an unencoded "&" included).
_QUERY_PASSWORD: Final = re.compile(
    r"[?&](?:ssl)?password=([^&\s]*(?:&(?![A-Za-z_]+=)[^&\s]*)*)", re.IGNORECASE
)
# password=value, password = 'quoted \' value' (an unterminated quote: to the end), or
# an unquoted value with the words after it that are not a keyword=.
_KEYWORD_PASSWORD: Final = re.compile(
    r"(?<!\S)(?:ssl)?password\s*=\s*("
    r"'(?:[^'\\]|\\.)*(?:'|$)"
    r"|(?:[^\s\\']|\\.)(?:[^\s\\]|\\.)*(?:\s+(?![A-Za-z_]\w*\s*=)(?:[^\s\\]|\\.)+)*"
    r")",
    re.IGNORECASE | re.DOTALL,
)
_PASSWORD_FORMS: Final = (_URL_PASSWORD, _URL_PASSWORD_GREEDY, _QUERY_PASSWORD, _KEYWORD_PASSWORD)
# What psycopg's and libpq's messages quote: "value" or 'value'.
_QUOTED: Final = re.compile(r"\"([^\"\n]*)\"|'([^'\n]*)'")


def _password_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` (a connection string, or a message quoting one) has a password:
    merged, in order."""
    spans = sorted(
        m.span(1) for form in _PASSWORD_FORMS for m in form.finditer(text) if m.end(1) > m.start(1)
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with every password in it (a URL's ``user:password@``, a ``password=``
    query parameter, a keyword ``password=value``, quoted or not) and ``secret``
    wherever it appears replaced by ``***``: what may be shown of a connection string."""
    parts: list[str] = []
    last = 0
    for start, end in _password_spans(text):
        parts += (text[last:start], "***")
        last = end
    parts.append(text[last:])
    shown = "".join(parts)
    return shown.replace(secret, "***") if secret else shown


def scrub(message: str, conninfo: str, secret: str | None) -> str:
    """psycopg's or libpq's ``message`` about ``conninfo``, safe to show: the string
    itself redacted, and any part of it the message quotes that overlaps a password
    (as libpq quotes the token it could not parse) hidden."""
    spans = _password_spans(conninfo)

    def secretive(fragment: str) -> bool:
        at = conninfo.find(fragment)
        while at >= 0:
            if any(at < end and start < at + len(fragment) for start, end in spans):
                return True
            at = conninfo.find(fragment, at + 1)
        return False

    def hide(match: re.Match[str]) -> str:
        fragment = match.group(1) if match.group(1) is not None else match.group(2)
        quote = match.group(0)[0]
        return f"{quote}***{quote}" if fragment and secretive(fragment) else match.group(0)

    if conninfo:
        message = message.replace(conninfo, redact(conninfo, secret))
    return redact(_QUOTED.sub(hide, message), secret)


class Redact(logging.Filter):
    """Takes a password out of psycopg_pool's log records (it logs libpq's errors)."""

    def __init__(self, conninfo: str, secret: str | None) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = scrub(message, self.conninfo, self.secret)
        if shown != message:
            record.msg, record.args = shown, ()
        return True
