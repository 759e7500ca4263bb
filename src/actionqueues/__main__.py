"""``python -m actionqueues``: the same as the ``actionqueues`` command."""

import sys

from .cli import main

sys.exit(main())
