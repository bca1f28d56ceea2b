"""Timing one call the same way in every benchmark: the cyclic GC collected before and disabled during it."""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")


def interleaved_order(names: Sequence[_T], repetition: int) -> list[_T]:
    """The order the contenders run in for one repetition: shuffled afresh each time, seeded by ``repetition``.

    Each contender then follows every other about equally often, so each
    inherits the same mix of CPU cache and allocator states from the call
    before it. A rotation by one per repetition (what the benchmarks did
    before) keeps the cyclic order: every contender always followed the same
    one, e.g. mailtrack-signed always ran right after mailtrack, with the
    scanner's code and data still warm, and mailtrack right after the floor,
    itself right after bs4 freed hundreds of MB. The seed keeps runs
    repeatable.
    """
    order = list(names)
    random.Random(repetition).shuffle(order)
    return order


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
