"""Timing one call the same way in every benchmark: the cyclic GC collected before and disabled during it."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any


def time_call(fn: Callable[[Any], object], docs: Sequence[Any]) -> int:
    """Nanoseconds to run ``fn`` on ``docs`` one after the other, with the cyclic GC off while timing.

    A full collection runs before the first document, then everything that
    survived it is frozen (``gc.freeze``), so the next full collection walks
    only what was made since; between documents only
    generation 0 is collected (with the GC off, it holds exactly the previous
    call's garbage, e.g. bs4's parent/child cycles), outside the timed spans.
    """
    total = 0
    gc.collect()
    # What survives is frozen (moved to the permanent generation): a collection's job here is the previous
    # call's garbage, and walking the interpreter's every object (lxml's and bs4's modules included) before each
    # call evicted the CPU caches the timed call then started from, charging every contender for the harness.
    gc.freeze()
    gc.disable()
    try:
        for doc in docs:
            gc.collect(0)
            start = time.perf_counter_ns()
            fn(doc)
            total += time.perf_counter_ns() - start
    finally:
        gc.enable()
    return total
