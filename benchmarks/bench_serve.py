"""Load benchmark of ``mailtrack serve``: mixed opens and clicks over loopback, then events stored vs responses.

Run from the repository root::

    .venv/bin/python benchmarks/bench_serve.py            # 60 s per load generator, writes benchmarks/results/serve.md
    .venv/bin/python benchmarks/bench_serve.py --quick    # 5 s each (smoke), writes benchmarks/results/serve-quick.md
    .venv/bin/python benchmarks/bench_serve.py --store both   # SQLite, then PostgreSQL, for each generator

Each load generator gets its own ``python -m mailtrack serve`` subprocess (``--server``, uvicorn by default,
``--port 0``, the command's default threads unless ``--threads``) for each store (``--store``, SQLite by
default) on a fresh database: a SQLite file in a temporary folder, or a new database in a throwaway
PostgreSQL cluster the benchmark starts once (PostgreSQL's own durability defaults: fsync and
synchronous_commit on) and stops at the end. The workload is pre-generated with
``Tracker.rewrite_html``: ``--recipients`` (2000) recipients spread over 8 campaign
messages, each with its open pixel and 4 tracked links; a seeded sequence of 50,000
requests, ~70 % pixel fetches (``200`` + the 43-byte GIF expected) and ~30 % clicks
(``302`` to the signed destination expected), with a few real-world user agents,
cycled by every connection.

Generators: a pure-Python one (always; asyncio, raw keep-alive HTTP/1.1 over
``--connections`` (50) sockets, in its own process, per-request latency from
``time.perf_counter_ns``) and ``wrk`` with a Lua script (when ``wrk`` is on PATH).
After the load the server is stopped with SIGINT, and the events in the database
(``SQLiteStore.count()`` or ``PostgresStore.count()``, and per type) are compared with the successful responses:
they must be equal (for wrk, whose responses in flight at its cut-off are never
read, stored - successful must lie between 0 and the requests in flight). See
``benchmarks/README.md``.

This script only wires together the parts in ``benchmarks/harness/serve/``: the workload, the server, a load
generator, the checks and the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.serve.checks import RunResult, read_outcome  # noqa: E402
from harness.serve.loadgen_python import loadgen_main, run_python_generator  # noqa: E402
from harness.serve.loadgen_wrk import run_wrk  # noqa: E402
from harness.serve.postgres import Postgres, unavailable  # noqa: E402
from harness.serve.server import Monitor, Server  # noqa: E402
from harness.serve.stores import STORES, target  # noqa: E402
from harness.serve.tables import render, render_static  # noqa: E402
from harness.serve.workload import Workload, build_workload  # noqa: E402


@dataclass(frozen=True)
class Plan:
    duration_s: float
    recipients: int


FULL = Plan(duration_s=60.0, recipients=2000)
QUICK = Plan(duration_s=5.0, recipients=200)


# -- one run: server + generator + checks --------------------------------------------------


def run_once(generator: str, store: str, workload: Workload, args: argparse.Namespace, duration_s: float,
             wrk: str | None, postgres: Postgres | None) -> RunResult:
    """One server on a fresh ``store`` database, loaded by ``generator``, stopped, and its outcome read."""
    folder = Path(tempfile.mkdtemp(prefix=f"mailtrack-bench-serve-{generator}-{store}-"))
    try:
        return _run_in(folder, generator, store, workload, args, duration_s, wrk, postgres)
    finally:
        if args.keep:
            print(f"{generator} / {store}: kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _run_in(folder: Path, generator: str, store: str, workload: Workload, args: argparse.Namespace, duration_s: float,
            wrk: str | None, postgres: Postgres | None) -> RunResult:
    """:func:`run_once` in ``folder``, the server's working directory (and where a PostgreSQL server spools)."""
    name = f"{generator} / {store}"
    database = target(store, folder, postgres, generator)
    try:
        server = Server(folder, args.threads, db=database.db, server=args.server, workers=args.workers,
                        writer=args.writer)
        try:
            server.start()
            print(f"{name}: {server.banner}", file=sys.stderr, flush=True)
            os_threads = server.os_threads()
            load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
            cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
            db_cpu_before = database.database_cpu_seconds()
            with Monitor(server, database, interval=max(1.0, duration_s / 6)) as monitor:
                if generator == "python":
                    load = run_python_generator(server.port, workload, duration_s, args.connections, folder)
                else:
                    assert wrk is not None
                    load = run_wrk(wrk, server.port, workload, duration_s, args.connections, args.wrk_threads, folder)
            cpu_after, wall_after = server.cpu_seconds(), time.perf_counter()
            db_cpu_after = database.database_cpu_seconds()
            load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
            settle_s = database.settle()
            stored_running = database.stored_now()
            wal_bytes = database.wal_bytes()
            os_threads = max(filter(None, [os_threads, server.os_threads()]), default=None)
        finally:
            server.stop()
        outcome = read_outcome(database, server.stderr_text())
    finally:
        database.close()
    return RunResult(
        generator=load["generator"],
        store=store,
        load=load,
        server_command=database.shown(shlex.join(["python", *server.command[1:]])),
        banner=database.shown(server.banner),
        os_threads=os_threads,
        server_cpu_s=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        database_cpu_s=None if db_cpu_before is None or db_cpu_after is None else db_cpu_after - db_cpu_before,
        load_wall_s=wall_after - wall_before,
        loadavg_before=load_before,
        loadavg_after=load_after,
        settle_s=settle_s,
        stored_running=stored_running,
        samples=monitor.samples,
        wal_bytes=wal_bytes,
        stop_how=server.stop_how,
        stop_s=server.stop_s,
        exit_code=server.exit_code,
        **outcome,
    )


def run_static(generator: str, workload: Workload, args: argparse.Namespace, duration_s: float,
               wrk: str | None, *, contender: str = "static") -> float:
    """Requests/s of a contender under ``generator``: ``"static"``, the static GIF (the same server, no store; every
    answer is the pixel; wrk counts responses whatever their body, which is the pixel here); ``"no-store"``,
    ``mailtrack serve`` with its store writes skipped (the pixels and redirects it really answers);
    ``"verify-only"``, the same server verifying each token and answering, nothing else
    (harness/serve/verify_floor.py; uvicorn only)."""
    folder = Path(tempfile.mkdtemp(prefix="mailtrack-bench-serve-static-"))
    server = Server(folder, args.threads, server=args.server, workers=args.workers, contender=contender,
                    db=str(folder / "unused.sqlite"))
    try:
        server.start()
        print(f"{contender} ({generator}): {server.banner}", file=sys.stderr, flush=True)
        if generator == "python":
            load = run_python_generator(server.port, workload, duration_s, args.connections, folder)
        else:
            assert wrk is not None
            load = run_wrk(wrk, server.port, workload, duration_s, args.connections, args.wrk_threads, folder)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if contender == "verify-only" and load.get("errors"):  # its answers must be right: it really verified every token
        raise RuntimeError(f"the {contender} contender answered with errors: {load['errors']}")
    rate = float(load["responses"]) / float(load["elapsed_s"])
    print(f"{contender} ({generator}): {load['responses']:,} responses, {rate:,.0f} requests/s", file=sys.stderr, flush=True)
    return rate


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s per generator and 200 recipients, for a smoke run")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per generator (default 60; 5 with --quick)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent keep-alive connections (default 50)")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: the `serve` default)")
    parser.add_argument("--server", choices=["uvicorn", "waitress"], default="uvicorn",
                        help="the server `mailtrack serve` runs, and the static contender (default uvicorn, as serve)")
    parser.add_argument("--workers", type=int, default=1,
                        help="`serve --workers` (uvicorn only), and as many processes for the static contender (default 1)")
    parser.add_argument(
        "--recipients", type=int, default=None, help="recipients to sign URLs for (default 2000; 200 with --quick)"
    )
    parser.add_argument(
        "--generator",
        choices=["auto", "python", "wrk", "both"],
        default="auto",
        help="load generator(s): auto = python, then wrk when it is on PATH (default)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: fewer cores taken from the server)")
    parser.add_argument(
        "--store",
        choices=[*STORES, "both"],
        default="sqlite",
        help="the store(s) `serve` writes to: sqlite (default), postgres (a throwaway cluster started for the run: "
             "needs PostgreSQL's binaries and psycopg), or both, SQLite then PostgreSQL for each generator",
    )
    parser.add_argument("--keep", action="store_true",
                        help="keep each run's temporary folder (SQLite database, spool, server stderr; a PostgreSQL "
                             "database is dropped all the same)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown report (default benchmarks/results/serve.md; serve-quick.md with --quick)",
    )
    parser.add_argument("--static-contender", action="store_true",
                        help="also load the static-GIF contender (the same server, no store) with each generator and "
                             "report mailtrack's requests/s as a ratio of it")
    parser.add_argument("--writer", choices=["process", "thread"], default=None,
                        help="`serve --writer`: who writes a SQLite store's events (default: the `serve` default, "
                             "process)")
    parser.add_argument("--no-store-contender", action="store_true",
                        help="also load `mailtrack serve` with its store writes skipped (the same endpoints, tokens "
                             "and recorder; harness/serve/no_store_serve.py) with each generator: the ceiling any store "
                             "leaves, reported beside the static contender")
    parser.add_argument("--verify-contender", action="store_true",
                        help="also load the verify-only floor (the same server verifying each token, then the pixel or "
                             "the redirect: no event, no store; harness/serve/verify_floor.py) with each generator: what "
                             "no tracking server can skip, reported beside the static contender (uvicorn only)")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)  # internal: run the Python generator from a spec file
    args = parser.parse_args(argv)
    if args.loadgen:
        return loadgen_main(args.loadgen)
    plan = QUICK if args.quick else FULL
    args.duration_s = args.duration if args.duration is not None else plan.duration_s
    recipients = args.recipients or plan.recipients
    out_path: Path = args.out or HERE / "results" / ("serve-quick.md" if args.quick else "serve.md")
    command = shlex.join(["python", "benchmarks/bench_serve.py", *(sys.argv[1:] if argv is None else argv)])
    wrk = shutil.which("wrk")
    generators = ["python"]
    if args.generator in ("wrk", "both") or (args.generator == "auto" and wrk):
        if not wrk:
            parser.error("wrk is not on PATH (Debian: apt-get install wrk)")
        generators = ["wrk"] if args.generator == "wrk" else ["python", "wrk"]
    stores = list(STORES) if args.store == "both" else [args.store]
    if args.verify_contender and args.server != "uvicorn":
        parser.error("--verify-contender runs on uvicorn only (the server `mailtrack serve` runs by default)")
    if "postgres" in stores and (reason := unavailable()):
        parser.error(f"--store {args.store}: {reason}")
    notes = []
    if args.generator == "auto" and not wrk:
        notes.append("wrk is not on PATH (Debian: `apt-get install wrk`): only the Python generator ran.")

    started = time.monotonic()
    with contextlib.ExitStack() as stack:  # the cluster is stopped and removed whatever happens, Ctrl-C included
        postgres = None
        if "postgres" in stores:
            postgres = stack.enter_context(Postgres())
            print(f"postgres: PostgreSQL {postgres.settings.get('server_version')} on 127.0.0.1:{postgres.cluster.port}",
                  file=sys.stderr, flush=True)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mailtrack-bench-serve-"))
        workload = build_workload(recipients, Path(tmp))
        print(f"workload: {workload.distinct_urls:,} signed URLs in {workload.build_s:.1f} s", file=sys.stderr, flush=True)
        results = []
        for generator in generators:
            for store in stores:
                results.append(run_once(generator, store, workload, args, args.duration_s, wrk, postgres))
                r = results[-1]
                print(
                    f"{generator} / {store}: {r.load['responses']:,} responses, {r.errors} errors, stored {r.stored:,} "
                    f"vs successful {r.successful:,}: {'PASS' if r.passed() else 'FAIL'}",
                    file=sys.stderr,
                    flush=True,
                )
        # the contender stores nothing: once per generator, whatever the stores
        statics = {generator: run_static(generator, workload, args, args.duration_s, wrk)
                   for generator in generators} if args.static_contender else {}
        ceilings = {generator: run_static(generator, workload, args, args.duration_s, wrk, contender="no-store")
                    for generator in generators} if args.no_store_contender else {}
        floors = {generator: run_static(generator, workload, args, args.duration_s, wrk, contender="verify-only")
                  for generator in generators} if args.verify_contender else {}
        described = (postgres.describe(), postgres.settings) if postgres else None
    report = render(results, workload, args, "quick" if args.quick else "full", command, wrk, notes, described)
    if statics or ceilings or floors:
        report += render_static(results, statics, args, ceilings, floors)
    report += f"\nTotal wall time: {time.monotonic() - started:.0f} s.\n"
    print(report)
    out_path.write_text(report, encoding="utf-8")
    print(f"wrote {out_path}", file=sys.stderr)
    return 0 if all(r.passed() for r in results) else 1


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C: the servers and the PostgreSQL cluster are stopped on the way out."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(main())
