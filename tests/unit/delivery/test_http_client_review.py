"""Review of issue 12 (attacker): the webhook POST client against receivers that answer too slowly or in parts.

Real asyncio receivers on loopback, as in ``test_http_client.py``; every wait
is bounded by a hang guard, never a timing assertion.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_http_client import read_request, serve

from mailtrack.delivery.http_client import PostClient, PostFailed

GUARD = 20.0  # seconds: a hang guard, far above the client's timeout in these tests


def run(coroutine: object) -> object:
    return asyncio.run(asyncio.wait_for(coroutine, GUARD))  # type: ignore[arg-type]


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",  # the head itself, a byte at a time
    b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 10_000,  # a head that never ends
])
def test_an_answer_dribbled_a_byte_at_a_time_is_cut_off_by_the_timeout_in_total(answer: bytes) -> None:
    """Slowloris in reverse: each byte comes well within the timeout, the answer never within it in total."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        try:
            for byte in answer:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
            await asyncio.sleep(GUARD)
        except (ConnectionError, OSError, asyncio.CancelledError):  # cut off by the client, or the test ends
            pass
        writer.close()

    async def main() -> str:
        server, port = await serve(handler)
        client = PostClient(f"http://127.0.0.1:{port}/", timeout=1.0)
        try:
            answered = await client.post(b"{}", {})
            return f"answered {answered.status}"
        except PostFailed as exc:
            return str(exc)
        finally:
            await client.close()
            server.close()

    assert "timed out" in str(run(main()))


def test_a_body_dribbled_after_a_whole_head_is_cut_off_and_the_status_stands() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        try:
            while True:
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, OSError, asyncio.CancelledError):  # cut off by the client, or the test ends
            pass
        writer.close()

    async def main() -> tuple[int, int]:
        server, port = await serve(handler)
        client = PostClient(f"http://127.0.0.1:{port}/", timeout=1.0)
        try:
            return (await client.post(b"{}", {})).status, len(client._idle)
        finally:
            await client.close()
            server.close()

    assert run(main()) == (200, 0)  # the status is known; the connection is not kept


@pytest.mark.parametrize("interim", [
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n",
])
def test_interim_1xx_answers_are_skipped_and_the_final_answer_counts(interim: bytes) -> None:
    """A 1xx is not the answer (RFC 9110 15.2): the final status counts, and the next POST reads its own answer."""
    statuses = iter([b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"])

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for final in statuses:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(interim)
            await writer.drain()
            await asyncio.sleep(0.1)  # the interim answer goes out on its own, as a receiver sends it
            writer.write(final)
            await writer.drain()
        writer.close()

    async def main() -> list[int]:
        server, port = await serve(handler)
        client = PostClient(f"http://127.0.0.1:{port}/", limit=1, timeout=5)
        try:
            return [(await client.post(b"{}", {})).status for _ in range(2)]
        finally:
            await client.close()
            server.close()

    assert run(main()) == [204, 500]


# -- stopping the sender while a POST hangs ------------------------------------------------------------------------

def test_stop_abandons_a_post_in_flight_at_once_and_its_row_is_tried_again_later(tmp_path: Path) -> None:
    """SIGTERM stops ``serve`` in well under a second: a POST to a receiver that never answers is abandoned (its
    row stays claimed until its lease ends, then it is posted again: at least once), not waited for (``stop``
    gave up after 5 s and left the thread posting while the store was closed under it)."""
    from mailtrack.delivery.webhooks import WebhookDelivery
    from mailtrack.events import TrackingEvent
    from mailtrack.storage.sqlite import SQLiteStore

    arrived = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def hold() -> None:  # accepts, reads the POST, never answers
        conn, _ = listener.accept()
        held.append(conn)
        conn.recv(65536)
        arrived.set()

    threading.Thread(target=hold, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    store = SQLiteStore(tmp_path / "events.sqlite")
    try:
        store.record(TrackingEvent(event_type="opened", message_id="m1", recipient="a@x",
                                   timestamp=datetime.now(timezone.utc)), outbox=[url])
        delivery = WebhookDelivery(store, url, "whsec_" + "A" * 43, timeout=60, poll_interval=0.05).start()
        assert arrived.wait(GUARD)
        delivery.stop()
        assert delivery._thread is not None and not delivery._thread.is_alive()
        [row] = store.outbox_rows()
        assert (row["delivered"], row["dead"]) == (None, 0)  # neither delivered nor given up: tried again later
    finally:
        for conn in held:
            conn.close()
        listener.close()
        store.close()
