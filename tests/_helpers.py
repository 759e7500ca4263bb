"""Scripted actions for the tests."""

from __future__ import annotations

from actionqueues import ActionRetryException


class Boom(Exception):
    """The failure scripted actions raise."""


class Step:
    """An action that records its calls in ``log`` and behaves as scripted.

    Args:
        name: Recorded with every call.
        log: Where calls are recorded as ``(name, "execute" | "rollback")``.
        fail: Raise this from execute (after ``retries`` retry requests).
        retries: Raise ActionRetryException this many times first.
        rollback_fail: Raise this from rollback (after ``rollback_retries``).
        rollback_retries: Raise ActionRetryException from rollback this many times.
        result: What execute returns.
    """

    def __init__(
        self,
        name: str,
        log: list[tuple[str, str]],
        *,
        fail: BaseException | None = None,
        retries: int = 0,
        rollback_fail: BaseException | None = None,
        rollback_retries: int = 0,
        result: object = None,
    ) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.retries = retries
        self.rollback_fail = rollback_fail
        self.rollback_retries = rollback_retries
        self.result = result

    def execute(self) -> object:
        self.log.append((self.name, "execute"))
        if self.retries:
            self.retries -= 1
            raise ActionRetryException(ms_backoff=0)
        if self.fail is not None:
            raise self.fail
        return self.result

    def rollback(self) -> None:
        self.log.append((self.name, "rollback"))
        if self.rollback_retries:
            self.rollback_retries -= 1
            raise ActionRetryException(ms_backoff=0)
        if self.rollback_fail is not None:
            raise self.rollback_fail
