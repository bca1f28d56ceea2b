"""Campaign batches: messages per second of the batch engines against a plain loop, and peak memory per worker.

Run from the repository root::

    .venv/bin/python benchmarks/bench_batch.py                    # 2,000 messages (~2 min) -> benchmarks/results/batch.md
    .venv/bin/python benchmarks/bench_batch.py --messages 100000  # the full figure (issue 10): long, ~7 GB of temporary files
    .venv/bin/python benchmarks/bench_batch.py --quick            # smoke run (seconds) -> benchmarks/results/batch-quick.md

Input (``harness/campaign.py``): N personalized ~33 KB multipart/alternative
messages (the 25 KB, 40-link newsletter of bench_message.py and its text
alternative, 8bit; each copy with its own To, Message-ID, greeting and account
link), one JSON lines record each, ``{"raw": ..., "metadata": ...}``, written
once to a temporary directory. Plain-text links are tracked too.

Throughput: four ways to turn that file into tracked JSON lines, each timed
from reading the first line to the last byte written, run round robin (order
rotated each repetition) so drift on a shared machine hits all alike:

* (a) ``loop``: one process reads each line, ``json.loads``, ``Tracker.rewrite_message``,
  ``json.dumps``, writes: the script a user would write;
* (b) ``batch, 1 worker``: :func:`mailtrack.batch.run_batch` with the in-process
  engine (what ``mailtrack rewrite --workers 1`` runs);
* (c) ``batch, pool of 1``: the process-pool engine with one worker (the cost of
  sending chunks to another process and back);
* (d) ``batch, 2 workers``: the process-pool engine with two workers.

All four write the same bytes (checked). Medians of messages per second and
ratios of medians, never absolute goals: the machine is shared.

Memory: ``python -m mailtrack rewrite IN --out DIR --workers 2`` on N/10 (N/4
below 5,000) and N messages, each process's peak RSS (``VmHWM``, from /proc while it runs): the
batch process, which reads and writes, and each worker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.campaign import write_campaign  # noqa: E402
from harness.cpu import CpuWatch  # noqa: E402
from harness.report import header  # noqa: E402
from harness.rss import ProcessPeak, peak_rss  # noqa: E402

from mailtrack.batch import Engine, Job, in_process, process_pool, run_batch  # noqa: E402
from mailtrack.batch.allocator import keep_freed_memory  # noqa: E402

KEYS = ("older-key", "newest-key")
BASE_URL = "https://t.example.com"
ISSUED_AT = 1_795_000_000
SETTINGS = {"click_tracking": {"enable": True, "enable_text": True}}
CONTENDERS = ("(a) loop", "(b) batch, 1 worker", "(c) batch, pool of 1", "(d) batch, 2 workers")
DASK = "(e) batch, Dask LocalCluster of 2 workers"


def make_job() -> Job:
    return Job(secret_keys=KEYS, base_url=BASE_URL, settings=SETTINGS, issued_at=ISSUED_AT)


def plain_loop(job: Job, source: Path, target: Path) -> None:
    """(a): what a user's script does, one record after the other in this process."""
    tracker = job.tracker()
    with source.open("rb") as lines, target.open("wb") as out:
        for line in lines:
            record = json.loads(line)
            result = tracker.rewrite_message(record["raw"], metadata=record.get("metadata"), issued_at=job.issued_at)
            record.update(raw=result.message, message_id=result.message_id, recipient=result.recipient)
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")


def batch(engine_for: Callable[[], Engine]) -> Callable[[Job, Path, Path], None]:
    """(b), (c), (d): run_batch on one engine, the output file where the loop writes its own."""

    def run(job: Job, source: Path, target: Path) -> None:
        out = target.parent / (target.name + ".d")
        report = run_batch(job, [source], out, engine=engine_for())
        assert not report.summary.errors, report.summary.errors[:3]
        (out / source.name).replace(target)
        out.rmdir()

    return run


RUNS: dict[str, Callable[[Job, Path, Path], None]] = {
    CONTENDERS[0]: plain_loop,
    CONTENDERS[1]: batch(lambda: in_process),
    CONTENDERS[2]: batch(lambda: process_pool(1)),
    CONTENDERS[3]: batch(lambda: process_pool(2)),
}


#: Contenders that need something running first, not timed: a context manager yielding the run function.
SETUPS: dict[str, Callable[[], contextlib.AbstractContextManager[Callable[[Job, Path, Path], None]]]] = {}


@dataclass
class Series:
    """Per contender and repetition: messages per second, and the cores this run and other processes used meanwhile."""

    rates: dict[str, list[float]]
    ours: dict[str, list[float]]
    others: dict[str, list[float]]
    same: bool = True


def throughput(job: Job, source: Path, count: int, repetitions: int, work: Path) -> Series:
    """Time each contender ``repetitions`` times, round robin; check they all wrote the same bytes."""
    series = Series({n: [] for n in CONTENDERS}, {n: [] for n in CONTENDERS}, {n: [] for n in CONTENDERS})
    rates = series.rates
    reference: bytes | None = None
    for rep in range(repetitions):
        order = CONTENDERS[rep % len(CONTENDERS):] + CONTENDERS[:rep % len(CONTENDERS)]
        for name in order:
            target = work / "out.jsonl"
            setup = SETUPS[name]() if name in SETUPS else contextlib.nullcontext(RUNS[name])
            with setup as run, CpuWatch() as cpu:
                started = time.perf_counter()
                run(job, source, target)
                rates[name].append(count / (time.perf_counter() - started))
            if cpu.ours is not None and cpu.others is not None:
                series.ours[name].append(cpu.ours)
                series.others[name].append(cpu.others)
            output = target.read_bytes() if rep == 0 else None
            if output is not None:
                reference = reference if reference is not None else output
                series.same = series.same and output == reference
            target.unlink()
            others = f", other processes {series.others[name][-1]:.2f} cores" if series.others[name] else ""
            print(f"  {name}: {rates[name][-1]:.0f} messages/s{others}", file=sys.stderr, flush=True)
    return series


def memory(source: Path, work: Path) -> tuple[ProcessPeak | None, list[ProcessPeak]]:
    """The batch process's and each worker's peak RSS for ``mailtrack rewrite SOURCE --workers 2``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRACK_")}
    env.update(MAILTRACK_SECRET_KEY=",".join(KEYS), MAILTRACK_BASE_URL=BASE_URL,
               PYTHONPATH=os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    out = work / "memory-out"
    command = [sys.executable, "-m", "mailtrack", "rewrite", str(source), "--out", str(out), "--workers", "2",
               "--issued-at", str(ISSUED_AT), "--settings", json.dumps(SETTINGS), "--json"]
    status, peaks, err = peak_rss(command, env=env)
    shutil.rmtree(out, ignore_errors=True)
    if status != 0:
        raise SystemExit(f"mailtrack rewrite failed ({status}): {err}")
    parent = peaks[0] if peaks else None
    servers = {p.pid for p in peaks if "forkserver" in p.command}
    workers = [p for p in peaks if p.parent in servers]
    return parent, workers


def add_dask() -> None:
    """(e): a real LocalCluster of 2 worker processes, 1 thread each, started before each (e) run and stopped after it.

    Started and stopped outside the timing (as a user's cluster is already
    up), and never left running during the other contenders: even idle, a
    cluster's processes take CPU (heartbeats, the workers' profiler), which
    cost (d) a third of its speed on this 2-core machine when it stayed up.
    """
    global CONTENDERS
    try:
        from distributed import Client, LocalCluster

        from mailtrack.batch.dask_engine import dask_engine
    except ImportError:
        print("dask.distributed is not installed: (e) is left out", file=sys.stderr)
        return

    @contextlib.contextmanager
    def cluster() -> Iterator[Callable[[Job, Path, Path], None]]:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          worker_dashboard_address=None) as local, Client(local) as client:
            yield batch(lambda: dask_engine(client))

    SETUPS[DASK] = cluster
    CONTENDERS = (*CONTENDERS, DASK)


def _mb(value: float) -> str:
    return f"{value / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, help="messages in the timed runs and the larger memory run "
                        "(default 2,000, --quick 200; the issue's figure: 100,000)")
    parser.add_argument("--repetitions", type=int, help="timed runs of each contender (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="200 messages, one repetition: a smoke run (seconds); "
                        "writes results/batch-quick.md")
    parser.add_argument("--workdir", type=Path, help="where the JSON lines go (default: a temporary directory; "
                        "--messages 100000 needs about 7 GB)")
    parser.add_argument("--no-dask", dest="dask", action="store_false",
                        help="leave out (e), the same batch on a Dask LocalCluster of 2 worker processes")
    parser.add_argument("--only", metavar="LETTERS", help="run only these contenders, e.g. bde ((b), (d) and (e)): "
                        "the ratios between those that ran are reported")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    parser.add_argument("--out", type=Path, help="report file (default benchmarks/results/batch[-quick].md)")
    args = parser.parse_args(argv)
    global CONTENDERS
    count = args.messages or (200 if args.quick else 2_000)
    if count < 1:
        parser.error("--messages must be at least 1")
    repetitions = args.repetitions or (1 if args.quick else 3)
    out_path = args.out or HERE / "results" / ("batch-quick.md" if args.quick else "batch.md")
    job = make_job()
    kept = keep_freed_memory()  # as mailtrack rewrite does in its own process (the pool's workers do it themselves)
    # Two sizes, both past what the batch holds in flight (2 x workers chunks of 64): the issue's 10,000 and 100,000.
    sizes = (count // 10 if count >= 5_000 else max(1, count // 4), count)

    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="mailtrack-bench-batch-") as tmp:
        work = Path(tmp)
        if args.dask:
            add_dask()
        if args.only:
            CONTENDERS = tuple(name for name in CONTENDERS if name[1] in args.only)
            if not CONTENDERS:
                parser.error("--only: no contender among a, b, c, d, e")
        if not args.memory:
            sizes = (count,)
        inputs = {}
        for size in sizes:
            inputs[size] = work / f"campaign-{size}.jsonl"
            bytes_ = write_campaign(inputs[size], size)
            print(f"wrote {size:,} messages, {bytes_ / 1e6:.1f} MB", file=sys.stderr, flush=True)
        series = throughput(job, inputs[count], count, repetitions, work)
        peaks = {size: memory(inputs[size], work) for size in sizes} if args.memory else {}
        size_per_message = inputs[count].stat().st_size / count

    rates = series.rates
    medians = {name: statistics.median(values) for name, values in rates.items() if values}
    by_letter = {name[1]: medians[name] for name in CONTENDERS}
    loop = by_letter.get("a")
    rows = ["| contender | messages/s (median) | min – max | ÷ (a) loop | CPU per message | cores used by the run "
            "| by other processes |", "|---|--:|--:|--:|--:|--:|--:|"]
    for name in CONTENDERS:
        ours = f"{statistics.median(series.ours[name]):.2f}" if series.ours[name] else "?"
        others = f"{statistics.median(series.others[name]):.2f}" if series.others[name] else "?"
        cpu = (f"{statistics.median(c / r for c, r in zip(series.ours[name], rates[name], strict=False)) * 1000:.2f} ms"
               if series.ours[name] else "?")
        rows.append(f"| {name} | {medians[name]:.0f} | {min(rates[name]):.0f} – {max(rates[name]):.0f} | "
                    f"{f'{medians[name] / loop:.2f}' if loop else '–'} | {cpu} | {ours} | {others} |")
    ratios = []
    if "a" in by_letter and "b" in by_letter:
        ratios.append(f"- (b) 1 worker ÷ (a) plain loop: **{by_letter['b'] / by_letter['a']:.2f}** "
                      "(goal: within 10 %, i.e. at least 0.90)")
    if "b" in by_letter and "d" in by_letter:
        ratios.append(f"- (d) 2 workers ÷ (b) 1 worker: **{by_letter['d'] / by_letter['b']:.2f}×** on {os.cpu_count()} "
                      "CPU(s) (goal: at least 1.8× on 2 cores)")
    if "d" in by_letter and "e" in by_letter:
        ratios.append(f"- (e) Dask LocalCluster ÷ (d) 2 local workers: **{by_letter['e'] / by_letter['d']:.2f}** "
                      "(goal: within 1.3×, i.e. at least 0.77)")
    memory_rows = ["| messages | batch process (reads, writes) | worker 1 | worker 2 |", "|--:|--:|--:|--:|"]
    for size in peaks:
        parent, workers = peaks[size]
        cells = [_mb(w.peak) for w in workers[:2]] + ["?"] * (2 - len(workers[:2]))
        memory_rows.append(f"| {size:,} | {_mb(parent.peak) if parent else '?'} | " + " | ".join(cells) + " |")
    small_worker = max((w.peak for w in peaks[sizes[0]][1]), default=0) if peaks else 0
    large_worker = max((w.peak for w in peaks[sizes[-1]][1]), default=0) if peaks else 0
    small_parent, large_parent = ((peaks[s][0].peak if peaks[s][0] else 0) if peaks else 0 for s in (sizes[0], sizes[-1]))

    command = "python benchmarks/bench_batch.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = "\n".join([
        *header("Campaign batches: messages per second and memory", command.strip(),
                "quick" if args.quick else "full" if count >= 100_000 else f"default, {count:,}-message",
                f"mailtrack {importlib_metadata.version('mailtrack')}" if _installed() else "mailtrack (source)"),
        "",
        f"{count:,} generated personalized messages, {size_per_message / 1000:.1f} KB per JSON line (multipart/alternative, "
        "25 KB HTML with 40 links + its text version, text links tracked), JSON lines in, JSON lines out. "
        f"Median of {repetitions} run(s) per contender, round robin; each run reads the file and writes its output.",
        "",
        *rows,
        "",
        *ratios,
        f"- every contender wrote the same bytes: {'yes' if series.same else 'NO'}",
        "- allocator: " + ("this process keeps the memory it frees for the next message, as `mailtrack rewrite` "
                           "does (mailtrack.batch.allocator), for every contender" if kept else
                           "glibc's defaults (keep_freed_memory is not available here)"),
        "- CPU per message and cores: medians over the runs, from /proc (CPU time of this process tree, all its "
        "processes, and of the whole machine less that). On a shared machine a parallel run only gets the cores the "
        "other processes leave it; CPU per message does not depend on that: the same for (b), (c) and (d) means "
        "the pool adds no work, and N free cores give about N times (b)",
        "",
        *([
            "Peak resident memory per process, `mailtrack rewrite IN.jsonl --out DIR --workers 2` (VmHWM from /proc):",
            "",
            *memory_rows,
            "",
            f"- workers: {_mb(small_worker)} at {sizes[0]:,} messages, {_mb(large_worker)} at {sizes[-1]:,} "
            f"(× {large_worker / small_worker:.2f})" if small_worker else "- workers: not measured (no /proc)",
            f"- batch process: {_mb(small_parent)} at {sizes[0]:,}, {_mb(large_parent)} at {sizes[-1]:,}"
            + (f" (× {large_parent / small_parent:.2f})" if small_parent else ""),
        ] if peaks else ["Peak memory: not measured (--no-memory)."]),
        "",
    ])
    print(report)
    out_path.write_text(report, encoding="utf-8")
    print(f"wrote {out_path}", file=sys.stderr)
    return 0


def _installed() -> bool:
    try:
        importlib_metadata.version("mailtrack")
    except importlib_metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
