"""Bad input gets a clear error, naming the problem and the fix, before anything runs."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import sqlite3
from pathlib import Path

import pytest
from _helpers import Step

from actionqueues import (
    Action,
    ActionQueue,
    ActionQueueError,
    ActionRetryException,
    InvalidActionError,
    InvalidArgumentError,
    InvalidBackoffError,
    InvalidPolicyError,
    JournalError,
    Registry,
    RetryPolicy,
    SQLiteJournal,
    StateError,
    open_journal,
    recover,
)
from actionqueues._action import callable_name
from actionqueues.journal import NewRun


class OnlyExecute:
    def execute(self) -> None:
        pass


class OnlyRollback:
    def rollback(self) -> None:
        pass


class NotCallableRollback:
    rollback = "later"

    def execute(self) -> None:
        pass


@pytest.mark.parametrize(
    ("thing", "missing"),
    [
        (OnlyExecute(), "no callable rollback()"),
        (OnlyRollback(), "no callable execute()"),
        (NotCallableRollback(), "no callable rollback()"),
    ],
)
def test_object_missing_a_method_is_refused(thing: object, missing: str) -> None:
    """add(): an object without callable execute/rollback is a TypeError naming it."""
    q = ActionQueue()
    with pytest.raises(InvalidActionError, match=missing) as caught:
        q.add(thing)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)
    assert type(thing).__qualname__ in str(caught.value)
    assert "subclass actionqueues.Action" in str(caught.value)
    assert 0 == len(q.report.steps)


@pytest.mark.parametrize("thing", [42, "execute", None, [1, 2]])
def test_non_action_non_function_is_refused(thing: object) -> None:
    """add(): something that is neither an action nor a function is refused."""
    with pytest.raises(InvalidActionError, match=r"neither an action .* nor a function"):
        ActionQueue().add(thing)  # type: ignore[arg-type]


def test_a_class_instead_of_an_instance_is_refused() -> None:
    """add(): passing the Action class itself says to instantiate it."""
    with pytest.raises(InvalidActionError, match=r"Pass Action\(\.\.\.\) instead"):
        ActionQueue().add(Action)  # type: ignore[arg-type]


def test_rollback_with_an_action_object_is_refused() -> None:
    """add(): rollback= goes with functions only."""
    with pytest.raises(InvalidActionError, match="brings its own rollback"):
        ActionQueue().add(Action(), lambda: None)


def test_non_callable_rollback_function_is_refused() -> None:
    """add(): a function's rollback must be callable."""
    with pytest.raises(InvalidActionError, match="rollback must be a function"):
        ActionQueue().add(lambda: None, 42)  # type: ignore[arg-type]


def test_coroutine_functions_are_refused_by_the_sync_queue() -> None:
    """add(): async def would never be awaited by ActionQueue; say so."""

    async def charge() -> None:
        pass

    class AsyncAction:
        async def execute(self) -> None:
            pass

        def rollback(self) -> None:
            pass

    for thing in (charge, AsyncAction()):
        with pytest.raises(InvalidActionError, match="coroutine function"):
            ActionQueue().add(thing)  # type: ignore[arg-type]
    with pytest.raises(InvalidActionError, match="coroutine function"):
        ActionQueue().add(lambda: None, charge)


def test_bad_policy_types_are_refused() -> None:
    """Policies must be RetryPolicy objects, on the queue and on a step."""
    with pytest.raises(InvalidPolicyError, match=r"^ActionQueue\(retry=3\): not a RetryPolicy"):
        ActionQueue(retry=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidPolicyError, match=r"ActionQueue\(rollback_retry='x'\): not a"):
        ActionQueue(rollback_retry="x")  # type: ignore[arg-type]
    q = ActionQueue()
    with pytest.raises(InvalidPolicyError, match=r"^add\(retry=\{\}\): not a RetryPolicy"):
        q.add(lambda: None, retry={})  # type: ignore[arg-type]
    with pytest.raises(InvalidPolicyError, match=r"add\(rollback_retry=1\)"):
        q.add(lambda: None, rollback_retry=1)  # type: ignore[arg-type]
    q.add(lambda: None, retry=RetryPolicy(on=ValueError))
    assert 1 == len(q.report.steps)


def test_bad_names_are_refused() -> None:
    """Names must be strings."""
    with pytest.raises(InvalidArgumentError, match=r"ActionQueue\(name=3\): the name must be"):
        ActionQueue(name=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="a step's name must be a string"):
        ActionQueue().add(lambda: None, name=b"x")  # type: ignore[arg-type]


def test_nothing_runs_when_add_is_refused(log: list[tuple[str, str]]) -> None:
    """Bad input is refused at add(), before any action's side effect starts."""
    q = ActionQueue()
    q.add(Step("a", log))
    with pytest.raises(InvalidActionError):
        q.add(OnlyExecute())  # type: ignore[arg-type]
    assert [] == log


def test_instance_attributes_make_an_action() -> None:
    """S9: execute/rollback set on the instance count too (checked every time)."""

    class Holder:
        pass

    calls: list[str] = []
    holder = Holder()
    holder.execute = lambda: calls.append("x")  # type: ignore[attr-defined]
    holder.rollback = lambda: calls.append("undo")  # type: ignore[attr-defined]
    q = ActionQueue()
    q.add(holder)  # type: ignore[arg-type]
    q.run()
    assert ["x"] == calls
    with pytest.raises(InvalidActionError):
        ActionQueue().add(Holder())  # type: ignore[arg-type]


def test_callable_names() -> None:
    """Step names of odd callables stay readable."""

    class Callable:
        def __call__(self) -> None:
            pass

    assert "Callable" == callable_name(Callable())
    assert "print" == callable_name(functools.partial(print, "x"))


def test_unknown_add_option_is_refused() -> None:
    """add(): a misspelt option is a TypeError listing the real ones."""
    with pytest.raises(
        InvalidArgumentError,
        match=r"unknown option.*nmae.*name=, retry=, rollback_retry= and \(Async.*timeout=",
    ):
        ActionQueue().add(lambda: None, nmae="x")  # type: ignore[call-arg]


def test_async_callable_objects_are_refused() -> None:
    """add(): an object whose __call__ is async def is a coroutine function too."""

    class Notify:
        async def __call__(self) -> None:
            pass

    with pytest.raises(InvalidActionError, match="coroutine function"):
        ActionQueue().add(Notify())


def test_every_bad_argument_error_is_an_actionqueue_error() -> None:
    """Bad input errors share ActionQueueError and are TypeError and ValueError."""
    for make in (
        lambda: ActionQueue(name=1),  # type: ignore[arg-type]
        lambda: ActionQueue().add(print, name=1),  # type: ignore[arg-type]
        lambda: ActionQueue().add(print, nmae="x"),  # type: ignore[call-arg]
        lambda: ActionQueue(listeners=print),  # type: ignore[arg-type]
        lambda: ActionQueue().add(42),  # type: ignore[arg-type]
    ):
        with pytest.raises(ActionQueueError) as caught:
            make()
        assert isinstance(caught.value, TypeError)
        assert isinstance(caught.value, ValueError)


# -- durable queues, journals and recovery ------------------------------------------


def _journal_kwargs_cases() -> list[tuple[dict[str, object], str]]:
    return [
        ({"busy_timeout": "x"}, "busy_timeout='x'"),
        ({"busy_timeout": -1}, "busy_timeout=-1"),
        ({"busy_timeout": float("nan")}, "busy_timeout=nan"),
        ({"busy_timeout": True}, "busy_timeout=True"),
        ({"busy_timeout": 3e6}, "busy_timeout=3000000.0"),  # SQLite's milliseconds overflow
        ({"lease": True}, "lease=True"),
        ({"lease": 1e-6}, "lease=1e-06"),
        ({"lease": float("nan")}, "lease=nan"),
        ({"lease": float("inf")}, "lease=inf"),
        ({"lease": "30"}, "lease='30'"),
        ({"readonly": "yes"}, "readonly='yes'"),
        ({"durability": "fsync"}, "durability='fsync'"),
    ]


@pytest.mark.parametrize(("kwargs", "named"), _journal_kwargs_cases())
def test_bad_journal_arguments_are_refused(
    tmp_path: Path, kwargs: dict[str, object], named: str
) -> None:
    """SQLiteJournal(): each bad argument is named, before the file is created."""
    path = tmp_path / "j.db"
    with pytest.raises(JournalError) as caught:
        SQLiteJournal(path, **kwargs)  # type: ignore[arg-type]
    assert named in str(caught.value)
    assert not path.exists()


@pytest.mark.parametrize("where", [":memory:", ""])
def test_a_journal_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """SQLiteJournal(':memory:') is refused (another process could not recover its
    runs), and leaves no file of that name behind."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JournalError, match="a journal is a file"):
        SQLiteJournal(where)
    assert [] == list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://runs.db", "three slashes"),
        ("mysql://db/x", "Unsupported journal URL scheme 'mysql'"),
        ("host=db.example password=hunter2secret dbname=x", "keyword/value connection string"),
        ("dbname=x user=me", "keyword/value connection string"),
        ("target_session_attrs=any password=hunter2secret", "keyword/value connection string"),
        ("x sslpassword=hunter2secret", "keyword/value connection string"),
    ],
)
def test_open_journal_refuses_what_is_neither_url_nor_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    """open_journal(): a wrong URL, or a keyword DSN, says which forms are accepted,
    creates no file, and never echoes a password."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JournalError, match=message) as caught:
        open_journal(url)
    assert "hunter2secret" not in str(caught.value)
    assert "sqlite:///" in str(caught.value)  # the form to use
    assert [] == list(tmp_path.iterdir())


def test_open_journal_refuses_a_non_path() -> None:
    """open_journal(42): neither a URL nor a path."""
    with pytest.raises(JournalError, match="pass a file path"):
        open_journal(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "nope"}, "runs(status='nope')"),
        ({"name": 3}, "runs(name=3)"),
        ({"before": "x"}, "runs(before='x')"),
        ({"before": float("inf")}, "runs(before=inf)"),
        ({"limit": -1}, "runs(limit=-1)"),
        ({"limit": True}, "runs(limit=True)"),
        ({"limit": 2.5}, "runs(limit=2.5)"),
    ],
)
def test_bad_runs_filters_are_refused(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    """Journal.runs(): each bad filter is named (SQLite would compare anything)."""
    with SQLiteJournal(tmp_path / "j.db") as journal, pytest.raises(JournalError) as caught:
        journal.runs(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("before", "statuses"),
    [("abc", None), (None, None), (True, None), (1.0, ["running"]), (1.0, "completed"), (1.0, [])],
)
def test_bad_prune_arguments_delete_nothing(
    tmp_path: Path, before: object, statuses: object
) -> None:
    """Journal.prune(): a time that is not one, or a status that is not finished, is
    refused before anything is deleted (SQLite orders text after every number)."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        journal.record("done", 0, [], status="completed", new=NewRun(None, "rollback", []))
        with pytest.raises(JournalError):
            journal.prune(before, statuses=statuses)  # type: ignore[arg-type]
        assert ["done"] == [r.id for r in journal.runs()]


@pytest.mark.parametrize("flag", ["strict", "timings"])
@pytest.mark.parametrize("value", ["yes", "no", 1, None])
def test_flags_are_booleans(flag: str, value: object) -> None:
    """ActionQueue(strict=, timings=): any truthy string is refused, not taken as True."""
    with pytest.raises(InvalidArgumentError, match=f"ActionQueue\\({flag}="):
        ActionQueue(**{flag: value})  # type: ignore[arg-type]


def test_ms_backoff_true_is_not_a_number_of_milliseconds() -> None:
    """ActionRetryException(ms_backoff=True): refused when raised, not taken as 1 ms."""

    def flaky() -> None:
        raise ActionRetryException(ms_backoff=True)  # type: ignore[arg-type]

    q = ActionQueue()
    q.add(flaky)
    with pytest.raises(InvalidBackoffError, match="ms_backoff=True"):
        q.execute()


@dataclasses.dataclass
class Holder:
    """A durable action whose state is whatever the test puts in it."""

    value: object

    def execute(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class BrokenState(Action):
    def to_state(self) -> object:
        raise AttributeError("no such thing")


def _deep(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


def _itself() -> object:
    value: list[object] = [1]
    value.append(value)
    return value


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (Holder({1: "a"}), "has the key 1, which comes back from JSON as '1'"),
        (Holder((1, 2)), "is a tuple, which comes back from JSON as a list"),
        (Holder({"a": [1, (2,)]}), "state['value']['a'][1] is a tuple"),
        (Holder(_deep(100_000)), "nested too deep"),
        (Holder(_itself()), "(or holds itself)"),
        (BrokenState(), "could not be taken: AttributeError"),
        (Holder(float("nan")), "is not JSON"),
    ],
)
def test_states_that_would_not_survive_a_crash_are_refused_at_add(
    tmp_path: Path, action: object, message: str
) -> None:
    """D11: a state JSON cannot hold as it is (int keys, tuples, too deep), or whose
    encoder raises, is a StateError at add(), before the run starts."""
    names = Registry()
    names.register("holder", Holder)
    names.register("broken", BrokenState)
    with SQLiteJournal(tmp_path / "j.db") as journal:
        q = ActionQueue(journal=journal, registry=names)
        with pytest.raises(StateError) as caught:
            q.add(action)  # type: ignore[arg-type]
        assert message in str(caught.value)
        assert 0 == len(q.report.steps)
        assert [] == journal.runs()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run_id": "a\ud800b"}, "lone surrogate"),
        ({"run_id": "f" * 5000}, "<5000 characters>): at most 200 characters"),
        ({"name": "sign\udcffup"}, "lone surrogate"),
    ],
)
def test_run_ids_and_names_a_journal_cannot_store_are_refused(
    tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    """A run id or name no journal could store is refused when the queue is made,
    not when run() writes it."""
    with (
        SQLiteJournal(tmp_path / "j.db") as journal,
        pytest.raises(InvalidArgumentError, match=re.escape(message)),
    ):
        ActionQueue(journal=journal, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry": 5}, "recover(retry=5)"),
        ({"rollback_retry": "x"}, "recover(rollback_retry='x')"),
        ({"listeners": [42]}, "Listener 42 is not callable"),
        ({"listeners": 42}, "listeners=42"),
        ({"registry": {}}, "recover(registry={})"),
        ({"limit": -1}, "recover(limit=-1)"),
        ({"limit": True}, "recover(limit=True)"),
    ],
)
def test_bad_recover_arguments_claim_nothing(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    """recover(): arguments are checked before the first claim; the run waiting stays
    unclaimed, for a recover() with good ones."""
    with SQLiteJournal(tmp_path / "j.db", lease=0.1) as journal:
        journal.record("r", 0, [], new=NewRun(None, "rollback", []))
        journal.release("r")
        with pytest.raises(InvalidArgumentError) as caught:
            recover(journal, **kwargs)  # type: ignore[arg-type]
        assert message in str(caught.value)
        assert 0 == journal.load("r")[0].claims  # type: ignore[index]
        assert ["rolled_back"] == [r.outcome for r in recover(journal)]


def test_recover_needs_a_journal() -> None:
    """recover('x.db'): a path is not a journal; say how to open one."""
    with pytest.raises(InvalidArgumentError, match=r"open_journal\(path_or_url\)"):
        recover("x.db")  # type: ignore[arg-type]


def test_recover_refuses_a_read_only_journal(tmp_path: Path) -> None:
    """recover() on a journal opened read-only: refused, nothing claimed."""
    SQLiteJournal(tmp_path / "j.db").close()
    with (
        open_journal(tmp_path / "j.db", readonly=True) as journal,
        pytest.raises(JournalError, match="opened read-only"),
    ):
        recover(journal)


def test_a_read_only_open_creates_nothing(tmp_path: Path) -> None:
    """O2: opening to read never creates a file, nor tables in a database that is not
    a journal."""
    with pytest.raises(JournalError, match="no journal at"):
        SQLiteJournal(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    other = tmp_path / "users.db"
    with contextlib.closing(sqlite3.connect(other)) as db, db:
        db.execute("CREATE TABLE users (name TEXT)")
    before = other.read_bytes()
    with pytest.raises(JournalError, match="is not an actionqueues journal"):
        SQLiteJournal(other, readonly=True)
    assert before == other.read_bytes()
