"""Edge cases found in review: interrupts from listeners, spent retries, odd inputs."""

from __future__ import annotations

import logging
import pickle

import pytest
from _helpers import Boom, Step

import actionqueues
from actionqueues import (
    Action,
    ActionQueue,
    ActionRetryException,
    DoublingBackoffExceptionFactory,
    Event,
    InvalidBackoffError,
    InvalidPolicyError,
    RetryPolicy,
    RunReport,
    RunStatus,
    StepRolledBack,
    StepStarted,
    StepStatus,
    StepSucceeded,
)
from actionqueues.aqstatemachine import AQStateMachine_ADD, AQStateMachine_ROLLBACK


def test_interrupt_from_a_listener_between_steps_counts_only_executed_steps(
    log: list[tuple[str, str]],
) -> None:
    """S3: a listener's KeyboardInterrupt after step a means only a is rolled back."""

    def interrupt_after_first(event: Event) -> None:
        if isinstance(event, StepSucceeded) and event.index == 0:
            raise KeyboardInterrupt

    q = ActionQueue(listeners=[interrupt_after_first])
    q.add(Step("a", log))
    q.add(Step("b", log))
    with pytest.raises(KeyboardInterrupt):
        q.run()
    assert [("a", "execute"), ("a", "rollback")] == log
    steps = q.report.steps
    assert [StepStatus.ROLLED_BACK, StepStatus.PENDING] == [s.status for s in steps]
    assert steps[0].error is None
    assert q.report.failed_step is None
    assert isinstance(q.report.error, KeyboardInterrupt)


def test_interrupt_from_a_listener_during_rollback_waits_for_every_rollback(
    log: list[tuple[str, str]],
) -> None:
    """S5: a listener's SystemExit in rollback never skips a rollback; it comes after."""

    def exit_on_rollback(event: Event) -> None:
        if isinstance(event, StepStarted) and event.phase is actionqueues.Phase.ROLLBACK:
            raise SystemExit(3)

    q = ActionQueue(listeners=[exit_on_rollback])
    for name in "abc":
        q.add(Step(name, log))
    q.execute()
    with pytest.raises(SystemExit):
        q.rollback()
    assert [(n, "rollback") for n in "cba"] == log[3:]
    assert RunStatus.ROLLED_BACK == q.report.status


def test_catch_all_listener_keeps_rollback_failures_logged(
    log: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """E3: any listener, even one that takes every event, leaves the ERROR log on."""
    seen: list[Event] = []
    q = ActionQueue(listeners=[seen.append, actionqueues.LoggingListener(logging.getLogger("x"))])
    q.add(Step("a", log, rollback_fail=RuntimeError("stuck")))
    q.add(Step("b", log, fail=Boom()))
    with caplog.at_level(logging.ERROR, logger="actionqueues"), pytest.raises(Boom):
        q.run()
    ours = [r for r in caplog.records if r.name == "actionqueues"]
    assert 1 == len(ours)
    assert "rollback of step 1" in ours[0].getMessage()


def test_report_read_by_a_listener_is_accurate() -> None:
    """E4: a report read in StepSucceeded shows that step executed, the next pending."""
    seen: list[RunReport] = []
    q = ActionQueue(
        listeners=[lambda e: seen.append(q.report) if type(e) is StepSucceeded else None]
    )
    q.add(lambda: 1)
    q.add(lambda: 2)
    q.execute()
    first, last = seen
    assert [StepStatus.EXECUTED, StepStatus.PENDING] == [s.status for s in first.steps]
    assert [StepStatus.EXECUTED, StepStatus.EXECUTED] == [s.status for s in last.steps]


def test_spent_factory_retries_under_a_policy_raise_the_original() -> None:
    """E5: when a policy's attempts run out first, the factory's original propagates."""

    class Upload(Action):
        def __init__(self) -> None:
            self.retry = DoublingBackoffExceptionFactory(retries=5, ms_backoff_initial=100)

        def execute(self) -> None:
            try:
                raise OSError("disk busy")
            except OSError as exc:
                self.retry.raise_exception(original_exception=exc)

    q = ActionQueue(retry=RetryPolicy(on=TimeoutError, attempts=3))
    q.add(Upload())
    with actionqueues.set_testing(), pytest.raises(OSError, match="disk busy") as caught:
        q.run()
    assert caught.value is q.report.error
    assert 3 == q.report.steps[0].attempts


def test_a_plain_spent_retry_exception_propagates_itself() -> None:
    """E5: an ActionRetryException without an original is what propagates."""
    retry = ActionRetryException(ms_backoff=0)

    def again() -> None:
        raise retry

    q = ActionQueue(retry=RetryPolicy(on=Boom, attempts=2))
    q.add(again)
    with pytest.raises(ActionRetryException) as caught:
        q.execute()
    assert caught.value is retry


def test_execute_after_a_failure_says_to_roll_back() -> None:
    """S8: the message for a second execute() after a failure points at rollback()."""
    q = ActionQueue()
    q.add(Step("a", [], fail=Boom()))
    with pytest.raises(Boom):
        q.execute()
    with pytest.raises(AssertionError, match=r"already failed. Call rollback\(\)"):
        q.run()
    q.rollback()
    with pytest.raises(AssertionError, match="executed and rolled back"):
        q.execute()


def test_lifecycle_messages_from_inside_a_rollback() -> None:
    """S8: execute() or add() from inside a rollback is refused with a hint."""
    q = ActionQueue()
    seen: list[str] = []

    def undo() -> None:
        for call in (q.execute, lambda: q.add(print)):
            try:
                call()
            except AssertionError as e:
                seen.append(str(e))

    q.add(print, undo)
    q.execute()
    q.rollback()
    assert 2 == len(seen)
    assert all("rolling back (from inside one of its actions?)" in m for m in seen)


def test_huge_waits_are_refused_not_overflowed() -> None:
    """E5: a wait longer than the longest sleep is an error naming the limit."""
    q = ActionQueue(retry=RetryPolicy(on=lambda e: 1e300, timeout=None))
    q.add(Step("a", [], fail=Boom()))
    with pytest.raises(InvalidPolicyError, match="a wait of 0 to"):
        q.execute()

    def retry_forever() -> None:
        raise ActionRetryException(ms_backoff=1e300)

    q = ActionQueue()
    q.add(retry_forever)
    with pytest.raises(InvalidBackoffError, match="from 0 \\(retry at once\\) to"):
        q.execute()


def test_on_must_name_exceptions() -> None:
    """Bad input: BaseExceptions are never retried, so naming one is an error."""
    with pytest.raises(InvalidPolicyError, match="KeyboardInterrupt is not an Exception"):
        RetryPolicy(on=KeyboardInterrupt)  # type: ignore[arg-type]
    with pytest.raises(InvalidPolicyError, match="SystemExit is not an Exception"):
        RetryPolicy(on=(OSError, SystemExit))  # type: ignore[arg-type]


def test_invalid_backoff_error_pickles() -> None:
    """InvalidBackoffError survives pickling (multiprocessing sends exceptions)."""
    error = InvalidBackoffError("bad", "charge")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert ("bad", "charge") == (str(copy), copy.step)


def test_aqstatemachine_keeps_0_8_2_quirks() -> None:
    """S10: importable from actionqueue, state assignable, execute needs an add."""
    from actionqueues.actionqueue import AQStateMachine

    sm = AQStateMachine()
    with pytest.raises(AssertionError, match="needs transition_to_add"):
        sm.transition_to_execute()
    sm.state = AQStateMachine_ADD
    sm.transition_to_execute()
    sm.transition_to_rollback()
    assert AQStateMachine_ROLLBACK == sm.state


def test_class_cache_is_bounded() -> None:
    """Classes made on the fly are not all kept alive by add()'s cache."""
    from actionqueues import _engine

    for _ in range(_engine._CHECKED_MAX + 10):
        q = ActionQueue()
        q.add(type("Made", (Action,), {})())
    assert len(_engine._CHECKED[False]) <= _engine._CHECKED_MAX


def test_rolled_back_events_are_not_needed_for_reports(log: list[tuple[str, str]]) -> None:
    """A queue listening only for StepRolledBack still tracks and reports correctly."""
    seen: list[Event] = []

    class OnlyRolledBack:
        events = (StepRolledBack,)

        def __call__(self, event: Event) -> None:
            seen.append(event)

    q = ActionQueue(listeners=[OnlyRolledBack()])
    q.add(Step("a", log))
    q.add(Step("b", log, fail=Boom()))
    with pytest.raises(Boom):
        q.run()
    assert [1, 0] == [e.index for e in seen if isinstance(e, StepRolledBack)]


def test_retried_steps_are_reported_to_listeners_once_they_succeed(
    log: list[tuple[str, str]],
) -> None:
    """E6: after retries, StepSucceeded/StepRolledBack carry the final attempt."""
    events: list[Event] = []
    q = ActionQueue(listeners=[events.append])
    q.add(Step("a", log, retries=2, rollback_retries=1))
    q.execute()
    q.rollback()
    done = [e for e in events if isinstance(e, StepSucceeded | StepRolledBack)]
    assert [(StepSucceeded, 3), (StepRolledBack, 2)] == [(type(e), e.attempt) for e in done]


def test_run_report_equality_and_repr() -> None:
    """Reports compare by content and say what they hold."""
    q = ActionQueue(name="r")
    q.add(lambda: 1)
    report = q.run()
    assert report == q.report
    assert report != "report"
    assert "RunReport(name='r', status=<RunStatus.COMPLETED: 'completed'>, steps=<1 steps>" in (
        repr(report)
    )
    with pytest.raises(TypeError):
        hash(report)
