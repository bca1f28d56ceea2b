"""Load benchmark of ``mailtrack serve``: mixed opens and clicks over loopback, then events stored vs responses.

Run from the repository root::

    .venv/bin/python benchmarks/bench_serve.py            # 60 s per load generator, writes benchmarks/results_serve.md
    .venv/bin/python benchmarks/bench_serve.py --quick    # 5 s each (smoke), writes benchmarks/results_serve-quick.md

Each load generator gets its own ``python -m mailtrack serve`` subprocess (waitress,
``--port 0``, the command's default threads unless ``--threads``) on a fresh SQLite
database in a temporary folder. The workload is pre-generated with
``Tracker.rewrite_html``: ``--recipients`` (2000) recipients spread over 8 campaign
messages, each with its open pixel and 4 tracked links; a seeded sequence of 50,000
requests, ~70 % pixel fetches (``200`` + the 43-byte GIF expected) and ~30 % clicks
(``302`` to the signed destination expected), with a few real-world user agents,
cycled by every connection.

Generators: a pure-Python one (always; asyncio, raw keep-alive HTTP/1.1 over
``--connections`` (50) sockets, in its own process, per-request latency from
``time.perf_counter_ns``) and ``wrk`` with a Lua script (when ``wrk`` is on PATH).
After the load the server is stopped with SIGINT, and the events in the database
(``SQLiteStore.count()`` and per type) are compared with the successful responses:
they must be equal (for wrk, whose responses in flight at its cut-off are never
read, stored - successful must lie between 0 and the requests in flight). See
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import random
import re
import resource
import select
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from report import header  # noqa: E402

HOST = "127.0.0.1"
SECRET_KEY = "bench-serve-key"
BASE_URL = "https://t.example.com"
HOST_HEADER = "t.example.com"
MESSAGES = 8
LINKS_PER_MESSAGE = 4
NEWSLETTER_BYTES = 6_000
SEQUENCE_LENGTH = 50_000
OPEN_SHARE = 0.7
SEED = 4
RESPONSE_TIMEOUT_S = 10.0  # a response slower than this is an error (both generators)
#: Real-world pixel fetchers and browsers, so stored user agents look like production ones.
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
)
EXPECTED = {"o": 200, "c": 302}
KIND_NAMES = {"o": "open", "c": "click"}
EVENT_TYPES = {"o": "opened", "c": "clicked"}


@dataclass(frozen=True)
class Plan:
    duration_s: float
    recipients: int


FULL = Plan(duration_s=60.0, recipients=2000)
QUICK = Plan(duration_s=5.0, recipients=200)


# -- the workload --------------------------------------------------------------------------


@dataclass
class Workload:
    recipients: int
    pixels: int
    links: int
    distinct_urls: int
    sequence_file: Path
    opens: int  # in the sequence
    clicks: int
    build_s: float


def build_workload(recipients: int, folder: Path) -> Workload:
    """Sign every recipient's pixel and links with ``rewrite_html`` and write the request sequence file.

    One line per request: kind (``o``/``c``), path, expected status, expected Location (clicks), user agent,
    tab-separated; both generators read it.
    """
    from newsletters import make_newsletter

    from mailtrack import Tracker

    started = time.perf_counter()
    tracker = Tracker(secret_keys=[SECRET_KEY], base_url=BASE_URL)
    issued_at = int(time.time()) - 3600  # mailed an hour ago
    newsletters = [make_newsletter(NEWSLETTER_BYTES, LINKS_PER_MESSAGE, seed=m) for m in range(MESSAGES)]
    src = re.compile(r'src="([^"]+)"')
    pixels: list[str] = []
    clicks: list[tuple[str, str]] = []
    for r in range(recipients):
        m = r % MESSAGES
        identity = {
            "message_id": f"campaign-{m}",
            "recipient": f"user{r:05d}@example.com",
            "metadata": {"campaign": f"spring-{m}", "list": "weekly"},
            "issued_at": issued_at,
        }
        result = tracker.rewrite_html(newsletters[m], **identity)  # type: ignore[arg-type]
        assert result.pixel is not None and len(result.links) == LINKS_PER_MESSAGE, (r, len(result.links))
        match = src.search(result.pixel.html)
        assert match is not None
        pixel = match.group(1)
        assert pixel == tracker.tracking_url("open", **identity)  # type: ignore[arg-type]
        pixels.append(_path(pixel))
        clicks += [(_path(link.tracking_url), link.url) for link in result.links]
    rng = random.Random(SEED)
    opens = 0
    lines = []
    for _ in range(SEQUENCE_LENGTH):
        agent = rng.choice(USER_AGENTS)
        if rng.random() < OPEN_SHARE:
            opens += 1
            lines.append(f"o\t{rng.choice(pixels)}\t200\t\t{agent}")
        else:
            path, location = rng.choice(clicks)
            assert "\t" not in location and "\n" not in location
            lines.append(f"c\t{path}\t302\t{location}\t{agent}")
    sequence_file = folder / "sequence.tsv"
    sequence_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Workload(
        recipients=recipients,
        pixels=len(pixels),
        links=len(clicks),
        distinct_urls=len(set(pixels)) + len({p for p, _ in clicks}),
        sequence_file=sequence_file,
        opens=opens,
        clicks=SEQUENCE_LENGTH - opens,
        build_s=time.perf_counter() - started,
    )


def _path(url: str) -> str:
    assert url.startswith(BASE_URL + "/"), url
    return url[len(BASE_URL) :]


# -- the server ----------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (Linux /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _os_threads(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class Server:
    """``python -m mailtrack serve`` on a free loopback port with a fresh database in ``folder``."""

    def __init__(self, folder: Path, threads: int | None) -> None:
        self.folder = folder
        self.db = folder / "events.sqlite"
        self.threads = threads
        self.stderr_path = folder / "server.stderr"
        self.command = [
            sys.executable,
            "-m",
            "mailtrack",
            "serve",
            "--db",
            str(self.db),
            "--secret-key",
            SECRET_KEY,
            "--base-url",
            BASE_URL,
            "--host",
            HOST,
            "--port",
            "0",
            *(["--threads", str(threads)] if threads is not None else []),
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.banner = ""
        self.exit_code: int | None = None
        self.stop_s = 0.0
        self.stop_how = ""

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=self.folder, env=env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r" on http://[^ ]+:(\d+) ", line)
        if not match:
            self.stop()
            raise RuntimeError(f"mailtrack serve did not start: {line!r}; stderr: {self.stderr_text()[-2000:]!r}")
        self.banner, self.port = line.strip(), int(match.group(1))

    def cpu_seconds(self) -> float | None:
        return _cpu_seconds(self.proc.pid) if self.proc else None

    def os_threads(self) -> int | None:
        return _os_threads(self.proc.pid) if self.proc else None

    def stop(self) -> None:
        """SIGINT (what Ctrl-C sends; ``serve`` then closes the recorder, draining any spool), then escalate."""
        if self.proc is None or self.proc.poll() is not None:
            return
        started = time.perf_counter()
        for how, sig, wait in (
            ("SIGINT", signal.SIGINT, 20.0),
            ("SIGTERM", signal.SIGTERM, 5.0),
            ("SIGKILL", signal.SIGKILL, 5.0),
        ):
            self.proc.send_signal(sig)
            try:
                self.exit_code = self.proc.wait(wait)
                self.stop_how = how
                break
            except subprocess.TimeoutExpired:
                continue
        self.stop_s = time.perf_counter() - started
        if self.proc.stdout:
            self.proc.stdout.close()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _stored_now(db: Path) -> int:
    """Events in the database, read-only (no write lock taken while the server runs)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.Error:
        return -1


def settle(db: Path, quiet_s: float = 0.5, limit_s: float = 15.0) -> float:
    """Wait until the event count stops moving (requests the server still had queued); seconds waited."""
    started = time.perf_counter()
    last = _stored_now(db)
    while time.perf_counter() - started < limit_s:
        time.sleep(quiet_s)
        now = _stored_now(db)
        if now == last:
            break
        last = now
    return time.perf_counter() - started


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the load started
    stored: int
    wal_bytes: int
    cpu_s: float | None
    spooled: int  # "store write failed" lines so far


class Monitor:
    """Samples the server every ``interval`` seconds during the load: events stored, WAL size, CPU, spooled writes.

    The count is one short read-only query (no write lock); it does not measurably load a server doing hundreds of
    writes a second.
    """

    def __init__(self, server: Server, interval: float) -> None:
        self.server, self.interval = server, interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._start = 0.0

    def __enter__(self) -> Monitor:  # noqa: PYI034 - typing.Self needs Python 3.11
        self._start = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        db = self.server.db
        spooled = self.server.stderr_text().count("store write failed")
        self.samples.append(
            Sample(
                time.perf_counter() - self._start,
                _stored_now(db),
                _size(Path(str(db) + "-wal")),
                self.server.cpu_seconds(),
                spooled,
            )
        )


# -- the pure-Python load generator (runs in its own process) ------------------------------


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
        for s, state in zip(streams, states)
    ]
    _, pending = await asyncio.wait(tasks, timeout=spec["duration_s"] + RESPONSE_TIMEOUT_S)
    for task, state in zip(tasks, states):
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
        [sys.executable, str(Path(__file__).resolve()), "--loadgen", str(spec_path)],
        check=True,
        timeout=duration_s + RESPONSE_TIMEOUT_S + 120,
    )
    result: dict[str, Any] = json.loads(Path(spec["out"]).read_text(encoding="utf-8"))
    return result


# -- wrk ------------------------------------------------------------------------------------

WRK_SCRIPT = r"""
-- mailtrack bench_serve.py: mixed opens and clicks from the prepared sequence, counted per status.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  reqs, kinds = {}, {}
  for line in io.lines(args[1]) do
    local kind, path, status, location, agent = line:match("^(%a)\t([^\t]+)\t(%d+)\t([^\t]*)\t(.*)$")
    kinds[#kinds + 1] = kind
    reqs[#reqs + 1] = wrk.format("GET", path, {["Host"] = "HOST_HEADER", ["User-Agent"] = agent, ["Accept"] = "*/*"})
  end
  n = #reqs
  i = (tid * 7919 + START) % n
  issued_o, issued_c, responses, bad_body, bad_location = 0, 0, 0, 0, 0
  statuses = {}
end

function request()
  i = i % n + 1
  if kinds[i] == "o" then issued_o = issued_o + 1 else issued_c = issued_c + 1 end
  return reqs[i]
end

function response(status, headers, body)
  responses = responses + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 200 and #body ~= 43 then bad_body = bad_body + 1 end
  if status == 302 and not (headers["Location"] or ""):match("^https?://") then bad_location = bad_location + 1 end
end

function done(summary, latency, requests)
  local total = {issued_o = 0, issued_c = 0, responses = 0, bad_body = 0, bad_location = 0}
  local st = {}
  for _, t in ipairs(threads) do
    for k, _ in pairs(total) do total[k] = total[k] + t:get(k) end
    for k, v in pairs(t:get("statuses")) do st[k] = (st[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(st) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  io.write(string.format(
    'MAILTRACK_WRK {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%f,"issued_o":%d,"issued_c":%d,"responses":%d,' ..
    '"bad_body":%d,"bad_location":%d,"statuses":{%s}}\n',
    summary.duration, summary.requests, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean, total.issued_o, total.issued_c,
    total.responses, total.bad_body, total.bad_location, table.concat(parts, ",")))
end
"""


def wrk_version(wrk: str) -> str:
    try:
        out = subprocess.run([wrk, "-v"], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "wrk (version unknown)"
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (version unknown)"


def run_wrk(
    wrk: str, port: int, workload: Workload, duration_s: float, connections: int, threads: int, folder: Path
) -> dict[str, Any]:
    script = folder / "mixed.lua"
    script.write_text(WRK_SCRIPT.replace("HOST_HEADER", HOST_HEADER).replace("START", str(SEED * 1000)), encoding="utf-8")
    threads = max(1, min(threads, connections))
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={RESPONSE_TIMEOUT_S:.0f}s",
        "-s",
        str(script),
        f"http://{HOST}:{port}/",
        "--",
        str(workload.sequence_file),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command, check=False, capture_output=True, text=True, timeout=duration_s + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"^MAILTRACK_WRK (\{.*\})$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    w = json.loads(match.group(1))
    statuses = {k: w["statuses"][k] for k in sorted(w["statuses"], key=int)}
    errors: dict[str, int] = {}
    for code, count in statuses.items():
        if int(code) not in (200, 302):
            errors[f"status {code}"] = count
    for name in ("connect", "read", "write", "timeout"):
        if w[name]:
            errors[f"socket {name}"] = w[name]
    if w["bad_body"]:
        errors["open: body not 43 bytes"] = w["bad_body"]
    if w["bad_location"]:
        errors["click: Location not http(s)"] = w["bad_location"]
    ok_open, ok_click = statuses.get("200", 0) - w["bad_body"], statuses.get("302", 0) - w["bad_location"]
    return {
        "generator": f"wrk ({threads} thread{'s' if threads > 1 else ''}, Lua)",
        "elapsed_s": w["duration_us"] / 1e6,
        "responses": w["responses"],
        "latency_ms": {k: w[k] / 1000 for k in ("p50", "p90", "p99", "max", "mean")},
        "statuses": statuses,
        "ok": {"opened": ok_open, "clicked": ok_click},
        "issued": {"opened": w["issued_o"], "clicked": w["issued_c"]},
        "errors": errors,
        "connects": None,
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "in_flight_at_cutoff": w["issued_o"] + w["issued_c"] - w["responses"],
        "wrk_command": shlex.join(["wrk", *command[1:-4], "mixed.lua", "http://127.0.0.1:PORT/", "--", "sequence.tsv"]),
        "wrk_requests": w["requests"],
    }


# -- one run: server + generator + checks --------------------------------------------------


@dataclass
class RunResult:
    generator: str
    load: dict[str, Any]
    server_command: str
    banner: str
    os_threads: int | None
    server_cpu_s: float | None
    load_wall_s: float
    loadavg_before: tuple[float, float, float] | None
    loadavg_after: tuple[float, float, float] | None
    settle_s: float
    stored_running: int
    wal_bytes: int
    samples: list[Sample]
    stop_how: str
    stop_s: float
    exit_code: int | None
    stored: int
    stored_by_type: dict[str, int]
    first_by_type: dict[str, int]
    firsts_rows: dict[str, int]
    spool_files: int
    spool_nonempty: int
    spool_lines: int
    log_counts: dict[str, int]
    queue_depth_max: int
    other_log_lines: list[str]

    @property
    def successful(self) -> int:
        return sum(self.load["ok"].values())

    @property
    def errors(self) -> int:
        return sum(self.load["errors"].values())

    @property
    def difference(self) -> int:
        return self.stored - self.successful

    @property
    def in_flight(self) -> int:
        return int(self.load["in_flight_at_cutoff"])

    def events_match(self) -> bool:
        """Python: stored == successful, per type. wrk: 0 <= stored - successful <= requests in flight at its cut-off."""
        for event_type, ok in self.load["ok"].items():
            extra = self.stored_by_type.get(event_type, 0) - ok
            limit = self.load["issued"][event_type] - ok if self.in_flight else 0
            if not 0 <= extra <= max(limit, 0):
                return False
        return 0 <= self.difference <= self.in_flight and set(self.stored_by_type) <= set(self.load["ok"])

    def passed(self) -> bool:
        """Zero errors, events stored == successful responses, nothing left in a spool, a clean exit."""
        return self.errors == 0 and self.events_match() and self.spool_lines == 0 and self.exit_code == 0 and self.successful > 0

    def warnings(self) -> list[str]:
        """What did not fail the run but should not happen: store writes that fell back to the spool."""
        found = []
        if self.log_counts.get("store write failed"):
            found.append(
                f"{self.log_counts['store write failed']:,} store writes spooled "
                f"({self.log_counts.get('database is locked', 0):,} `database is locked`)"
            )
        if self.log_counts.get("spool retry failed"):
            found.append(f"{self.log_counts['spool retry failed']:,} spool retries failed")
        if self.stored_running != self.stored:
            found.append(f"{self.stored - self.stored_running:+,} events reached the store only at shutdown")
        return found


#: (name, regex) of the server's stderr lines we count; any other line is quoted in the notes.
LOG_PATTERNS = (
    ("store write failed", r"store write failed"),
    ("database is locked", r"database is locked"),
    ("spool retry failed", r"retry (from spool )?failed"),
    ("Traceback", r"Traceback"),
    ("Task queue depth", r"Task queue depth is"),
)


def run_once(generator: str, workload: Workload, args: argparse.Namespace, duration_s: float, wrk: str | None) -> RunResult:
    folder = Path(tempfile.mkdtemp(prefix=f"mailtrack-bench-serve-{generator}-"))
    server = Server(folder, args.threads)
    try:
        server.start()
        print(f"{generator}: {server.banner}", file=sys.stderr, flush=True)
        os_threads = server.os_threads()
        load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
        cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
        with Monitor(server, interval=max(1.0, duration_s / 6)) as monitor:
            if generator == "python":
                load = run_python_generator(server.port, workload, duration_s, args.connections, folder)
            else:
                assert wrk is not None
                load = run_wrk(wrk, server.port, workload, duration_s, args.connections, args.wrk_threads, folder)
        cpu_after, wall_after = server.cpu_seconds(), time.perf_counter()
        load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
        settle_s = settle(server.db)
        stored_running = _stored_now(server.db)
        wal_bytes = _size(Path(str(server.db) + "-wal"))  # the WAL's high-water mark: it is reused, never truncated
        os_threads = max(filter(None, [os_threads, server.os_threads()]), default=None)
    finally:
        server.stop()
    from mailtrack.storage.sqlite import SQLiteStore

    store = SQLiteStore(server.db)
    stored = store.count()
    connection = store._connection()
    by_type = {t: c for t, c in connection.execute("SELECT event_type, count(*) FROM events GROUP BY event_type")}
    first = {t: int(c or 0) for t, c in connection.execute("SELECT event_type, sum(first) FROM events GROUP BY event_type")}
    firsts = {t: c for t, c in connection.execute("SELECT event_type, count(*) FROM firsts GROUP BY event_type")}
    store.close()
    spool = sorted(Path(str(server.db) + ".spool").glob("*.jsonl"))
    spool_lines = sum(len(p.read_bytes().splitlines()) for p in spool)
    log = server.stderr_text()
    log_lines = log.splitlines()
    counts = {name: sum(1 for line in log_lines if re.search(pattern, line)) for name, pattern in LOG_PATTERNS}
    depths = [int(d) for d in re.findall(r"Task queue depth is (\d+)", log)]
    known = re.compile("|".join(p for _, p in LOG_PATTERNS))
    other = [line for line in log_lines if line.strip() and not known.search(line)]
    command = shlex.join(["python", *server.command[1:]]).replace(str(folder), "$TMP")
    result = RunResult(
        generator=load["generator"],
        load=load,
        server_command=command,
        banner=server.banner.replace(str(folder), "$TMP"),
        os_threads=os_threads,
        server_cpu_s=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
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
        stored=stored,
        stored_by_type=by_type,
        first_by_type=first,
        firsts_rows=firsts,
        spool_files=len(spool),
        spool_nonempty=sum(1 for p in spool if p.stat().st_size),
        spool_lines=spool_lines,
        log_counts=counts,
        queue_depth_max=max(depths, default=0),
        other_log_lines=other[:10],
    )
    if args.keep:
        print(f"{generator}: kept {folder}", file=sys.stderr)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return result


# -- report ---------------------------------------------------------------------------------


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
        for a, b in zip(r.samples, r.samples[1:]):
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


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s per generator and 200 recipients, for a smoke run")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per generator (default 60; 5 with --quick)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent keep-alive connections (default 50)")
    parser.add_argument("--threads", type=int, default=None, help="waitress threads (default: the `serve` default)")
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
    parser.add_argument("--keep", action="store_true", help="keep each run's temporary folder (database, server stderr)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown report (default benchmarks/results_serve.md; results_serve-quick.md with --quick)",
    )
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)  # internal: run the Python generator from a spec file
    args = parser.parse_args(argv)
    if args.loadgen:
        return loadgen_main(args.loadgen)
    plan = QUICK if args.quick else FULL
    args.duration_s = args.duration if args.duration is not None else plan.duration_s
    recipients = args.recipients or plan.recipients
    out_path: Path = args.out or HERE / ("results_serve-quick.md" if args.quick else "results_serve.md")
    command = shlex.join(["python", "benchmarks/bench_serve.py", *(sys.argv[1:] if argv is None else argv)])
    wrk = shutil.which("wrk")
    generators = ["python"]
    if args.generator in ("wrk", "both") or (args.generator == "auto" and wrk):
        if not wrk:
            parser.error("wrk is not on PATH (Debian: apt-get install wrk)")
        generators = ["wrk"] if args.generator == "wrk" else ["python", "wrk"]
    notes = []
    if args.generator == "auto" and not wrk:
        notes.append("wrk is not on PATH (Debian: `apt-get install wrk`): only the Python generator ran.")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mailtrack-bench-serve-") as tmp:
        workload = build_workload(recipients, Path(tmp))
        print(f"workload: {workload.distinct_urls:,} signed URLs in {workload.build_s:.1f} s", file=sys.stderr, flush=True)
        results = []
        for generator in generators:
            results.append(run_once(generator, workload, args, args.duration_s, wrk))
            r = results[-1]
            print(
                f"{generator}: {r.load['responses']:,} responses, {r.errors} errors, stored {r.stored:,} vs "
                f"successful {r.successful:,}: {'PASS' if r.passed() else 'FAIL'}",
                file=sys.stderr,
                flush=True,
            )
    report = render(results, workload, args, "quick" if args.quick else "full", command, wrk, notes)
    report += f"\nTotal wall time: {time.monotonic() - started:.0f} s.\n"
    print(report)
    out_path.write_text(report, encoding="utf-8")
    print(f"wrote {out_path}", file=sys.stderr)
    return 0 if all(r.passed() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
