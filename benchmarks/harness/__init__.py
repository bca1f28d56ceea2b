"""Pieces the benchmark scripts share: inputs, contenders, timing, report header, and the serve load test's parts.

The scripts (``benchmarks/bench_*.py``) put ``benchmarks/`` on ``sys.path`` and
import ``harness.<module>``; tests do the same (``sys.path.insert(0, "benchmarks")``).

* :mod:`harness.report` - the header every report starts with (date, command, Python, machine, versions);
* :mod:`harness.newsletters` - deterministic generated newsletters (the rewrite and message inputs);
* :mod:`harness.peers` - the rewrite contenders (mailtrack, pytracking, bs4, the floor);
* :mod:`harness.timing` - one timed call with the cyclic GC out of the way;
* :mod:`harness.serve` - the ``mailtrack serve`` load test: workload, server launcher, load generators, checks, tables.
"""
