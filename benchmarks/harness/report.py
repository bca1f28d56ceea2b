"""What every benchmark report starts with: when, how, on what."""

from __future__ import annotations

import datetime
import os
import platform


def header(title: str, command: str, plan_name: str, versions: str) -> list[str]:
    """The report's title and its date, command, Python, machine (with load average) and versions lines."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return [
        f"# {title}",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command}` ({plan_name} run)",
        f"- python: {platform.python_implementation()} {platform.python_version()}",
        f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPU(s)"
        + (f", load average {load[0]:.2f} at the end" if load else ""),
        f"- versions: {versions}",
    ]
