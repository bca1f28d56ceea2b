"""The wrk driver: a Lua script replaying the request sequence, counting statuses, and its summary parsed back."""

from __future__ import annotations

import json
import re
import resource
import shlex
import subprocess
from pathlib import Path
from typing import Any

from harness.serve.workload import HOST, HOST_HEADER, RESPONSE_TIMEOUT_S, SEED, Workload

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
  if status == 302 and not (headers["Location"] or headers["location"] or ""):match("^https?://") then bad_location = bad_location + 1 end
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
