"""The core's flows alone, driven by a driver written here, with no I/O.

As h11's ``test_state.py`` tests its protocol without sockets, these tests drive
the generators of ``actionqueues._flow`` by hand: each operation a flow yields is
answered by a small driver of the test's own, which records what it was asked to
do. The actions follow a plan drawn by hypothesis (how many times each step's
execute and rollback fail), and a model says what the flow must ask for: the calls
in order, retries up to the policy's attempts (E5), the failed step rolled back with
the others, latest first (S3, S11), every rollback tried (S5), D1's record before
each first call, parallel groups (members interleaved in any order) and resumed
runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from time import perf_counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actionqueues import (
    JournalError,
    RetryPolicy,
    RollbackError,
    StepStarted,
    open_journal,
)
from actionqueues._build import Engine
from actionqueues._ops import BATCH, CALL, GROUP, SLEEP, UNDO, UNDO_BATCH, WRITE, Flow
from actionqueues._registry import Registry

# The plan of each test's actions, by key: how many times each step's execute and
# rollback raise before they return (a number past the policy's attempts: for good).
PLANS: dict[str, dict[str, list[int]]] = {}
LOG: list[tuple[str, int]] = []  # ("execute" | "rollback", step), in call order

registry = Registry()


class Boom(Exception):
    """A planned failure."""


@registry.register("flow.planned")
@dataclasses.dataclass
class Planned:
    """An action that fails as its plan says."""

    plan: str
    index: int

    def _call(self, phase: str) -> int:
        LOG.append((phase, self.index))
        left = PLANS[self.plan][phase]
        if left[self.index] > 0:
            left[self.index] -= 1
            raise Boom(f"{phase} {self.index}")
        return self.index

    def execute(self) -> int:
        return self._call("execute")

    def rollback(self) -> None:
        self._call("rollback")


class Driver:
    """Carries out a flow's operations, as the real drivers do, and records them.

    ``pick`` chooses which member of a parallel group takes its next operation, so
    that members interleave as tasks would."""

    def __init__(self, core: Engine, pick: Any = None) -> None:
        self.core = core
        self.pick = pick
        self.ops: list[tuple[Any, ...]] = []  # what the flows asked for

    def drive(self, flow: Flow) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                value = self.do(op)
            except BaseException as exc:
                error = exc

    def run(self) -> Any:
        """``run()``, as the drivers carry it out."""
        self.core._begin_run()
        try:
            self.drive(self.core._execute_flow())
        except BaseException as exc:
            self.drive(self.core._run_failed(exc))
            raise
        return self.core.report

    def do(self, op: tuple[Any, ...]) -> Any:
        self.ops.append(op)
        core = self.core
        code = op[0]
        if code == CALL:
            return op[3]()
        if code == BATCH:
            for action in op[1]:
                if core._timed:
                    core._starts.append(perf_counter())
                core._results.append(action.execute())
        elif code == UNDO_BATCH:
            for i in range(op[1], -1, -1):
                core._rb_index = i
                if core._timed:
                    core._rb_starts.append(perf_counter())
                core._actions[i].rollback()
        elif code == SLEEP:
            assert 0 <= op[1]
        elif code == WRITE:
            op[1](*op[2])
        elif code == GROUP:
            self.group(op[1])
        elif code == UNDO:
            self.drive(core._rollback_flow())
        else:
            raise AssertionError(op)
        return None

    def group(self, members: list[Flow]) -> None:
        """Advance the members one operation at a time, in the order ``pick`` says;
        a member never raises."""
        pending: list[tuple[Flow, Any, BaseException | None]] = [(m, None, None) for m in members]
        while pending:
            k = self.pick(len(pending)) if self.pick is not None else 0
            flow, value, error = pending.pop(k)
            try:
                op = flow.send(value) if error is None else flow.throw(error)
            except StopIteration:
                continue
            value, error = None, None
            try:
                value = self.do(op)
            except BaseException as exc:
                error = exc
            pending.insert(k, (flow, value, error))


def _expected_calls(execute: list[int], undo: list[int], attempts: int) -> list[tuple[str, int]]:
    """The model: each step's execute called until it returns or its attempts are
    spent; the first to fail for good stops execution; then every step up to it is
    rolled back, latest first, each until it returns or its attempts are spent."""
    calls: list[tuple[str, int]] = []
    failed = len(execute)
    for i, fails in enumerate(execute):
        calls += [("execute", i)] * min(fails + 1, attempts)
        if fails >= attempts:
            failed = i
            break
    if failed == len(execute):
        return calls
    for i in range(failed, -1, -1):
        calls += [("rollback", i)] * min(undo[i] + 1, attempts)
    return calls


plans = st.integers(0, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
    )
)


def _queue(key: str, execute: list[int], undo: list[int], attempts: int, **kw: Any) -> Engine:
    PLANS[key] = {"execute": list(execute), "rollback": list(undo)}
    policy = RetryPolicy(on=Boom, attempts=attempts, wait_initial=0, wait_jitter=0)
    core = Engine(name="flow", retry=policy, rollback_retry=policy, registry=registry, **kw)
    for i in range(len(execute)):
        core.add(Planned(key, i))
    return core


@settings(max_examples=150, deadline=None)
@given(plan=plans, attempts=st.integers(1, 3), kind=st.sampled_from(["plain", "told", "durable"]))
def test_run_flow_asks_for_the_calls_the_model_says(
    plan: tuple[list[int], list[int]], attempts: int, kind: str
) -> None:
    """E1, E5, S3-S5, S11 and D1 through ``run()``'s flow: the calls are the model's;
    a failed run re-raises the failed step's own exception; with a journal, each
    step's "executing" record is written before its first call."""
    execute, undo = plan
    events: list[object] = []
    journal = open_journal("memory:") if kind == "durable" else None
    extra: dict[str, Any] = {}
    if kind == "told":
        extra["listeners"] = [events.append]
    core = _queue("run", execute, undo, attempts, journal=journal, strict=True, **extra)
    LOG.clear()
    driver = Driver(core)
    expected = _expected_calls(execute, undo, attempts)
    failed = any(fails >= attempts for fails in execute)
    outcome: BaseException | None = None
    try:
        driver.run()
    except BaseException as exc:
        outcome = exc
    assert expected == LOG
    if not failed:
        assert outcome is None
    elif _undo_failed(execute, undo, attempts):  # strict: the failures, caused by it
        assert isinstance(outcome, RollbackError)
        assert f"execute {_first_failed(execute, attempts)}" == str(outcome.__cause__)
    else:  # run() re-raises the step's own exception, noted
        assert isinstance(outcome, Boom)
        assert f"execute {_first_failed(execute, attempts)}" == str(outcome)
        assert any("rolled back" in note for note in outcome.__notes__)
    # With nobody observing, the flow asked for the steps in a row (BATCH).
    batched = any(op[0] == BATCH for op in driver.ops)
    assert batched == (kind == "plain")
    if kind == "durable":
        _check_d1(driver.ops)
        assert journal is not None
        journal.close()
    if kind == "told":
        started = [(e.phase.value, e.index) for e in events if isinstance(e, StepStarted)]
        assert [c for i, c in enumerate(expected) if i == 0 or expected[i - 1] != c] == [
            c for i, c in enumerate(started) if i == 0 or started[i - 1] != c
        ]


def _first_failed(execute: list[int], attempts: int) -> int:
    return next(i for i, f in enumerate(execute) if f >= attempts)


def _undo_failed(execute: list[int], undo: list[int], attempts: int) -> bool:
    failed = _first_failed(execute, attempts)
    return any(u >= attempts for u in undo[: failed + 1])


def _check_d1(ops: list[tuple[Any, ...]]) -> None:
    """Each step's first call follows its "executing" (or "rolling_back") record."""
    recorded: set[tuple[str, int]] = set()
    for op in ops:
        if op[0] == WRITE and op[1].__name__ == "step_started":
            recorded.add(("execute" if op[2][1] == "executing" else "rollback", op[2][0]))
        if op[0] == CALL:
            phase = op[2].value
            assert (phase, op[1]) in recorded, f"{phase} of step {op[1]} called unrecorded"


@settings(max_examples=100, deadline=None)
@given(
    plan=plans,
    attempts=st.integers(1, 2),
    strict=st.booleans(),
)
def test_a_rollback_that_fails_goes_on_and_strict_mode_raises_at_the_end(
    plan: tuple[list[int], list[int]], attempts: int, strict: bool
) -> None:
    """S5, E3: execute(), then rollback() of every step; each rollback is tried; in
    strict mode the failures come out together at the end, as a RollbackError."""
    execute, undo = plan
    execute = [0] * len(execute)  # execution completes: rollback() then undoes all (S4)
    core = _queue("undo", execute, undo, attempts, strict=strict)
    LOG.clear()
    driver = Driver(core)
    driver.drive(core._execute_flow())
    raised: BaseException | None = None
    try:
        driver.drive(core._rollback_flow())
    except BaseException as exc:
        raised = exc
    rollbacks = [i for phase, i in LOG if phase == "rollback"]
    expected = [
        i for i in range(len(execute) - 1, -1, -1) for _ in range(min(undo[i] + 1, attempts))
    ]
    assert expected == rollbacks
    failures = sorted(i for i, u in enumerate(undo) if u >= attempts)
    if strict and failures:
        assert isinstance(raised, RollbackError)
        assert len(failures) == len(raised.exceptions)
    else:
        assert raised is None
    assert failures == sorted(core._rb_errors)


@settings(max_examples=150, deadline=None)
@given(
    before=st.integers(0, 2),
    members=st.lists(st.integers(0, 2), min_size=1, max_size=4),
    after=st.integers(0, 2),
    data=st.data(),
)
def test_a_parallel_group_flow_with_members_interleaved(
    before: int, members: list[int], after: int, data: st.DataObject
) -> None:
    """Groups: every member is recorded executing before any is called (D1); the
    members' operations interleave in any order; when one fails for good, every
    member still runs to its end, the steps after the group are not called, and
    rollback covers every member, after the later steps and before the earlier."""
    attempts = 2
    n = before + len(members) + after
    execute = [0] * before + members + [0] * after
    key = "group"
    PLANS[key] = {"execute": list(execute), "rollback": [0] * n}
    policy = RetryPolicy(on=Boom, attempts=attempts, wait_initial=0, wait_jitter=0)
    journal = open_journal("memory:")
    core = Engine(retry=policy, journal=journal, registry=registry)
    for i in range(before):
        core.add(Planned(key, i))
    core._add_group(tuple(Planned(key, before + k) for k in range(len(members))), {})
    for i in range(before + len(members), n):
        core.add(Planned(key, i))
    LOG.clear()
    driver = Driver(core, pick=lambda size: data.draw(st.integers(0, size - 1)))
    with contextlib.suppress(Boom):
        driver.run()
    group = range(before, before + len(members))
    failed = any(m >= attempts for m in members)
    executes = [i for phase, i in LOG if phase == "execute"]
    # Every member ran, each as often as its plan says; after a failure nothing later.
    for k, i in enumerate(group):
        assert min(members[k] + 1, attempts) == executes.count(i)
    later = range(before + len(members), n)
    assert ([] if failed else list(later)) == [i for i in executes if i in later]
    # Every member's "executing" record precedes the first call of any member.
    first_call = next(k for k, op in enumerate(driver.ops) if op[0] == CALL and op[1] in group)
    recorded = {
        op[2][0]
        for op in driver.ops[:first_call]
        if op[0] == WRITE and op[1].__name__ == "step_started"
    }
    assert set(group) <= recorded
    rollbacks = [i for phase, i in LOG if phase == "rollback"]
    if failed:
        assert sorted(rollbacks[: len(members)]) == list(group)  # the group first
        assert list(range(before - 1, -1, -1)) == rollbacks[len(members) :]
        assert "rolled_back" == journal.load(core._durable.run_id)[0].status  # type: ignore[union-attr, misc]
    else:
        assert [] == rollbacks
    journal.close()


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 6),
    data=st.data(),
)
def test_a_resumed_flow_starts_after_the_steps_done_and_undoes_every_called_one(
    n: int, data: st.DataObject
) -> None:
    """Resume's bookkeeping: a run resumed after its first ``done`` steps executed
    (``called`` of them had execute called) calls the later steps only; when one of
    them fails, rollback covers every called step, those of the crashed process
    included (D5)."""
    done = data.draw(st.integers(0, n - 1))
    called = data.draw(st.integers(done, n))
    fails_at = data.draw(st.none() | st.integers(done, n - 1))
    execute = [0] * n
    if fails_at is not None:
        execute[fails_at] = 9
    core = _queue("resume", execute, [0] * n, 1)
    core._prepare_resume(done, (), called)
    LOG.clear()
    driver = Driver(core)
    try:
        driver.run()
    except Boom:
        assert fails_at is not None
    else:
        assert fails_at is None
    executes = [i for phase, i in LOG if phase == "execute"]
    assert list(range(done, n if fails_at is None else fails_at + 1)) == executes
    rollbacks = [i for phase, i in LOG if phase == "rollback"]
    if fails_at is None:
        assert [] == rollbacks
    else:
        assert list(range(max(fails_at + 1, called) - 1, -1, -1)) == rollbacks


def test_a_journal_failure_before_a_call_stops_the_flow_with_nothing_called() -> None:
    """D10 through the flow: the first step's "executing" record fails; the step is
    never called, and the flow raises the journal's error."""
    core = _queue("d10", [0, 0], [0, 0], 1, journal=open_journal("memory:"))
    LOG.clear()

    class Failing(Driver):
        def do(self, op: tuple[Any, ...]) -> Any:
            if op[0] == WRITE and op[1].__name__ == "step_started":
                raise JournalError("disk full")
            return super().do(op)

    driver = Failing(core)
    with pytest.raises(JournalError, match="disk full"):
        driver.drive(core._execute_flow())
    assert [] == LOG
    assert not any(op[0] == CALL for op in driver.ops)


class _Freed:
    """An action that says when it is freed."""

    def __init__(self, freed: list[str], fails: bool) -> None:
        self.freed, self.fails = freed, fails

    def execute(self) -> None:
        if self.fails:
            raise Boom("execute")

    def rollback(self) -> None:
        pass

    def __del__(self) -> None:
        self.freed.append("freed")


def test_a_failed_queue_is_freed_at_once_not_by_the_garbage_collector() -> None:
    """The queue keeps its run's exception, whose traceback keeps the frames it went
    through: none of the driver's or the flows' frames may keep the queue, nor the
    exception itself, or every failed queue would wait for the garbage collector.
    (``run()``'s exception carries its report, which holds the exception: that
    cycle is E1's; asyncio's tasks keep their exceptions in cycles of their own.)"""
    import gc

    from actionqueues import ActionQueue

    freed: list[str] = []
    gc.disable()
    try:
        queue = ActionQueue()
        queue.add(_Freed(freed, False))
        queue.add(_Freed(freed, True))
        try:
            queue.execute()
        except Boom:
            pass
        else:
            raise AssertionError("the run did not fail")
        queue.rollback()
        del queue
        assert ["freed", "freed"] == freed
    finally:
        gc.enable()


def test_a_step_added_while_the_run_executes_is_run_next() -> None:
    """Designed in for sagas (DESIGN 3b): the observed flow reads the steps as it
    goes, so that a step appended while the run executes is executed next, told and
    retried as any, and rolled back with the others when a later one fails."""
    events: list[object] = []
    key = "grow"
    PLANS[key] = {"execute": [0, 1, 9], "rollback": [0, 0, 0]}
    policy = RetryPolicy(on=Boom, attempts=2, wait_initial=0, wait_jitter=0)
    core = Engine(retry=policy, listeners=[events.append], registry=registry)
    core.add(Planned(key, 0))
    LOG.clear()

    class Growing(Driver):
        def do(self, op: tuple[Any, ...]) -> Any:
            value = super().do(op)
            if op[0] == CALL and op[2].value == "execute" and len(core._actions) < 3:
                core._actions.append(Planned(key, len(core._actions)))  # as a saga would
            return value

    driver = Growing(core)
    with pytest.raises(Boom, match="execute 2"):
        driver.run()
    # Step 1 failed once and was retried; step 2 failed for good; all rolled back.
    assert [
        ("execute", 0),
        ("execute", 1),
        ("execute", 1),
        ("execute", 2),
        ("execute", 2),
        ("rollback", 2),
        ("rollback", 1),
        ("rollback", 0),
    ] == LOG
    assert [0, 1, 2] == [e.index for e in events if isinstance(e, StepStarted) and e.attempt == 1][
        :3
    ]
