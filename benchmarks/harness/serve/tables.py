"""The serve benchmark's markdown report: figures, statuses, stored vs successful, server and machine, over time."""

from __future__ import annotations

import argparse
import itertools
import os
import sqlite3
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

from harness.report import header
from harness.serve.checks import RunResult
from harness.serve.loadgen_wrk import wrk_version
from harness.serve.postgres import filesystem
from harness.serve.workload import (
    LINKS_PER_MESSAGE,
    MESSAGES,
    NEWSLETTER_BYTES,
    RESPONSE_TIMEOUT_S,
    SEQUENCE_LENGTH,
    USER_AGENTS,
    Workload,
)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _versions(wrk: str | None, postgres: dict[str, str] | None) -> str:
    parts = []
    try:
        import mailtrack

        parts.append(f"mailtrack {mailtrack.__version__} (from {Path(mailtrack.__file__).parent})")
    except Exception:  # noqa: BLE001
        parts.append("mailtrack (not importable)")
    for name in ("uvicorn", "waitress", *(["psycopg"] if postgres else [])):
        try:
            parts.append(f"{name} {importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    parts.append(f"SQLite {sqlite3.sqlite_version}")
    if postgres:
        parts.append(f"PostgreSQL {postgres.get('server_version', '?')}")
    if wrk:
        parts.append(wrk_version(wrk))
    return ", ".join(parts)


def _window(start: float, end: float) -> str:
    digits = 0 if end - start >= 5 else 1
    return f"{start:.{digits}f}–{end:.{digits}f} s"


def _load(avg: tuple[float, float, float] | None) -> str:
    return "-" if avg is None else " / ".join(f"{x:.2f}" for x in avg)


def _wal(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 1e6:.1f} MB"


def _cores(seconds: float | None, wall: float) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s ({seconds / (wall or 1.0):.2f})"


#: How each store makes a commit durable, as the report states it (mailtrack's SQLite pragmas; PostgreSQL's defaults,
#: checked against what the server reports).
DURABILITY = {
    "sqlite": "SQLite: WAL journal, `synchronous=NORMAL` (a commit survives the process being killed; the WAL is "
              "fsynced at checkpoints, so the last commits before a power loss can be lost)",
    "postgres": "PostgreSQL: `synchronous_commit={synchronous_commit}`, `fsync={fsync}` (a commit returns once its WAL "
                "is flushed to disk with `{wal_sync_method}`; the recorder commits a batch of events at a time)",
}


def render(
    results: list[RunResult],
    workload: Workload,
    args: argparse.Namespace,
    plan_name: str,
    command: str,
    wrk: str | None,
    notes: list[str],
    postgres: tuple[str, dict[str, str]] | None = None,
) -> str:
    """The report. ``postgres`` is (the description of the cluster, its settings) when PostgreSQL ran."""
    threads = f"{args.threads or 8}{'' if args.threads else ' (the `serve` default)'}" + (
        " (uvicorn: the pool for the paths that read the store; pixels and clicks are answered on the event loop)"
        if args.server == "uvicorn" else " (waitress: one per request being served)")
    workers = getattr(args, "workers", 1)
    threads += f"; workers: {workers}" + (" (forked processes on one socket, `--workers`)" if workers > 1 else "")
    stores = list(dict.fromkeys(r.store for r in results))
    commands = {r.store: r.server_command for r in reversed(results)}
    lines = [
        *header("mailtrack serve benchmark", command, plan_name, _versions(wrk, postgres[1] if postgres else None)),
        *(f"- server ({store}): `{commands[store]}`" for store in stores),
        f"- one fresh server process and database per generator and store, the runs one after the other; "
        f"server: {args.server}, threads: {threads}",
        (
            f"- workload: {workload.recipients:,} recipients over {MESSAGES} campaign messages "
            f"(`make_newsletter({NEWSLETTER_BYTES:_}, {LINKS_PER_MESSAGE}, seed=m)`), each rewritten with "
            f"`Tracker.rewrite_html` (pixel + {LINKS_PER_MESSAGE} links): {workload.distinct_urls:,} distinct signed URLs, "
            f"built in {workload.build_s:.1f} s. A seeded sequence of {SEQUENCE_LENGTH:,} GETs, "
            f"{workload.opens / SEQUENCE_LENGTH:.1%} opens (expect `200` + 43-byte GIF) and "
            f"{workload.clicks / SEQUENCE_LENGTH:.1%} clicks (expect `302` + the signed destination), "
            f"{len(USER_AGENTS)} real-world user agents, cycled by all connections."
        ),
        (
            f"- load: {args.connections} keep-alive HTTP/1.1 connections on loopback, {args.duration_s:g} s per generator; "
            f"a response slower than {RESPONSE_TIMEOUT_S:.0f} s counts as an error. `python`: asyncio with raw sockets "
            "in its own process, latency = `perf_counter_ns` from writing the request to reading the whole response; "
            "`wrk`: its own latency histogram (same span; not corrected for coordinated omission)."
        ),
        (
            f"- **CPU contention**: the machine has {os.cpu_count()} CPU(s); server, load generator, database server "
            "(PostgreSQL) and anything else running share them (see the CPU columns below). Figures are for this "
            "machine, not a capacity plan."
        ),
        *([f"- PostgreSQL: {postgres[0]}."] if postgres else []),
        f"- stores: {len(stores)} ({', '.join(stores)}), durability: "
        + "; ".join(DURABILITY[store].format_map(postgres[1] if postgres else {}) for store in stores)
        + f". The database files (and the spool) are under {tempfile.gettempdir()}, on {filesystem(Path(tempfile.gettempdir()))}.",
        "",
        "## Figures",
        "",
        (
            "| generator | store | connections | duration | responses | requests/s | p50 ms | p90 ms | p99 ms | max ms | "
            "errors | events stored | successful responses | stored − successful | result |"
        ),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        lat = r.load["latency_ms"]
        rps = r.load["responses"] / r.load["elapsed_s"] if r.load["elapsed_s"] else 0.0
        diff = f"{r.difference:+,}" if r.difference else "0"
        if r.in_flight:
            diff += f" (in flight at cut-off: {r.in_flight})"
        lines.append(
            f"| {r.generator} | {r.store} | {args.connections} | {r.load['elapsed_s']:.1f} s | {r.load['responses']:,} | {rps:,.0f} | "
            f"{_ms(lat.get('p50'))} | {_ms(lat.get('p90'))} | {_ms(lat.get('p99'))} | {_ms(lat.get('max'))} | "
            f"{r.errors:,} | {r.stored:,} | {r.successful:,} | {diff} | {'**PASS**' if r.passed() else '**FAIL**'}"
            + "".join(f"; ⚠ {w}" for w in r.warnings())
            + " |"
        )
    lines += [
        "",
        (
            "PASS = zero errors, events stored equal to successful responses (per type too; for wrk, which never reads the "
            "responses in flight when its time is up, 0 ≤ stored − successful ≤ requests in flight), no event left in a spool "
            "file, and the server exited 0 after SIGINT. ⚠ marks what did not fail the run but should not happen: a store "
            "write that failed (the event went to the spool file and was moved into the store later; the response was "
            "not affected)."
        ),
        "",
        "## Responses by status, and errors",
        "",
        "| generator | store | " + " | ".join(sorted({s for r in results for s in r.load["statuses"]}, key=int))
        + " | errors by kind |",
        "|---|---|" + "--:|" * len({s for r in results for s in r.load["statuses"]}) + "---|",
    ]
    codes = sorted({s for r in results for s in r.load["statuses"]}, key=int)
    for r in results:
        errs = ", ".join(f"{k}: {v:,}" for k, v in sorted(r.load["errors"].items())) or "none"
        lines.append(f"| {r.generator} | {r.store} | " + " | ".join(f"{r.load['statuses'].get(c, 0):,}" for c in codes) + f" | {errs} |")
    lines += [
        "",
        "## Events stored vs successful responses",
        "",
        (
            "Counted after the load, once the event count stopped moving, and after the server was stopped: "
            "`SQLiteStore(db).count()` or `PostgresStore(url).count()`, and `SELECT event_type, count(*)`; `first` = events "
            "stored with `first` set, which must equal the rows of the `firsts` table (one per type, message and recipient)."
        ),
        "",
        (
            "| generator | store | event type | requests sent | successful responses | events stored | stored − successful | "
            "first = 1 | `firsts` rows |"
        ),
        "|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        for event_type in ("opened", "clicked"):
            ok, stored = r.load["ok"][event_type], r.stored_by_type.get(event_type, 0)
            lines.append(
                f"| {r.generator} | {r.store} | {event_type} | {r.load['issued'][event_type]:,} | {ok:,} | {stored:,} | {stored - ok:+,} | "
                f"{r.first_by_type.get(event_type, 0):,} | {r.firsts_rows.get(event_type, 0):,} |"
            )
        others = {t: c for t, c in r.stored_by_type.items() if t not in r.load["ok"]}
        for event_type, count in others.items():
            lines.append(f"| {r.generator} | {r.store} | {event_type} (unexpected) | 0 | 0 | {count:,} | {count:+,} | | |")
    lines += [
        "",
        "## Server and machine",
        "",
        (
            "CPU = user + system seconds during the load (server: /proc, over the generator's wall time; PostgreSQL: its "
            "postmaster and every backend, /proc, same span (SQLite runs inside the server: n/a); `python` generator: "
            "its own `process_time`; wrk: `RUSAGE_CHILDREN`), and in parentheses that over the wall time, in cores. "
            "WAL file: SQLite's `-wal` file (n/a for PostgreSQL, whose WAL is its own)."
        ),
        "",
        (
            "| generator | store | server CPU | PostgreSQL CPU | generator CPU | load average before (1/5/15 min) | after | "
            "server OS threads | waitress `Task queue depth` warnings (max depth) | store writes spooled | "
            "events stored before stop / after | WAL file | spool files (events left) | stop |"
        ),
        "|---|---|--:|--:|--:|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        wall = r.load_wall_s or 1.0
        server_cpu = _cores(r.server_cpu_s, wall)
        database_cpu = "n/a" if r.store == "sqlite" else _cores(r.database_cpu_s, wall)
        locked = f" (`database is locked`: {r.log_counts.get('database is locked', 0):,})" if r.store == "sqlite" else ""
        gen_cpu = f"{r.load['cpu_s']:.1f} s ({r.load['cpu_s'] / (r.load['elapsed_s'] or 1.0):.2f})"
        stop = f"{r.stop_how} → exit {r.exit_code} in {r.stop_s:.2f} s (settled {r.settle_s:.1f} s first)"
        lines.append(
            f"| {r.generator} | {r.store} | {server_cpu} | {database_cpu} | {gen_cpu} | {_load(r.loadavg_before)} | "
            f"{_load(r.loadavg_after)} | {r.os_threads if r.os_threads is not None else '-'} | "
            f"{r.log_counts.get('Task queue depth', 0):,} ({r.queue_depth_max}) | "
            f"{r.log_counts.get('store write failed', 0):,}{locked} | "
            f"{r.stored_running:,} / {r.stored:,} | {_wal(r.wal_bytes)} | {r.spool_files} ({r.spool_lines:,}) | {stop} |"
        )
    lines += [
        "",
        "## Over time",
        "",
        (
            "Sampled by the benchmark while the load ran (the first window includes the generator's start-up): events "
            "stored per second, server CPU in cores, PostgreSQL's CPU in cores (n/a for SQLite, which runs inside the "
            "server), store writes spooled and SQLite's WAL file's size (its high-water mark: SQLite reuses a WAL from the "
            "start once a checkpoint has copied all of it back and no reader is using it; n/a for PostgreSQL)."
        ),
        "",
        ("| generator | store | window | events stored/s | server CPU (cores) | PostgreSQL CPU (cores) | store writes spooled "
         "| WAL file at the end |"),
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        for a, b in itertools.pairwise(r.samples):
            span = (b.t_s - a.t_s) or 1.0
            cores = "-" if a.cpu_s is None or b.cpu_s is None else f"{(b.cpu_s - a.cpu_s) / span:.2f}"
            db_cores = ("n/a" if r.store == "sqlite" else "-" if a.db_cpu_s is None or b.db_cpu_s is None
                        else f"{(b.db_cpu_s - a.db_cpu_s) / span:.2f}")
            lines.append(
                f"| {r.generator} | {r.store} | {_window(a.t_s, b.t_s)} | {(b.stored - a.stored) / span:,.0f} | {cores} | "
                f"{db_cores} | {b.spooled - a.spooled:,} | {_wal(b.wal_bytes)} |"
            )
    lines += ["", "## Notes", ""]
    for r in results:
        if "wrk_command" in r.load:
            lines.append(f"- {r.generator}, {r.store}: `{r.load['wrk_command']}` "
                         f"(wrk's own request count: {r.load['wrk_requests']:,})")
        if r.load.get("connects") is not None:
            lines.append(
                f"- {r.generator}, {r.store}: {r.load['connects']} TCP connection(s) opened (reconnects would add to {args.connections})"
            )
        for line in r.other_log_lines:
            lines.append(f"- {r.generator}, {r.store}: server stderr: `{line[:300]}`")
    lines += [f"- {note}" for note in notes]
    lines.append("")
    return "\n".join(lines)


def render_static(results: list[RunResult], statics: dict[str, float], args: argparse.Namespace,
                  ceilings: dict[str, float] | None = None, floors: dict[str, float] | None = None) -> str:
    """The contenders' section: the static GIF's requests/s under each generator (it has no store, so it ran once per
    generator) beside every mailtrack run's, and their ratio; with ``ceilings``, also ``mailtrack serve`` with its
    store writes skipped (``--no-store-contender``): what the request path allows whatever the store."""
    ceilings = ceilings or {}
    lines = [
        "",
        "## Against the contenders",
        "",
        (
            f"Static GIF: the same server ({args.server}, the same configuration, {args.threads or 8} threads, "
            f"{getattr(args, 'workers', 1)} worker(s)) answering every request with the pixel and storing nothing. "
            f"No store: `mailtrack serve` itself (endpoints, token checks, events, recorder; `--writer thread`) with "
            f"its store writes skipped (harness/serve/no_store_serve.py). Each loaded after the mailtrack runs by the "
            f"same generator at {args.connections} connections for the same time, once per generator."
        ),
        "",
        "| generator | store | static GIF requests/s | no-store serve requests/s | mailtrack serve requests/s "
        "| ÷ static | no store ÷ static | ÷ no store |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        key = result.generator.split(" ")[0]
        static, ceiling = statics.get(key), ceilings.get(key)
        ours = result.load["responses"] / result.load["elapsed_s"]
        lines.append(
            f"| {result.generator} | {result.store} | {f'{static:,.0f}' if static else 'n/a'} "
            f"| {f'{ceiling:,.0f}' if ceiling else 'n/a'} | {ours:,.0f} | {f'{ours / static:.2f}x' if static else 'n/a'} "
            f"| {f'{ceiling / static:.2f}x' if static and ceiling else 'n/a'} "
            f"| {f'{ours / ceiling:.2f}x' if ceiling else 'n/a'} |")
    if floors:
        lines += [
            "",
            "Verify-only floor (`--verify-contender`, harness/serve/verify_floor.py): the same server verifying each "
            "request's token (`Tracker.verify`) and answering the pixel or the redirect, nothing else: no request "
            "object, no classification, no event, no store. No tracking server can do less, so its ratio to the static "
            "GIF bounds what any store and recorder can reach on this stack.",
            "",
            "| generator | static GIF requests/s | verify-only requests/s | verify-only ÷ static |",
            "|---|--:|--:|--:|",
        ]
        for generator, floor in floors.items():
            static = statics.get(generator)
            lines.append(f"| {generator} | {f'{static:,.0f}' if static else 'n/a'} | {floor:,.0f} "
                         f"| {f'{floor / static:.2f}x' if static else 'n/a'} |")
    return "\n".join(lines) + "\n"
