"""AsyncActionQueue: what only the async queue has (E7), on real event loops.

The contract it shares with ActionQueue (S1-S11) is tested on both drivers in
test_contract.py and test_model.py; here: parallel groups, timeouts, cancellation,
async retries, durable async runs, and bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from durable_actions import AsyncWrite, registry

import actionqueues
from actionqueues import (
    ActionQueue,
    AsyncActionQueue,
    Event,
    FunctionAction,
    InvalidActionError,
    InvalidArgumentError,
    InvalidListenerError,
    InvalidPolicyError,
    LifecycleError,
    RetryPolicy,
    SQLiteJournal,
    StepFailed,
    StepStatus,
)
from actionqueues._writers import writer
from actionqueues.journal import StepChange

Log = list[tuple[str, str]]


class Boom(Exception):
    pass


class Step:
    """An async action: records its calls, waits for ``gate`` (if any) first."""

    def __init__(
        self,
        name: str,
        log: Log,
        *,
        fail: BaseException | None = None,
        delay: float = 0.0,
        gate: Callable[[], Awaitable[Any]] | None = None,
        rollback_gate: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.name, self.log, self.fail, self.delay = name, log, fail, delay
        self.gate, self.rollback_gate = gate, rollback_gate

    async def execute(self) -> str:
        self.log.append((self.name, "execute"))
        if self.gate is not None:
            await self.gate()
        await asyncio.sleep(self.delay)
        self.log.append((self.name, "executed"))
        if self.fail is not None:
            raise self.fail
        return self.name

    async def rollback(self) -> None:
        self.log.append((self.name, "rollback"))
        if self.rollback_gate is not None:
            await self.rollback_gate()
        await asyncio.sleep(0)
        self.log.append((self.name, "rolled back"))


def barrier(parties: int) -> Callable[[], Awaitable[None]]:
    """A gate that opens once ``parties`` callers wait at it: a group whose members
    ran one after another would never get through it (the test times out)."""
    arrived = 0
    everyone = asyncio.Event()

    async def wait() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == parties:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), timeout=5)

    return wait


# -- parallel groups -----------------------------------------------------------------


def test_a_group_starts_together_and_the_queue_waits_for_every_member(log: Log) -> None:
    """Members run concurrently (they meet at a barrier); the next step starts after all."""

    async def main() -> actionqueues.RunReport:
        gate = barrier(3)
        q = AsyncActionQueue()
        q.add(Step("a", log))
        q.add_parallel(*(Step(f"b{i}", log, gate=gate, delay=0.01 * i) for i in range(3)))
        q.add(Step("c", log))
        return await q.run()

    report = asyncio.run(main())
    assert ["a", "b0", "b1", "b2", "c"] == [s.result for s in report.steps]
    assert [None, 1, 1, 1, None] == [s.group for s in report.steps]
    assert ("c", "execute") == log[-2]
    assert {("b0", "executed"), ("b1", "executed"), ("b2", "executed")} == set(log[-5:-2])


def test_a_failed_member_stops_the_queue_and_every_member_rolls_back(log: Log) -> None:
    """The queue waits for the slow member, stops, and rolls back: the later steps first,
    then every member together, then the earlier steps."""
    error = Boom("b1")

    async def main() -> None:
        q = AsyncActionQueue()
        q.add(Step("a", log))
        q.add_parallel(
            Step("b0", log, delay=0.05, rollback_gate=(gate := barrier(3))),
            Step("b1", log, fail=error, rollback_gate=gate),
            Step("b2", log, fail=Boom("b2"), rollback_gate=gate),
        )
        q.add(Step("c", log))
        with pytest.raises(Boom) as caught:
            await q.run()
        assert caught.value is error  # the first failed member's own exception
        report = q.report
        assert ("b0", "executed") in log  # waited for, though b1 had failed
        assert ("c", "execute") not in log
        rollbacks = [name for name, what in log if what == "rollback"]
        assert {"b0", "b1", "b2"} == set(rollbacks[:3])
        assert "a" == rollbacks[3]
        assert [StepStatus.ROLLED_BACK] * 4 + [StepStatus.PENDING] == [
            s.status for s in report.steps
        ]
        assert (2, error) == (report.failed_step.index, report.failed_step.error)  # type: ignore[union-attr]
        assert "b2" == str(report.steps[3].error)  # the other failed member's error
        assert report.summary().startswith("run: step 3 of 5 ('Step') failed with Boom")
        assert "2  Step [2]  rolled_back" in report.format()

    asyncio.run(main())


def test_group_members_fail_each_with_an_event() -> None:
    """StepFailed goes out for every failed member; the members' attempts are theirs."""
    events: list[Event] = []

    async def main() -> None:
        q = AsyncActionQueue(listeners=[events.append])
        q.add_parallel(Step("x", [], fail=Boom("x")), Step("y", []), Step("z", [], fail=Boom("z")))
        with pytest.raises(Boom, match="x"):
            await q.run()

    asyncio.run(main())
    assert [0, 2] == [e.index for e in events if isinstance(e, StepFailed)]


def test_a_group_of_functions_with_options(log: Log, instant: None) -> None:
    """Members may be functions or FunctionActions; options apply to each member; a
    name names them name[1], name[2]."""
    tries: list[int] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise Boom
        return "ok"

    def undo() -> None:
        log.append(("f", "rollback"))

    async def main() -> None:
        q = AsyncActionQueue()
        q.add_parallel(
            flaky,
            FunctionAction(lambda: "sync", undo),
            name="pair",
            retry=RetryPolicy(on=Boom, attempts=3),
        )
        report = await q.run()
        assert ["pair[1]", "pair[2]"] == [s.name for s in report.steps]
        assert [3, 1] == [s.attempts for s in report.steps]
        assert ["ok", "sync"] == [s.result for s in report.steps]
        await q.rollback()
        assert [("f", "rollback")] == log

    asyncio.run(main())


def test_a_report_taken_during_a_group_shows_members_executing() -> None:
    seen: list[list[StepStatus]] = []
    holder: list[AsyncActionQueue] = []

    async def peek() -> None:
        seen.append([s.status for s in holder[0].report.steps])

    async def main() -> None:
        q = AsyncActionQueue()
        holder.append(q)
        q.add_parallel(Step("a", [], gate=peek), Step("b", [], delay=0.02))
        await q.run()

    asyncio.run(main())
    assert [[StepStatus.EXECUTING, StepStatus.EXECUTING]] == seen


# -- timeouts -------------------------------------------------------------------------


def test_a_step_over_its_timeout_fails_counts_as_executed_and_rolls_back(log: Log) -> None:
    async def main() -> None:
        q = AsyncActionQueue(timeout=5)
        q.add(Step("a", log))
        q.add(Step("slow", log, delay=10), timeout=0.02)
        q.add(Step("c", log))
        with pytest.raises(TimeoutError, match=r"step 2 \('Step'\) took longer than its timeout"):
            await q.run()
        assert [("slow", "rollback"), ("slow", "rolled back"), ("a", "rollback")] == log[3:6]
        assert StepStatus.ROLLED_BACK == q.report.steps[1].status

    asyncio.run(main())


def test_a_timed_out_step_is_retried_when_its_policy_says_so(instant: None) -> None:
    calls: list[int] = []

    async def slow_then_quick() -> str:
        calls.append(1)
        await asyncio.sleep(10 if len(calls) < 3 else 0)
        return "done"

    async def main() -> None:
        q = AsyncActionQueue(timeout=0.02, retry=RetryPolicy(on=TimeoutError, attempts=5))
        q.add(slow_then_quick)
        report = await q.run()
        assert (3, "done") == (report.steps[0].attempts, report.steps[0].result)

    asyncio.run(main())


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "1"])
def test_bad_timeouts_are_refused(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="a timeout is a number of seconds"):
        AsyncActionQueue(timeout=bad)  # type: ignore[arg-type]
    q = AsyncActionQueue()
    with pytest.raises(InvalidArgumentError, match="a timeout is a number of seconds"):
        q.add(Step("a", []), timeout=bad)  # type: ignore[arg-type]
    assert 0 == len(q.report.steps)


def test_the_sync_queue_refuses_timeouts() -> None:
    with pytest.raises(InvalidArgumentError, match="Timeouts are for AsyncActionQueue"):
        ActionQueue(timeout=1)  # type: ignore[call-arg]
    with pytest.raises(InvalidArgumentError, match="Timeouts are for AsyncActionQueue"):
        ActionQueue().add(lambda: None, timeout=1)


# -- cancellation ---------------------------------------------------------------------


def test_cancelling_run_mid_step_rolls_back_shielded_then_propagates(log: Log) -> None:
    """The cancelled step counts as executed; the rollback completes even when the task
    is cancelled again during it; then CancelledError propagates."""
    rolling = asyncio.Event()

    async def slow_rollback() -> None:
        rolling.set()
        await asyncio.sleep(0.05)

    async def main() -> None:
        q = AsyncActionQueue(name="c")
        q.add(Step("a", log, rollback_gate=slow_rollback))
        q.add(Step("b", log, delay=10))
        task = asyncio.ensure_future(q.run())
        await asyncio.sleep(0.02)
        task.cancel()
        await rolling.wait()
        task.cancel()  # again, during the rollback: it still completes
        with pytest.raises(asyncio.CancelledError):
            await task
        report = q.report
        assert report.cancelled
        assert [StepStatus.ROLLED_BACK] * 2 == [s.status for s in report.steps]
        assert "run 'c': step 2 of 2 ('Step') was cancelled (CancelledError)" in report.summary()
        assert ("a", "rolled back") == log[-1]

    asyncio.run(main())


def test_a_timeout_around_run_becomes_timeout_error_after_the_rollback(log: Log) -> None:
    async def main() -> None:
        q = AsyncActionQueue()
        q.add(Step("a", log))
        q.add(Step("b", log, delay=10))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await q.run()
        assert ("a", "rolled back") == log[-1]
        assert q.report.cancelled

    asyncio.run(main())


def test_cancelling_a_group_cancels_its_members_and_rolls_them_back(log: Log) -> None:
    async def main() -> None:
        q = AsyncActionQueue()
        q.add_parallel(Step("x", log, delay=10), Step("y", log, delay=10))
        task = asyncio.ensure_future(q.run())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert {"x", "y"} == {name for name, what in log if what == "rolled back"}
        assert q.report.cancelled

    asyncio.run(main())


def test_keyboard_interrupt_in_the_sync_queue_rolls_back_and_says_cancelled(log: Log) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    q = ActionQueue()
    q.add(lambda: log.append(("a", "execute")), lambda: log.append(("a", "rollback")))
    q.add(interrupted)
    with pytest.raises(KeyboardInterrupt):
        q.run()
    assert ("a", "rollback") == log[-1]
    assert q.report.cancelled
    assert "was cancelled (KeyboardInterrupt)" in q.report.summary()


# -- retries ---------------------------------------------------------------------------


def test_retries_wait_with_asyncio_sleep_without_blocking_the_loop(log: Log) -> None:
    """While one queue waits to retry, another runs; the waits are the policy's."""
    waits: list[float] = []
    tries: list[int] = []

    async def flaky() -> None:
        tries.append(1)
        log.append(("flaky", "execute"))
        if len(tries) < 3:
            raise Boom

    async def main() -> None:
        q1 = AsyncActionQueue(
            retry=RetryPolicy(on=Boom, wait_initial=0.1, wait_jitter=0, wait_max=0.1),
            listeners=[lambda e: waits.append(e.wait) if hasattr(e, "wait") else None],
        )
        q1.add(flaky)
        q2 = AsyncActionQueue()
        for i in range(3):
            q2.add(Step(f"other{i}", log))
        await asyncio.gather(q1.run(), q2.run())

    asyncio.run(main())
    assert [0.1, 0.1] == waits
    first_retry = log.index(("flaky", "execute"), 1)
    assert ("other2", "executed") in log[:first_retry]  # ran while flaky waited


def test_the_testing_switch_makes_async_waits_instant(slept: list[float]) -> None:
    tries: list[int] = []

    async def flaky() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise Boom

    async def main() -> None:
        q = AsyncActionQueue(retry=RetryPolicy(on=Boom, wait_initial=60))
        q.add(flaky)
        await q.run()

    with actionqueues.set_testing():
        asyncio.run(main())
    assert [0.0, 0.0] == slept
    assert 3 == len(tries)


# -- plain actions, bad input ------------------------------------------------------------


def test_plain_sync_actions_run_in_the_async_queue(log: Log) -> None:
    async def main() -> actionqueues.RunReport:
        q = AsyncActionQueue()
        q.add(lambda: log.append(("plain", "execute")) or "r")
        q.add(Step("async", log))
        return await q.run()

    assert ["r", "async"] == [s.result for s in asyncio.run(main()).steps]


def test_the_sync_queue_refuses_a_coroutine_it_would_never_await() -> None:
    """A plain function returning a coroutine: refused when it returns, the coroutine
    closed (no 'never awaited' warning, which this suite turns into an error)."""

    async def work() -> None:
        pass

    q = ActionQueue()
    q.add(lambda: work())
    with pytest.raises(InvalidActionError, match="returned a coroutine from execute"):
        q.run()
    assert StepStatus.ROLLED_BACK == q.report.steps[0].status


def test_coroutine_functions_where_plain_ones_are_expected_are_refused() -> None:
    async def listener(event: Event) -> None:
        pass

    async def on(exc: BaseException) -> bool:
        return True

    async def encode(action: object) -> object:
        return {}

    with pytest.raises(InvalidListenerError, match="coroutine function"):
        AsyncActionQueue(listeners=[listener])
    with pytest.raises(InvalidPolicyError, match="coroutine function"):
        RetryPolicy(on=on)
    with pytest.raises(InvalidActionError, match="encode must be a plain function"):
        actionqueues.Registry().register("x", encode=encode)(Step)  # type: ignore[arg-type]
    with pytest.raises(InvalidActionError, match="coroutine function"):
        ActionQueue().add(Step("a", []))


def test_bad_groups_are_refused_and_leave_nothing_behind() -> None:
    q = AsyncActionQueue()
    with pytest.raises(InvalidArgumentError, match="no actions"):
        q.add_parallel()
    with pytest.raises(InvalidActionError):
        q.add_parallel(Step("a", []), 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="group's name must be a string"):
        q.add_parallel(Step("a", []), name=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="unknown option"):
        q.add_parallel(Step("a", []), nmae="x")  # type: ignore[call-arg]
    assert 0 == len(q.report.steps)
    asyncio.run(q.run())
    with pytest.raises(LifecycleError):
        q.add_parallel(Step("a", []))


def test_async_reentry_is_refused() -> None:
    seen: list[BaseException] = []
    q = AsyncActionQueue()

    async def reenter() -> None:
        for call in (q.execute, q.rollback):
            try:
                await call()
            except LifecycleError as e:
                seen.append(e)

    q.add(reenter)
    asyncio.run(q.run())
    assert 2 == len(seen)
    assert "AsyncActionQueue" in repr(q)


# -- durable async runs --------------------------------------------------------------------


@pytest.fixture
def sysdb(tmp_path: Path) -> str:
    return str(tmp_path / "system.db")


KEYS: list[str] = []


@registry.register("test.akey")
@dataclasses.dataclass
class Key:
    """Notes its idempotency key."""

    async def execute(self) -> None:
        await asyncio.sleep(0)
        KEYS.append(actionqueues.idempotency_key())

    async def rollback(self) -> None:
        pass


class OffLoop(SQLiteJournal):
    """A real SQLite journal that notes which threads made its writes."""

    writers: set[int]

    def record(self, *args: Any, **kwargs: Any) -> None:
        self.writers.add(threading.get_ident())
        super().record(*args, **kwargs)


def test_a_durable_async_run_writes_off_the_loop_and_is_recorded(
    tmp_path: Path, sysdb: str
) -> None:
    journal = OffLoop(tmp_path / "j.db")
    journal.writers = set()
    keys = KEYS
    keys.clear()

    async def main() -> str:
        q = AsyncActionQueue(journal=journal, registry=registry, name="d")
        q.add(AsyncWrite(sysdb, "a"))
        q.add_parallel(Key(), Key())
        await q.run()
        return q._durable.run_id  # type: ignore[union-attr]

    run_id = asyncio.run(main())
    assert threading.get_ident() not in journal.writers
    row, steps = journal.load(run_id)  # type: ignore[misc]
    assert "completed" == row.status
    assert ["executed"] * 3 == [s.status for s in steps]
    assert [f"{run_id}/1", f"{run_id}/2"] == sorted(keys)  # a key per member
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
        assert [(f"{run_id}/0",)] == db.execute("SELECT key FROM effects").fetchall()
    journal.close()


def test_recover_runs_async_actions_on_a_loop_of_its_own(tmp_path: Path, sysdb: str) -> None:
    """An abandoned async durable run is rolled back by the sync recover()."""
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.2)

    async def abandon() -> None:
        q = AsyncActionQueue(journal=journal, registry=registry)
        q.add(AsyncWrite(sysdb, "a"))
        q.add(AsyncWrite(sysdb, "b"))
        q._begin_execute()
        await q._drive(q._step_started(0, actionqueues.Phase.EXECUTE, 1))
        await q._actions[0].execute()  # type: ignore[misc]
        await q._drive(q._step_succeeded(0, actionqueues.Phase.EXECUTE))
        q._durable.leave()  # type: ignore[union-attr]

    asyncio.run(abandon())
    time.sleep(0.3)
    [result] = actionqueues.recover(journal, registry=registry)
    assert "rolled_back" == result.outcome
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
        assert [] == db.execute("SELECT key FROM effects").fetchall()
        assert 1 == len(db.execute("SELECT key FROM compensations").fetchall())
    journal.close()


def test_a_journal_write_is_finished_even_when_its_task_is_cancelled(
    tmp_path: Path, sysdb: str
) -> None:
    """Cancelled while its "executing" record is being written, the run waits for the
    write, does not call the step, and ends rolled back with every record consistent."""
    journal = SQLiteJournal(tmp_path / "j.db")

    async def main() -> None:
        q = AsyncActionQueue(journal=journal, registry=registry)
        q.add(AsyncWrite(sysdb, "a"))
        q.add(AsyncWrite(sysdb, "b"))
        task = asyncio.ensure_future(q.run())
        for _ in range(200):  # cancel at some point of the run
            await asyncio.sleep(0)
            if len(q._results) == 1:
                task.cancel()
                break
        with contextlib.suppress(asyncio.CancelledError):
            await task
        row, _ = journal.load(q._durable.run_id)  # type: ignore[misc, union-attr]
        assert row.status in ("rolled_back", "completed")
        assert q.report.status.value == row.status

    asyncio.run(main())
    journal.close()


def test_an_unwritable_journal_stops_an_async_run_before_the_side_effect(
    tmp_path: Path, sysdb: str
) -> None:
    """D10 in the async queue: the journal's writer thread gets SQLite's refusal, and
    the step after it never runs; the one before is rolled back."""
    journal = SQLiteJournal(tmp_path / "j.db")

    def refuse() -> None:
        journal._db().execute("PRAGMA query_only = 1")  # the writer thread's connection

    def read_only_after_a(event: Event) -> None:
        if isinstance(event, actionqueues.StepSucceeded):
            writer(journal).submit(refuse).result()

    async def main() -> AsyncActionQueue:
        q = AsyncActionQueue(journal=journal, registry=registry, listeners=[read_only_after_a])
        q.add(AsyncWrite(sysdb, "a"))
        q.add(AsyncWrite(sysdb, "b"))
        q.add_parallel(AsyncWrite(sysdb, "c"), AsyncWrite(sysdb, "d"))
        with pytest.raises(actionqueues.JournalError, match="cannot be written"):
            await q.run()
        return q

    q = asyncio.run(main())
    with contextlib.closing(sqlite3.connect(sysdb)) as db:
        assert [] == db.execute("SELECT value FROM effects").fetchall()
    assert [1, 0, 0, 0] == [s.attempts for s in q.report.steps]
    writer(journal).submit(lambda: journal._db().execute("PRAGMA query_only = 0")).result()
    journal.close()


def test_async_durable_queues_refuse_what_cannot_be_journaled(tmp_path: Path) -> None:
    """D11 in the async queue, for single steps and group members alike."""
    journal = SQLiteJournal(tmp_path / "j.db")
    q = AsyncActionQueue(journal=journal, registry=registry)
    with pytest.raises(InvalidActionError, match="registered name"):
        q.add(Step("unregistered", []))
    with pytest.raises(InvalidActionError, match="registered name"):
        q.add_parallel(Key(), Step("unregistered", []))
    assert 0 == len(q.report.steps)
    journal.close()


def test_recover_inside_a_running_loop_leaves_async_runs_for_a_thread(
    tmp_path: Path, sysdb: str
) -> None:
    """recover() called on the loop's thread would block it: an async run is skipped
    (released, untouched) with the fix in the message; in a thread it is recovered."""
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.2)

    async def main() -> None:
        q = AsyncActionQueue(journal=journal, registry=registry)
        q.add(AsyncWrite(sysdb, "a"))
        q._begin_execute()
        await q._drive(q._step_started(0, actionqueues.Phase.EXECUTE, 1))
        q._durable.leave()  # type: ignore[union-attr]
        del q
        await asyncio.sleep(0.3)
        [skipped] = actionqueues.recover(journal, registry=registry)
        assert "skipped" == skipped.outcome
        assert "asyncio.to_thread(recover, journal)" in (skipped.problem or "")
        [done] = await asyncio.to_thread(actionqueues.recover, journal, registry=registry)
        assert "rolled_back" == done.outcome

    asyncio.run(main())
    journal.close()


# -- regressions found in review ------------------------------------------------------------


class Flaky(SQLiteJournal):
    """A real SQLite journal whose writes can be made to fail or to dawdle."""

    fail_on: tuple[int, str] | None = None  # (step, status) whose write fails
    slow = 0.0

    def record(self, run_id: str, claim: int, changes: Any, *args: Any, **kw: Any) -> None:
        if self.slow:
            time.sleep(self.slow)
        if any((c.index, c.status) == self.fail_on for c in changes):
            msg = f"write refused (test) for {self.fail_on}"
            raise actionqueues.JournalError(msg)
        super().record(run_id, claim, changes, *args, **kw)


@registry.register("test.aio.s")
@dataclasses.dataclass
class S:
    """A durable async step that logs into LOG_S."""

    name: str
    fail: bool = False
    delay: float = 0.0
    rb_fail: bool = False

    async def execute(self) -> str:
        LOG_S.append((self.name, "execute"))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ValueError(f"{self.name} failed")
        return self.name

    async def rollback(self) -> None:
        LOG_S.append((self.name, "rollback"))
        await asyncio.sleep(0)
        if self.rb_fail:
            raise RuntimeError(f"{self.name} rollback failed")


LOG_S: Log = []


@pytest.fixture
def flaky(tmp_path: Path) -> Any:
    LOG_S.clear()
    journal = Flaky(tmp_path / "j.db")
    yield journal
    journal.close()


def calls(what: str) -> list[str]:
    return [name for name, w in LOG_S if w == what]


def test_a_member_whose_record_failed_never_ran_and_is_not_rolled_back(flaky: Any) -> None:
    """S3: if a member's "executing" record cannot be made, the group never starts."""
    flaky.fail_on = (2, "executing")

    async def main() -> None:
        q = AsyncActionQueue(journal=flaky, registry=registry)
        q.add(S("a"))
        q.add_parallel(S("b"), S("c"))
        with pytest.raises(actionqueues.JournalError, match="write refused"):
            await q.run()
        assert ["a"] == calls("execute")
        assert ["a"] == calls("rollback")
        assert ["rolled_back", "pending", "pending"] == [s.status for s in q.report.steps]

    asyncio.run(main())


def test_cancelled_while_a_group_is_being_recorded_nothing_of_it_ran(flaky: Any) -> None:
    async def main() -> None:
        q = AsyncActionQueue(journal=flaky, registry=registry)
        q.add(S("a"))
        q.add_parallel(S("b"), S("c"))
        task = asyncio.ensure_future(q.run())
        while not LOG_S:
            await asyncio.sleep(0)
        flaky.slow = 0.05  # the group's records take their time
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ["a"] == calls("execute") == calls("rollback")

    asyncio.run(main())


def test_a_members_failed_rollback_is_recorded(flaky: Any) -> None:
    async def main() -> None:
        q = AsyncActionQueue(journal=flaky, registry=registry)
        q.add_parallel(S("a", rb_fail=True, delay=0.02), S("b"))
        q.add(S("boom", fail=True))
        with pytest.raises(ValueError, match="boom"):
            await q.run()
        _, steps = flaky.load(q._durable.run_id)  # type: ignore[misc, union-attr]
        assert "rollback_failed" == steps[0].status
        assert "a rollback failed" in (steps[0].rollback_error or "")

    asyncio.run(main())


def test_execute_and_rollback_may_each_run_on_a_loop_of_their_own(flaky: Any) -> None:
    q = AsyncActionQueue(journal=flaky, registry=registry)
    q.add_parallel(S("a"), S("b"))
    q.add(S("boom", fail=True))
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(q.execute())
    asyncio.run(q.rollback())
    assert {"a", "b", "boom"} == set(calls("rollback"))
    assert ["rolled_back"] * 3 == [s.status for s in q.report.steps]


def test_a_closed_journal_does_not_stop_an_async_rollback(flaky: Any) -> None:
    async def main() -> None:
        q = AsyncActionQueue(journal=flaky, registry=registry)
        q.add(S("a"))
        q.add(S("boom", fail=True))
        with pytest.raises(ValueError, match="boom"):
            await q.execute()
        flaky.close()
        await q.rollback()  # logged, not raised: the compensation matters more
        assert ["boom", "a"] == calls("rollback")

    asyncio.run(main())
    with pytest.raises(actionqueues.JournalError, match="closed"):
        writer(flaky)


def test_a_members_executed_record_failing_stops_the_run(flaky: Any) -> None:
    flaky.fail_on = (1, "executed")

    async def main() -> None:
        q = AsyncActionQueue(journal=flaky, registry=registry)
        q.add_parallel(S("a"), S("b"))
        q.add(S("c"))
        with pytest.raises(actionqueues.JournalError, match="write refused"):
            await q.run()
        assert "c" not in calls("execute")
        assert {"a", "b"} == set(calls("rollback"))

    asyncio.run(main())


def test_a_resumed_group_executes_only_its_members_that_had_not(tmp_path: Path) -> None:
    """The journal keeps group membership: recovery resumes a group by executing the
    members not recorded as executed, together, and then the steps after it."""
    LOG_S.clear()
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.2)

    async def abandon() -> None:
        q = AsyncActionQueue(journal=journal, registry=registry, recovery="resume")
        q.add(S("a"))
        q.add_parallel(S("x"), S("y"))
        q.add(S("z"))
        q._begin_execute()
        for i in (0, 1, 2):
            await q._drive(q._step_started(i, actionqueues.Phase.EXECUTE, 1))
        q._results.extend([None, None])
        for i in (0, 1):  # a and x executed; y was executing when the process died
            await q._drive(q._step_succeeded(i, actionqueues.Phase.EXECUTE))
        q._durable.leave()  # type: ignore[union-attr]

    asyncio.run(abandon())
    assert [None, 1, 1, None] == [s.group for s in journal.load(journal.runs()[0].id)[1]]  # type: ignore[index]
    time.sleep(0.3)
    [result] = actionqueues.recover(journal, registry=registry)
    assert "completed" == result.outcome
    assert ["y", "z"] == calls("execute")
    assert ["executed"] * 4 == [s.status for s in result.steps]
    journal.close()


def abandon_a_group_run(journal: SQLiteJournal, executed: int) -> str:
    """Steps a, then the group x, y, all started; the first ``executed`` of them
    returned; then the owner is gone. The run's id."""
    LOG_S.clear()

    async def abandon() -> str:
        q = AsyncActionQueue(journal=journal, registry=registry)
        q.add(S("a"))
        q.add_parallel(S("x"), S("y"))
        q._begin_execute()
        for i in (0, 1, 2):
            await q._drive(q._step_started(i, actionqueues.Phase.EXECUTE, 1))
        q._results.extend([None] * executed)
        for i in range(executed):
            await q._drive(q._step_succeeded(i, actionqueues.Phase.EXECUTE))
        q._durable.leave()  # type: ignore[union-attr]
        return q._durable.run_id  # type: ignore[union-attr]

    return asyncio.run(abandon())


def test_recovery_rolls_a_group_back_together(tmp_path: Path) -> None:
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.2)
    abandon_a_group_run(journal, executed=0)
    time.sleep(0.3)
    [result] = actionqueues.recover(journal, registry=registry)
    assert "rolled_back" == result.outcome
    assert {"x", "y"} == set(calls("rollback")[:2])
    assert "a" == calls("rollback")[2]
    assert result.report is not None
    assert [None, 1, 1] == [s.group for s in result.report.steps]
    journal.close()


class Awaiting:
    """Plain methods that return coroutines: the async queue awaits them."""

    def __init__(self, name: str) -> None:
        self.name = name

    def execute(self) -> Awaitable[None]:
        return asyncio.sleep(0)

    def rollback(self) -> Awaitable[None]:
        LOG_S.append((self.name, "rollback"))
        return asyncio.sleep(0)


registry.register("test.aio.awaiting", Awaiting)


def test_recovery_runs_an_async_queues_run_on_a_loop_even_with_plain_methods(
    tmp_path: Path,
) -> None:
    LOG_S.clear()
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.2)

    async def abandon() -> None:
        q = AsyncActionQueue(journal=journal, registry=registry)
        q.add(Awaiting("y"))
        q._begin_execute()
        await q._drive(q._step_started(0, actionqueues.Phase.EXECUTE, 1))
        q._durable.leave()  # type: ignore[union-attr]

    asyncio.run(abandon())
    assert journal.runs()[0].mode == "rollback:async"
    time.sleep(0.3)
    [result] = actionqueues.recover(journal, registry=registry)
    assert "rolled_back" == result.outcome
    assert ["y"] == calls("rollback")
    journal.close()


def test_a_members_own_error_stays_on_its_report_when_the_group_is_cancelled() -> None:
    async def fails() -> None:
        raise ValueError("the real failure")

    async def main() -> None:
        q = AsyncActionQueue()
        q.add_parallel(fails, Step("slow", [], delay=10))
        task = asyncio.ensure_future(q.run())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert isinstance(q.report.steps[0].error, ValueError)
        assert isinstance(q.report.steps[1].error, asyncio.CancelledError)

    asyncio.run(main())


def test_reports_around_a_group() -> None:
    seen: dict[str, list[str]] = {}
    holder: list[AsyncActionQueue] = []

    def peek(label: str) -> Callable[[], None]:
        def look() -> None:
            seen[label] = [s.status.value for s in holder[0].report.steps]

        return look

    async def main() -> None:
        q = AsyncActionQueue()
        holder.append(q)
        q.add(lambda: None, peek("rollback of step 1"))
        q.add_parallel(lambda: None, lambda: None)
        q.add(peek("step 4"))
        q.add(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            await q.run()
        assert q.report.summary().endswith("rolled back 5 steps")

    asyncio.run(main())
    assert ["executed", "executed", "executed", "executing", "pending"] == seen["step 4"]
    assert ["rolling_back"] + ["rolled_back"] * 4 == seen["rollback of step 1"]


def test_an_interrupt_raised_by_a_rollback_reaches_runs_caller() -> None:
    async def boom() -> None:
        raise ValueError

    def bad_undo() -> None:
        raise SystemExit(3)

    caught: list[BaseException] = []

    async def main() -> None:
        q = AsyncActionQueue()
        q.add(lambda: None, bad_undo)
        q.add(boom)
        try:
            await q.run()
        except BaseException as exc:
            caught.append(exc)

    asyncio.run(main())
    assert [SystemExit] == [type(e) for e in caught]


def test_a_direct_rollback_cancelled_during_a_write_still_rolls_everything_back(
    flaky: Any,
) -> None:
    async def main() -> None:
        q = AsyncActionQueue(journal=flaky, registry=registry)
        q.add(S("a"))
        q.add(S("b"))
        q.add(S("boom", fail=True))
        with pytest.raises(ValueError, match="boom"):
            await q.execute()
        flaky.slow = 0.05
        task = asyncio.ensure_future(q.rollback())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        flaky.slow = 0.0
        assert ["boom", "b", "a"] == calls("rollback")
        assert "rolled_back" == q.report.status.value

    asyncio.run(main())


def test_cancelled_while_the_failure_is_recorded_the_events_still_go_out(flaky: Any) -> None:
    events: list[Event] = []

    async def main() -> None:
        q = AsyncActionQueue(journal=flaky, registry=registry, listeners=[events.append])
        q.add(S("boom", fail=True, delay=0.01))
        task = asyncio.ensure_future(q.execute())
        while not LOG_S:
            await asyncio.sleep(0)
        flaky.slow = 0.05
        await asyncio.sleep(0.03)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [0] == [e.index for e in events if isinstance(e, StepFailed)]


def test_a_cancellation_wins_over_what_the_shielded_rollback_raised() -> None:
    async def boom() -> None:
        raise ValueError

    async def slow_bad_undo() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("undo failed")

    async def main() -> None:
        q = AsyncActionQueue(strict=True)
        q.add(lambda: None, slow_bad_undo)
        q.add(boom)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await q.run()  # the rollback outlives the timeout, then fails
        assert "rollback_failed" == q.report.status.value

    asyncio.run(main())


def test_the_sync_queues_refusal_of_a_coroutine_is_not_retried() -> None:
    count: list[int] = []

    async def work() -> None:
        pass

    def returns_coroutine() -> Awaitable[None]:
        count.append(1)
        return work()

    q = ActionQueue(retry=RetryPolicy(on=Exception, attempts=4, wait_initial=0))
    q.add(returns_coroutine)
    with pytest.raises(InvalidActionError):
        q.run()
    assert [1] == count


def test_an_actions_own_timeout_error_is_not_taken_for_the_steps_timeout() -> None:
    async def upstream_timed_out() -> None:
        raise TimeoutError("the payment API timed out")

    async def main() -> None:
        q = AsyncActionQueue(timeout=5)
        q.add(upstream_timed_out)
        with pytest.raises(TimeoutError, match="the payment API timed out"):
            await q.run()

    asyncio.run(main())


def test_recovery_does_not_roll_back_again_a_member_already_rolled_back(
    tmp_path: Path,
) -> None:
    """Members roll back in any order: one may be rolled back while another was still
    rolling back when the process died. Recovery undoes only what was not undone."""
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.2)
    run_id = abandon_a_group_run(journal, executed=3)
    changes = [StepChange(1, "rolled_back", None, 1), StepChange(2, "rolling_back")]
    journal.record(run_id, 0, changes, status="rolling_back")  # x undone, y under way
    time.sleep(0.3)
    [result] = actionqueues.recover(journal, registry=registry)
    assert "rolled_back" == result.outcome
    assert ["y", "a"] == calls("rollback")
    journal.close()
