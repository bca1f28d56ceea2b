"""Webhook deliveries per second to a local receiver: the pooled sender against 0.1's sequential one.

Run from the repository root::

    .venv/bin/python benchmarks/bench_webhooks.py            # 20,000 deliveries -> benchmarks/results/webhooks.md
    .venv/bin/python benchmarks/bench_webhooks.py --quick    # 2,000 (smoke) -> results/webhooks-quick.md

Each contender starts from the same SQLite store holding ``--events`` recorded
events, each queued in the outbox for the receiver, and delivers them all:
claim, sign, POST, mark delivered (every step a real one: the store is the
one ``mailtrack serve`` uses, the signatures are the real Standard Webhooks
ones). Contenders, round robin, ``--repetitions`` times:

* (a) 0.1's sender: one thread, one row claimed at a time, a new connection
  per POST through ``urllib.request`` (the code this issue replaces, kept here
  as it was, so the ratio stays honest);
* (b) :class:`~mailtrack.delivery.webhooks.WebhookDelivery` as ``mailtrack
  serve`` runs it (16 concurrent POSTs from one event loop over kept-alive connections).

The receiver is a small asyncio HTTP/1.1 server in its own process that
answers ``204`` at once and counts requests, so the sender is what is
measured. Deliveries/s is events over the wall time until every row is
delivered; the receiver's count must equal the events (nothing lost or sent
twice). No threshold is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import multiprocessing
import shlex
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.report import header  # noqa: E402

import mailtrack  # noqa: E402
from mailtrack.delivery.webhooks import WebhookDelivery, new_secret, payload, secret_keys  # noqa: E402
from mailtrack.events import TrackingEvent  # noqa: E402
from mailtrack.storage.sqlite import SQLiteStore  # noqa: E402


def _receive(port_out: multiprocessing.connection.Connection) -> None:
    """The receiver process: 204 to every request, keep-alive; ``GET /count`` answers how many POSTs it had."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET /count"):
                    body = str(count).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                else:
                    count += 1
                    writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class _Sequential:
    """(a) 0.1's ``WebhookDelivery``: one row claimed at a time, one urllib request (a new connection) per POST."""

    def __init__(self, store: SQLiteStore, url: str, secret: str) -> None:
        self.store, self.url, self.key = store, url, secret_keys(secret)[0]

    def deliver_due(self) -> int:
        done = 0
        while True:
            claimed = self.store.outbox_claim(self.url, time.time(), 40, limit=1)
            if not claimed:
                return done
            item = claimed[0]
            body = payload(item.event)
            stamp = int(time.time())
            digest = hmac.new(self.key, str(stamp).encode() + b"." + body, hashlib.sha256).hexdigest()
            request = urllib.request.Request(self.url, data=body, method="POST", headers={
                "Content-Type": "application/json", "User-Agent": "mailtrack-webhook",
                "Mailtrack-Signature": f"t={stamp},v1={digest}", "Mailtrack-Event-Id": item.event.event_id})
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
            if 200 <= status < 300:
                self.store.outbox_delivered(item.id, time.time())
                done += 1
            else:
                self.store.outbox_failed(item.id, f"HTTP {status}", time.time() + 1)


def _fill(path: Path, url: str, events: int) -> None:
    store = SQLiteStore(path)
    now = datetime.now(timezone.utc)
    for n in range(events):
        event = TrackingEvent("clicked" if n % 3 else "opened", now, f"m{n % 500}@bench", f"r{n}@bench.example",
                              url="https://shop.example/p" if n % 3 else None, link_index=1 if n % 3 else None,
                              metadata={"campaign": "bench"})
        store.record(event, outbox=[url])
    store.close()


def _count(url: str) -> int:
    with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/count", timeout=10) as response:
        return int(response.read())


CONTENDERS: dict[str, Callable[[SQLiteStore, str, str], object]] = {
    "(a) 0.1's sender: sequential, a new connection per POST": _Sequential,
    "(b) WebhookDelivery: 16 concurrent POSTs, kept-alive connections": lambda s, u, k: WebhookDelivery(s, u, k),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, help="deliveries per run (default 20,000; --quick 2,000)")
    parser.add_argument("--repetitions", type=int, default=3, help="runs of each contender, round robin (default 3)")
    parser.add_argument("--quick", action="store_true", help="2,000 deliveries, one repetition: a smoke run")
    parser.add_argument("--out", type=Path, help="report file (default benchmarks/results/webhooks[-quick].md)")
    args = parser.parse_args(argv)
    events = args.events or (2_000 if args.quick else 20_000)
    repetitions = 1 if args.quick else args.repetitions
    out = args.out or HERE / "results" / ("webhooks-quick.md" if args.quick else "webhooks.md")

    receiving, sending = multiprocessing.Pipe(duplex=False)
    receiver = multiprocessing.Process(target=_receive, args=(sending,), daemon=True)
    receiver.start()
    url = f"http://127.0.0.1:{receiving.recv()}/hook"
    secret = new_secret()
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    exact = True
    try:
        with tempfile.TemporaryDirectory() as work:
            template = Path(work) / "template.sqlite"
            _fill(template, url, events)
            for rep in range(repetitions):
                names = list(CONTENDERS)
                for name in names[rep % len(names):] + names[:rep % len(names)]:
                    db = Path(work) / f"run-{rep}.sqlite"
                    db.write_bytes(template.read_bytes())
                    store = SQLiteStore(db)
                    sender = CONTENDERS[name](store, url, secret)
                    before = _count(url)
                    started = time.perf_counter()
                    delivered = sender.deliver_due()  # type: ignore[attr-defined]
                    elapsed = time.perf_counter() - started
                    received = _count(url) - before
                    stop = getattr(sender, "stop", None)
                    if stop is not None:
                        stop()
                    pending = sum(1 for row in store.outbox_rows() if row["delivered"] is None)
                    store.close()
                    db.unlink()
                    exact = exact and delivered == received == events and pending == 0
                    rates[name].append(events / elapsed)
                    print(f"  {name}: {rates[name][-1]:,.0f} deliveries/s ({received} received, {pending} pending)",
                          file=sys.stderr, flush=True)
    finally:
        receiver.terminate()
        receiver.join(5)

    a, b = (statistics.median(rates[name]) for name in CONTENDERS)
    command = "python benchmarks/bench_webhooks.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = header("Webhook deliveries per second", command.strip(), "quick" if args.quick else "full",
                   f"mailtrack {mailtrack.__version__}")
    lines += [
        "",
        f"{events:,} events in a SQLite outbox, delivered to a local asyncio receiver answering 204 (its own process). "
        f"Median of {repetitions} run(s) per contender, round robin.",
        "",
        "| contender | deliveries/s (median) | min – max |",
        "|---|--:|--:|",
        *(f"| {name} | {statistics.median(r):,.0f} | {min(r):,.0f} – {max(r):,.0f} |" for name, r in rates.items()),
        "",
        f"- (b) ÷ (a): **{b / a:.1f}×**; (b) {b:,.0f} deliveries/s (goal: at least 2,000)",
        f"- every run delivered every event exactly once (receiver count = events, nothing pending): "
        f"{'yes' if exact else 'NO'}",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out}")
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
