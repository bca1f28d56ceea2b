"""The pure-Python load generator: asyncio over raw keep-alive HTTP/1.1 sockets, every response checked.

It runs in its own process (``python -m harness.serve.loadgen_python SPEC`` from ``benchmarks/``), so it
shares no GIL with the benchmark; :func:`run_python_generator` starts it and reads its JSON result.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.serve.workload import EVENT_TYPES, EXPECTED, HOST, HOST_HEADER, KIND_NAMES, RESPONSE_TIMEOUT_S, SEED, Workload

BENCHMARKS = Path(__file__).resolve().parents[2]


@dataclass
class _Stats:
    latencies: array[int] = field(default_factory=lambda: array("q"))
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    ok: collections.Counter[str] = field(default_factory=collections.Counter)
    issued: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    connects: int = 0
    last_done_ns: int = 0


def _load_requests(sequence_file: Path) -> list[tuple[str, bytes, int, bytes | None]]:
    requests = []
    for line in sequence_file.read_text(encoding="utf-8").splitlines():
        kind, path, status, location, agent = line.split("\t")
        data = (f"GET {path} HTTP/1.1\r\nHost: {HOST_HEADER}\r\nUser-Agent: {agent}\r\nAccept: */*\r\n\r\n").encode("latin-1")
        requests.append((kind, data, int(status), location.encode("latin-1") if location else None))
    return requests


async def _client(
    host: str,
    port: int,
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    requests: list[tuple[str, bytes, int, bytes | None]],
    counter: itertools.count[int],
    stop_ns: int,
    stats: _Stats,
    state: dict[str, Any],
) -> None:
    reader, writer = streams if streams else (None, None)
    n = len(requests)
    clock = time.perf_counter_ns
    while clock() < stop_ns:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                stats.connects += 1
            except OSError as exc:
                stats.errors[f"connect: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        kind, data, expected, location = requests[next(counter) % n]
        stats.issued[kind] += 1
        state["in_flight"] = kind
        started = clock()
        try:
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            length = int(head[at + 17 : head.index(b"\r\n", at + 2)]) if at != -1 else 0
            body = await reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            stats.errors[f"{KIND_NAMES[kind]}: {type(exc).__name__}"] += 1
            state["in_flight"] = None
            writer.close()
            reader = writer = None
            continue
        done = clock()
        state["in_flight"] = None
        stats.latencies.append(done - started)
        stats.last_done_ns = done
        status = int(head[9:12])
        stats.statuses[status] += 1
        if status != expected:
            stats.errors[f"{KIND_NAMES[kind]}: status {status}"] += 1
        elif kind == "o" and len(body) != 43:
            stats.errors[f"open: body of {len(body)} bytes"] += 1
        elif location is not None and _header(head, lower, b"location") != location:
            stats.errors["click: wrong Location"] += 1
        else:
            stats.ok[kind] += 1
        if b"\r\nconnection: close" in lower:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def _header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lowercase) in a response head, as sent."""
    at = lower.find(b"\r\n" + name + b":")
    if at == -1:
        return None
    start = at + len(name) + 3
    return head[start : head.index(b"\r\n", start)].strip()


async def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    requests = _load_requests(Path(spec["sequence_file"]))
    stats = _Stats()
    host, port, connections = spec["host"], spec["port"], spec["connections"]
    opened = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(connections)), return_exceptions=True)
    streams: list[Any] = []
    for item in opened:
        if isinstance(item, BaseException):
            stats.errors[f"connect: {type(item).__name__}"] += 1
            streams.append(None)
        else:
            stats.connects += 1
            streams.append(item)
    counter = itertools.count(random.Random(SEED + 1).randrange(len(requests)))
    states: list[dict[str, Any]] = [{"in_flight": None} for _ in range(connections)]
    cpu_start, start_ns = time.process_time(), time.perf_counter_ns()
    stop_ns = start_ns + int(spec["duration_s"] * 1e9)
    tasks = [
        asyncio.ensure_future(_client(host, port, s, requests, counter, stop_ns, stats, state))
        for s, state in zip(streams, states, strict=True)
    ]
    _, pending = await asyncio.wait(tasks, timeout=spec["duration_s"] + RESPONSE_TIMEOUT_S)
    for task, state in zip(tasks, states, strict=True):
        if task in pending:
            task.cancel()
            if state["in_flight"]:
                stats.errors[f"{KIND_NAMES[state['in_flight']]}: no response within {RESPONSE_TIMEOUT_S:.0f} s"] += 1
    if pending:
        await asyncio.wait(pending)
    end_ns = time.perf_counter_ns()
    cpu = time.process_time() - cpu_start
    latencies = sorted(stats.latencies)
    elapsed_s = ((stats.last_done_ns or end_ns) - start_ns) / 1e9
    return {
        "generator": "python",
        "elapsed_s": elapsed_s,
        "responses": len(latencies),
        "latency_ms": _percentiles([x / 1e6 for x in latencies]) if latencies else {},
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "ok": {EVENT_TYPES[k]: stats.ok[k] for k in EXPECTED},
        "issued": {EVENT_TYPES[k]: stats.issued[k] for k in EXPECTED},
        "errors": dict(stats.errors),
        "socket_errors": {},
        "connects": stats.connects,
        "cpu_s": cpu,
        "in_flight_at_cutoff": 0,  # every connection waits for its last response
    }


def _percentiles(sorted_ms: list[float]) -> dict[str, float]:
    def rank(p: float) -> float:  # nearest rank
        return sorted_ms[min(len(sorted_ms) - 1, max(0, int(-(-p * len(sorted_ms) // 100)) - 1))]

    return {
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "max": sorted_ms[-1],
        "mean": sum(sorted_ms) / len(sorted_ms),
    }


def loadgen_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = asyncio.run(_generate(spec))
    Path(spec["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def run_python_generator(port: int, workload: Workload, duration_s: float, connections: int, folder: Path) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "connections": connections,
        "duration_s": duration_s,
        "sequence_file": str(workload.sequence_file),
        "out": str(folder / "loadgen.json"),
    }
    spec_path = folder / "loadgen-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "harness.serve.loadgen_python", str(spec_path)],
        check=True,
        cwd=BENCHMARKS,
        timeout=duration_s + RESPONSE_TIMEOUT_S + 120,
    )
    result: dict[str, Any] = json.loads(Path(spec["out"]).read_text(encoding="utf-8"))
    return result


if __name__ == "__main__":
    sys.exit(loadgen_main(sys.argv[1]))
