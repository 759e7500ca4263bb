"""Durable actions' names and states: an explicit registry, and JSON encoding.

A durable queue records each action by a name the user registered and by its state
as JSON, so that another process can rebuild it after a crash. Nothing is imported
or evaluated by name unless it was registered; nothing is unpickled (D8).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from ._action import is_async_callable
from ._errors import InvalidActionError, InvalidArgumentError, StateError

T = TypeVar("T", bound=type)

JSONState = Any  # what json.loads returns: dict, list, str, int, float, bool or None


class _Entry(NamedTuple):
    cls: type
    encode: Callable[[Any], JSONState]
    decode: Callable[[JSONState], Any]


# One encoder for every state, built once: json.dumps() with options builds a new
# JSONEncoder per call, and JSONEncoder.encode() a new C encoder per call (2.2 µs
# against 0.8 µs). It keeps no markers, which would be state shared by every thread
# that writes: a state that refers to itself recurses until RecursionError (reported
# as nested too deep), instead of a ValueError. The same text as json.dumps(state,
# allow_nan=False, separators=(",", ":"), sort_keys=True).
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), sort_keys=True)
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_encode: Callable[[JSONState], str] = _ENCODER.encode  # without the C accelerator
if _C_ENCODER is not None:
    _chunks = _C_ENCODER(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        True,
        False,
        False,
    )

    def _encode_with_c(state: JSONState) -> str:
        return "".join(_chunks(state, 0))

    _encode = _encode_with_c
_FIELDS: dict[type, tuple[str, ...]] = {}

#: The longest run id: ids are keys of the journal's indexes (PostgreSQL's hold at
#: most about 2,700 bytes a row), and are shown and typed by operators.
MAX_RUN_ID = 200


def check_text(text: str, where: str, *, longest: int | None = None) -> None:
    """Text a journal stores (a run id, a name): UTF-8 encodable, and not too long."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        msg = (
            f"{where}={text!r}): the text holds a lone surrogate, which no journal can "
            "store as UTF-8; pass text without one."
        )
        raise InvalidArgumentError(msg) from None
    if longest is not None and len(text) > longest:
        msg = f"{where}=<{len(text)} characters>): at most {longest} characters."
        raise InvalidArgumentError(msg)


def _difference(before: object, after: object, where: str = "the state") -> str | None:
    """Where JSON changes a state (a tuple comes back a list, an int key a string
    key), or None when it comes back equal."""
    if type(before) is tuple:
        return f"{where} is a tuple, which comes back from JSON as a list"
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}, which comes back from JSON as {str(key)!r}"
            found = _difference(value, after.get(key), f"{where}[{key!r}]")
            if found is not None:
                return found
        return None
    if isinstance(before, list) and isinstance(after, list):
        for k, (value, back) in enumerate(zip(before, after, strict=False)):
            found = _difference(value, back, f"{where}[{k}]")
            if found is not None:
                return found
        return None
    if before != after:
        return f"{where} is {before!r}, which comes back from JSON as {after!r}"
    return None


def _default_encode(action: object) -> JSONState:
    if hasattr(action, "to_state"):
        return action.to_state()
    cls = type(action)
    names = _FIELDS.get(cls)
    if names is None and dataclasses.is_dataclass(cls):
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    if names is not None:
        return {name: getattr(action, name) for name in names}
    try:
        return dict(vars(action))
    except TypeError:
        msg = (
            f"{type(action).__qualname__} has no attribute dict to save; give it "
            "to_state() and from_state() methods"
        )
        raise StateError(msg) from None


def _default_decoder(cls: type) -> Callable[[JSONState], Any]:
    def decode(state: JSONState) -> Any:
        from_state = getattr(cls, "from_state", None)
        if from_state is not None:
            return from_state(state)
        if not isinstance(state, dict):
            msg = f"the state of a {cls.__qualname__} must be a JSON object, not {state!r}"
            raise StateError(msg)
        bad = [key for key in state if not key.isidentifier() or key.startswith("__")]
        if bad:
            msg = (
                f"the state of a {cls.__qualname__} has the key(s) {bad!r}, which are no "
                "attribute names an action may have"
            )
            raise StateError(msg)
        action: Any = object.__new__(cls)
        if dataclasses.is_dataclass(cls):
            # A field added since the run was recorded takes its default.
            for field in dataclasses.fields(cls):
                if field.name in state:
                    continue
                if field.default is not dataclasses.MISSING:
                    object.__setattr__(action, field.name, field.default)
                elif field.default_factory is not dataclasses.MISSING:
                    object.__setattr__(action, field.name, field.default_factory())
                else:
                    msg = (
                        f"the state of a {cls.__qualname__} has no {field.name!r}, a field "
                        "without a default: give the field a default, or a from_state()"
                    )
                    raise StateError(msg)
        for key, value in state.items():
            object.__setattr__(action, key, value)  # frozen dataclasses too
        return action

    return decode


class Registry:
    """Names for durable action classes.

    A durable queue refuses, at ``add()``, an action whose class is not registered;
    recovery rebuilds actions only from registered names, and never unpickles. An
    action's state is, by default, its dataclass fields or its attribute dict, as
    JSON; a class can define ``to_state()`` and a classmethod ``from_state(state)``
    instead, or the registration can pass ``encode=`` and ``decode=``.

    Most programs use the default one, :data:`registry`, through :func:`durable`;
    a registry of your own is passed as ``registry=`` to the queue and to
    :func:`recover`.

    .. versionadded:: 1.0
    """

    def __init__(self) -> None:
        self._by_name: dict[str, _Entry] = {}
        self._by_type: dict[type, str] = {}

    def register(
        self,
        name: str,
        cls: type | None = None,
        *,
        encode: Callable[[Any], JSONState] | None = None,
        decode: Callable[[JSONState], Any] | None = None,
    ) -> Any:
        """Register ``cls`` under ``name``; without ``cls``, a class decorator.

        Registering a class again under the same name is allowed; the last
        ``encode`` and ``decode`` given are kept.

        Args:
            name: The name journals store for the class: unique in this registry,
                and stable across processes and releases (recovery looks it up).
            cls: The action class (with ``execute`` and ``rollback``). Left out,
                ``register`` returns a decorator that registers the class it is
                applied to.
            encode: Takes an action and returns its state as JSON data (dicts,
                lists, str, int, float, bool, None); by default ``to_state()`` if
                the class has it, else its dataclass fields or attribute dict.
            decode: Takes that JSON data and returns the action rebuilt; by default
                the class's ``from_state(state)`` if it has one, else an instance
                made without calling ``__init__``, with the state's keys as its
                attributes.

        Returns:
            ``cls``, registered; without ``cls``, the decorator.

        Raises:
            InvalidActionError: ``name`` is empty or not a string; or (when the
                decorator is applied, without ``cls``) ``name`` is taken by another
                class, the class has no ``execute`` and ``rollback``, or
                ``encode``/``decode`` is not a plain function.
        """
        if not isinstance(name, str) or not name:
            msg = f"register({name!r}): the name must be a non-empty string."
            raise InvalidActionError(msg)

        def add(klass: T) -> T:
            if not (
                isinstance(klass, type)
                and callable(getattr(klass, "execute", None))
                and callable(getattr(klass, "rollback", None))
            ):
                msg = (
                    f"register({name!r}) needs a class with execute() and rollback() "
                    f"methods, not {klass!r}."
                )
                raise InvalidActionError(msg)
            for hook, fn in (("encode", encode), ("decode", decode)):
                if fn is not None and (not callable(fn) or is_async_callable(fn)):
                    msg = (
                        f"register({name!r}, {hook}={fn!r}): {hook} must be a plain "
                        "function (not async def): states are encoded as steps run."
                    )
                    raise InvalidActionError(msg)
            taken = self._by_name.get(name)
            if taken is not None and taken.cls is not klass:
                msg = (
                    f"register({name!r}): the name is already registered for "
                    f"{taken.cls.__module__}.{taken.cls.__qualname__}; names must be "
                    "unique and stable, because journals store them."
                )
                raise InvalidActionError(msg)
            self._by_name[name] = _Entry(
                klass, encode or _default_encode, decode or _default_decoder(klass)
            )
            self._by_type[klass] = name
            return klass

        return add if cls is None else add(cls)

    def name_of(self, action: object) -> str | None:
        """The name under which ``action``'s class is registered.

        Args:
            action: An action object.

        Returns:
            The name, or None when its class (exactly that class, not a base class)
            is not registered.
        """
        return self._by_type.get(type(action))

    def names(self) -> list[str]:
        """Every registered name.

        Returns:
            The names, sorted.
        """
        return sorted(self._by_name)

    def encode(self, name: str, action: object, *, exact: bool = False) -> str:
        """``action``'s state as JSON text.

        Args:
            name: The name ``action``'s class is registered under.
            action: The action.
            exact: Also refuse a state that JSON would bring back changed (a tuple as
                a list, an int key as a string): ``add()`` checks it once.

        Returns:
            The state as compact JSON text, keys sorted.

        Raises:
            StateError: ``name`` is not registered, the state is not JSON (a set, an
                object, NaN...), its encoder failed, or (``exact``) it would not come
                back as it is.
        """
        try:
            state = self._by_name[name].encode(action)
        except StateError:
            raise
        except Exception as exc:
            msg = (
                f"The state of the durable action {name!r} ({type(action).__qualname__}) "
                f"could not be taken: {exc!r}."
            )
            raise StateError(msg) from exc
        try:
            text: str = _encode(state)
            changed = _difference(state, json.loads(text)) if exact else None
        except RecursionError:
            msg = (
                f"The state of the durable action {name!r} ({type(action).__qualname__}) "
                "is nested too deep to write as JSON (or holds itself); keep it flatter."
            )
            raise StateError(msg) from None
        except (TypeError, ValueError) as exc:
            msg = (
                f"The state of the durable action {name!r} ({type(action).__qualname__}) "
                f"is not JSON: {exc}. Keep plain data (str, int, float, bool, None, "
                "lists, dicts) on durable actions, or give the class to_state() and "
                "from_state() methods."
            )
            raise StateError(msg) from exc
        if changed is not None:
            msg = (
                f"The state of the durable action {name!r} ({type(action).__qualname__}) "
                f"would not come back as it is after a crash: {changed}. Use lists and "
                "string keys, or give the class to_state() and from_state() methods."
            )
            raise StateError(msg)
        return text

    def decode(self, name: str, text: str) -> object:
        """Rebuild the action registered as ``name`` from its JSON state.

        Args:
            name: The name the action's class is registered under.
            text: The state, as JSON text (what :meth:`encode` returned).

        Returns:
            The rebuilt action.

        Raises:
            KeyError: ``name`` is not registered.
            StateError: The state cannot be read back.
        """
        entry = self._by_name[name]
        try:
            return entry.decode(json.loads(text))
        except StateError:
            raise
        except Exception as exc:
            msg = f"cannot rebuild the durable action {name!r} from its state: {exc!r}"
            raise StateError(msg) from exc


#: The registry durable queues use unless given another.
registry = Registry()


def durable(
    name: str,
    *,
    encode: Callable[[Any], JSONState] | None = None,
    decode: Callable[[JSONState], Any] | None = None,
) -> Callable[[T], T]:
    """Class decorator: register an action class under ``name`` in the default registry.

    Durable queues accept only actions whose class is registered, and recovery
    rebuilds them by that name::

        @actionqueues.durable("create-user")
        @dataclass
        class CreateUser(actionqueues.Action):
            email: str
            user_id: int | None = None

    Args:
        name: The name journals store for the class: unique, and stable across
            processes and releases.
        encode: The state's encoder, in place of the default (see
            :meth:`Registry.register`).
        decode: The state's decoder, in place of the default.

    Returns:
        The decorator, which returns the class unchanged.

    Raises:
        InvalidActionError: ``name`` is empty or not a string; or, when the
            decorator is applied, ``name`` is taken by another class, the class has
            no ``execute`` and ``rollback``, or ``encode``/``decode`` is not a plain
            function.

    .. versionadded:: 1.0
    """
    decorator: Callable[[T], T] = registry.register(name, encode=encode, decode=decode)
    return decorator
