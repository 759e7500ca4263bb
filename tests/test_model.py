"""A model test of the queue contract: random queues against a pure-Python model.

Each generated queue holds up to 8 scripted actions. A script says what each call of
``execute`` or ``rollback`` does: ask to be called again (``ActionRetryException``),
raise ``Flaky`` (which retry policies retry), then end by returning, raising ``Flaky``,
raising ``Boom`` (never retried) or raising ``Halt`` (a ``BaseException``, S11). Retry
policies on the queue and on single actions decide how many calls a step gets. The
queue is driven as 0.8.2 did (execute, then rollback on failure), with a rollback even
after success (S4), or through ``run()`` (E1), and everything observable — the calls
made, what propagates, the report and the error log — is compared with the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from _drivers import BlockingAsyncQueue
from hypothesis import given, settings
from hypothesis import strategies as st

import actionqueues
from actionqueues import (
    ActionQueue,
    ActionRetryException,
    RetryPolicy,
    RollbackError,
    RunReport,
    RunStatus,
    StepStatus,
)


class Flaky(Exception):
    """A failure the generated retry policies retry."""


class Boom(Exception):
    """A failure no policy retries."""


class Halt(BaseException):
    """Not an ``Exception``: like KeyboardInterrupt, never retried (S11)."""


Call = tuple[int, str]
Row = tuple[StepStatus, int, object, object, int, object]

MODES = ("rollback_on_failure", "rollback_always", "run")


# -- what is generated: plain data, so a failing example prints readably -------------


@dataclass(frozen=True)
class PhaseSpec:
    """What successive calls of one method do, and the method's own retry policy.

    ``prelude`` is played first, one entry per call; every later call does ``final``.
    ``attempts`` is the ``attempts`` of the step's own policy, None for no policy.
    """

    prelude: tuple[str, ...] = ()
    final: str = "ok"
    attempts: int | None = None


@dataclass(frozen=True)
class StepSpec:
    """One action: its execute and rollback scripts, and what execute returns."""

    execute: PhaseSpec = PhaseSpec()
    rollback: PhaseSpec = PhaseSpec()
    result: object = None


@dataclass(frozen=True)
class QueueSpec:
    """A queue, its policies (as ``attempts``, None for none) and how it is driven."""

    steps: tuple[StepSpec, ...]
    mode: str
    retry: int | None = None
    rollback_retry: int | None = None
    strict: bool = False


attempts_st = st.none() | st.integers(min_value=1, max_value=4)


@st.composite
def phase_specs(draw: st.DrawFn, finals: tuple[str, ...]) -> PhaseSpec:
    """Scripts: up to 3 retry requests or Flaky failures, then a final behaviour.

    Three scripts in four are healthy (retry requests, then success), so that long
    queues often run to the end.
    """
    attempts = draw(st.none() | attempts_st)  # mostly no policy of the step's own
    if draw(st.sampled_from([True, True, True, False])):
        return PhaseSpec(prelude=("retry",) * draw(st.integers(0, 2)), attempts=attempts)
    prelude = draw(st.lists(st.sampled_from(["retry", "flaky"]), max_size=3))
    return PhaseSpec(prelude=tuple(prelude), final=draw(st.sampled_from(finals)), attempts=attempts)


step_specs = st.builds(
    StepSpec,
    execute=phase_specs(("ok", "ok", "flaky", "boom", "halt")),
    rollback=phase_specs(("ok", "flaky", "boom", "halt")),
    result=st.none() | st.integers() | st.text(max_size=3),
)

queue_specs = st.builds(
    QueueSpec,
    steps=st.lists(step_specs, max_size=8).map(tuple),
    mode=st.sampled_from(MODES),
    retry=attempts_st,
    rollback_retry=attempts_st,
    strict=st.booleans(),
)


# -- the actions ------------------------------------------------------------------


class Script:
    """The exception objects successive calls raise (None: return)."""

    def __init__(self, spec: PhaseSpec, what: str) -> None:
        def make(kind: str, n: str) -> BaseException | None:
            if kind == "ok":
                return None
            if kind == "retry":
                return ActionRetryException(ms_backoff=0)
            return {"flaky": Flaky, "boom": Boom, "halt": Halt}[kind](f"{what} {n}")

        self.prelude = [make(kind, f"call {n}") for n, kind in enumerate(spec.prelude, 1)]
        # Every call after the prelude raises this very object (or returns).
        self.final = make(spec.final, "final")

    def error(self, call: int) -> BaseException | None:
        """What call number ``call`` (from 1) raises, or None."""
        return self.prelude[call - 1] if call <= len(self.prelude) else self.final


class Scripted:
    """An action that follows its scripts and records its calls in ``log``."""

    def __init__(self, index: int, spec: StepSpec, log: list[Call]) -> None:
        self.index = index
        self.log = log
        self.result = spec.result
        self.execute_script = Script(spec.execute, f"execute of step {index}")
        self.rollback_script = Script(spec.rollback, f"rollback of step {index}")
        self.execute_calls = 0
        self.rollback_calls = 0

    def execute(self) -> object:
        self.log.append((self.index, "execute"))
        self.execute_calls += 1
        error = self.execute_script.error(self.execute_calls)
        if error is not None:
            raise error
        return self.result

    def rollback(self) -> None:
        self.log.append((self.index, "rollback"))
        self.rollback_calls += 1
        error = self.rollback_script.error(self.rollback_calls)
        if error is not None:
            raise error


def policy(attempts: int | None) -> RetryPolicy | None:
    """A policy retrying Flaky for ``attempts`` calls in all, waiting nothing."""
    if attempts is None:
        return None
    return RetryPolicy(on=Flaky, attempts=attempts, wait_initial=0, wait_jitter=0, wait_max=0)


def build(
    spec: QueueSpec, log: list[Call], queue_cls: type = ActionQueue
) -> tuple[ActionQueue, list[Scripted]]:
    """The queue ``spec`` describes, and its actions."""
    queue = queue_cls(
        retry=policy(spec.retry),
        rollback_retry=policy(spec.rollback_retry),
        strict=spec.strict,
    )
    actions = [Scripted(i, step, log) for i, step in enumerate(spec.steps)]
    for action, step in zip(actions, spec.steps, strict=True):
        queue.add(
            action,
            retry=policy(step.execute.attempts),
            rollback_retry=policy(step.rollback.attempts),
        )
    return queue, actions  # type: ignore[return-value]  # or a BlockingAsyncQueue


# -- the model --------------------------------------------------------------------


def model_calls(
    script: Script, attempts: int | None, *, halted: bool = False
) -> tuple[int, BaseException | None]:
    """Calls one method gets, and the exception it finally fails with (or None).

    Without a policy only ``ActionRetryException`` is retried, for as long as it is
    raised (S6); under a policy it and the policy's ``on`` types are retried until
    ``attempts`` calls were made (E5), and the last exception propagates as it is.
    Once a rollback was interrupted (``halted``), the other rollbacks are still
    called, once each: nothing is retried any more.
    """
    call = 0
    while True:
        call += 1
        error = script.error(call)
        if error is None:
            return call, None
        if halted:
            return call, error
        if isinstance(error, ActionRetryException):
            again = attempts is None or call < attempts
        else:
            again = attempts is not None and isinstance(error, Flaky) and call < attempts
        if not again:
            return call, error


@dataclass
class Model:
    """What the queue must do with a spec, phase by phase."""

    spec: QueueSpec
    scripts: list[Scripted]
    execute_log: list[Call] = field(default_factory=list)
    execute_calls: list[int] = field(default_factory=list)
    error: BaseException | None = None
    rollback_log: list[Call] = field(default_factory=list)
    rollback_calls: dict[int, int] = field(default_factory=dict)
    rollback_errors: dict[int, BaseException] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = self.spec
        for i, (step, action) in enumerate(zip(spec.steps, self.scripts, strict=True)):
            attempts = spec.retry if step.execute.attempts is None else step.execute.attempts
            calls, error = model_calls(action.execute_script, attempts)
            self.execute_log += [(i, "execute")] * calls  # S1
            self.execute_calls.append(calls)
            if error is not None:  # S2: the queue stops here
                self.error = error
                break
        # S3, S4: every executed step, the failed one included, latest first.
        for i in reversed(range(self.executed)):
            step = spec.steps[i]
            attempts = (
                spec.rollback_retry if step.rollback.attempts is None else step.rollback.attempts
            )
            halted = any(not isinstance(e, Exception) for e in self.rollback_errors.values())
            calls, error = model_calls(self.scripts[i].rollback_script, attempts, halted=halted)
            self.rollback_log += [(i, "rollback")] * calls
            self.rollback_calls[i] = calls
            if error is not None:  # S5: and on with the earlier steps
                self.rollback_errors[i] = error

    @property
    def executed(self) -> int:
        return len(self.execute_calls)

    @property
    def failures(self) -> list[BaseException]:
        """Rollback failures in the order they happened."""
        return list(self.rollback_errors.values())

    @property
    def rollback_raises(self) -> BaseException | type[RollbackError] | None:
        """What ``rollback()`` raises: a Halt, RollbackError in strict mode, or nothing."""
        for error in self.failures:
            if not isinstance(error, Exception):
                return error  # the first interruption, once every rollback was tried
        if self.spec.strict and self.failures:
            return RollbackError
        return None  # S5: 0.8.2 swallowed rollback failures

    def rows(self, *, rolled_back: bool) -> list[Row]:
        """Per step: status, attempts, result, error, rollback attempts and error."""
        rows: list[Row] = []
        for i, step in enumerate(self.spec.steps):
            if i >= self.executed:
                rows.append((StepStatus.PENDING, 0, None, None, 0, None))
                continue
            failed = self.error is not None and i == self.executed - 1
            error = self.error if failed else None
            result = None if failed else step.result
            if not rolled_back:
                status = StepStatus.FAILED if failed else StepStatus.EXECUTED
                rows.append((status, self.execute_calls[i], result, error, 0, None))
                continue
            rb_error = self.rollback_errors.get(i)
            status = StepStatus.ROLLED_BACK if rb_error is None else StepStatus.ROLLBACK_FAILED
            row = (status, self.execute_calls[i], result, error, self.rollback_calls[i], rb_error)
            rows.append(row)
        return rows

    def status(self, *, rolled_back: bool) -> RunStatus:
        if rolled_back:
            return RunStatus.ROLLBACK_FAILED if self.rollback_errors else RunStatus.ROLLED_BACK
        return RunStatus.FAILED if self.error is not None else RunStatus.COMPLETED


def rows_of(report: RunReport) -> list[Row]:
    return [
        (s.status, s.attempts, s.result, s.error, s.rollback_attempts, s.rollback_error)
        for s in report.steps
    ]


def check_report(model: Model, report: RunReport, *, rolled_back: bool) -> None:
    """The report says what the model says (E4)."""
    assert model.status(rolled_back=rolled_back) == report.status
    assert list(range(len(model.spec.steps))) == [s.index for s in report.steps]
    assert model.rows(rolled_back=rolled_back) == rows_of(report)
    for expected, step in zip(model.rows(rolled_back=rolled_back), report.steps, strict=True):
        assert expected[3] is step.error
        assert expected[5] is step.rollback_error
    assert model.error is report.error


def check_rollback_raised(model: Model, queue: ActionQueue, raised: BaseException | None) -> None:
    """``rollback()`` raised what the model says, if anything (S5, E3, S11)."""
    expected = model.rollback_raises
    if expected is RollbackError:
        assert isinstance(raised, RollbackError)
        assert [id(e) for e in model.failures] == [id(e) for e in raised.exceptions]
        assert model.error is raised.__cause__
        assert queue.report == raised.report
    else:
        assert expected is raised


class Records(logging.Handler):
    """Keeps the ERROR records of the ``actionqueues`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def error_records() -> Iterator[list[logging.LogRecord]]:
    handler = Records()
    logger = logging.getLogger("actionqueues")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


# -- the tests --------------------------------------------------------------------


def drive(spec: QueueSpec, queue_cls: type = ActionQueue) -> None:
    """Build the queue, drive it as ``spec.mode`` says, and check it against the model."""
    log: list[Call] = []
    queue, actions = build(spec, log, queue_cls)
    model = Model(spec, actions)
    with actionqueues.set_testing(), error_records() as errors:
        if spec.mode == "run":
            drive_run(model, queue, log)
        else:
            drive_execute_rollback(model, queue, log)
    rolled_back = spec.mode == "rollback_always" or model.error is not None
    # E3: every rollback failure is logged at ERROR, with its exception.
    logged = [r.exc_info[1] if r.exc_info else None for r in errors]
    expected = model.failures if rolled_back else []
    assert [id(e) for e in expected] == [id(e) for e in logged]
    # The actions were called exactly as often as the report says.
    report = queue.report
    assert [s.attempts for s in report.steps] == [a.execute_calls for a in actions]
    assert [s.rollback_attempts for s in report.steps] == [a.rollback_calls for a in actions]


def drive_execute_rollback(model: Model, queue: ActionQueue, log: list[Call]) -> None:
    """0.8.2's way: ``execute()``, then ``rollback()`` on failure (or always, S4)."""
    raised: BaseException | None = None
    try:
        queue.execute()
    except (Exception, Halt) as exc:
        raised = exc
    assert model.error is raised  # S2: the very object
    assert model.execute_log == log  # S1, S2, S6
    check_report(model, queue.report, rolled_back=False)
    if raised is None and model.spec.mode == "rollback_on_failure":
        return
    log.clear()
    raised = None
    try:
        queue.rollback()
    except (Exception, Halt) as exc:
        raised = exc
    assert model.rollback_log == log  # S3, S4, S5, S6
    check_rollback_raised(model, queue, raised)
    check_report(model, queue.report, rolled_back=True)


def drive_run(model: Model, queue: ActionQueue, log: list[Call]) -> None:
    """``run()``: on failure roll back, then re-raise the original exception (E1)."""
    returned: RunReport | None = None
    raised: BaseException | None = None
    try:
        returned = queue.run()
    except (Exception, Halt) as exc:
        raised = exc
    if model.error is None:
        assert raised is None
        assert model.execute_log == log
        assert queue.report == returned
        check_report(model, queue.report, rolled_back=False)
        return
    assert model.execute_log + model.rollback_log == log
    check_report(model, queue.report, rolled_back=True)
    # Rollback's own exception (an interruption, or strict mode's group) wins, else
    # the original exception object propagates.
    if model.rollback_raises is None:
        assert model.error is raised
    else:
        check_rollback_raised(model, queue, raised)
    notes = getattr(model.error, "__notes__", [])
    assert 1 == len(notes)
    assert notes[0].startswith("actionqueues:")
    assert queue.report == actionqueues.report_of(model.error)


@pytest.mark.parametrize("queue_cls", [ActionQueue, BlockingAsyncQueue], ids=["sync", "async"])
@settings(max_examples=200, deadline=None, database=None)
@given(spec=queue_specs)
def test_queue_follows_the_model(queue_cls: type, spec: QueueSpec) -> None:
    """S1-S6, S11, E1, E3-E5: random queues behave as the model says, on both drivers
    (the async one awaiting async actions)."""
    drive(spec, queue_cls)


def test_model_predicts_a_known_run() -> None:
    """The model itself: retries, a give-up, a failed and a retried rollback."""
    spec = QueueSpec(
        steps=(
            StepSpec(rollback=PhaseSpec(prelude=("retry",), final="boom")),
            StepSpec(execute=PhaseSpec(prelude=("retry", "flaky")), result=7),
            StepSpec(execute=PhaseSpec(final="flaky", attempts=2)),
            StepSpec(),
        ),
        mode="run",
        retry=3,
    )
    model = Model(spec, [Scripted(i, s, []) for i, s in enumerate(spec.steps)])
    assert [(0, "execute")] + [(1, "execute")] * 3 + [(2, "execute")] * 2 == model.execute_log
    assert [(2, "rollback"), (1, "rollback")] + [(0, "rollback")] * 2 == model.rollback_log
    assert isinstance(model.error, Flaky)
    assert [0] == list(model.rollback_errors)
    assert model.rollback_raises is None
    drive(spec)
