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
    LoggingListener,
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
    from actionqueues import _build as _engine

    for _ in range(_engine._CHECKED_MAX + 10):
        q = ActionQueue()
        q.add(type("Made", (Action,), {})())
    assert len(_engine._CHECKED) <= _engine._CHECKED_MAX


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


def make_failing_queue() -> ActionQueue:
    q = ActionQueue(name="p")
    q.add(Action(), name="ok")
    q.add(Step("b", [], fail=Boom("no")), name="b")
    return q


def test_run_errors_and_reports_pickle() -> None:
    """Exceptions re-raised by run() and reports cross process boundaries (pickle)."""
    q = make_failing_queue()
    with pytest.raises(Boom) as caught:
        q.run()
    error = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own data
    assert ("no",) == error.args
    ok = ActionQueue(name="fine")
    ok.add(Action())
    report = pickle.loads(pickle.dumps(ok.run()))  # noqa: S301
    assert RunStatus.COMPLETED == report.status
    assert ["Action"] == [s.name for s in report.steps]


def test_queues_pickle_like_0_8_2() -> None:
    """0.8.2 queues of picklable actions pickled; so do ours, before and after a run."""
    q = ActionQueue()
    q.add(Action())
    copy = pickle.loads(pickle.dumps(q))  # noqa: S301
    copy.run()
    assert RunStatus.COMPLETED == copy.report.status
    q.run()
    assert RunStatus.COMPLETED == pickle.loads(pickle.dumps(q)).report.status  # noqa: S301


def test_attempts_count_calls_made_when_a_wait_is_interrupted() -> None:
    """E4: a retry cut short in its wait counts only the calls really made."""
    calls: list[str] = []

    def interrupt_retry(event: Event) -> None:
        if isinstance(event, actionqueues.StepRetrying):
            raise KeyboardInterrupt

    q = ActionQueue(retry=RetryPolicy(on=Boom), listeners=[interrupt_retry])
    q.add(Step("a", calls, fail=Boom()))
    with pytest.raises(KeyboardInterrupt):
        q.execute()
    assert 1 == len(calls)
    assert 1 == q.report.steps[0].attempts


def test_an_interrupt_during_rollback_ends_retrying(log: list[tuple[str, str]]) -> None:
    """S5/S11: after an interrupt each remaining rollback is called once, not retried."""
    q = ActionQueue()
    q.add(Step("a", log, rollback_retries=100))
    q.add(Step("b", log, rollback_fail=KeyboardInterrupt()))
    q.execute()
    with pytest.raises(KeyboardInterrupt):
        q.rollback()
    assert [("b", "rollback"), ("a", "rollback")] == log[2:]
    assert isinstance(q.report.steps[0].rollback_error, ActionRetryException)


def test_rolled_back_listener_sees_the_step_rolled_back() -> None:
    """E4: in StepRolledBack the step that just finished reads rolled_back."""
    seen: list[RunReport] = []
    q = ActionQueue(
        listeners=[lambda e: seen.append(q.report) if type(e) is StepRolledBack else None]
    )
    q.add(Action())
    q.add(Action())
    q.execute()
    q.rollback()
    assert [StepStatus.EXECUTED, StepStatus.ROLLED_BACK] == [s.status for s in seen[0].steps]
    assert "run rolling back; rolled back 1 step" == seen[0].summary()


def test_run_finished_interrupt_after_success_is_the_run_error() -> None:
    """A listener's KeyboardInterrupt at the end of execute() fails the run, and says so."""

    def interrupt_at_finish(event: Event) -> None:
        if isinstance(event, actionqueues.RunFinished) and event.report.ok:
            raise KeyboardInterrupt

    q = ActionQueue(listeners=[interrupt_at_finish])
    q.add(Action())
    with pytest.raises(KeyboardInterrupt):
        q.run()
    report = q.report
    assert isinstance(report.error, KeyboardInterrupt)
    assert RunStatus.ROLLED_BACK == report.status
    assert "run rolled back after KeyboardInterrupt between steps" in report.summary()


def test_logging_listener_variants_keep_exactly_one_error_log(
    log: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """E3: a filtering subclass does not switch the log off; a child logger is not doubled."""

    class Quiet(LoggingListener):
        def __call__(self, event: Event) -> None:
            pass

    for listener in (Quiet(), LoggingListener(logging.getLogger("actionqueues.sub"))):
        caplog.clear()
        q = ActionQueue(listeners=[listener])
        q.add(Step("a", log, rollback_fail=RuntimeError("x")))
        q.add(Step("b", log, fail=Boom()))
        with caplog.at_level(logging.ERROR, logger="actionqueues"), pytest.raises(Boom):
            q.run()
        assert 1 == len([r for r in caplog.records if r.levelno == logging.ERROR])


def test_numbers_too_large_for_floats_are_refused_clearly() -> None:
    """Bad input: 10**400 is refused with the library's errors, never OverflowError."""
    with pytest.raises(InvalidPolicyError, match="timeout must be a finite number"):
        RetryPolicy(on=Boom, timeout=10**400)
    with pytest.raises(InvalidPolicyError, match="wait_exp_base"):
        RetryPolicy(on=Boom, wait_exp_base=10**400)
    with pytest.raises(InvalidPolicyError, match="unknown field"):
        RetryPolicy(on=Boom).replace(bogus=1)

    def retry_huge() -> None:
        raise ActionRetryException(ms_backoff=10**400)

    q = ActionQueue()
    q.add(retry_huge)
    with pytest.raises(InvalidBackoffError):
        q.execute()
    q = ActionQueue(retry=RetryPolicy(on=lambda e: 10**400, timeout=None))
    q.add(Step("a", [], fail=Boom()))
    with pytest.raises(InvalidPolicyError, match="a wait of 0 to"):
        q.execute()


def test_aqstatemachine_with_a_bad_state_raises_lifecycle_error() -> None:
    """S10: a state set to nonsense is refused as 0.8.2's assert did."""
    from actionqueues.aqstatemachine import AQStateMachine

    sm = AQStateMachine()
    sm.state = 6
    with pytest.raises(AssertionError, match="none of the AQStateMachine_"):
        sm.transition_to_add()


def test_the_shared_empty_mapping_refuses_writes() -> None:
    """Queues share one empty mapping until they need their own; it cannot be written."""
    from actionqueues import _run as _engine

    with pytest.raises(TypeError, match="shared empty mapping"):
        _engine._EMPTY[1] = 2
    assert {} == pickle.loads(pickle.dumps(_engine._EMPTY))  # noqa: S301


def test_add_of_plain_functions_keeps_every_check_of_the_full_path() -> None:
    """add(do, undo)'s fast path takes only plain functions: an ``async def`` one is
    still refused by ActionQueue, a function carrying attributes is checked in full,
    and the steps are named as before (a nested function by its own name)."""

    def outer() -> None:
        pass

    async def later() -> None:
        pass

    queue = actionqueues.ActionQueue()
    queue.add(outer, lambda: None)
    with pytest.raises(actionqueues.InvalidActionError, match="coroutine function"):
        queue.add(outer, later)
    with pytest.raises(actionqueues.InvalidActionError, match="coroutine function"):
        queue.add(later)

    def marked() -> None:
        pass

    marked.execute = "not callable"  # type: ignore[attr-defined]
    with pytest.raises(actionqueues.InvalidActionError, match="no callable"):
        queue.add(marked)
    assert ["outer"] == [step.name for step in queue.report.steps]
    async_queue = actionqueues.AsyncActionQueue()
    async_queue.add(later, outer)  # an async queue takes both kinds
    assert ["later"] == [step.name for step in async_queue.report.steps]


def test_a_function_actions_name_is_taken_when_first_asked_for() -> None:
    """add(do, undo) leaves the step's name to be taken from the function when a
    report or an event asks (it cost every add() a string split): the same name as
    before, a local function's without its ``<locals>`` path, and one may set it."""
    from actionqueues import FunctionAction

    def charge() -> None:
        pass

    queue = ActionQueue()
    queue.add(charge)
    action = queue._actions[0]
    assert isinstance(action, FunctionAction)
    assert action._name is None  # nothing taken yet
    assert ["charge"] == [s.name for s in queue.run().steps]
    assert "charge" == action.name == action._name
    action.name = "bill"
    assert ("bill", "named") == (action.name, FunctionAction(charge, name="named").name)
