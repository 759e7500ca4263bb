# The first example of the actionqueues 0.8.2 README, changed only from Python 2's
# `print x` to `print(x)`, with the nesting that the stored README text flattened restored.
import random
from actionqueues import actionqueue, action

SUCCEED = 0
RETRY = 1
FAIL = 2

class MyAction(action.Action):

 def __init__(self, id):
  self._id = id
  self._value = 0

 def execute(self):
  """Called if actions before it in the queue complete successfully.

  Raise any exception to indicate failure.
  """
  action = random.choice([SUCCEED, RETRY, FAIL])
  if action == RETRY:
   print(self._id, "Throwing retry exception")
   raise actionqueue.ActionRetryException(ms_backoff=0)
  elif action == FAIL:
   print(self._id, "Throwing failure exception")
   raise Exception()
  else:
   print(self._id, "Executing success action")
   self._value = 1


 def rollback(self):
  """Called in reverse order for all actions queued whose execute
  method was called when the ActionQueue's rollback method is called.
  """
  print(self._id, "Rolling back action")
  if self._value == 1:
   self._value = 0

q = actionqueue.ActionQueue()
q.add(MyAction("a"))
q.add(MyAction("b"))

try:
 q.execute()
except:
 q.rollback()
