"""E3 rollback failures (logging, report, strict mode) and E6 events and listeners."""

from __future__ import annotations

import logging

import pytest
from _helpers import Boom, Step

import actionqueues
from actionqueues import (
    Event,
    InvalidListenerError,
    LoggingListener,
    Phase,
    RetryPolicy,
    RollbackError,
    RollbackFailed,
    RunFinished,
    RunStatus,
    StepEvent,
    StepFailed,
    StepRetrying,
    StepRolledBack,
    StepStarted,
    StepSucceeded,
)


def test_rollback_failure_is_logged_with_traceback(
    Queue: type, log: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """E3: a failed rollback is logged at ERROR on 'actionqueues' with its traceback."""
    undo_error = RuntimeError("cannot delete user")
    q = Queue(name="signup")
    q.add(Step("user", log, rollback_fail=undo_error), name="create user")
    q.add(Step("mail", log, fail=Boom()))
    with caplog.at_level(logging.ERROR, logger="actionqueues"), pytest.raises(Boom):
        q.run()
    [record] = caplog.records
    assert "actionqueues" == record.name
    assert logging.ERROR == record.levelno
    assert "rollback of step 1 ('create user') of queue 'signup' failed" in record.getMessage()
    assert record.exc_info is not None
    assert undo_error is record.exc_info[1]


def test_strict_mode_raises_a_group_after_every_rollback(
    Queue: type, log: list[tuple[str, str]]
) -> None:
    """E3: strict=True raises RollbackError (an ExceptionGroup) once all were tried."""
    first, second = RuntimeError("a"), ValueError("b")
    error = Boom()
    q = Queue(strict=True)
    q.add(Step("a", log, rollback_fail=first))
    q.add(Step("b", log))
    q.add(Step("c", log, rollback_fail=second))
    q.add(Step("d", log, fail=error))
    with pytest.raises(RollbackError) as caught:
        q.run()
    group = caught.value
    assert isinstance(group, ExceptionGroup)
    assert (second, first) == group.exceptions
    assert error is group.__cause__
    assert group.report is not None
    assert RunStatus.ROLLBACK_FAILED == group.report.status
    assert [(n, "rollback") for n in "dcba"] == [e for e in log if e[1] == "rollback"]
    assert error.__notes__[0].startswith("actionqueues: ")


def test_strict_mode_without_failures_is_quiet(Queue: type, log: list[tuple[str, str]]) -> None:
    """E3: strict mode raises nothing when every rollback succeeds."""
    q = Queue(strict=True)
    q.add(Step("a", log))
    q.execute()
    q.rollback()
    assert RunStatus.ROLLED_BACK == q.report.status


def test_interrupt_during_rollback_finishes_rollback_then_propagates(
    Queue: type,
    log: list[tuple[str, str]],
) -> None:
    """S5/S11: a KeyboardInterrupt from a rollback does not stop the others; it is re-raised."""
    q = Queue()
    q.add(Step("a", log))
    q.add(Step("b", log, rollback_fail=KeyboardInterrupt()))
    q.add(Step("c", log))
    q.execute()
    with pytest.raises(KeyboardInterrupt):
        q.rollback()
    assert [(n, "rollback") for n in "cba"] == [e for e in log if e[1] == "rollback"]
    assert RunStatus.ROLLBACK_FAILED == q.report.status


def test_events_of_a_failed_run(Queue: type, log: list[tuple[str, str]]) -> None:
    """E6: listeners receive typed events for every transition, in order."""
    events: list[Event] = []
    q = Queue(name="q", listeners=[events.append])
    q.add(Step("a", log, result=7), name="a")
    q.add(Step("b", log, fail=Boom()), name="b")
    with pytest.raises(Boom):
        q.run()
    kinds = [(type(e).__name__, getattr(e, "step", None)) for e in events]
    assert [
        ("StepStarted", "a"),
        ("StepSucceeded", "a"),
        ("StepStarted", "b"),
        ("StepFailed", "b"),
        ("RunFinished", None),
        ("StepStarted", "b"),
        ("StepRolledBack", "b"),
        ("StepStarted", "a"),
        ("StepRolledBack", "a"),
        ("RunFinished", None),
    ] == kinds
    assert all(e.queue == "q" for e in events)
    succeeded = events[1]
    assert isinstance(succeeded, StepSucceeded)
    assert 7 == succeeded.result
    assert succeeded.duration >= 0
    started_rollback = events[5]
    assert isinstance(started_rollback, StepStarted)
    assert Phase.ROLLBACK == started_rollback.phase
    first_finish, last_finish = events[4], events[-1]
    assert isinstance(first_finish, RunFinished)
    assert isinstance(last_finish, RunFinished)
    assert RunStatus.FAILED == first_finish.report.status
    assert RunStatus.ROLLED_BACK == last_finish.report.status


def test_retry_and_rollback_failure_events(Queue: type, log: list[tuple[str, str]]) -> None:
    """E6: retrying and rollback-failed events carry the error and the wait."""
    events: list[Event] = []
    undo_error = RuntimeError("x")
    with actionqueues.set_testing():
        q = Queue(
            retry=RetryPolicy(on=Boom, attempts=2, wait_initial=1, wait_jitter=0),
            listeners=[events.append],
        )
        q.add(Step("a", log, fail=Boom(), rollback_fail=undo_error))
        with pytest.raises(Boom):
            q.run()
    retrying = [e for e in events if isinstance(e, StepRetrying)]
    assert 1 == len(retrying)
    assert (1, 1.0, Phase.EXECUTE) == (retrying[0].attempt, retrying[0].wait, retrying[0].phase)
    assert [2] == [e.attempt for e in events if isinstance(e, StepStarted) and e.attempt > 1]
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert 2 == failed[0].attempt
    [rollback_failed] = [e for e in events if isinstance(e, RollbackFailed)]
    assert undo_error is rollback_failed.error


def test_listener_subscribes_to_chosen_events(Queue: type, log: list[tuple[str, str]]) -> None:
    """E6: a listener with an ``events`` attribute only receives those types."""

    class OnlyFailures:
        events = (StepFailed, RollbackFailed)

        def __init__(self) -> None:
            self.seen: list[Event] = []

        def __call__(self, event: Event) -> None:
            self.seen.append(event)

    listener = OnlyFailures()
    q = Queue(listeners=[listener])
    q.add(Step("a", log, fail=Boom()))
    with pytest.raises(Boom):
        q.run()
    assert [StepFailed] == [type(e) for e in listener.seen]


def test_listener_subscribing_to_a_base_class_gets_subclasses(
    Queue: type,
    log: list[tuple[str, str]],
) -> None:
    """E6: subscribing to StepEvent delivers every step event, not RunFinished."""
    seen: list[Event] = []

    def listener(event: Event) -> None:
        seen.append(event)

    listener.events = StepEvent  # type: ignore[attr-defined]
    q = Queue(listeners=[listener])
    q.add(Step("a", log))
    q.run()
    assert [StepStarted, StepSucceeded] == [type(e) for e in seen]


def test_a_raising_listener_is_logged_and_ignored(
    Queue: type, log: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """E6: a listener's exception never breaks the queue nor skips a rollback."""

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    q = Queue(listeners=[broken])
    q.add(Step("a", log))
    q.add(Step("b", log, fail=Boom()))
    with caplog.at_level(logging.ERROR, logger="actionqueues"), pytest.raises(Boom):
        q.run()
    assert [("a", "execute"), ("b", "execute"), ("b", "rollback"), ("a", "rollback")] == log
    assert caplog.records
    assert all("listener" in r.getMessage() for r in caplog.records)


def test_logging_listener_logs_everything(
    Queue: type, log: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """E6: LoggingListener() is the logging listener; rollback failures once, at ERROR."""
    q = Queue(name="demo", listeners=[LoggingListener()])
    q.add(Step("a", log, rollback_fail=RuntimeError("x")), name="a")
    q.add(Step("b", log, fail=Boom("no")), name="b")
    with (
        actionqueues.set_testing(),
        caplog.at_level(logging.DEBUG, logger="actionqueues"),
        pytest.raises(Boom),
    ):
        q.run()
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    errors = [m for lvl, m in levels if lvl == "ERROR"]
    assert 1 == len(errors)
    assert any(lvl == "WARNING" and "step 2 ('b') of queue 'demo' failed" in m for lvl, m in levels)
    assert any(lvl == "DEBUG" and m.startswith("run 'demo'") for lvl, m in levels)
    assert any(lvl == "DEBUG" and "StepStarted" in m for lvl, m in levels)


def test_logging_listener_logs_retries(Queue: type, caplog: pytest.LogCaptureFixture) -> None:
    """E6: retries are logged at WARNING with the wait."""
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Boom

    custom = logging.getLogger("myapp.jobs")
    q = Queue(
        retry=RetryPolicy(on=Boom, wait_initial=0.5, wait_jitter=0),
        listeners=[LoggingListener(custom, events=[StepRetrying])],
    )
    q.add(flaky)
    with actionqueues.set_testing(), caplog.at_level(logging.DEBUG, logger="myapp.jobs"):
        q.run()
    [record] = caplog.records
    assert "myapp.jobs" == record.name
    assert "retrying in 0.500s" in record.getMessage()


def test_no_listener_means_no_step_events_are_built(
    Queue: type, log: list[tuple[str, str]]
) -> None:
    """E6: a queue without listeners does not track steps (the fast path)."""
    q = Queue()
    assert not q._track
    listened = Queue(listeners=[lambda e: None])
    assert listened._track
    only_finish = Queue(listeners=[LoggingListener(events=[RunFinished])])
    assert not only_finish._track


@pytest.mark.parametrize("listener", [42, "print", None])
def test_non_callable_listener_is_refused(Queue: type, listener: object) -> None:
    """Bad input: a listener that is not callable is refused at construction."""
    with pytest.raises(InvalidListenerError, match="is not callable") as caught:
        Queue(listeners=[listener])  # type: ignore[list-item]
    assert isinstance(caught.value, TypeError)


def test_listener_subscribing_to_non_events_is_refused(Queue: type) -> None:
    """Bad input: ``events`` must name event classes."""

    def listener(event: Event) -> None:
        pass

    listener.events = [StepFailed, ValueError]  # type: ignore[attr-defined]
    with pytest.raises(InvalidListenerError, match="is not an event type"):
        Queue(listeners=[listener])


def test_rolled_back_event_has_duration(Queue: type, log: list[tuple[str, str]]) -> None:
    """E6: StepRolledBack says how long the rollback took."""
    events: list[Event] = []
    q = Queue(listeners=[events.append])
    q.add(Step("a", log))
    q.execute()
    q.rollback()
    [rolled] = [e for e in events if isinstance(e, StepRolledBack)]
    assert rolled.duration >= 0
    assert 1 == rolled.attempt
