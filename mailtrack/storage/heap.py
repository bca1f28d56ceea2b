"""Keep a long-running process' startup objects out of the cyclic garbage collector's full collections.

A server process holds tens of thousands of objects made at startup
(modules, classes, uvicorn's and SQLite's machinery, the tracker's keys)
that live as long as it does. Every full (generation 2) collection walks
them all, with the interpreter stopped: under load ``mailtrack serve``'s
event loop paused for 18-24 ms at each of about one full collection a
second, with every request in flight waiting through it. That pause was the
serve benchmark's p99 (measured with ``gc.callbacks`` on the server: 8 full
collections in 10 s, 149 ms in all).

:func:`freeze_heap`, called once the process has finished starting (what it
made is what it keeps), collects once and then moves every object alive into
CPython's permanent generation (:func:`gc.freeze`): later collections walk
only what was made since, so a full collection costs a few milliseconds.
Objects frozen are still freed by reference counting; only a cycle among
them that becomes garbage later would be kept, and a process' startup
objects are not such cycles. (``serve --workers`` freezes in each worker once
its server has started, after the fork: the freeze is about pauses, not about
sharing pages between workers.)

Called only in the processes ``mailtrack`` itself owns (``mailtrack
serve``'s server and workers, through ``run(freeze=True)`` of
:mod:`mailtrack.http.loop_server` and :mod:`mailtrack.http.server`, and its
SQLite writer process), never at import nor by default: freezing another
program's heap is that program's choice. In
:mod:`mailtrack.storage` because the writer process (here) uses it too; the
servers above import it from here.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_heap"]


def freeze_heap() -> int:
    """Collect once, then freeze every object alive (see the module's docstring); returns how many are frozen.

    Idempotent in effect: calling it again freezes what was made since. A
    no-op returning 0 where the interpreter has no :func:`gc.freeze` (not
    CPython 3.7+) or the collector is disabled (the caller chose how it
    collects).
    """
    freeze = getattr(gc, "freeze", None)
    if freeze is None or not gc.isenabled():
        return 0
    gc.collect()
    freeze()
    return int(gc.get_freeze_count())
