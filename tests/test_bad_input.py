"""Bad input gets a clear error, naming the problem and the fix, before anything runs."""

from __future__ import annotations

import functools

import pytest
from _helpers import Step

from actionqueues import (
    Action,
    ActionQueue,
    ActionQueueError,
    InvalidActionError,
    InvalidArgumentError,
    InvalidPolicyError,
    RetryPolicy,
)
from actionqueues._action import callable_name


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
