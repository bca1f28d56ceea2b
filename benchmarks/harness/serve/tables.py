"""The serve benchmark's markdown report: figures, statuses, stored vs successful, server and machine, over time."""

from __future__ import annotations

import argparse
import itertools
import os
import sqlite3
from importlib import metadata as importlib_metadata
from pathlib import Path

from harness.report import header
from harness.serve.checks import RunResult
from harness.serve.loadgen_wrk import wrk_version
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


def _versions(wrk: str | None) -> str:
    parts = []
    try:
        import mailtrack

        parts.append(f"mailtrack {mailtrack.__version__} (from {Path(mailtrack.__file__).parent})")
    except Exception:  # noqa: BLE001
        parts.append("mailtrack (not importable)")
    for name in ("waitress",):
        try:
            parts.append(f"{name} {importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    parts.append(f"SQLite {sqlite3.sqlite_version}")
    if wrk:
        parts.append(wrk_version(wrk))
    return ", ".join(parts)


def _window(start: float, end: float) -> str:
    digits = 0 if end - start >= 5 else 1
    return f"{start:.{digits}f}–{end:.{digits}f} s"


def _load(avg: tuple[float, float, float] | None) -> str:
    return "-" if avg is None else " / ".join(f"{x:.2f}" for x in avg)


def render(
    results: list[RunResult],
    workload: Workload,
    args: argparse.Namespace,
    plan_name: str,
    command: str,
    wrk: str | None,
    notes: list[str],
) -> str:
    first = results[0]
    threads = (
        f"{args.threads} (`--threads`)"
        if args.threads
        else f"the `serve` default ({(first.os_threads or 3) - 3} worker threads: "
        f"{first.os_threads} OS threads = main + workers + 2 recorder threads)"
    )
    lines = [
        *header("mailtrack serve benchmark", command, plan_name, _versions(wrk)),
        f"- server: `{first.server_command}`, one fresh process and database per generator; waitress threads: {threads}",
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
            f"- **CPU contention**: the machine has {os.cpu_count()} CPU(s); server, load generator and anything else "
            "running share them (see the CPU columns below). Figures are for this machine, not a capacity plan."
        ),
        "",
        "## Figures",
        "",
        (
            "| generator | connections | duration | responses | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | "
            "events stored | successful responses | stored − successful | result |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        lat = r.load["latency_ms"]
        rps = r.load["responses"] / r.load["elapsed_s"] if r.load["elapsed_s"] else 0.0
        diff = f"{r.difference:+,}" if r.difference else "0"
        if r.in_flight:
            diff += f" (in flight at cut-off: {r.in_flight})"
        lines.append(
            f"| {r.generator} | {args.connections} | {r.load['elapsed_s']:.1f} s | {r.load['responses']:,} | {rps:,.0f} | "
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
        "| generator | " + " | ".join(sorted({s for r in results for s in r.load["statuses"]}, key=int)) + " | errors by kind |",
        "|---|" + "--:|" * len({s for r in results for s in r.load["statuses"]}) + "---|",
    ]
    codes = sorted({s for r in results for s in r.load["statuses"]}, key=int)
    for r in results:
        errs = ", ".join(f"{k}: {v:,}" for k, v in sorted(r.load["errors"].items())) or "none"
        lines.append(f"| {r.generator} | " + " | ".join(f"{r.load['statuses'].get(c, 0):,}" for c in codes) + f" | {errs} |")
    lines += [
        "",
        "## Events stored vs successful responses",
        "",
        (
            "Counted after the load, once the event count stopped moving, and after the server was stopped: "
            "`SQLiteStore(db).count()` and `SELECT event_type, count(*)`; `first` = events stored with `first` set, which must "
            "equal the rows of the `firsts` table (one per type, message and recipient)."
        ),
        "",
        (
            "| generator | event type | requests sent | successful responses | events stored | stored − successful | "
            "first = 1 | `firsts` rows |"
        ),
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        for event_type in ("opened", "clicked"):
            ok, stored = r.load["ok"][event_type], r.stored_by_type.get(event_type, 0)
            lines.append(
                f"| {r.generator} | {event_type} | {r.load['issued'][event_type]:,} | {ok:,} | {stored:,} | {stored - ok:+,} | "
                f"{r.first_by_type.get(event_type, 0):,} | {r.firsts_rows.get(event_type, 0):,} |"
            )
        others = {t: c for t, c in r.stored_by_type.items() if t not in r.load["ok"]}
        for event_type, count in others.items():
            lines.append(f"| {r.generator} | {event_type} (unexpected) | 0 | 0 | {count:,} | {count:+,} | | |")
    lines += [
        "",
        "## Server and machine",
        "",
        (
            "CPU = user + system seconds during the load (server: /proc, over the generator's wall time; `python` generator: "
            "its own `process_time`; wrk: `RUSAGE_CHILDREN`), and in parentheses that over the wall time, in cores."
        ),
        "",
        (
            "| generator | server CPU | generator CPU | load average before (1/5/15 min) | after | waitress `Task queue depth` "
            "warnings (max depth) | store writes spooled | events stored before stop / after | WAL file | "
            "spool files (events left) | stop |"
        ),
        "|---|--:|--:|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        wall = r.load_wall_s or 1.0
        server_cpu = "-" if r.server_cpu_s is None else f"{r.server_cpu_s:.1f} s ({r.server_cpu_s / wall:.2f})"
        gen_cpu = f"{r.load['cpu_s']:.1f} s ({r.load['cpu_s'] / (r.load['elapsed_s'] or 1.0):.2f})"
        stop = f"{r.stop_how} → exit {r.exit_code} in {r.stop_s:.2f} s (settled {r.settle_s:.1f} s first)"
        lines.append(
            f"| {r.generator} | {server_cpu} | {gen_cpu} | {_load(r.loadavg_before)} | {_load(r.loadavg_after)} | "
            f"{r.log_counts.get('Task queue depth', 0):,} ({r.queue_depth_max}) | "
            f"{r.log_counts.get('store write failed', 0):,} (`database is locked`: {r.log_counts.get('database is locked', 0):,}) | "
            f"{r.stored_running:,} / {r.stored:,} | {r.wal_bytes / 1e6:.1f} MB | {r.spool_files} ({r.spool_lines:,}) | {stop} |"
        )
    lines += [
        "",
        "## Over time",
        "",
        (
            "Sampled by the benchmark while the load ran (the first window includes the generator's start-up): events "
            "stored per second, server CPU in cores, store writes spooled (`database is locked`) and the WAL file's "
            "size (its high-water mark: SQLite reuses a WAL from the start once a checkpoint has copied all of it "
            "back and no reader is using it, and never shrinks the file)."
        ),
        "",
        "| generator | window | events stored/s | server CPU (cores) | store writes spooled | WAL file at the end |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for r in results:
        for a, b in itertools.pairwise(r.samples):
            span = (b.t_s - a.t_s) or 1.0
            cores = "-" if a.cpu_s is None or b.cpu_s is None else f"{(b.cpu_s - a.cpu_s) / span:.2f}"
            lines.append(
                f"| {r.generator} | {_window(a.t_s, b.t_s)} | {(b.stored - a.stored) / span:,.0f} | {cores} | "
                f"{b.spooled - a.spooled:,} | {b.wal_bytes / 1e6:.1f} MB |"
            )
    lines += ["", "## Notes", ""]
    for r in results:
        if "wrk_command" in r.load:
            lines.append(f"- {r.generator}: `{r.load['wrk_command']}` (wrk's own request count: {r.load['wrk_requests']:,})")
        if r.load.get("connects") is not None:
            lines.append(
                f"- {r.generator}: {r.load['connects']} TCP connection(s) opened (reconnects would add to {args.connections})"
            )
        for line in r.other_log_lines:
            lines.append(f"- {r.generator}: server stderr: `{line[:300]}`")
    lines += [f"- {note}" for note in notes]
    lines.append("")
    return "\n".join(lines)
