"""Retry policies, backoff, the testing switch, and 0.8.2's exception factory.

Nothing is retried unless a policy says so (actions have side effects). The one
exception is 0.8.2's :class:`ActionRetryException`, which an action raises to ask for
another call; with no policy declared it keeps 0.8.2's behaviour (retry for as long as
it is raised), under a policy it spends the policy's budget.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import timedelta
from numbers import Real
from types import TracebackType
from typing import Final, NoReturn, TypeAlias

from ._action import is_async_callable
from ._errors import ActionRetryException, InvalidBackoffError, InvalidPolicyError

#: A predicate for ``on``: return ``True`` to retry with backoff, ``False`` not to
#: retry, or a number of seconds (or a ``timedelta``) to retry after exactly that wait.
RetryPredicate: TypeAlias = Callable[[Exception], bool | float | timedelta]
RetryOn: TypeAlias = type[Exception] | tuple[type[Exception], ...] | RetryPredicate
Duration: TypeAlias = float | timedelta

_testing = False
#: Under :func:`set_testing`, the attempts every retry gets, if it was given some, and
#: whether that caps a policy's own attempts (else it replaces them).
_testing_attempts: int | None = None
_testing_cap = False
#: The longest retry wait: a year. (``time.sleep`` itself fails well before
#: ``threading.TIMEOUT_MAX``, its deadline being now plus the wait.)
_LONGEST_WAIT: Final = 365 * 24 * 3600.0


class _Testing:
    """Returned by :func:`set_testing`; restores the previous setting on ``__exit__``."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, int | None, bool]) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _testing, _testing_attempts, _testing_cap
        _testing, _testing_attempts, _testing_cap = self._previous


def set_testing(
    testing: bool = True, *, attempts: int | None = None, cap: bool = False
) -> _Testing:
    """Make every retry wait instant (or stop doing so), process-wide.

    By default policies are untouched: attempts are still counted and a ``timeout``
    still ends retrying, measured as if the skipped waits had been slept. Give
    ``attempts`` for stamina's behaviour instead, where testing also sets how many
    calls each retrying step gets (``attempts=1``: no retries at all). Works as a
    plain call or as a context manager that restores the previous setting::

        with actionqueues.set_testing():
            queue.run()

    Args:
        testing: ``True`` to make waits instant, ``False`` to sleep them again.
        attempts: While testing, the calls every retried step gets, the first
            included, in place of its policy's ``attempts`` (and as the limit of
            0.8.2's ``ActionRetryException``, which has none); ``None`` keeps each
            policy's own.
        cap: With ``attempts``, use it only where it is lower than the policy's own
            (stamina's ``cap``).

    Returns:
        A context manager that restores the previous setting on exit; a plain call
        may ignore it.

    Raises:
        InvalidPolicyError: ``attempts`` is not a whole number of at least 1.

    .. versionadded:: 1.0
    .. versionchanged:: 1.0
       ``attempts`` and ``cap``.
    """
    global _testing, _testing_attempts, _testing_cap
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        message = (
            f"set_testing(attempts={attempts!r}): attempts must be a whole number of at"
            " least 1 (1 means no retries), or None to keep each policy's own"
        )
        raise InvalidPolicyError(message)
    previous = (_testing, _testing_attempts, _testing_cap)
    _testing, _testing_attempts, _testing_cap = bool(testing), attempts, bool(cap)
    return _Testing(previous)


def is_testing() -> bool:
    """Whether :func:`set_testing` has made retry waits instant.

    Returns:
        ``True`` while retry waits are instant.

    .. versionadded:: 1.0
    """
    return _testing


def _float(value: Real) -> float:
    """``float(value)``, with numbers too large for a float taken as infinite."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _seconds(
    name: str, value: object, *, allow_none: bool = False, longest: float = math.inf
) -> float | None:
    """A duration argument in seconds, checked: a number or a timedelta, 0 to ``longest``."""
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, Real) and not isinstance(value, bool):
        seconds = _float(value)
    else:
        none = " or None" if allow_none else ""
        msg = (
            f"RetryPolicy({name}={value!r}): {name} must be a number of seconds or a "
            f"datetime.timedelta{none}."
        )
        raise InvalidPolicyError(msg)
    if not 0 <= seconds < math.inf or seconds > longest:  # NaN fails the first test
        limit = f" and at most {longest:.0f}" if longest < math.inf else ""
        none = "; pass None for no limit" if allow_none else ""
        msg = (
            f"RetryPolicy({name}={value!r}): {name} must be a finite number of seconds "
            f">= 0{limit}{none}."
        )
        raise InvalidPolicyError(msg)
    return seconds


def _check_on(on: object) -> tuple[tuple[type[Exception], ...], RetryPredicate | None]:
    def is_exc_type(t: object) -> bool:
        if isinstance(t, type) and issubclass(t, BaseException) and not issubclass(t, Exception):
            msg = (
                f"RetryPolicy(on={on!r}): {t.__name__} is not an Exception; "
                "KeyboardInterrupt, SystemExit and other BaseExceptions always stop a "
                "queue and are never retried. Name Exception subclasses."
            )
            raise InvalidPolicyError(msg)
        return isinstance(t, type) and issubclass(t, Exception)

    if is_exc_type(on):
        return (on,), None  # type: ignore[return-value]
    if isinstance(on, tuple) and on and all(is_exc_type(t) for t in on):
        return on, None
    if callable(on) and not isinstance(on, type):
        if is_async_callable(on):
            msg = (
                f"RetryPolicy(on={on!r}): on is a coroutine function (async def), but "
                "the decision to retry is made at once, never awaited. Use a plain "
                "function."
            )
            raise InvalidPolicyError(msg)
        return (), on
    msg = (
        f"RetryPolicy(on={on!r}): on must be an exception type, a non-empty tuple of "
        "exception types, or a callable that takes the exception and returns True, "
        "False or a wait in seconds."
    )
    raise InvalidPolicyError(msg)


class RetryPolicy:
    """When and how to retry a failed ``execute`` or ``rollback``.

    The parameters are stamina's: ``attempts`` counts every call, the first included;
    ``timeout`` is the budget in seconds for all attempts of one step, measured from
    the first attempt's start, and no wait is started that would end past it. The wait
    before retry *n* is ``wait_initial * wait_exp_base ** (n - 1)`` plus a random jitter
    in ``[0, wait_jitter]``, capped at ``wait_max``. When a policy gives up the action's
    own exception propagates, never a wrapper.

    A policy holds no state of its own: one object can serve many queues, threads and
    tasks at once.

    Args:
        on: What to retry: an exception type, a tuple of them, or a predicate that
            takes the exception and returns ``True`` (retry with backoff), ``False``
            (give up) or a wait in seconds or as a ``timedelta`` (retry after exactly
            that wait, uncapped but within ``timeout``).
        attempts: Total calls, first included (10 by default; 1: no retry);
            ``None`` for no limit.
        timeout: Budget for all attempts of one step, in seconds or as a
            ``timedelta`` (45 s by default); ``None`` for no limit.
        wait_initial: First backoff, in seconds or as a ``timedelta`` (0.1 s).
        wait_max: Cap on each computed backoff (5 s).
        wait_jitter: Upper bound of the random amount added to each backoff (1 s).
        wait_exp_base: Growth factor of the backoff (2: each wait doubles).

    Raises:
        InvalidPolicyError: An argument is out of range (``attempts < 1``, a negative,
            NaN or infinite duration) or of the wrong type.

    .. versionadded:: 1.0
    """

    __slots__ = (
        "_on_types",
        "_predicate",
        "attempts",
        "on",
        "timeout",
        "wait_exp_base",
        "wait_initial",
        "wait_jitter",
        "wait_max",
    )

    on: RetryOn
    _on_types: tuple[type[Exception], ...]
    _predicate: RetryPredicate | None
    attempts: int | None
    timeout: float | None
    wait_initial: float
    wait_max: float
    wait_jitter: float
    wait_exp_base: float

    def __init__(
        self,
        *,
        on: RetryOn,
        attempts: int | None = 10,
        timeout: Duration | None = 45.0,
        wait_initial: Duration = 0.1,
        wait_max: Duration = 5.0,
        wait_jitter: Duration = 1.0,
        wait_exp_base: float = 2.0,
    ) -> None:
        on_types, predicate = _check_on(on)
        if attempts is not None and (
            not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1
        ):
            msg = (
                f"RetryPolicy(attempts={attempts!r}): attempts counts every call, the "
                "first included, so it must be a whole number >= 1 (1 means no retry); "
                "pass None for no limit."
            )
            raise InvalidPolicyError(msg)
        if not (
            isinstance(wait_exp_base, Real)
            and not isinstance(wait_exp_base, bool)
            and 0 < _float(wait_exp_base) < math.inf
        ):
            msg = (
                f"RetryPolicy(wait_exp_base={wait_exp_base!r}): wait_exp_base is the factor "
                "between one wait and the next, a finite number > 0 (2 doubles each wait)."
            )
            raise InvalidPolicyError(msg)
        base = float(wait_exp_base)
        setattr_ = object.__setattr__
        setattr_(self, "on", on)
        setattr_(self, "_on_types", on_types)
        setattr_(self, "_predicate", predicate)
        setattr_(self, "attempts", attempts)
        setattr_(self, "timeout", _seconds("timeout", timeout, allow_none=True))
        longest = _LONGEST_WAIT / 2  # a backoff is at most initial (or max) + jitter
        setattr_(self, "wait_initial", _seconds("wait_initial", wait_initial, longest=longest))
        setattr_(self, "wait_max", _seconds("wait_max", wait_max, longest=longest))
        setattr_(self, "wait_jitter", _seconds("wait_jitter", wait_jitter, longest=longest))
        setattr_(self, "wait_exp_base", base)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        msg = f"RetryPolicy is immutable; use RetryPolicy.replace({name}=...) instead."
        raise AttributeError(msg)

    def __delattr__(self, name: str) -> NoReturn:
        msg = "RetryPolicy is immutable."
        raise AttributeError(msg)

    def _fields(self) -> dict[str, object]:
        return {
            "on": self.on,
            "attempts": self.attempts,
            "timeout": self.timeout,
            "wait_initial": self.wait_initial,
            "wait_max": self.wait_max,
            "wait_jitter": self.wait_jitter,
            "wait_exp_base": self.wait_exp_base,
        }

    def replace(self, **changes: object) -> RetryPolicy:
        """A copy of this policy with some of its arguments changed.

        Args:
            **changes: New values for any of the constructor's arguments (``on``,
                ``attempts``, ``timeout``, ``wait_initial``, ``wait_max``,
                ``wait_jitter``, ``wait_exp_base``), validated like a new policy's.

        Returns:
            A new policy; this one is unchanged.

        Raises:
            InvalidPolicyError: An argument that is not one of the policy's, or a
                value out of range or of the wrong type.
        """
        unknown = changes.keys() - self._fields().keys()
        if unknown:
            msg = (
                f"RetryPolicy.replace() got unknown field(s) {', '.join(sorted(unknown))}; "
                f"the fields are {', '.join(self._fields())}."
            )
            raise InvalidPolicyError(msg)
        return RetryPolicy(**{**self._fields(), **changes})  # type: ignore[arg-type]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        return f"RetryPolicy({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RetryPolicy):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(tuple(self._fields().values()))

    def backoff(self, retry: int) -> float:
        """The computed wait before a retry, jitter included.

        Args:
            retry: The retry's number: 1 for the first retry (the second call).

        Returns:
            The wait in seconds, ``wait_initial * wait_exp_base ** (retry - 1)`` plus
            a random jitter in ``[0, wait_jitter]``, capped at ``wait_max``. Never
            negative, never an overflow, never above ``wait_max``.
        """
        try:
            wait = self.wait_initial * self.wait_exp_base ** (retry - 1)
        except OverflowError:
            return self.wait_max
        if self.wait_jitter:
            wait += random.uniform(0, self.wait_jitter)  # noqa: S311 - jitter, not crypto
        # NaN (0 * inf) or inf both mean "very large": cap them.
        return wait if wait <= self.wait_max else self.wait_max

    def verdict(self, exc: Exception) -> float | bool:
        """Whether ``on`` says that ``exc`` is retried.

        Only ``on`` is consulted; ``attempts`` and ``timeout`` are not.

        Args:
            exc: The exception a call raised.

        Returns:
            ``True`` to retry after the computed backoff, ``False`` not to retry, or
            the wait in seconds the predicate asked for.

        Raises:
            InvalidPolicyError: The predicate returned something other than a bool,
                or a wait from 0 to a year (in seconds or as a ``timedelta``).
        """
        if self._predicate is None:
            return isinstance(exc, self._on_types)
        answer = self._predicate(exc)
        if isinstance(answer, bool):
            return answer
        if isinstance(answer, timedelta):
            answer = answer.total_seconds()
        wait: object = answer
        if isinstance(wait, Real) and 0 <= _float(wait) <= _LONGEST_WAIT:  # NaN fails too
            return float(wait)
        msg = (
            f"The retry predicate {self._predicate!r} returned {answer!r} for "
            f"{exc!r}; it must return True, False, or a wait of 0 to {_LONGEST_WAIT:.0f} "
            "seconds."
        )
        raise InvalidPolicyError(msg) from exc


def retry_exception_wait(exc: ActionRetryException, step: str) -> float:
    """Seconds to wait for an ``ActionRetryException``, after checking ``ms_backoff``."""
    ms: object = exc.ms_backoff
    if (
        isinstance(ms, Real)
        and not isinstance(ms, bool)  # True is an int, but no number of milliseconds
        and 0 <= _float(ms) <= _LONGEST_WAIT * 1000  # NaN fails too
    ):
        return float(ms) / 1000.0
    msg = (
        f"Step {step!r} raised ActionRetryException(ms_backoff={ms!r}): ms_backoff must be "
        f"a number of milliseconds from 0 (retry at once) to {_LONGEST_WAIT * 1000:.0f}."
    )
    raise InvalidBackoffError(msg, step) from exc


def next_wait(
    policy: RetryPolicy | None,
    exc: BaseException,
    attempts: int,
    elapsed: float,
    step: str,
) -> float | None:
    """Decide whether a failed call is retried: the wait before the next call, or None.

    Args:
        policy: The policy in force for this step and phase, if any.
        exc: What the call raised.
        attempts: Calls made so far, the failed one included.
        elapsed: Seconds since the step's first call started (skipped test waits
            included).
        step: The step's name, for error messages.
    """
    explicit: float | bool
    limit = None if policy is None else policy.attempts
    if _testing and _testing_attempts is not None:
        # set_testing(attempts=N): stamina's meaning, N calls in all.
        limit = (
            _testing_attempts
            if limit is None or not _testing_cap
            else min(limit, _testing_attempts)
        )
    if isinstance(exc, ActionRetryException):
        explicit = retry_exception_wait(exc, step)
        if policy is None:
            # 0.8.2: retry for as long as it is raised (unless testing limits it).
            return None if limit is not None and attempts >= limit else explicit
    elif policy is None or not isinstance(exc, Exception):
        # KeyboardInterrupt, SystemExit and cancellation are never retried.
        return None
    else:
        explicit = policy.verdict(exc)
        if explicit is False:
            return None
    if limit is not None and attempts >= limit:
        return None
    wait = policy.backoff(attempts) if explicit is True else float(explicit)
    if policy.timeout is not None and elapsed + wait > policy.timeout:
        return None
    return wait


class DoublingBackoffExceptionFactory:
    """Raise ``ActionRetryException`` a number of times, doubling the backoff, then fail.

    Create one per action and per method (execute, rollback). Each call to
    :meth:`raise_exception` raises ``ActionRetryException`` with a backoff of
    ``ms_backoff_initial``, then twice that, and so on, for ``retries`` calls; every
    later call raises ``original_exception``, or a plain ``Exception`` when none is
    given.

    Args:
        retries: How many calls raise ``ActionRetryException`` before the failure
            is raised.
        ms_backoff_initial: The first backoff, in milliseconds; each next one is
            twice the previous.
    """

    def __init__(self, retries: int = 3, ms_backoff_initial: float = 500) -> None:
        self._max_retries = retries
        self._executed_retries = 0
        self._ms_backoff = ms_backoff_initial

    def raise_exception(self, original_exception: BaseException | None = None) -> NoReturn:
        """Raise the next retry exception, or the final one once retries are spent.

        Call it from ``execute`` or ``rollback`` where the action wants another call
        (typically in an ``except`` block, passing the exception caught).

        Args:
            original_exception: The failure being retried. It is carried on each
                ``ActionRetryException`` (so that a retry policy whose attempts run
                out first propagates it), and raised once the retries are spent.

        Raises:
            ActionRetryException: While retries remain, with the next backoff.
            BaseException: ``original_exception`` once the retries are spent, or a
                plain ``Exception`` when it is None.
        """
        if self._executed_retries < self._max_retries:
            current = self._ms_backoff
            self._executed_retries += 1
            self._ms_backoff = self._ms_backoff * 2
            retry = ActionRetryException(current)
            # Under a retry policy whose attempts run out first, this propagates.
            retry.original_exception = original_exception
            raise retry
        raise original_exception or Exception()
