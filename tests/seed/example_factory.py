# The second example of the actionqueues 0.8.2 README, changed only from Python 2's
# `print x` to `print(x)` and `except E, ex:` to `except E as ex:` (without the
# latter it does not parse on Python 3), with the flattened nesting restored.
from actionqueues import action, actionqueue
from actionqueues.exceptionfactory import DoublingBackoffExceptionFactory


class MyFailingAction(action.Action):

 def __init__(self):
  self._run = 1
  self._execute_ex_factory = DoublingBackoffExceptionFactory(
  retries=5,
  ms_backoff_initial=100
  )
  self._rollback_ex_factory = DoublingBackoffExceptionFactory(
  retries=10,
  ms_backoff_initial=100
  )

 def execute(self):
  """Execute an always failing action, but have it retried 5 times."""
  print("Executing action", self._run)
  self._run += 1
  try:
   1 / 0
  except ZeroDivisionError as ex:
   self._execute_ex_factory.raise_exception(original_exception=ex)

 def rollback(self):
  print("Rollback action", self._run)
  self._run += 1
  try:
   1 / 0
  except ZeroDivisionError as ex:
   self._rollback_ex_factory.raise_exception(original_exception=ex)

q = actionqueue.ActionQueue()
q.add(MyFailingAction())

try:
 q.execute()
except:
 print("boom")
