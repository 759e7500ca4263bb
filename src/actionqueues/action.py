"""0.8.2 import path: ``from actionqueues.action import Action``."""

from ._action import Action

__all__ = ["Action"]
