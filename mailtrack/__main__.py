"""``python -m mailtrack``: the command line (:func:`mailtrack.cli.main`)."""

import sys

from mailtrack.cli import main

sys.exit(main())
