"""Pins the public API's types; checked by mypy --strict, never executed."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import assert_type

import actionqueues
from actionqueues import (
    Action,
    ActionLike,
    ActionQueue,
    ActionRetryException,
    DoublingBackoffExceptionFactory,
    Event,
    FunctionAction,
    LoggingListener,
    RetryPolicy,
    RollbackError,
    RunReport,
    RunStatus,
    StepReport,
    StepStatus,
    StepSucceeded,
)
from actionqueues.actionqueue import ActionQueue as OldActionQueue
from actionqueues.aqstatemachine import AQStateMachine


class Charge(Action):
    def __init__(self) -> None:
        self.charge_id: str | None = None

    def execute(self) -> str:
        self.charge_id = "ch_1"
        return self.charge_id

    def rollback(self) -> None:
        self.charge_id = None


def on_event(event: Event) -> None:
    if isinstance(event, StepSucceeded):
        seconds: float = event.duration
        _ = seconds


def retry_on(exc: Exception) -> bool | float | timedelta:
    return isinstance(exc, OSError)


policy: RetryPolicy = RetryPolicy(on=OSError, attempts=3, timeout=timedelta(seconds=5))
predicate_policy = RetryPolicy(on=retry_on, attempts=None, timeout=None)
tuple_policy = RetryPolicy(on=(OSError, TimeoutError), wait_initial=0.1, wait_max=2.0)
replaced: RetryPolicy = policy.replace(attempts=5)
wait: float = policy.backoff(3)

queue = ActionQueue(
    name="typed",
    retry=policy,
    rollback_retry=tuple_policy,
    listeners=[on_event, LoggingListener(logging.getLogger("x"))],
    strict=True,
    timings=True,
)
queue.add(Charge())
queue.add(lambda: 1, lambda: None, name="fn", retry=predicate_policy)
action_like: ActionLike = Charge()
queue.add(action_like)
queue.add(FunctionAction(lambda: "x", name="named"))
report: RunReport = queue.run()
status: RunStatus = report.status
steps: tuple[StepReport, ...] = report.steps
first: StepStatus = steps[0].status
duration: float | None = steps[0].duration
maybe: RunReport | None = actionqueues.report_of(ValueError())
old = OldActionQueue()
old.add(Charge())
old.execute()
old.rollback()
AQStateMachine().transition_to_add()
factory = DoublingBackoffExceptionFactory(retries=3, ms_backoff_initial=500)
retry_exc = ActionRetryException(ms_backoff=250)
group: type[ExceptionGroup[Exception]] = RollbackError
with actionqueues.set_testing():
    testing: bool = actionqueues.is_testing()
with actionqueues.set_testing(attempts=1, cap=True):
    pass

memory = actionqueues.MemoryJournal(lease=5.0)
durable_queue = ActionQueue(journal=memory, recovery="resume", run_id="typed-1")
recovered: list[actionqueues.Recovered] = actionqueues.recover(memory, limit=10)
assert_type(recovered[0].outcome, str)
assert_type(actionqueues.open_journal("memory:"), actionqueues.journal.Journal)
memory.close()


async def typed_async() -> None:
    """The async queue's API, as mypy --strict sees it."""

    async def work() -> int:
        return 1

    aqueue = actionqueues.AsyncActionQueue(name="typed", timeout=2.0, retry=policy)
    aqueue.add(work, name="w", timeout=1.0)
    aqueue.add(Charge())
    aqueue.add_parallel(work, Charge(), name="group", retry=policy)
    areport: RunReport = await aqueue.run()
    await aqueue.rollback()
    assert_type(areport.cancelled, bool)
    assert_type(areport.steps[0].group, int | None)
