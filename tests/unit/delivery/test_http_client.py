"""The webhook POST client against real sockets: kept-alive reuse, stale connections, sloppy answers, TLS, limits.

Receivers are small asyncio servers on loopback written for each case (the
byte-level behaviours here are what real receivers do wrong); TLS uses a
certificate made with ``openssl`` for 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mailtrack.delivery.http_client import MAX_ANSWER, PostClient, PostFailed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    return server, server.sockets[0].getsockname()[1]


def run(coroutine: Awaitable[object]) -> object:
    return asyncio.run(asyncio.wait_for(coroutine, 30))  # type: ignore[arg-type]  # a hang guard


def test_connections_are_kept_alive_and_a_204_with_a_body_is_still_a_204() -> None:
    peers: list[object] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            assert request.startswith(b"POST /hook?x=1 HTTP/1.1\r\n") and request.endswith(b'{"a":1}')
            assert b"\r\nX-Test: yes\r\n" in request and b"\r\nContent-Length: 7\r\n" in request
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\nok")  # a body a 204 must not have: sloppy, but a 204
            await writer.drain()
        writer.close()

    async def main() -> list[int]:
        server, port = await serve(handler)
        client = PostClient(f"http://127.0.0.1:{port}/hook?x=1", limit=2, timeout=5)
        statuses = [(await client.post(b'{"a":1}', {"X-Test": "yes"})).status for _ in range(5)]
        await client.close()
        server.close()
        return statuses

    assert run(main()) == [204] * 5
    assert len(peers) <= 5  # the trailing bytes cost the connection its reuse, never the delivery


def test_a_kept_alive_connection_the_receiver_closed_is_replaced_and_the_post_sent_once_more() -> None:
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive promised ...
        await writer.drain()
        writer.close()  # ... and the connection closed anyway (an idle timeout on the receiver's side)

    async def main() -> list[int]:
        server, port = await serve(handler)
        client = PostClient(f"http://127.0.0.1:{port}/", timeout=5)
        first = (await client.post(b"{}", {})).status
        await asyncio.sleep(0.2)  # the receiver's close has arrived
        second = (await client.post(b"{}", {})).status
        await client.close()
        server.close()
        return [first, second]

    assert run(main()) == [200, 200] and served == 2


@pytest.mark.parametrize(("answer", "expected"), [
    (b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n", (429, "7")),
    (b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n2\r\nno\r\n0\r\n\r\n", (503, "3")),
    (b"HTTP/1.0 200 OK\r\n\r\nbody until the connection ends", (200, None)),
    (b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/\r\nContent-Length: 0\r\n\r\n", (302, None)),
])
def test_answers_are_read_whatever_their_framing(answer: bytes, expected: tuple[int, str | None]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def main() -> tuple[int, str | None]:
        server, port = await serve(handler)
        client = PostClient(f"http://127.0.0.1:{port}/", timeout=5)
        got = await client.post(b"{}", {})
        await client.close()
        server.close()
        return got.status, got.headers.get("retry-after")

    assert run(main()) == expected


@pytest.mark.parametrize(("answer", "reason"), [
    (b"", "closed the connection before answering"),
    (b"NOT HTTP AT ALL\r\n\r\n", "unreadable answer"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000, "head is longer"),
    (None, "timed out"),
])
def test_no_answer_is_a_postfailed_that_says_why(answer: bytes | None, reason: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if answer is None:
            await asyncio.sleep(5)  # never answers within the client's timeout
        else:
            writer.write(answer)
            await writer.drain()
        writer.close()

    async def main() -> str:
        server, port = await serve(handler)
        client = PostClient(f"http://127.0.0.1:{port}/", timeout=0.5)
        try:
            await client.post(b"{}", {})
        except PostFailed as exc:
            return str(exc)
        finally:
            await client.close()
            server.close()
        return "answered"

    assert reason in str(run(main()))


def test_a_refused_connection_and_a_huge_answer() -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * (MAX_ANSWER * 3))
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async def main() -> tuple[str, int]:
        server, port = await serve(huge)
        refused = PostClient("http://127.0.0.1:1/", timeout=2)
        try:
            await refused.post(b"{}", {})
            why = "answered"
        except PostFailed as exc:
            why = str(exc)
        client = PostClient(f"http://127.0.0.1:{port}/", timeout=5)
        status = (await client.post(b"{}", {})).status  # the status is known: the rest is not read
        assert not client._idle  # that connection is not kept
        await client.close()
        server.close()
        return why, status

    why, status = run(main())  # type: ignore[misc]
    assert why.startswith("cannot connect") and status == 200


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS tests")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_is_verified_and_works_with_a_trusted_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
        except (asyncio.IncompleteReadError, ssl.SSLError, ConnectionError):
            writer.close()
            return
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main() -> tuple[str, int]:
        server, port = await serve(handler, tls)
        untrusting = PostClient(f"https://127.0.0.1:{port}/", timeout=5)
        try:
            await untrusting.post(b"{}", {})
            refused = "answered"
        except PostFailed as exc:
            refused = str(exc)
        trusting = PostClient(f"https://127.0.0.1:{port}/", timeout=5)
        assert trusting.tls is not None
        trusting.tls.load_verify_locations(cert)  # what a system CA store does for a real certificate
        status = (await trusting.post(b"{}", {})).status
        await trusting.close()
        server.close()
        return refused, status

    refused, status = run(main())  # type: ignore[misc]
    assert refused.startswith("TLS failed") and "CERTIFICATE_VERIFY_FAILED" in refused.upper().replace(" ", "_")
    assert status == 201


def test_only_http_urls_are_taken() -> None:
    with pytest.raises(PostFailed, match="not an http"):
        PostClient("ftp://example.com/")


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
])
def test_a_stray_body_arriving_after_a_bodiless_answer_costs_the_connection_never_a_delivery(head: bytes) -> None:
    """A 204/304 has no body (RFC 9112 6.3): its answer ends at its head. A sloppy receiver that writes a body
    anyway, in a later TCP segment, leaves bytes on the kept-alive connection; the next POST must not read them
    as its answer (it failed once with "unreadable answer" and was retried): the connection is not reused."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[int] = []
    stop = threading.Event()

    def receiver() -> None:  # a raw socket receiver: the head, a pause (another segment), then junk
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(1)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                head_end = buffered.index(b"\r\n\r\n") + 4
                length = int(next(line.split(b":", 1)[1] for line in buffered[:head_end].split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                while len(buffered) < head_end + length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                buffered = buffered[head_end + length:]
                try:
                    conn.sendall(head)
                    time.sleep(0.05)  # the stray body comes in a later segment, after the answer was read
                    conn.sendall(b"stray body the answer must not have")
                except OSError:
                    return

    thread = threading.Thread(target=receiver, daemon=True)
    thread.start()

    async def main() -> list[object]:
        client = PostClient(f"http://127.0.0.1:{port}/hook", timeout=5)
        results: list[object] = []
        try:
            for _ in range(4):
                try:
                    results.append((await client.post(b"{}", {})).status)
                except PostFailed as exc:
                    results.append(str(exc))
                await asyncio.sleep(0.1)  # the stray body has arrived on the idle connection
        finally:
            await client.close()
        return results

    try:
        status = int(head.split()[1])
        assert run(main()) == [status] * 4
        assert len(connections) == 4  # each connection was left with bytes on it: none reused
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_second_answer_glued_to_a_204_neither_replaces_its_status_nor_keeps_the_connection() -> None:
    """llhttp parses on past a whole answer: a second head in the same packet overwrote the status read."""
    peers: list[object] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def main() -> list[int]:
        server, port = await serve(handler)
        client = PostClient(f"http://127.0.0.1:{port}/", timeout=5)
        statuses = [(await client.post(b"{}", {})).status for _ in range(3)]
        await client.close()
        server.close()
        return statuses

    assert run(main()) == [204] * 3
    assert len(peers) == 3
