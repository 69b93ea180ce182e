"""``python -m restartbench`` = the ``restartbench`` command."""

import sys

from .cli import main

sys.exit(main())
