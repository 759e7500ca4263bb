"""The decision core alone, with no driver: events fed in, decisions checked.

As h11's ``test_state.py`` tests its state machine without sockets, these tests
drive ``actionqueues._core`` by hand, as a driver would, and check each decision
against a small model: which steps roll back and in what order (S3, S4, S11), the
retry decision (E5, S6), what a rollback raises at its end (S5, E3), and what a
failed journal record leads to (D10).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actionqueues import (
    Action,
    ActionRetryException,
    JournalError,
    LeaseLostError,
    LifecycleError,
    RetryPolicy,
    RollbackError,
    StateError,
    durable,
    open_journal,
    set_testing,
)
from actionqueues._build import Engine
from actionqueues._core import (
    COMPLETED,
    DONE,
    EXPIRE,
    FAILED,
    HOLD,
    RAISE,
    RELEASE,
    ROLLED_BACK,
    STARTED,
    STOP,
    UNDOING,
    UNDONE,
    UNDONE_STATE,
)
from actionqueues._status import Phase, RunStatus, StepStatus


class Boom(Exception):
    """A step's failure."""


def _core(steps: int, **kwargs: Any) -> Engine:
    """A core with ``steps`` do-nothing actions, built as ``add()`` builds it."""
    core = Engine(**kwargs)
    for _ in range(steps):
        core.add(Action())
    return core


class CoreMachine(RuleBasedStateMachine):
    """Execute and roll back a run through the core's events; a model says what the
    core must decide."""

    def __init__(self) -> None:
        super().__init__()
        self.core: Engine | None = None
        self.steps = 0
        self.called = 0  # steps whose execute was called (the failed one included)
        self.failed_at = -1
        self.phase = "new"
        self.undone: list[int] = []
        self.undo_failed: list[int] = []
        self.strict = False

    @precondition(lambda self: self.phase == "new")
    @rule(steps=st.integers(0, 6), strict=st.booleans())
    def build(self, steps: int, strict: bool) -> None:
        """A run of ``steps`` steps starts executing."""
        self.core = _core(steps, strict=strict)
        self.steps, self.strict = steps, strict
        actions = self.core._begin_execute()
        assert steps == len(actions)
        self.phase = "executing"

    @precondition(lambda self: self.phase == "executing" and self.called < self.steps)
    @rule()
    def step_returns(self) -> None:
        """The next step's execute returned."""
        assert self.core is not None
        self.core._results.append(self.called)
        self.called += 1

    @precondition(lambda self: self.phase == "executing" and self.called < self.steps)
    @rule()
    def step_raises(self) -> None:
        """The next step's execute raised, with no policy: the error itself propagates
        (E5), and execution ends with that step counted as executed (S3, S11)."""
        assert self.core is not None
        error = Boom()
        index = len(self.core._results)
        assert error is self.core._retry(index, Phase.EXECUTE, error, 1)
        self.core._end_execute(error, index)
        self.failed_at = index
        self.called += 1
        self.phase = "failed"

    @precondition(lambda self: self.phase == "executing" and self.called == self.steps)
    @rule()
    def all_returned(self) -> None:
        """Every step returned: the run completed; 0.8.2 allows rollback() of a
        completed run (S4), which rolls every step back."""
        assert self.core is not None
        self.core._end_execute(None)
        self.phase = "completed"

    @precondition(lambda self: self.phase in ("failed", "completed"))
    @rule()
    def begin_rollback(self) -> None:
        """Rollback covers every called step, the failed one included, latest first."""
        assert self.core is not None
        indices = list(self.core._begin_rollback())
        assert list(range(self.called - 1, -1, -1)) == indices
        self.todo = indices
        self.phase = "rolling_back"

    @precondition(lambda self: self.phase == "rolling_back" and bool(self.todo))
    @rule(fails=st.booleans())
    def undo(self, fails: bool) -> None:
        """The next step's rollback returned, or failed for good: recorded, and the
        rollback goes on (S5)."""
        assert self.core is not None
        index = self.todo.pop(0)
        self.core._rb_index = index
        if fails:
            error = Boom(f"undo {index}")
            assert error is self.core._retry(index, Phase.ROLLBACK, error, 1)
            self.core._rollback_failed(index, error)
            self.undo_failed.append(index)
        else:
            self.undone.append(index)

    @precondition(lambda self: self.phase == "rolling_back" and not self.todo)
    @rule()
    def end_rollback(self) -> None:
        """What rollback() raises at its end: nothing, or in strict mode every failure
        in one RollbackError (E3)."""
        assert self.core is not None
        self.core._end_rollback()
        raised = self.core._rollback_outcome()
        if self.strict and self.undo_failed:
            assert isinstance(raised, RollbackError)
            assert len(self.undo_failed) == len(raised.exceptions)
        else:
            assert raised is None
        self.phase = "rolled_back"

    @precondition(lambda self: self.phase in ("executing", "rolling_back", "rolled_back"))
    @rule()
    def refused(self) -> None:
        """S8: execute() of a started run is refused, and changes nothing."""
        assert self.core is not None
        before = self.core._state
        with pytest.raises(LifecycleError):
            self.core._begin_execute()
        assert before is self.core._state

    @invariant()
    def report_agrees(self) -> None:
        """The report says what the model says, step by step."""
        if self.core is None:
            return
        report = self.core.report
        for step in report.steps:
            i = step.index
            if self.phase in ("rolling_back", "rolled_back") and i in self.undo_failed:
                assert StepStatus.ROLLBACK_FAILED == step.status
            elif self.phase == "rolled_back" and i < self.called:
                assert StepStatus.ROLLED_BACK == step.status
            elif self.phase in ("failed", "completed") and i < self.called:
                expected = StepStatus.FAILED if i == self.failed_at else StepStatus.EXECUTED
                assert expected == step.status
            elif self.phase == "executing" and i == self.called:
                # Unobserved, a report can only be read from inside a step's call.
                assert StepStatus.EXECUTING == step.status
            elif i >= self.called:
                assert StepStatus.PENDING == step.status
        if self.phase == "rolled_back":
            expected = RunStatus.ROLLBACK_FAILED if self.undo_failed else RunStatus.ROLLED_BACK
            assert expected == report.status


TestCoreMachine = CoreMachine.TestCase


@given(
    attempts=st.integers(1, 6),
    matching=st.booleans(),
    calls=st.integers(1, 8),
)
def test_retry_decides_wait_then_the_error(attempts: int, matching: bool, calls: int) -> None:
    """E5: a policy's matching failure is retried (a wait) until its attempts are
    spent, then the action's own exception propagates; a failure it does not match
    propagates at once."""
    core = _core(1, retry=RetryPolicy(on=Boom if matching else KeyError, attempts=attempts))
    core._begin_execute()
    core._starts.append(perf_counter())  # as the driver does before a timed step's call
    with set_testing():
        for attempt in range(1, calls + 1):
            error = Boom()
            decision = core._retry(0, Phase.EXECUTE, error, attempt)
            if matching and attempt < attempts:
                assert 0.0 == decision
            else:
                assert error is decision
                break


def test_retry_exception_stands_for_its_original_when_spent() -> None:
    """S6/E5: ActionRetryException is retried with no policy; when its factory's
    attempts are spent, its original exception is what propagates."""
    core = _core(1)
    core._begin_execute()
    original = Boom()
    with set_testing(attempts=2):
        assert isinstance(core._retry(0, Phase.EXECUTE, ActionRetryException(), 1), float)
        assert original is core._retry(
            0, Phase.EXECUTE, ActionRetryException(original_exception=original), 2
        )


def test_a_held_interrupt_stops_a_rollback_retrying() -> None:
    """An interrupt held back during rollback stops the retries of later steps."""
    core = _core(1, rollback_retry=RetryPolicy(on=Boom, attempts=5))
    core._begin_execute()
    core._results.append(None)
    core._end_execute(None)
    core._begin_rollback()
    core._rb_starts.append(perf_counter())
    with set_testing():
        assert isinstance(core._retry(0, Phase.ROLLBACK, Boom(), 1), float)
        core._hold(KeyboardInterrupt())
        error = Boom()
        assert error is core._retry(0, Phase.ROLLBACK, error, 2)


@durable("test_core.Step")
class Step(Action):
    """A durable do-nothing step."""


def _durable_core(recovery: str = "rollback") -> Engine:
    core = Engine(journal=open_journal("memory:"), recovery=recovery)
    core.add(Step())
    return core


_KINDS = {
    "lease lost": LeaseLostError("another process owns the run"),
    "journal": JournalError("disk full"),
    "state": StateError("not JSON"),
    "interrupt": KeyboardInterrupt(),
}


@pytest.mark.parametrize(
    ("record", "kind", "expected"),
    [
        # Before a step's call, and its "executed" record: the run stops (D10).
        *[(r, k, RAISE) for r in (STARTED, DONE) for k in _KINDS],
        # A completed run unrecorded does not count as done; the lease expires.
        (COMPLETED, "lease lost", RAISE),
        (COMPLETED, "journal", RAISE | EXPIRE),
        (COMPLETED, "state", RAISE),
        (COMPLETED, "interrupt", RAISE),
        # A failed run's record failing: logged; the action's exception propagates.
        (FAILED, "lease lost", 0),
        (FAILED, "journal", EXPIRE),
        (FAILED, "state", EXPIRE),
        (FAILED, "interrupt", RAISE),
        # During rollback the compensation goes on, logged; another owner stops it.
        *[(r, "lease lost", RAISE) for r in (UNDOING, UNDONE, UNDONE_STATE)],
        *[(r, k, 0) for r in (UNDOING, UNDONE, UNDONE_STATE) for k in ("journal", "state")],
        *[(r, "interrupt", HOLD) for r in (UNDOING, UNDONE, UNDONE_STATE)],
        (ROLLED_BACK, "lease lost", 0),
        (ROLLED_BACK, "journal", RELEASE),
        (ROLLED_BACK, "state", RELEASE),
        (ROLLED_BACK, "interrupt", HOLD),
    ],
)
def test_journal_failures_decided_in_one_place(record: int, kind: str, expected: int) -> None:
    """D10: what each journal record's failure leads to, for a run in rollback mode."""
    core = _durable_core()
    core._begin_execute()
    then, message = core._journal_failed(record, 0, _KINDS[kind])
    assert expected == then
    # A message is logged (or raised) exactly when the run goes on, or is released.
    assert (message is not None) == (then == 0 or bool(then & RELEASE))


def test_a_resumable_run_stops_its_rollback_when_it_cannot_record_it() -> None:
    """D10/D5: a resumable run the journal still holds as running cannot be undone
    unrecorded (recovery would resume past the undone step): released, and stopped."""
    core = _durable_core("resume")
    core._begin_execute()
    then, message = core._journal_failed(UNDOING, 0, JournalError("disk full"))
    assert RELEASE | STOP == then
    assert message is not None
    assert "recovery takes the run over" in message
    core._durable.status = RunStatus.ROLLING_BACK  # type: ignore[union-attr]
    assert (0, "rolling back step 1 without a journal record: disk full") == (
        core._journal_failed(UNDOING, 0, JournalError("disk full"))
    )


def test_a_completed_run_unrecorded_counts_as_failed() -> None:
    """D10: a completed run whose record failed is not done: its state says failed,
    with the journal's error."""
    core = _durable_core()
    core._begin_execute()
    core._results.append(None)
    core._end_execute(None)
    error = JournalError("disk full")
    core._journal_failed(COMPLETED, -1, error)
    assert RunStatus.FAILED == core.report.status
    assert error is core.report.error
