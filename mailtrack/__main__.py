"""``python -m mailtrack``: the command line."""

import os
import sys

from mailtrack.cli import main

try:
    sys.exit(main())
except BrokenPipeError:  # e.g. `mailtrack demo | head`: the reader left, nothing is wrong
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
