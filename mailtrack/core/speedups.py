"""Which implementation of the hot path runs: the compiled accelerator, or the pure-Python reference.

``mailtrack.core._speedups`` is an optional C extension (``setup.py`` builds it
where a C compiler exists). Each of its functions returns exactly what the
pure-Python function it replaces returns, for every input; the pure modules
stay the reference, and the fallback where the extension is missing.
``MAILTRACK_PURE=1`` in the environment (read once, at import) forces the
pure path, to compare the two or to rule the compiled code out; it is read
here rather than in ``mailtrack.config`` because the core cannot import the
configuration layer and the choice must be made before the first rewrite.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["compiled", "speedups_enabled"]


def _load() -> ModuleType | None:
    """The compiled module, or None when it is missing, fails to load, or ``MAILTRACK_PURE`` is set."""
    if os.environ.get("MAILTRACK_PURE", "") not in ("", "0"):
        return None
    try:
        from mailtrack.core import _speedups
    except ImportError:
        return None
    return _speedups


#: The compiled module the dispatching functions call, or None for the pure path.
#: Tests set it to None to run the pure path in the same process.
compiled: ModuleType | None = _load()


def speedups_enabled() -> bool:
    """True when the compiled fast path runs; False on the pure-Python path (no extension, or ``MAILTRACK_PURE=1``)."""
    return compiled is not None
