"""One contract for every journal: the Journal API, and durable queues on it.

Each test runs on a MemoryJournal, a SQLiteJournal and a PostgresJournal (a schema of
its own, dropped afterwards). ``opener`` opens a journal on the test's store: on
SQLite and PostgreSQL each call is another object (another owner) over the same
runs; a memory journal has no second object over its runs, so each call there is a
journal of its own, and a test that needs a second owner says what memory does
instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import actionqueues
from actionqueues import (
    ActionQueue,
    AsyncActionQueue,
    JournalError,
    LeaseLostError,
    MemoryJournal,
    Phase,
    Registry,
    SQLiteJournal,
    StepStarted,
    current_step,
    idempotency_key,
    open_journal,
    recover,
)
from actionqueues._durable import DurableRun
from actionqueues.journal import Journal, NewRun, PostgresJournal, StepChange

Opener = Callable[..., Journal]

LEASE = 5.0  # long enough never to run out by itself during a test


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The journal class under test."""
    return str(request.param)


@pytest.fixture
def opener(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Opener]:
    """Opens journals on the test's store (closed at the end of the test)."""
    opened: list[Journal] = []
    if backend == "postgres":
        url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")

    def open_(lease: float = LEASE) -> Journal:
        if backend == "memory":
            journal: Journal = MemoryJournal(lease=lease)
        elif backend == "sqlite":
            journal = SQLiteJournal(tmp_path / "journal.db", lease=lease)
        else:
            journal = PostgresJournal(url, schema=schema, lease=lease)
        opened.append(journal)
        return journal

    yield open_
    for journal in opened:
        journal.close()


@pytest.fixture
def journal(opener: Opener) -> Journal:
    """A fresh journal, leases of LEASE seconds."""
    return opener()


def second_owner(backend: str, journal: Journal, opener: Opener) -> Journal:
    """Another journal over ``journal``'s runs; on memory, which has none, itself."""
    return journal if backend == "memory" else opener()


def new(journal: Journal, run_id: str, steps: int = 2, **fields: object) -> None:
    """Record a new run of ``steps`` steps ("a", "s0", '{"i":0}'...) as a queue's first
    write does: the run inserted, owned under claim 0, its steps pending."""
    run = NewRun(
        name=fields.get("name", "q"),  # type: ignore[arg-type]
        mode=fields.get("mode", "rollback"),  # type: ignore[arg-type]
        steps=[("a", f"s{i}", f'{{"i":{i}}}') for i in range(steps)],
        groups=fields.get("groups", ()),  # type: ignore[arg-type]
    )
    journal.record(run_id, 0, [], new=run)


def row(journal: Journal, run_id: str) -> actionqueues.journal.RunRow:
    loaded = journal.load(run_id)
    assert loaded is not None
    return loaded[0]


def finish(journal: Journal, run_id: str, status: str, claim: int = 0) -> None:
    """Give the run ``status``, and end its lease (as if its owner were gone)."""
    journal.record(run_id, claim, [], status)
    journal.release(run_id)


# -- the Journal API ------------------------------------------------------------------


def test_a_new_run_is_recorded_with_its_steps_pending(journal: Journal) -> None:
    """record(new=...) inserts the run, owned by the journal and leased, its steps pending."""
    new(journal, "r1", name="signup", mode="resume")
    loaded = journal.load("r1")
    assert loaded is not None
    run, steps = loaded
    assert ("r1", "signup", "running", "resume", journal.owner, 0, None, 2) == (
        run.id,
        run.name,
        run.status,
        run.mode,
        run.owner,
        run.claims,
        run.error,
        run.steps,
    )
    assert run.created == run.updated
    assert pytest.approx(LEASE, abs=0.5) == run.lease_until - run.created
    assert pytest.approx(journal.now(), abs=5) == run.created
    assert [
        ("r1", i, "a", f"s{i}", f'{{"i":{i}}}', "pending", 0, 0, None, None, None) for i in (0, 1)
    ] == [(*s[:10], s.group) for s in steps]


def test_rows_hold_plain_values_of_the_same_types(journal: Journal) -> None:
    """Every backend gives back plain str, int and float values (no enum members)."""
    new(journal, "r1", steps=1)
    journal.record("r1", 0, [StepChange(0, actionqueues.StepStatus.EXECUTING, "{}", 1)])
    journal.record("r1", 0, [], actionqueues.RunStatus.FAILED, "E")
    loaded = journal.load("r1")
    assert loaded is not None
    run, [step] = loaded
    assert [str, str, str, str, str, float, int, float, float, str, int] == [type(v) for v in run]
    assert [str, int, str, str, str, str, int, int, type(None), type(None), float] == [
        type(v) for v in step[:11]
    ]
    journal.release("r1")
    assert float is type(row(journal, "r1").lease_until)


def test_parallel_groups_are_recorded(journal: Journal) -> None:
    """NewRun.groups gives each step its group's first index (StepRow.group)."""
    new(journal, "r1", steps=3, groups=[None, 1, 1])
    loaded = journal.load("r1")
    assert loaded is not None
    assert [None, 1, 1] == [s.group for s in loaded[1]]


def test_step_changes_apply_in_order_each_phase_in_its_own_columns(journal: Journal) -> None:
    """Changes apply in order; None leaves a column; a rollback status sets rollback_*."""
    new(journal, "r1")
    journal.record("r1", 0, [StepChange(0, "executing", '{"i":"before"}', 1)])
    journal.record(
        "r1",
        0,
        [
            StepChange(0, "executed", '{"i":"after"}', 3),
            StepChange(1, "executing", None, 1),
            StepChange(1, "failed", None, 2, "RuntimeError('x')"),
        ],
    )
    journal.record(
        "r1",
        0,
        [
            StepChange(1, "rolling_back", '{"i":"undo"}', 1),
            StepChange(1, "rollback_failed", None, 4, "OSError('y')"),
            StepChange(0, "rolling_back", None, 1),
            StepChange(0, "rolled_back", None, None),
        ],
        "rollback_failed",
    )
    loaded = journal.load("r1")
    assert loaded is not None
    assert [
        ("rolled_back", '{"i":"after"}', 3, None, 1, None),
        ("rollback_failed", '{"i":"undo"}', 2, "RuntimeError('x')", 4, "OSError('y')"),
    ] == [
        (s.status, s.state, s.attempts, s.error, s.rollback_attempts, s.rollback_error)
        for s in loaded[1]
    ]
    assert all(s.updated >= loaded[0].created for s in loaded[1])


def test_a_status_write_sets_status_error_updated_and_lease(journal: Journal) -> None:
    """A status write sets updated and the lease; error=None keeps the earlier error."""
    new(journal, "r1")
    created = row(journal, "r1").created
    time.sleep(0.01)
    journal.record("r1", 0, [], "failed", "RuntimeError('boom')")
    failed = row(journal, "r1")
    assert ("failed", "RuntimeError('boom')") == (failed.status, failed.error)
    assert failed.updated > created
    assert pytest.approx(LEASE, abs=0.5) == failed.lease_until - failed.updated
    journal.record("r1", 0, [], "rolled_back")
    assert ("rolled_back", "RuntimeError('boom')") == (
        row(journal, "r1").status,
        row(journal, "r1").error,
    )
    assert created == row(journal, "r1").created


def test_a_run_id_is_unique_even_once_finished(journal: Journal) -> None:
    """A new run with a taken id is a JournalError (not LeaseLostError); the first stays."""
    new(journal, "r1")
    before = journal.load("r1")
    with pytest.raises(JournalError, match="already holds a run with id 'r1'") as caught:
        new(journal, "r1", steps=5)
    assert JournalError is type(caught.value)
    assert before == journal.load("r1")
    finish(journal, "r1", "completed")
    with pytest.raises(JournalError, match="already holds"):
        new(journal, "r1")
    assert 2 == row(journal, "r1").steps


def test_a_write_under_an_old_claim_is_lease_lost_and_writes_nothing(
    backend: str, journal: Journal, opener: Opener
) -> None:
    """Writes under an old claim raise LeaseLostError, writing nothing (memory: one owner)."""
    new(journal, "r1")
    journal.record("r1", 0, [StepChange(0, "executing", '{"i":"x"}', 1)])
    journal.release("r1")
    claimer = second_owner(backend, journal, opener)
    claimed = claimer.claim()
    assert claimed is not None
    assert ("r1", 1, claimer.owner) == (claimed.id, claimed.claims, claimed.owner)
    before = journal.load("r1")
    for change, status in [
        ([StepChange(0, "executed", '{"i":"late"}', 1)], None),
        ([], "completed"),
        ([StepChange(1, "executing", None, 1)], "failed"),
    ]:
        with pytest.raises(LeaseLostError, match="no longer owned"):
            journal.record("r1", 0, change, status)
    assert before == journal.load("r1")
    claimer.record("r1", 1, [StepChange(0, "rolled_back", None, 1)], "rolled_back")
    assert "rolled_back" == row(claimer, "r1").status


def test_a_new_run_under_a_claim_it_cannot_have_is_not_inserted(journal: Journal) -> None:
    """A new run's first write under a claim other than 0 fails whole: no run is left."""
    first = NewRun("q", "rollback", [("a", "s", "{}")])
    with pytest.raises(LeaseLostError):
        journal.record("r1", 1, [StepChange(0, "executing", None, 1)], new=first)
    assert None is journal.load("r1")
    assert [] == journal.runs()


def test_a_write_for_a_run_the_journal_does_not_hold_is_lease_lost(journal: Journal) -> None:
    """A status or step write for an unknown run raises LeaseLostError."""
    with pytest.raises(LeaseLostError):
        journal.record("nope", 0, [], "completed")
    with pytest.raises(LeaseLostError):
        journal.record("nope", 0, [StepChange(0, "executing", None, 1)])
    assert [] == journal.runs()


def test_claim_takes_only_unfinished_runs_whose_lease_expired(journal: Journal) -> None:
    """Live leases and finished runs are never claimed; a claim leases anew, and counts."""
    for run_id, status in [
        ("done1", "completed"),
        ("done2", "rolled_back"),
        ("done3", "rollback_failed"),
    ]:
        new(journal, run_id)
        finish(journal, run_id, status)
    new(journal, "live")
    assert None is journal.claim()
    for run_id, status in [("u1", "running"), ("u2", "failed"), ("u3", "rolling_back")]:
        new(journal, run_id)
        finish(journal, run_id, status)
    claimed = []
    while (got := journal.claim()) is not None:
        claimed.append(got)
    assert ["u1", "u2", "u3"] == [r.id for r in claimed]
    assert [1, 1, 1] == [r.claims for r in claimed]
    for r in claimed:
        assert r == row(journal, r.id)
        assert pytest.approx(journal.now() + LEASE, abs=2) == r.lease_until
    assert 0 == row(journal, "live").claims


def test_claim_goes_in_update_order_skips_excluded_and_starts_after(journal: Journal) -> None:
    """Runs are claimed oldest update first; ``exclude`` and ``after`` pass runs over."""
    for run_id in ("a", "b", "c"):
        new(journal, run_id)
        finish(journal, run_id, "failed")
        time.sleep(0.002)
    a, b, c = (row(journal, i) for i in ("a", "b", "c"))
    assert a.updated < b.updated < c.updated
    first = journal.claim(exclude=["a"])
    assert first is not None
    assert "b" == first.id
    second = journal.claim(after=(b.updated, "b"))
    assert second is not None
    assert "c" == second.id
    assert None is journal.claim(after=(c.updated, "c"))
    assert None is journal.claim(exclude=["a", "b", "c"])
    third = journal.claim()
    assert third is not None
    assert "a" == third.id


def test_two_claimers_never_take_the_same_run(
    backend: str, journal: Journal, opener: Opener
) -> None:
    """Four threads claiming at once take each run once (memory: one object, four threads)."""
    ids = [f"r{i:02d}" for i in range(24)]
    for run_id in ids:
        new(journal, run_id, steps=1)
        journal.release(run_id)
    claimers = [second_owner(backend, journal, opener) for _ in range(4)]
    taken: list[list[tuple[str, str | None, str]]] = [[] for _ in claimers]
    start = threading.Barrier(len(claimers))

    def work(claimer: Journal, into: list[tuple[str, str | None, str]]) -> None:
        start.wait()
        while (got := claimer.claim()) is not None:
            into.append((got.id, got.owner, claimer.owner))

    threads = [threading.Thread(target=work, args=p) for p in zip(claimers, taken, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [claimed for part in taken for claimed in part]
    assert ids == sorted(run_id for run_id, _, _ in everything)
    assert [] == [c for c in everything if c[1] != c[2]]
    assert [1] * len(ids) == [row(journal, i).claims for i in ids]


def test_renew_extends_this_journals_leases(journal: Journal) -> None:
    """renew() leases the runs again from now; an id the journal lacks is ignored."""
    new(journal, "r1")
    first = row(journal, "r1").lease_until
    time.sleep(0.02)
    journal.renew(iter(["r1", "unknown"]))
    assert row(journal, "r1").lease_until > first
    assert pytest.approx(journal.now() + LEASE, abs=2) == row(journal, "r1").lease_until
    assert None is journal.load("unknown")


def test_renew_leaves_a_run_another_journal_claimed(
    backend: str, journal: Journal, opener: Opener
) -> None:
    """renew() leaves a run another owner claimed (memory: one owner, so it renews it)."""
    new(journal, "r1")
    journal.release("r1")
    claimer = second_owner(backend, journal, opener)
    assert claimer.claim() is not None
    claimer.release("r1")
    journal.renew(["r1"])
    expected = 1 if backend != "memory" else 0
    assert expected == len(journal.runs(status="interrupted"))


def test_release_ends_the_lease_and_unclaim_takes_back_the_count(journal: Journal) -> None:
    """release() ends the lease; unclaim takes a claim back (not below 0); claim= fences."""
    new(journal, "r1")
    journal.release("r1", unclaim=True)
    assert (0, 0.0) == (row(journal, "r1").claims, row(journal, "r1").lease_until)
    assert journal.claim() is not None
    journal.release("r1", claim=5)  # not its claim: left alone
    assert None is journal.claim()
    journal.release("r1", claim=1)
    again = journal.claim()
    assert again is not None
    assert 2 == again.claims
    journal.release("r1", unclaim=True)
    assert 1 == row(journal, "r1").claims
    journal.release("r1")
    assert 1 == row(journal, "r1").claims
    assert ["r1"] == [r.id for r in journal.runs(status="interrupted")]


def test_load_of_an_unknown_run_is_none(journal: Journal) -> None:
    """load() of an id the journal does not hold is None."""
    new(journal, "r1")
    assert None is journal.load("r2")


def test_runs_lists_newest_first_with_its_filters(journal: Journal) -> None:
    """runs(): newest first; status (and "interrupted"), name, before and limit filter."""
    for run_id, name in [("r1", "a"), ("r2", "b"), ("r3", "a"), ("r4", "a")]:
        new(journal, run_id, name=name)
        time.sleep(0.002)
    finish(journal, "r1", "completed")
    finish(journal, "r2", "failed")
    journal.record("r3", 0, [], "rolling_back")
    assert ["r4", "r3", "r2", "r1"] == [r.id for r in journal.runs()]
    assert [row(journal, i) for i in ("r4", "r3", "r2", "r1")] == journal.runs()
    assert ["r1"] == [r.id for r in journal.runs(status="completed")]
    assert ["r4"] == [r.id for r in journal.runs(status="running")]
    assert ["r2"] == [r.id for r in journal.runs(status="interrupted")]
    assert ["r4", "r3", "r1"] == [r.id for r in journal.runs(name="a")]
    assert ["r4"] == [r.id for r in journal.runs(name="a", before=row(journal, "r1").updated)]
    assert ["r4", "r3"] == [r.id for r in journal.runs(limit=2)]
    assert [] == journal.runs(limit=0)
    assert [] == journal.runs(name="c")
    journal.release("r4")
    assert ["r4", "r2"] == [r.id for r in journal.runs(status="interrupted")]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"status": "nope"}, "runs\\(status='nope'\\): choose among running"),
        ({"status": "interrupted", "name": 3}, "runs\\(name=3\\)"),
        ({"before": "yesterday"}, "runs\\(before='yesterday'\\)"),
        ({"before": float("nan")}, "runs\\(before=nan\\)"),
        ({"limit": -1}, "runs\\(limit=-1\\)"),
        ({"limit": True}, "runs\\(limit=True\\)"),
    ],
)
def test_runs_refuses_a_bad_filter(
    journal: Journal, filters: dict[str, object], message: str
) -> None:
    """A filter of the wrong kind is a JournalError that says what to pass."""
    with pytest.raises(JournalError, match=message):
        journal.runs(**filters)  # type: ignore[arg-type]


def test_prune_deletes_old_completed_and_rolled_back_runs_by_default(journal: Journal) -> None:
    """prune(): completed and rolled back by default; rollback_failed if named; no others."""
    statuses = ["completed", "rolled_back", "rollback_failed", "running", "failed", "rolling_back"]
    for status in statuses:
        new(journal, status)
        finish(journal, status, status)
    assert 0 == journal.prune(journal.now() - 3600)
    assert 2 == journal.prune(journal.now() + 1)
    assert None is journal.load("completed")
    assert None is journal.load("rolled_back")
    assert 0 == journal.prune(journal.now() + 1)
    assert 1 == journal.prune(journal.now() + 1, statuses=["rollback_failed"])
    assert ["rolling_back", "failed", "running"] == [r.id for r in journal.runs()]
    for status in ("running", "failed", "rolling_back"):
        loaded = journal.load(status)
        assert loaded is not None
        assert 2 == len(loaded[1])


@pytest.mark.parametrize(
    ("before", "statuses", "message"),
    [
        (0.0, ["running"], "only finished runs can be pruned"),
        (0.0, ["completed", "failed"], "only finished runs can be pruned"),
        (0.0, [], "only finished runs can be pruned"),
        (0.0, "completed", "pass a list of statuses"),
        ("last week", None, "prune\\(before='last week'\\)"),
        (float("inf"), None, "prune\\(before=inf\\)"),
    ],
)
def test_prune_refuses_unfinished_statuses_and_bad_times(
    journal: Journal, before: object, statuses: object, message: str
) -> None:
    """prune() refuses to delete an unfinished status, and a time that is not one."""
    new(journal, "r1")
    finish(journal, "r1", "completed")
    with pytest.raises(JournalError, match=message):
        journal.prune(before, statuses=statuses)  # type: ignore[arg-type]
    assert ["r1"] == [r.id for r in journal.runs()]


def test_a_closed_journal_refuses_every_call(journal: Journal) -> None:
    """After close(), writes and reads raise JournalError; closing again is harmless."""
    new(journal, "r1")
    journal.close()
    journal.close()
    calls: list[Callable[[], object]] = [
        lambda: new(journal, "r2"),
        lambda: journal.record("r1", 0, [], "completed"),
        lambda: journal.renew(["r1"]),
        journal.claim,
        lambda: journal.release("r1"),
        lambda: journal.prune(0.0),
        lambda: journal.load("r1"),
        journal.runs,
        lambda: DurableRun(journal, actionqueues.registry, "rollback", "r3").adopt(
            "r3", 1, "running", []
        ),
    ]
    for call in calls:
        with pytest.raises(JournalError, match="closed"):
            call()


def test_now_is_the_clock_of_the_journals_times(journal: Journal) -> None:
    """now() is seconds since the epoch, and the clock a new run's times are read on."""
    before = journal.now()
    new(journal, "r1")
    after = journal.now()
    assert before <= row(journal, "r1").created <= after
    assert pytest.approx(time.time(), abs=5) == journal.now()


def test_a_second_journal_object_sees_the_same_runs_but_memory_has_none(
    backend: str, journal: Journal, opener: Opener
) -> None:
    """Another object over the store sees the runs; another MemoryJournal holds none."""
    new(journal, "r1")
    other = opener()
    assert journal.owner != other.owner
    expected = [] if backend == "memory" else ["r1"]
    assert expected == [r.id for r in other.runs()]


# -- durable queues on the journal ----------------------------------------------------

NAMES = Registry()
EFFECTS: dict[str, str] = {}  # an external system's rows: idempotency key -> value
UNDONE: list[tuple[str, int]] = []  # compensations made: (key, claim)


@NAMES.register("contract.put")
@dataclasses.dataclass
class Put:
    """Puts a row keyed by the step's idempotency key (again: the same row); its
    rollback removes the row by key, whatever execute left on the object."""

    value: str
    fail: bool = False
    key: str | None = None

    def execute(self) -> None:
        self.key = idempotency_key()
        EFFECTS[self.key] = self.value
        if self.fail:
            raise RuntimeError(f"{self.value} failed")

    def rollback(self) -> None:
        step = current_step()
        EFFECTS.pop(step.key, None)
        UNDONE.append((step.key, step.claim))


@NAMES.register("contract.aput")
@dataclasses.dataclass
class APut(Put):
    """Put, with async methods (for the AsyncActionQueue)."""

    async def execute(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        Put.execute(self)

    async def rollback(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        Put.rollback(self)


@pytest.fixture(autouse=True)
def system() -> Iterator[None]:
    """The external system, empty for each test."""
    EFFECTS.clear()
    UNDONE.clear()
    yield
    EFFECTS.clear()
    UNDONE.clear()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which queue runs the durable run: ActionQueue or AsyncActionQueue."""
    return str(request.param)


def queue_of(kind: str, journal: Journal, values: list[str], **options: Any) -> Any:
    """A durable queue of Put (or APut) actions, one per value ("!" at the end: fails)."""
    cls = AsyncActionQueue if kind == "async" else ActionQueue
    queue = cls(journal=journal, registry=NAMES, **options)
    action = APut if kind == "async" else Put
    for value in values:
        queue.add(action(value.rstrip("!"), fail=value.endswith("!")))
    return queue


def call(kind: str, method: Callable[[], object]) -> object:
    """Call a queue's method; the async queue's on an event loop."""
    result = method()
    if kind == "async":
        return asyncio.run(result)  # type: ignore[arg-type]
    return result


def cut_off(kind: str, queue: Any, at: int) -> None:
    """Drive ``queue`` as its process would until it dies in step ``at``'s execute,
    after the side effect and before its record: the steps before ``at`` executed and
    recorded, step ``at`` recorded executing, nothing more. The queue's own driver
    steps make the writes; only the death is staged (the caller drops the queue)."""
    if kind == "async":
        asyncio.run(cut_off_async(queue, at))
        return
    queue._begin_execute()
    for i in range(at + 1):
        queue._drive(queue._step_started(i, Phase.EXECUTE, 1))
        queue._actions[i].execute()
        if i < at:
            queue._results.append(None)
            queue._drive(queue._step_succeeded(i, Phase.EXECUTE))
    assert queue._durable is not None
    queue._durable.leave()


async def cut_off_async(queue: AsyncActionQueue, at: int) -> None:
    """``cut_off()`` of an AsyncActionQueue."""
    queue._begin_execute()
    for i in range(at + 1):
        await queue._drive(queue._step_started(i, Phase.EXECUTE, 1))
        await queue._actions[i].execute()
        if i < at:
            queue._results.append(None)
            await queue._drive(queue._step_succeeded(i, Phase.EXECUTE))
    assert queue._durable is not None
    queue._durable.leave()


def interrupted(journal: Journal, run_id: str) -> None:
    """Wait until the run's lease has run out: its owner renews it no more."""
    deadline = time.monotonic() + 10
    while run_id not in [r.id for r in journal.runs(status="interrupted")]:
        assert time.monotonic() < deadline, f"{run_id} is still leased"
        time.sleep(0.05)


def test_a_durable_run_is_recorded_step_by_step(kind: str, journal: Journal) -> None:
    """A queue's completed run: each step executed with its state after the call."""
    queue = queue_of(kind, journal, ["a", "b"], name="signup", run_id="order-1")
    call(kind, queue.run)
    loaded = journal.load("order-1")
    assert loaded is not None
    run, steps = loaded
    mode = "rollback:async" if kind == "async" else "rollback"
    assert ("signup", "completed", mode, 0) == (run.name, run.status, run.mode, run.claims)
    action = "contract.aput" if kind == "async" else "contract.put"
    assert [
        (action, "executed", f'{{"fail":false,"key":"order-1/{i}","value":"{v}"}}', 1)
        for i, v in enumerate("ab")
    ] == [(s.action, s.status, s.state, s.attempts) for s in steps]
    assert {"order-1/0": "a", "order-1/1": "b"} == EFFECTS


def test_a_failed_run_is_rolled_back_and_recorded(kind: str, journal: Journal) -> None:
    """run() of a failing queue: the failure and each rollback are recorded."""
    queue = queue_of(kind, journal, ["a", "b!", "c"], run_id="r")
    with pytest.raises(RuntimeError, match="b failed"):
        call(kind, queue.run)
    loaded = journal.load("r")
    assert loaded is not None
    run, steps = loaded
    assert ("rolled_back", "RuntimeError('b failed')") == (run.status, run.error)
    assert [("rolled_back", 1, None), ("rolled_back", 1, "RuntimeError('b failed')")] == [
        (s.status, s.rollback_attempts, s.error) for s in steps[:2]
    ]
    assert "pending" == steps[2].status
    assert {} == EFFECTS
    assert [("r/1", 0), ("r/0", 0)] == UNDONE


def test_a_second_run_with_a_taken_id_runs_nothing(kind: str, journal: Journal) -> None:
    """A queue given a run id the journal holds is refused before its first step."""
    call(kind, queue_of(kind, journal, ["a"], run_id="order-1").run)
    again = queue_of(kind, journal, ["b"], run_id="order-1")
    with pytest.raises(JournalError, match="already holds a run with id 'order-1'"):
        call(kind, again.run)
    assert {"order-1/0": "a"} == EFFECTS


def test_an_abandoned_failed_run_is_rolled_back_by_recovery(kind: str, opener: Opener) -> None:
    """A failed run whose queue was dropped without rollback() is rolled back by recovery."""
    journal = opener(lease=0.3)
    queue = queue_of(kind, journal, ["a", "b!"], run_id="r")
    with pytest.raises(RuntimeError):
        call(kind, queue.execute)
    time.sleep(0.4)  # more than a lease: the heartbeat keeps it
    assert [] == recover(journal, registry=NAMES)
    del queue
    gc.collect()
    interrupted(journal, "r")
    [result] = recover(journal, registry=NAMES)
    assert ("r", "rolled_back", None) == (result.run_id, result.outcome, result.problem)
    assert ["rolled_back", "rolled_back"] == [s.status for s in result.steps]
    assert {} == EFFECTS
    assert [("r/1", 1), ("r/0", 1)] == UNDONE
    assert [] == recover(journal, registry=NAMES)


def test_a_run_cut_off_mid_step_is_rolled_back_by_recovery(kind: str, opener: Opener) -> None:
    """D5: a run cut off in a step's execute is rolled back from that step, newest first."""
    journal = opener(lease=0.3)
    queue = queue_of(kind, journal, ["a", "b", "c"], run_id="r")
    cut_off(kind, queue, at=1)
    loaded = journal.load("r")
    assert loaded is not None
    assert ["executed", "executing", "pending"] == [s.status for s in loaded[1]]
    assert '{"fail":false,"key":null,"value":"b"}' == loaded[1][1].state
    del queue
    gc.collect()
    interrupted(journal, "r")
    [result] = recover(journal, registry=NAMES)
    assert "rolled_back" == result.outcome
    assert ["rolled_back", "rolled_back", "pending"] == [s.status for s in result.steps]
    assert {} == EFFECTS
    assert [("r/1", 1), ("r/0", 1)] == UNDONE


def test_a_run_cut_off_mid_step_is_resumed_by_recovery(kind: str, opener: Opener) -> None:
    """D5: recovery="resume" executes the interrupted step again (same key) and goes on."""
    journal = opener(lease=0.3)
    queue = queue_of(kind, journal, ["a", "b", "c"], run_id="r", recovery="resume")
    cut_off(kind, queue, at=1)
    del queue
    gc.collect()
    interrupted(journal, "r")
    [result] = recover(journal, registry=NAMES)
    assert ("completed", None) == (result.outcome, result.problem)
    assert ["executed"] * 3 == [s.status for s in result.steps]
    assert {"r/0": "a", "r/1": "b", "r/2": "c"} == EFFECTS
    assert [] == UNDONE
    assert ("completed", 1) == (row(journal, "r").status, row(journal, "r").claims)


def test_pulling_the_plug_leaves_the_run_to_the_store_but_memory_loses_it(
    backend: str, kind: str, opener: Opener
) -> None:
    """A queue's journal closed mid-run: others recover the run; memory loses it with itself."""
    doomed = opener(lease=0.3)

    def pull_the_plug(event: object) -> None:
        if isinstance(event, StepStarted) and event.index == 1:
            doomed.close()

    queue = queue_of(kind, doomed, ["a", "b"], run_id="r", listeners=[pull_the_plug])
    with pytest.raises(JournalError, match="closed"):
        call(kind, queue.execute)
    assert {"r/0": "a", "r/1": "b"} == EFFECTS
    survivor = opener()
    if backend == "memory":
        assert [] == survivor.runs()
        return
    interrupted(survivor, "r")
    [result] = recover(survivor, registry=NAMES)
    assert ("rolled_back", ["rolled_back", "rolled_back"]) == (
        result.outcome,
        [s.status for s in result.steps],
    )
    assert {} == EFFECTS


def test_the_heartbeat_keeps_a_long_step_owned(opener: Opener) -> None:
    """D7: a step three leases long keeps its run; recovery meanwhile takes nothing."""
    journal = opener(lease=0.3)
    stolen: list[object] = []

    @dataclasses.dataclass
    class Slow:
        def execute(self) -> None:
            time.sleep(1.0)
            stolen.extend(recover(journal, registry=names))

        def rollback(self) -> None:
            pass

    names = Registry()
    names.register("contract.slow", Slow)
    queue = ActionQueue(journal=journal, registry=names, run_id="r")
    queue.add(Slow())
    queue.run()
    assert [] == stolen
    assert "completed" == row(journal, "r").status


def test_a_run_taken_over_mid_step_stops_its_owner_with_lease_lost(
    backend: str, journal: Journal, opener: Opener
) -> None:
    """D7: a run claimed mid-step stops its owner with LeaseLostError (memory: one owner)."""
    claimer = second_owner(backend, journal, opener)

    @dataclasses.dataclass
    class TakenOver:
        def execute(self) -> None:
            run_id = current_step().run_id
            while claimer.claim() is None:  # the owner's heartbeat may renew it meanwhile
                journal.release(run_id)

        def rollback(self) -> None:
            pass

    names = Registry()
    names.register("contract.taken", TakenOver)
    names.register("contract.put", Put)
    queue = ActionQueue(journal=journal, registry=names, run_id="r")
    queue.add(TakenOver())
    queue.add(Put("never"))
    with pytest.raises(LeaseLostError, match="no longer owned"):
        queue.execute()
    assert {} == EFFECTS
    run = row(journal, "r")
    assert ("running", 1, claimer.owner) == (run.status, run.claims, run.owner)


def test_open_journal_opens_each_backend_from_its_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """open_journal() opens the backend; "memory:" is a new, empty journal, never read-only."""
    if backend == "memory":
        url, options = "memory:", {}
    elif backend == "sqlite":
        url, options = f"sqlite:///{tmp_path / 'j.db'}", {}
    else:
        url, options = (
            request.getfixturevalue("pg_url"),
            {"schema": request.getfixturevalue("pg_schema")},
        )
    kinds = {"memory": MemoryJournal, "sqlite": SQLiteJournal, "postgres": PostgresJournal}
    with open_journal(url, lease=2, **options) as first:
        assert (kinds[backend], 2.0) == (type(first), first.lease)
        new(first, "r1")
        with open_journal(url, **options) as second:
            expected = [] if backend == "memory" else ["r1"]
            assert expected == [r.id for r in second.runs()]
        if backend == "memory":
            with pytest.raises(JournalError, match="readonly=True"):
                open_journal(url, readonly=True)
        else:
            with open_journal(url, readonly=True, **options) as reader:
                assert ["r1"] == [r.id for r in reader.runs()]


def test_a_lease_out_of_range_is_refused(opener: Opener) -> None:
    """Every journal refuses a lease below 0.1 s or above a day, before opening."""
    for lease in (0.01, 86401.0, True, "30"):
        with pytest.raises(JournalError, match="lease="):
            opener(lease=lease)


def test_prune_deletes_in_batches_every_run_it_should(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prune() deletes a batch of runs a transaction (so that no other writer waits
    long behind it), until none is left: batches of 3 here, over 8 runs to delete."""
    from actionqueues.journal import _postgres, _sqlite

    monkeypatch.setattr(_sqlite, "PRUNE_BATCH", 3)
    monkeypatch.setattr(_postgres, "PRUNE_BATCH", 3)
    for i in range(8):
        new(journal, f"done{i}")
        finish(journal, f"done{i}", "completed")
    new(journal, "left")
    finish(journal, "left", "rollback_failed")
    new(journal, "live")
    assert 8 == journal.prune(journal.now() + 1)
    assert ["live", "left"] == [r.id for r in journal.runs()]
    assert 0 == journal.prune(journal.now() + 1)


def test_runs_are_listed_through_an_index_not_a_sort(tmp_path: Path) -> None:
    """runs(limit=50) reads the newest runs off the runs_created index (SQLite's plan
    holds no sort of every run): it stays fast as the journal grows."""
    import contextlib
    import sqlite3

    from actionqueues.journal import SQLiteJournal

    with SQLiteJournal(tmp_path / "j.db") as journal:
        new(journal, "r1")
    with contextlib.closing(sqlite3.connect(tmp_path / "j.db")) as db:
        plan = " ".join(
            str(r[-1])
            for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM runs WHERE 1 = 1 "
                "ORDER BY created DESC, id DESC LIMIT 50"
            )
        )
    assert "runs_created" in plan
    assert "TEMP B-TREE" not in plan


# Ids an operator shortens: ASCII, case, a prefix of another, code points past the
# BMP, the last code point, and one just below the surrogates (whose successor skips
# them).
IDS = [
    "a",
    "ab",
    "abc",
    "abd",
    "aB",
    "b",
    "order-10",
    "order-100",
    "order-1000",
    "order-2",
    "é1",
    "é2",
    "\U0001f600x",
    "\U0001f600y",
    "z\U0010ffff",
    "z\U0010ffffa",
    "\ud7ffq",
    "\ue000q",
]


def test_find_ids_looks_prefixes_up_as_startswith_would(journal: Journal) -> None:
    """find_ids(prefix) returns the ids starting with the prefix, in code point
    order, at most ``limit``, on every backend (PostgreSQL whatever its collation)."""
    new = NewRun("q", "rollback", [("a", "s", "{}")])
    for run_id in IDS:
        journal.record(run_id, 0, [StepChange(0, "executing", "{}", 1)], new=new)
    prefixes = {"", "a", "ab", "abc", "aB", "order-1", "order-10", "é", "\U0001f600", "z"}
    prefixes |= {"z\U0010ffff", "\ud7ff", "x", "order-3", "A"}
    for prefix in sorted(prefixes):
        every = sorted(i for i in IDS if i.startswith(prefix))
        assert every == journal.find_ids(prefix, limit=100), prefix
        assert every[:2] == journal.find_ids(prefix), prefix
    for bad, limit in (("a", 0), ("a", True), ("a", 1.5), (None, 2), (b"a", 2), ("\udc80", 2)):
        with pytest.raises(JournalError, match="find_ids"):
            journal.find_ids(bad, limit=limit)  # type: ignore[arg-type]
