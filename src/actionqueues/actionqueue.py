"""0.8.2 import path: ``from actionqueues.actionqueue import ActionQueue``."""

import time  # 0.8.2 code patches actionqueues.actionqueue.time.sleep in its tests

from ._errors import ActionRetryException
from ._lifecycle import AQStateMachine  # 0.8.2's module imported it, so code could too
from ._queue import ActionQueue

__all__ = ["AQStateMachine", "ActionQueue", "ActionRetryException", "time"]
