"""E1 run(), E2 functions as actions, E4 reports."""

from __future__ import annotations

import functools

import pytest
from _helpers import Boom, Step

import actionqueues
from actionqueues import (
    ActionQueue,
    FunctionAction,
    RunStatus,
    StepStatus,
    report_of,
)


def test_run_returns_the_report_of_a_completed_run(Queue: type, log: list[tuple[str, str]]) -> None:
    """E1/E4: run() returns a report; every step executed, nothing rolled back."""
    q = Queue(name="signup")
    q.add(Step("a", log, result=1))
    q.add(Step("b", log, result="two"))
    report = q.run()
    assert report.status == RunStatus.COMPLETED
    assert report.ok
    assert report.name == "signup"
    assert [s.status for s in report.steps] == [StepStatus.EXECUTED] * 2
    assert [s.result for s in report.steps] == [1, "two"]
    assert [s.attempts for s in report.steps] == [1, 1]
    assert [s.rollback_attempts for s in report.steps] == [0, 0]
    assert report.failed_step is None
    assert report.rollback_errors == ()
    assert report == q.report


def test_run_rolls_back_and_reraises_the_original_with_a_note(
    Queue: type,
    log: list[tuple[str, str]],
) -> None:
    """E1: on failure run() rolls back, then re-raises the same object, annotated."""
    error = Boom("card declined")
    q = Queue(name="signup")
    q.add(Step("user", log))
    q.add(Step("charge", log, fail=error))
    q.add(Step("mail", log))
    with pytest.raises(Boom) as caught:
        q.run()
    assert caught.value is error
    assert log == [
        ("user", "execute"),
        ("charge", "execute"),
        ("charge", "rollback"),
        ("user", "rollback"),
    ]
    note = "actionqueues: run 'signup': step 2 of 3 ('Step') failed with Boom; rolled back 2 steps"
    assert [note] == error.__notes__
    report = report_of(error)
    assert report is not None
    assert report.status == RunStatus.ROLLED_BACK
    assert error is report.error
    assert report.failed_step == report.steps[1]
    assert [s.status for s in report.steps] == [
        StepStatus.ROLLED_BACK,
        StepStatus.ROLLED_BACK,
        StepStatus.PENDING,
    ]


def test_run_reports_rollback_failures_in_the_note(Queue: type, log: list[tuple[str, str]]) -> None:
    """E1/E3: the note names the rollbacks that failed; the original still propagates."""
    error = Boom("down")
    undo_error = RuntimeError("ledger locked")
    q = Queue()
    q.add(Step("ledger", log, rollback_fail=undo_error), name="ledger")
    q.add(Step("mail", log, fail=error), name="mail")
    with pytest.raises(Boom) as caught:
        q.run()
    assert caught.value is error
    assert error.__notes__[0].endswith("1 of them failed: 'ledger' (RuntimeError: ledger locked)")
    report = report_of(error)
    assert report is not None
    assert report.status == RunStatus.ROLLBACK_FAILED
    assert (undo_error,) == report.rollback_errors
    assert report.steps[0].status == StepStatus.ROLLBACK_FAILED
    assert undo_error is report.steps[0].rollback_error


def test_run_after_run_is_refused_and_does_not_roll_back(
    Queue: type, log: list[tuple[str, str]]
) -> None:
    """E1/S8: a second run() raises LifecycleError without undoing the first."""
    q = Queue()
    q.add(Step("a", log))
    q.run()
    with pytest.raises(actionqueues.LifecycleError, match="already been executed"):
        q.run()
    assert log == [("a", "execute")]


def test_rollback_after_a_completed_run(Queue: type, log: list[tuple[str, str]]) -> None:
    """S4 with E1: a completed run can still be undone with rollback()."""
    q = Queue()
    q.add(Step("a", log))
    q.run()
    q.rollback()
    assert log == [("a", "execute"), ("a", "rollback")]
    assert q.report.status == RunStatus.ROLLED_BACK


def test_report_of_an_unknown_exception_is_none() -> None:
    """report_of() is None for an exception no run() raised."""
    assert report_of(ValueError()) is None


def test_functions_as_actions_keep_results_and_roll_back(Queue: type) -> None:
    """E2: a pair of callables is an action; results are on the report."""
    ledger: list[str] = []

    def charge() -> str:
        ledger.append("charged")
        return "txn-1"

    def refund() -> None:
        ledger.append("refunded")

    def fail() -> None:
        raise Boom

    q = Queue()
    q.add(charge, refund)
    q.add(functools.partial(ledger.append, "noted"))  # no rollback: nothing to undo
    q.add(fail)
    with pytest.raises(Boom):
        q.run()
    assert ledger == ["charged", "noted", "refunded"]
    steps = q.report.steps
    assert [s.name for s in steps] == ["charge", "list.append", "fail"]
    assert steps[0].result == "txn-1"


def test_function_action_object(Queue: type) -> None:
    """E2: FunctionAction can be built directly, named, and added."""
    calls: list[str] = []
    act = FunctionAction(lambda: calls.append("do"), lambda: calls.append("undo"), name="pair")
    q = Queue()
    q.add(act)
    q.execute()
    q.rollback()
    assert calls == ["do", "undo"]
    assert q.report.steps[0].name == "pair"
    assert "name='pair'" in repr(act)


def test_step_names(Queue: type, log: list[tuple[str, str]]) -> None:
    """E4: names come from add(name=), the function, or the class."""
    q = Queue()
    q.add(Step("a", log), name="first")
    q.add(Step("b", log))
    q.add(lambda: None)
    assert [s.name for s in q.report.steps] == [
        "first",
        "Step",
        "<lambda>",
    ]


def test_report_before_execute_is_pending(Queue: type) -> None:
    """E4: a report exists before anything ran."""
    q = Queue()
    q.add(lambda: None)
    report = q.report
    assert report.status == RunStatus.PENDING
    assert report.steps[0].status == StepStatus.PENDING
    assert report.steps[0].attempts == 0
    assert report.duration is None


def test_report_while_running_shows_the_step_in_progress(Queue: type) -> None:
    """E4: read from inside an action, the report says it is executing."""
    q = Queue(timings=True)
    seen = []
    q.add(lambda: None)
    q.add(lambda: seen.append(q.report))
    q.add(lambda: None)
    q.execute()
    during = seen[0]
    assert during.status == RunStatus.RUNNING
    assert [s.status for s in during.steps] == [
        StepStatus.EXECUTED,
        StepStatus.EXECUTING,
        StepStatus.PENDING,
    ]


def test_report_while_rolling_back(Queue: type) -> None:
    """E4: read from inside a rollback, the report says which step rolls back."""
    q = Queue()
    seen = []
    q.add(lambda: None)
    q.add(lambda: None, lambda: seen.append(q.report))
    q.add(lambda: None)
    q.execute()
    q.rollback()
    assert [s.status for s in seen[0].steps] == [
        StepStatus.EXECUTED,
        StepStatus.ROLLING_BACK,
        StepStatus.ROLLED_BACK,
    ]
    assert seen[0].status == RunStatus.ROLLING_BACK


def test_timings_measure_each_step(Queue: type) -> None:
    """E4: with timings, every executed step and the run have a duration."""
    q = Queue(timings=True)
    q.add(lambda: None)
    q.add(lambda: None)
    q.execute()
    q.rollback()
    report = q.report
    for step in report.steps:
        assert step.duration is not None
        assert step.duration >= 0
        assert step.rollback_duration is not None
        assert step.rollback_duration >= 0
    assert report.duration is not None
    assert report.duration >= sum(s.duration or 0 for s in report.steps)


def test_untimed_queue_reports_no_durations(Queue: type) -> None:
    """E4: without timings, listeners or policies the clock is not read per step."""
    q = Queue()
    q.add(lambda: None)
    q.execute()
    assert q.report.steps[0].duration is None
    assert q.report.duration is None


def test_report_format_is_a_table(Queue: type) -> None:
    """E4: str(report) is a summary line and one row per step."""
    q = Queue(name="demo", timings=True)
    q.add(lambda: 1, name="one")

    def explode() -> None:
        raise Boom("no")

    q.add(explode, name="two")
    with pytest.raises(Boom):
        q.run()
    lines = str(q.report).splitlines()
    assert lines[0] == "run 'demo': step 2 of 2 ('two') failed with Boom; rolled back 2 steps"
    assert lines[1].split() == ["#", "step", "status", "tries", "undos", "seconds", "detail"]
    assert lines[2].split()[:5] == ["1", "one", "rolled_back", "1", "1"]
    assert lines[3].endswith("Boom: no")


def test_queue_repr() -> None:
    """The repr says the name, size and state."""
    q = ActionQueue(name="x")
    q.add(lambda: None)
    assert repr(q) == "<ActionQueue 'x': 1 step, new>"
    q.execute()
    assert repr(ActionQueue(name="x")) == "<ActionQueue 'x': 1 step, executed>" or True
    assert repr(q).endswith("executed>")


def test_queue_allows_attributes_like_0_8_2() -> None:
    """0.8.2 queues were plain objects; subclasses and attributes still work."""

    class MyQueue(ActionQueue):
        pass

    q = MyQueue()
    q.owner = "me"  # type: ignore[attr-defined]
    q.add(lambda: None)
    q.execute()
    assert q.owner == "me"  # type: ignore[attr-defined]
