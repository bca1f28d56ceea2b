"""The compiled scanner against the pure one (issue 13): ``scan`` alone and ``rewrite_html`` end to end.

Run from the repository root, with the extension built (``python setup.py build_ext --inplace``)::

    .venv/bin/python benchmarks/bench_speedups.py           # 60 KB and 500 KB newsletters
    .venv/bin/python benchmarks/bench_speedups.py --quick   # fewer repetitions

Both paths run interleaved in one process (the compiled one switched off by
setting ``mailtrack.core.speedups.compiled`` to None for the pure calls), so
noise on a shared machine hits both alike; the report gives medians, minima
and the pure ÷ compiled ratio. Prints a markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.newsletters import SIZES, make_newsletter  # noqa: E402
from harness.peers import MESSAGE_ID, METADATA, RECIPIENT, make_tracker  # noqa: E402

from mailtrack.core import scanner, speedups  # noqa: E402


def _time(fn: Callable[[], object]) -> int:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        fn()
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    compiled = speedups.compiled
    if compiled is None:
        print("the compiled speedups are off (not built, or MAILTRACK_PURE=1): nothing to compare", file=sys.stderr)
        return 1
    reps = 7 if args.quick else 25
    tracker = make_tracker()

    def rewrite(html: str) -> object:
        return tracker.rewrite_html(html, message_id=MESSAGE_ID, recipient=RECIPIENT, metadata=METADATA)

    print("| input | what | compiled ms (min) | pure ms (min) | pure ÷ compiled (min ÷ min) |")
    print("|---|---|--:|--:|--:|")
    for name, size, links in SIZES:
        if name == "10KB":
            continue
        html = make_newsletter(size, links)
        assert scanner.scan(html) == scanner.scan_pure(html)
        for what, call in (("scan", lambda h=html: scanner.scan(h)), ("rewrite_html", lambda h=html: rewrite(h))):
            times: dict[str, list[int]] = {"compiled": [], "pure": []}
            call()  # warm up
            for rep in range(reps):
                for path in (("compiled", "pure") if rep % 2 == 0 else ("pure", "compiled")):
                    speedups.compiled = compiled if path == "compiled" else None
                    try:
                        times[path].append(_time(call))
                    finally:
                        speedups.compiled = compiled
            med = {p: statistics.median(t) / 1e6 for p, t in times.items()}
            low = {p: min(t) / 1e6 for p, t in times.items()}
            print(
                f"| {name} ({links} links) | {what} | {med['compiled']:.3f} ({low['compiled']:.3f}) | "
                f"{med['pure']:.3f} ({low['pure']:.3f}) | {med['pure'] / med['compiled']:.1f}x "
                f"({low['pure'] / low['compiled']:.1f}x) |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
