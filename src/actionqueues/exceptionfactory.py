"""0.8.2 import path: ``from actionqueues.exceptionfactory import ...``."""

from ._errors import ActionRetryException
from ._retry import DoublingBackoffExceptionFactory

__all__ = ["ActionRetryException", "DoublingBackoffExceptionFactory"]
