#!/usr/bin/env python3
"""The example project's manage.py: ``python manage.py check`` and ``python manage.py send_tracked_email``.

Run it with mailtrack importable (installed, or the repository on PYTHONPATH).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
