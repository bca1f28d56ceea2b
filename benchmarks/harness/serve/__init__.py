"""The parts of the ``mailtrack serve`` load test (``benchmarks/bench_serve.py`` wires them together).

* :mod:`.workload` - the signed URLs and the seeded request sequence both generators replay, and what each
  request must get back;
* :mod:`.stores` - the store under test (SQLite or PostgreSQL): ``--db``, and the harness's reads of it (events
  stored now and in the end, per type, ``first`` flags, ``firsts`` rows, spool files, SQLite's WAL);
* :mod:`.postgres` - the throwaway PostgreSQL cluster for ``--store postgres`` (durable as shipped), one database
  per run;
* :mod:`.server` - ``python -m mailtrack serve`` on a free port with a fresh database, stopped with SIGINT, and
  the sampling of its database, WAL, CPU and log while the load runs;
* :mod:`.loadgen_python` - the pure-Python asyncio generator (run in its own process);
* :mod:`.loadgen_wrk` - the wrk driver (Lua script, output parsing);
* :mod:`.checks` - after a run: what the database, the spool and the server's log hold, and PASS/FAIL;
* :mod:`.tables` - the markdown report.
"""
