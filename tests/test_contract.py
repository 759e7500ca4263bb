"""The 0.8.2 contract, rules S1-S11 of DESIGN.md, under the 0.8.2 import paths."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from _helpers import Boom, Step

from actionqueues import action, actionqueue, aqstatemachine, exceptionfactory
from actionqueues.action import Action
from actionqueues.actionqueue import ActionQueue, ActionRetryException
from actionqueues.aqstatemachine import AQStateMachine
from actionqueues.exceptionfactory import DoublingBackoffExceptionFactory


def test_s1_actions_execute_in_the_order_added(Queue: type, log: list[tuple[str, str]]) -> None:
    """S1: execute is called in insertion order."""
    q = Queue()
    for name in "abcde":
        q.add(Step(name, log))
    q.execute()
    assert [(n, "execute") for n in "abcde"] == log


def test_s2_failure_stops_the_queue_and_propagates_the_same_object(
    Queue: type,
    log: list[tuple[str, str]],
) -> None:
    """S2: the very exception object propagates; later actions are not executed."""
    error = Boom("b failed")
    q = Queue()
    q.add(Step("a", log))
    q.add(Step("b", log, fail=error))
    q.add(Step("c", log))
    with pytest.raises(Boom) as caught:
        q.execute()
    assert caught.value is error
    assert log == [("a", "execute"), ("b", "execute")]


def test_s3_rollback_covers_executed_actions_in_reverse_including_the_failed_one(
    Queue: type,
    log: list[tuple[str, str]],
) -> None:
    """S3: rollback runs for every executed action, the raiser included, newest first."""
    q = Queue()
    q.add(Step("a", log))
    q.add(Step("b", log))
    q.add(Step("c", log, fail=Boom()))
    q.add(Step("d", log))
    with pytest.raises(Boom):
        q.execute()
    log.clear()
    q.rollback()
    assert log == [("c", "rollback"), ("b", "rollback"), ("a", "rollback")]


def test_s3_no_rollback_for_actions_never_executed(Queue: type, log: list[tuple[str, str]]) -> None:
    """S3: the first action failing means only it is rolled back."""
    q = Queue()
    q.add(Step("a", log, fail=Boom()))
    q.add(Step("b", log))
    with pytest.raises(Boom):
        q.execute()
    q.rollback()
    assert log == [("a", "execute"), ("a", "rollback")]


def test_s4_rollback_after_success_rolls_back_everything(
    Queue: type, log: list[tuple[str, str]]
) -> None:
    """S4: rollback() after a successful execute() undoes every action."""
    q = Queue()
    for name in "abc":
        q.add(Step(name, log))
    q.execute()
    log.clear()
    q.rollback()
    assert [(n, "rollback") for n in "cba"] == log


def test_s5_rollback_failure_does_not_stop_the_rollback(
    Queue: type, log: list[tuple[str, str]]
) -> None:
    """S5: a rollback that raises is passed over and earlier actions still roll back."""
    q = Queue()
    q.add(Step("a", log, rollback_fail=RuntimeError("a")))
    q.add(Step("b", log, rollback_fail=Boom("b")))
    q.add(Step("c", log, fail=Boom()))
    with pytest.raises(Boom):
        q.execute()
    log.clear()
    q.rollback()  # does not raise: 0.8.2 swallowed rollback failures
    assert log == [("c", "rollback"), ("b", "rollback"), ("a", "rollback")]


def test_s6_retry_exception_calls_the_method_again(Queue: type, log: list[tuple[str, str]]) -> None:
    """S6: ActionRetryException from execute and rollback means call it again."""
    q = Queue()
    q.add(Step("a", log, retries=3, rollback_retries=2))
    q.execute()
    q.rollback()
    assert log == [("a", "execute")] * 4 + [("a", "rollback")] * 3


def test_s6_retry_sleeps_ms_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """S6: the queue sleeps ms_backoff milliseconds through time.sleep, as 0.8.2 did."""
    slept: list[float] = []
    monkeypatch.setattr(actionqueue.time, "sleep", slept.append)
    backoffs = [250, 0, 1500]

    class Retrying(Action):
        def execute(self) -> None:
            if backoffs:
                raise ActionRetryException(ms_backoff=backoffs.pop(0))

    q = ActionQueue()
    q.add(Retrying())
    q.execute()
    assert slept == [0.25, 0.0, 1.5]


def test_s6_retries_for_as_long_as_it_is_raised(Queue: type, slept: list[float]) -> None:
    """S6: with no policy there is no limit on ActionRetryException retries."""
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 500:
            raise ActionRetryException()

    q = Queue()
    q.add(flaky)
    q.execute()
    assert len(calls) == 500
    assert [0.0] * 499 == slept


def test_s7_doubling_backoff_factory_sequence() -> None:
    """S7: retries backoffs initial, x2, x4 ... then the original exception."""
    factory = DoublingBackoffExceptionFactory(retries=3, ms_backoff_initial=500)
    seen = []
    for _ in range(3):
        with pytest.raises(ActionRetryException) as caught:
            factory.raise_exception()
        seen.append(caught.value.ms_backoff)
    assert seen == [500, 1000, 2000]
    original = ZeroDivisionError("x")
    for _ in range(2):  # every later call raises it again
        with pytest.raises(ZeroDivisionError) as raised:
            factory.raise_exception(original_exception=original)
        assert raised.value is original


def test_s7_doubling_backoff_factory_defaults_and_plain_exception() -> None:
    """S7: default retries=3, 500ms; with no original a plain Exception is raised."""
    factory = DoublingBackoffExceptionFactory()
    for expected in (500, 1000, 2000):
        with pytest.raises(ActionRetryException) as caught:
            factory.raise_exception()
        assert expected == caught.value.ms_backoff
    with pytest.raises(Exception) as final:  # noqa: PT011 - exactly Exception is the rule
        factory.raise_exception()
    assert type(final.value) is Exception


def test_s7_factory_in_a_queue_gives_up_with_the_original(Queue: type, slept: list[float]) -> None:
    """S7 with S6: the queue retries 5 times at 100..1600ms, then the original propagates."""

    class Failing(Action):
        def __init__(self) -> None:
            self.runs = 0
            self.factory = DoublingBackoffExceptionFactory(retries=5, ms_backoff_initial=100)

        def execute(self) -> None:
            self.runs += 1
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError as ex:
                self.factory.raise_exception(original_exception=ex)

    failing = Failing()
    q = Queue()
    q.add(failing)
    with pytest.raises(ZeroDivisionError):
        q.execute()
    assert failing.runs == 6
    assert slept == [0.1, 0.2, 0.4, 0.8, 1.6]


@pytest.mark.parametrize(
    ("calls", "fix"),
    [
        (["execute", "add"], "already been executed. Create a new ActionQueue"),
        (["execute", "execute"], "Call rollback() to undo it, or create a new ActionQueue"),
        (["rollback"], "Call execute() first"),
        (["execute", "rollback", "rollback"], "already been rolled back"),
        (["execute", "rollback", "execute"], "Create a new ActionQueue"),
        (["execute", "rollback", "add"], "Create a new ActionQueue"),
    ],
)
def test_s8_lifecycle_misuse_raises_assertion_error(
    Queue: type, calls: list[str], fix: str
) -> None:
    """S8: out-of-order calls raise an AssertionError that says what to do instead."""
    q = Queue()
    q.add(Action())
    *ok, bad = calls
    for name in ok:
        getattr(q, name)() if name != "add" else q.add(Action())
    with pytest.raises(AssertionError) as caught:
        getattr(q, bad)() if bad != "add" else q.add(Action())
    assert fix in str(caught.value)


def test_s8_add_any_number_of_times_including_none(Queue: type) -> None:
    """S8: an empty queue executes and rolls back."""
    q = Queue()
    q.execute()
    q.rollback()
    assert q.report.status == "rolled_back"


def test_s8_reentrant_calls_from_an_action_are_refused() -> None:
    """S8: execute() or rollback() from inside a running action is an error."""
    q = ActionQueue()
    seen: list[BaseException] = []

    def reenter() -> None:
        for call in (q.execute, q.rollback):
            try:
                call()
            except AssertionError as e:
                seen.append(e)

    q.add(reenter)
    q.execute()
    assert len(seen) == 2
    assert "already executing" in str(seen[0])
    assert "while the queue is executing" in str(seen[1])


def test_s8_holds_under_python_dash_o() -> None:
    """S8: the lifecycle errors do not depend on assert statements."""
    code = textwrap.dedent(
        """
        from actionqueues.actionqueue import ActionQueue
        q = ActionQueue()
        try:
            q.rollback()
        except AssertionError as e:
            print("refused:", e)
        """
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("refused: Cannot roll back a queue that has not been executed")


def test_s9_any_object_with_execute_and_rollback_is_an_action(Queue: type) -> None:
    """S9: duck typing; Action's methods do nothing and return None."""

    class Duck:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def execute(self) -> None:
            self.calls.append("execute")

        def rollback(self) -> None:
            self.calls.append("rollback")

    duck = Duck()
    q = Queue()
    q.add(duck)
    q.add(Action())
    q.execute()
    q.rollback()
    assert duck.calls == ["execute", "rollback"]
    assert Action().execute() is None
    assert Action().rollback() is None


def test_s10_old_import_paths() -> None:
    """S10: every 0.8.2 name is importable from its 0.8.2 module."""
    assert actionqueue.ActionQueue is ActionQueue
    assert actionqueue.ActionRetryException is ActionRetryException
    assert action.Action is Action
    assert exceptionfactory.DoublingBackoffExceptionFactory is DoublingBackoffExceptionFactory
    assert aqstatemachine.AQStateMachine is AQStateMachine
    assert issubclass(ActionRetryException, Exception)
    assert ActionRetryException(250).ms_backoff == 250
    assert ActionRetryException().ms_backoff == 0


def test_s10_aqstatemachine_transitions() -> None:
    """S10: AQStateMachine keeps 0.8.2's states and transition_to_* methods."""
    sm = AQStateMachine()
    assert aqstatemachine.AQStateMachine_INIT == sm.state
    sm.transition_to_add()
    sm.transition_to_add()
    assert aqstatemachine.AQStateMachine_ADD == sm.state
    sm.transition_to_execute()
    assert aqstatemachine.AQStateMachine_EXECUTE == sm.state
    sm.transition_to_execute_complete()
    assert aqstatemachine.AQStateMachine_EXECUTE_COMPLETE == sm.state
    sm.transition_to_rollback()
    assert aqstatemachine.AQStateMachine_ROLLBACK == sm.state
    sm.transition_to_rollback_complete()
    assert aqstatemachine.AQStateMachine_ROLLBACK_COMPLETE == sm.state
    with pytest.raises(AssertionError, match="already been rolled back"):
        sm.transition_to_rollback()


def test_s10_aqstatemachine_rollback_from_execute_and_bad_moves() -> None:
    """S10: 0.8.2 allowed rollback straight from EXECUTE (a failed execute)."""
    sm = AQStateMachine()
    sm.transition_to_add()
    sm.transition_to_execute()
    sm.transition_to_rollback()
    assert aqstatemachine.AQStateMachine_ROLLBACK == sm.state
    with pytest.raises(AssertionError, match="only valid while executing"):
        sm.transition_to_execute_complete()
    with pytest.raises(AssertionError, match="Cannot add"):
        sm.transition_to_add()
    fresh = AQStateMachine()
    with pytest.raises(AssertionError, match="only valid while rolling back"):
        fresh.transition_to_rollback_complete()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_s11_base_exception_counts_the_action_as_executed(
    Queue: type, log: list[tuple[str, str]], interrupt: type[BaseException]
) -> None:
    """S11: KeyboardInterrupt/SystemExit propagate, and rollback covers the raiser."""
    q = Queue()
    q.add(Step("a", log))
    q.add(Step("b", log, fail=interrupt()))
    q.add(Step("c", log))
    with pytest.raises(interrupt):
        q.execute()
    q.rollback()
    assert log == [
        ("a", "execute"),
        ("b", "execute"),
        ("b", "rollback"),
        ("a", "rollback"),
    ]
