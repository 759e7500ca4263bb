"""0.8.2 import path: ``from actionqueues.actionqueue import ActionQueue``."""

import time  # 0.8.2 code patches actionqueues.actionqueue.time.sleep in its tests

from ._errors import ActionRetryException
from ._queue import ActionQueue

__all__ = ["ActionQueue", "ActionRetryException", "time"]
