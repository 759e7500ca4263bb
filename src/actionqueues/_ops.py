"""The protocol between the core and the drivers: operations.

The run as the core decides it: flows that say, step by step, what to do next.

A flow is a generator. It yields an *operation* (a tuple whose first item is one of
the codes here), and the driver carries it out and sends back what came of it: a
value, or, thrown in at the ``yield``, what it raised. The flow decides everything
else: the order of calls and records (D1-D4), retries (E5), what a failure leads to
(S3-S5, D10), and what the run returns or raises. The drivers
(``_driver_sync.py``, ``_driver_async.py``) hold no rule: each is a loop over one
flow's operations, the way httpx's clients drive one ``auth_flow`` generator.

Operations, and what the driver sends back:

* ``(CALL, index, phase, method, timeout)``: call ``method()``; its result (awaited
  by the async driver, within ``timeout`` seconds when that is not None; refused by
  the sync driver when it is a coroutine, through ``_unawaited``).
* ``(BATCH, actions)``: steps nobody observes, called in a row: for each action,
  its start time appended to ``_starts`` when ``_timed``, then its ``execute()``
  result (as for CALL) appended to ``_results``; None at the end, or the first
  call's exception thrown in (the failed step is ``len(_results)``).
* ``(UNDO_BATCH, first)``: likewise, rollbacks from step ``first`` down to step 0,
  ``_rb_index`` set to each before its call (and its start time appended to
  ``_rb_starts`` when ``_timed``); the failed step is ``_rb_index``.
* ``(SLEEP, seconds)``: wait; None.
* ``(WRITE, function, args)``: a journal write, ``function(*args)``; None. (The
  async driver makes it in a worker thread.)
* ``(GROUP, flows)``: the async queue's parallel group: drive each flow (which never
  raises) in a task of its own, and wait for all; None, or a cancellation thrown in.
* ``(UNDO,)``: run :meth:`rollback` (the async driver: shielded, in a task of its
  own); None, or what it raised thrown in.

A flow's operations carry no rule a driver must know; its return value (through
``StopIteration``) is what the queue's method returns, and its exception what it
raises.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final, TypeAlias

CALL: Final = 0
BATCH: Final = 1
UNDO_BATCH: Final = 2
SLEEP: Final = 3
WRITE: Final = 4
GROUP: Final = 5
UNDO: Final = 6

#: What a flow yields (an operation), is sent (a value), and returns.
Flow: TypeAlias = Generator[tuple[Any, ...], Any, Any]
