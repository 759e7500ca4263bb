"""E5: declarative retry policies, backoff, the testing switch, and 0.8.2's retries."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest
from _helpers import Boom
from hypothesis import given
from hypothesis import strategies as st

import actionqueues
from actionqueues import (
    ActionRetryException,
    InvalidBackoffError,
    InvalidPolicyError,
    RetryPolicy,
    StepRetrying,
)

FAST = {"wait_initial": 0.0, "wait_max": 0.0, "wait_jitter": 0.0}


class Flaky:
    """Fails ``failures`` times with ``exc`` then succeeds; counts every call."""

    def __init__(self, failures: int, exc: type[BaseException] = Boom) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0
        self.rollbacks = 0

    def execute(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"call {self.calls}")
        return "ok"

    def rollback(self) -> None:
        self.rollbacks += 1
        if self.rollbacks <= self.failures:
            raise self.exc(f"rollback {self.rollbacks}")


def test_nothing_is_retried_without_a_policy(Queue: type) -> None:
    """E5: a plain failure is not retried unless a policy says so."""
    flaky = Flaky(1)
    q = Queue()
    q.add(flaky)
    with pytest.raises(Boom):
        q.execute()
    assert 1 == flaky.calls


def test_queue_policy_retries_execute(Queue: type, instant: None) -> None:
    """E5: a queue-wide policy retries until success; attempts are reported."""
    flaky = Flaky(3)
    q = Queue(retry=RetryPolicy(on=Boom, attempts=5))
    q.add(flaky)
    report = q.run()
    assert 4 == flaky.calls
    assert 4 == report.steps[0].attempts
    assert "ok" == report.steps[0].result


def test_attempts_count_the_first_call_and_reraise_the_original(Queue: type, instant: None) -> None:
    """E5: attempts=3 means three calls; then the last exception itself propagates."""
    flaky = Flaky(10)
    q = Queue(retry=RetryPolicy(on=Boom, attempts=3))
    q.add(flaky)
    with pytest.raises(Boom, match="call 3") as caught:
        q.execute()
    assert 3 == flaky.calls
    assert type(caught.value) is Boom
    assert 3 == q.report.steps[0].attempts
    assert caught.value is q.report.error


def test_policy_only_retries_what_on_names(Queue: type, instant: None) -> None:
    """E5: an exception outside ``on`` fails at once."""
    flaky = Flaky(1, exc=KeyError)
    q = Queue(retry=RetryPolicy(on=(Boom, ValueError)))
    q.add(flaky)
    with pytest.raises(KeyError):
        q.execute()
    assert 1 == flaky.calls


def test_keyboard_interrupt_is_never_retried(Queue: type, instant: None) -> None:
    """E5/S11: KeyboardInterrupt stops the queue even under a broad policy."""
    flaky = Flaky(1, exc=KeyboardInterrupt)
    q = Queue(retry=RetryPolicy(on=lambda e: True))
    q.add(flaky)
    with pytest.raises(KeyboardInterrupt):
        q.execute()
    assert 1 == flaky.calls


def test_step_policy_overrides_queue_policy(Queue: type, instant: None) -> None:
    """E5: a policy given to add() wins over the queue's for that step."""
    a, b = Flaky(2), Flaky(2)
    q = Queue(retry=RetryPolicy(on=Boom, attempts=2))
    q.add(a, retry=RetryPolicy(on=Boom, attempts=3))
    q.add(b)
    with pytest.raises(Boom):
        q.execute()
    assert (3, 2) == (a.calls, b.calls)


def test_rollback_policy_is_separate(Queue: type, instant: None) -> None:
    """E5: rollback_retry retries rollbacks; retry does not."""
    a, b = Flaky(0), Flaky(0)
    a.failures = b.failures = 2  # their rollbacks fail twice, executes succeed
    a.calls = b.calls = 10
    q = Queue(retry=RetryPolicy(on=Boom, attempts=5))
    q.add(a, rollback_retry=RetryPolicy(on=Boom, attempts=3))
    q.add(b)
    q.execute()
    q.rollback()
    assert (3, 1) == (a.rollbacks, b.rollbacks)
    steps = q.report.steps
    assert steps[0].rollback_error is None
    assert 3 == steps[0].rollback_attempts
    assert isinstance(steps[1].rollback_error, Boom)


def test_queue_rollback_policy(Queue: type, instant: None) -> None:
    """E5: a queue-wide rollback_retry applies to every rollback."""
    a = Flaky(2)
    a.calls = 10
    q = Queue(rollback_retry=RetryPolicy(on=Boom, attempts=3))
    q.add(a)
    q.execute()
    q.rollback()
    assert 3 == a.rollbacks
    assert "rolled_back" == q.report.status


def test_predicate_may_return_a_wait(Queue: type) -> None:
    """E5: ``on`` may be a predicate that returns True, False or a wait."""
    waits: list[float] = []
    answers: list[bool | float | timedelta] = [0.01, timedelta(milliseconds=20), True, False]

    def on(exc: Exception) -> bool | float | timedelta:
        return answers.pop(0)

    flaky = Flaky(10)
    q = Queue(
        retry=RetryPolicy(on=on, attempts=10, wait_initial=0.005, wait_jitter=0),
        listeners=[lambda e: waits.append(e.wait) if isinstance(e, StepRetrying) else None],
    )
    q.add(flaky)
    with pytest.raises(Boom):
        q.execute()
    assert 4 == flaky.calls
    assert [0.01, 0.02, 0.02] == waits  # True: the backoff for retry 3, 0.005 * 2**2


def test_predicate_returning_nonsense_is_a_clear_error(Queue: type) -> None:
    """E5: a predicate must answer True, False or a wait; anything else is explained."""
    q = Queue(retry=RetryPolicy(on=lambda e: "yes"))  # type: ignore[arg-type,return-value]
    q.add(Flaky(1))
    with pytest.raises(InvalidPolicyError, match="returned 'yes'") as caught:
        q.execute()
    assert isinstance(caught.value.__cause__, Boom)


def test_timeout_ends_retrying_before_attempts_run_out(Queue: type, instant: None) -> None:
    """E5: no wait is started that would end past the timeout (skipped waits count)."""
    flaky = Flaky(100)
    policy = RetryPolicy(
        on=Boom,
        attempts=100,
        timeout=1.0,
        wait_initial=0.3,
        **{"wait_max": 10.0, "wait_jitter": 0.0, "wait_exp_base": 1.0},
    )
    q = Queue(retry=policy)
    q.add(flaky)
    with pytest.raises(Boom):
        q.execute()
    assert 4 == flaky.calls  # waits 0.3 + 0.3 + 0.3; a fourth would end at 1.2s


def test_backoff_grows_and_is_capped() -> None:
    """E5: waits follow wait_initial * base**n, capped at wait_max."""
    policy = RetryPolicy(on=Boom, wait_initial=0.1, wait_max=1.0, wait_jitter=0.0)
    assert [0.1, 0.2, 0.4, 0.8, 1.0, 1.0] == [policy.backoff(n) for n in range(1, 7)]


@given(
    retry=st.integers(min_value=1, max_value=100_000),
    initial=st.floats(min_value=0, max_value=1e6),
    cap=st.floats(min_value=0, max_value=1e6),
    jitter=st.floats(min_value=0, max_value=1e6),
    base=st.floats(min_value=1e-6, max_value=1e6),
)
def test_backoff_is_never_negative_never_overflows_always_capped(
    retry: int, initial: float, cap: float, jitter: float, base: float
) -> None:
    """E5: backoff is in [0, wait_max] for any attempt, 10,000 and beyond included."""
    policy = RetryPolicy(
        on=Boom, wait_initial=initial, wait_max=cap, wait_jitter=jitter, wait_exp_base=base
    )
    wait = policy.backoff(retry)
    assert 0 <= wait <= cap
    assert math.isfinite(wait)


def test_policy_is_immutable_and_replaceable() -> None:
    """Policies are values: immutable, comparable, and copied with replace()."""
    policy = RetryPolicy(on=Boom, attempts=3, timeout=timedelta(seconds=2))
    assert 2.0 == policy.timeout
    with pytest.raises(AttributeError, match="immutable"):
        policy.attempts = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del policy.attempts
    other = policy.replace(attempts=5)
    assert 5 == other.attempts
    assert 3 == policy.attempts
    assert policy == RetryPolicy(on=Boom, attempts=3, timeout=2.0)
    assert policy != other
    assert policy != "policy"
    assert hash(policy) == hash(RetryPolicy(on=Boom, attempts=3, timeout=2.0))
    assert repr(policy).startswith("RetryPolicy(on=<class '_helpers.Boom'>, attempts=3")


def test_unlimited_policy(Queue: type) -> None:
    """E5: attempts=None and timeout=None retry for as long as ``on`` says."""
    flaky = Flaky(50)
    with actionqueues.set_testing():
        q = Queue(retry=RetryPolicy(on=Boom, attempts=None, timeout=None))
        q.add(flaky)
        q.execute()
    assert 51 == flaky.calls


def test_retry_exception_spends_the_policy_budget(Queue: type) -> None:
    """E5: under a policy, ActionRetryException counts attempts; it is what propagates."""
    calls = []

    def always_retry() -> None:
        calls.append(1)
        raise ActionRetryException(ms_backoff=0)

    q = Queue(retry=RetryPolicy(on=Boom, attempts=4))
    q.add(always_retry)
    with pytest.raises(ActionRetryException):
        q.execute()
    assert 4 == len(calls)


def test_testing_switch_makes_waits_instant_and_restores(Queue: type) -> None:
    """E5: set_testing() skips waits, as a call and as a context manager."""
    assert not actionqueues.is_testing()
    flaky = Flaky(2)
    q = Queue(retry=RetryPolicy(on=Boom, wait_initial=30, wait_jitter=0))
    q.add(flaky)
    with actionqueues.set_testing():
        assert actionqueues.is_testing()
        started = time.monotonic()
        q.execute()
        assert time.monotonic() - started < 5
    assert not actionqueues.is_testing()
    actionqueues.set_testing(True)
    try:
        assert actionqueues.is_testing()
    finally:
        actionqueues.set_testing(False)
    assert not actionqueues.is_testing()


def test_testing_switch_covers_retry_exception_backoff(Queue: type) -> None:
    """E5: the switch also makes ActionRetryException's ms_backoff instant."""
    calls = []

    def slow_retry() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ActionRetryException(ms_backoff=60_000)

    q = Queue()
    q.add(slow_retry)
    with actionqueues.set_testing():
        started = time.monotonic()
        q.execute()
    assert time.monotonic() - started < 5
    assert 3 == len(calls)


def test_testing_attempts_one_is_stamina_set_testing(Queue: type) -> None:
    """E5: set_testing(attempts=1), stamina's meaning: no retries at all, and restored."""
    flaky = Flaky(2)
    q = Queue(retry=RetryPolicy(on=Boom, attempts=5, wait_initial=30))
    q.add(flaky)
    with actionqueues.set_testing(attempts=1), pytest.raises(Boom, match="call 1"):
        q.execute()
    assert 1 == flaky.calls
    assert 1 == q.report.steps[0].attempts
    assert not actionqueues.is_testing()
    again = Flaky(2)
    q = Queue(retry=RetryPolicy(on=Boom, attempts=5, wait_initial=30, wait_jitter=0))
    q.add(again)
    with actionqueues.set_testing():  # the attempts of the policy are back
        q.execute()
    assert 3 == again.calls


def test_testing_attempts_replace_or_cap_the_policy(Queue: type) -> None:
    """E5: attempts=N replaces each policy's attempts; cap=True only lowers them."""

    def calls(policy_attempts: int, **testing: object) -> int:
        flaky = Flaky(10)
        q = Queue(retry=RetryPolicy(on=Boom, attempts=policy_attempts))
        q.add(flaky)
        with actionqueues.set_testing(**testing), pytest.raises(Boom):  # type: ignore[arg-type]
            q.execute()
        return flaky.calls

    assert 4 == calls(2, attempts=4)
    assert 2 == calls(2, attempts=4, cap=True)
    assert 3 == calls(6, attempts=3, cap=True)
    assert 6 == calls(6)


def test_testing_attempts_limit_retry_exceptions_without_policy(Queue: type) -> None:
    """E5: under set_testing(attempts=N), 0.8.2's endless ActionRetryException stops too."""
    tries = []

    def always_retry() -> None:
        tries.append(1)
        raise ActionRetryException(ms_backoff=60_000)

    q = Queue()
    q.add(always_retry)
    with actionqueues.set_testing(attempts=3), pytest.raises(ActionRetryException):
        q.execute()
    assert 3 == len(tries)


@pytest.mark.parametrize("attempts", [0, -1, 1.5, True, "2"])
def test_testing_attempts_must_be_a_positive_whole_number(attempts: object) -> None:
    """E5: set_testing(attempts=) that is not a whole number >= 1 is refused, nothing set."""
    with pytest.raises(InvalidPolicyError, match="attempts must be a whole number"):
        actionqueues.set_testing(attempts=attempts)  # type: ignore[arg-type]
    assert not actionqueues.is_testing()


def test_real_waits_are_slept(Queue: type) -> None:
    """E5: outside testing mode the computed wait is really slept."""
    flaky = Flaky(1)
    q = Queue(retry=RetryPolicy(on=Boom, wait_initial=0.05, wait_jitter=0))
    q.add(flaky)
    started = time.monotonic()
    q.execute()
    assert time.monotonic() - started >= 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "attempts counts every call"),
        ({"attempts": -1}, "attempts counts every call"),
        ({"attempts": 2.5}, "attempts counts every call"),
        ({"attempts": True}, "attempts counts every call"),
        ({"timeout": -1}, "timeout must be a finite number of seconds >= 0"),
        ({"timeout": math.nan}, "timeout must be a finite number"),
        ({"timeout": math.inf}, "pass None for no limit"),
        ({"timeout": "10"}, "timeout must be a number of seconds or a datetime.timedelta"),
        ({"wait_initial": -0.1}, "wait_initial must be a finite number"),
        ({"wait_max": math.inf}, "wait_max must be a finite number"),
        ({"wait_jitter": math.nan}, "wait_jitter must be a finite number"),
        ({"wait_exp_base": 0}, "wait_exp_base is the factor between one wait and the next"),
        ({"wait_exp_base": timedelta(1)}, "a finite number > 0"),
        ({"wait_exp_base": "2"}, "a finite number > 0"),
        ({"wait_max": 1e300}, "wait_max must be a finite number of seconds >= 0 and at most"),
        ({"wait_initial": timedelta(seconds=-1)}, "wait_initial must be a finite number"),
    ],
)
def test_bad_policy_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    """Bad input: each out-of-range policy argument gets an error naming the fix."""
    with pytest.raises(InvalidPolicyError, match=message):
        RetryPolicy(on=Boom, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("on", [42, "Boom", (), (Boom, 3), int, None])
def test_bad_on_is_refused(on: object) -> None:
    """Bad input: ``on`` must be exception types or a callable."""
    with pytest.raises(InvalidPolicyError, match="on must be an exception type") as caught:
        RetryPolicy(on=on)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("ms", [-1, math.nan, math.inf, "100", None])
def test_bad_ms_backoff_fails_the_step_naming_it(Queue: type, ms: object) -> None:
    """Bad input: ActionRetryException with a bad ms_backoff fails that step clearly."""
    undone = []

    class Charge:
        def execute(self) -> None:
            raise ActionRetryException(ms_backoff=ms)  # type: ignore[arg-type]

        def rollback(self) -> None:
            undone.append("charge")

    q = Queue()
    q.add(Charge(), name="charge card")
    with pytest.raises(InvalidBackoffError, match="Step 'charge card' raised") as caught:
        q.run()
    assert "charge card" == caught.value.step
    assert isinstance(caught.value.__cause__, ActionRetryException)
    assert ["charge"] == undone
