"""Review of issue 12 (attacker): ``mailtrack serve`` on uvicorn against clients that break HTTP on purpose.

Real ``mailtrack serve`` subprocesses (each on uvicorn and, where the
comparison matters, on ``--server waitress``) and an in-process
:class:`~mailtrack.http.loop_server.LoopServer` with short deadlines, on
loopback sockets. Every wait is bounded by a socket timeout or ``wait_until``
(hang guards), never a timing assertion.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.helpers import asgi_lifespan, make_tracker, wait_until
from test_serve_connections import closed_by_server
from test_serve_http import Server

from mailtrack.http.pages import GIF

GUARD = 10.0


@pytest.fixture(scope="module", params=["uvicorn", "waitress"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(request.param)
    running = Server(workdir / "events.sqlite", workdir, "--server", request.param)
    try:
        yield running
    finally:
        running.stop()


def pixel_path(message_id: str) -> str:
    rewritten = make_tracker().rewrite_html('<a href="https://example.com/a">a</a>', message_id=message_id,
                                            recipient="ann@example.com")
    assert rewritten.pixel is not None
    return rewritten.pixel.html.split('src="', 1)[1].split('"', 1)[0].split("example.com", 1)[1]


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` at once, then read until the server closes (or the guard runs out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as conn:
        conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


@pytest.mark.parametrize("start", [
    b"GET /v3/templates HTTP/1.1\r\nHost: t\r\nX-Huge: ",  # a header
    b"GET /v3/templates?q=",  # the request line
    b"POST /v3/templates HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Huge: ",  # a trailer
], ids=["header", "url", "trailer"])
def test_a_head_that_never_ends_is_cut_off_before_it_fills_the_servers_memory(server: Server, start: bytes) -> None:
    """uvicorn had no limit on a request's head: httptools joined a header value piece by piece (quadratic), the
    event loop copied gigabytes, and every other client waited for it (6 s for a 60 MB header). Cut off past a
    limit, as waitress does; a chunked body's trailer fields too."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=GUARD) as conn:
        conn.sendall(start)
        piece, sent, cut = b"a" * 65536, 0, False
        try:
            while sent < 64 << 20:
                conn.sendall(piece)
                sent += len(piece)
        except OSError:  # reset or broken pipe: the server closed the connection
            cut = True
        answer = b""
        if not cut:
            try:
                answer = conn.recv(65536)
            except OSError:
                cut = True
    assert cut or answer, f"{sent} bytes of one header taken without an answer"
    if answer:
        assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 "))
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]["message"]  # the v3 API's error shape
    assert wait_until(lambda: exchange(server.port, f"GET {pixel_path('<head@x>')} HTTP/1.1\r\nHost: t\r\n"
                                       "Connection: close\r\n\r\n".encode()).endswith(GIF), timeout=GUARD)


@pytest.mark.parametrize("garbage", [b"GARBAGE \x01\x02\r\n\r\n", b"\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"])
def test_a_pixel_request_followed_by_garbage_still_gets_its_gif(server: Server, garbage: bytes) -> None:
    """The 400 for unparseable bytes pipelined after a valid request answers them, not the request before:
    uvicorn wrote it at once, in place of the pixel's answer (whose event was stored all the same)."""
    data = exchange(server.port, f"GET {pixel_path('<garbage@x>')} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                    + garbage)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and GIF in data


def test_requests_pipelined_before_a_broken_one_are_answered_in_order_then_it_is_refused(server: Server) -> None:
    pixel = f"GET {pixel_path('<order@x>')} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    broken = (b"POST /v3/user/webhooks/event/settings HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Type: application/json\r\n\r\nzz\r\nxx\r\n0\r\n\r\n")
    data = exchange(server.port, pixel + pixel + broken)
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert [answer[:3] for answer in answers] == [b"200", b"200", b"400"]
    assert answers[0].endswith(GIF) and answers[1].endswith(GIF)
    assert json.loads(answers[2].split(b"\r\n\r\n", 1)[1])["errors"][0]["field"] is None  # the v3 API's shape


def test_an_upgrade_request_does_not_swallow_the_request_pipelined_after_it(server: Server) -> None:
    """Nothing is upgraded here (no websockets): the bytes after an ``Upgrade`` request's head are the next
    request. uvicorn dropped them when they came in the same packet, and that request hung unanswered."""
    data = exchange(server.port, f"GET {pixel_path('<upgrade@x>')} HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n"
                    "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
                    "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and GIF in data
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 2 and b'"status":"ok"' in data


# -- the deadlines, in process with short ones ---------------------------------------------------------------------

async def _echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that reads the whole body (as mailtrack's does), then answers its length."""
    if scope["type"] == "lifespan":
        await asgi_lifespan(receive, send)
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    from mailtrack.http import loop_server

    monkeypatch.setattr(loop_server, "IDLE_SECONDS", 1.0)
    monkeypatch.setattr(loop_server, "REQUEST_SECONDS", 1.5)
    monkeypatch.setattr(loop_server, "_PROTOCOL", None)  # made again with the short deadlines
    running = loop_server.create(_echo_length, host="127.0.0.1", port=0)
    runner = threading.Thread(target=running.run)
    runner.start()
    try:
        yield lambda: running.effective_port
    finally:
        running.stop()
        runner.join(10)
        running.close()
        monkeypatch.setattr(loop_server, "_PROTOCOL", None)


@pytest.mark.timeout(60)
def test_a_pipelined_request_whose_body_never_comes_is_cut_off_by_the_request_deadline(
        short_deadlines: Callable[[], int]) -> None:
    """A request that began in the packet that ended the one before it had no deadline at all (it was armed only
    when a packet began a request): its body never came, and the connection was held for ever."""
    port = short_deadlines()
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nPOST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
        wait_until(lambda: closed_by_server(conn), timeout=GUARD, what="the server to cut the body-less request off")


@pytest.mark.timeout(60)
def test_a_pipelined_request_whose_body_comes_in_time_is_answered(short_deadlines: Callable[[], int]) -> None:
    port = short_deadlines()
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nPOST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                     b"Connection: close\r\n\r\n")
        conn.sendall(b"abc")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 2 and data.endswith(b"\r\n\r\n3")


# -- clients that never read their answers -------------------------------------------------------------------------

BIG = b"x" * (4 << 20)


async def _big(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering every request with 4 MiB (an events page, or many pipelined /openapi.json)."""
    if scope["type"] == "lifespan":
        await asgi_lifespan(receive, send)
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BIG)).encode())]})
    await send({"type": "http.response.body", "body": BIG})


@pytest.fixture
def big_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from mailtrack.http import loop_server

    monkeypatch.setattr(loop_server, "IDLE_SECONDS", 1.0)
    monkeypatch.setattr(loop_server, "REQUEST_SECONDS", 1.5)
    monkeypatch.setattr(loop_server, "_PROTOCOL", None)
    running = loop_server.create(_big, host="127.0.0.1", port=0, grace=600)  # a drain that would wait for ever
    runner = threading.Thread(target=running.run)
    runner.start()
    try:
        yield running, runner
    finally:
        running.stop()
        runner.join(GUARD)
        running.close()
        monkeypatch.setattr(loop_server, "_PROTOCOL", None)


def never_reading(port: int, requests: int) -> socket.socket:
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing: its window closes
    conn.settimeout(GUARD)
    conn.connect(("127.0.0.1", port))
    conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * requests)
    return conn


@pytest.mark.timeout(60)
@pytest.mark.parametrize("requests", [1, 3])
def test_a_client_that_never_reads_its_answer_is_cut_off(big_answers: Any, requests: int) -> None:
    """An answer the client never reads was held for ever (the connection, its socket and the answer's bytes):
    uvicorn closes an idle connection only once its output is flushed, and a pipelined answer waited for the
    flush with no deadline. Cut off when its output makes no progress for the idle time."""
    server, _ = big_answers
    conn = never_reading(server.effective_port, requests)
    try:  # watched from the server's side: reading the socket here would be reading the answer
        state = server.server.server_state
        wait_until(lambda: state.total_requests >= 1 or state.tasks, timeout=GUARD, what="an answer")
        wait_until(lambda: not state.connections, timeout=GUARD, what="the non-reading client to be cut off")
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_stop_is_not_held_by_a_client_that_never_reads(big_answers: Any) -> None:
    """SIGTERM: an answered request whose client never reads is not "in flight"; the server waited for its
    output to flush until the grace ran out (here 600 s)."""
    server, runner = big_answers
    conn = never_reading(server.effective_port, 1)
    try:
        wait_until(lambda: server.server.server_state.total_requests >= 1 or server.server.server_state.tasks,
                   timeout=GUARD, what="the request to be answered")
        server.stop()
        runner.join(GUARD)
        assert not runner.is_alive(), "stop() waited for a client that never reads"
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_a_body_in_one_byte_chunks_up_to_the_limit_is_not_taken_for_a_long_head(
        short_deadlines: Callable[[], int]) -> None:
    from mailtrack.http.messages import MAX_BODY

    body = b"".join(b"1\r\n" + bytes([byte]) + b"\r\n" for byte in b"x" * MAX_BODY) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", short_deadlines()), timeout=GUARD) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(str(MAX_BODY).encode())


# -- issue 12: long URLs and doubled slashes route alike on both servers ----------------------------------------


def sent_and_read(port: int, data: bytes) -> bytes:
    """Send ``data`` from a thread while reading here, so an answer sent before the request is whole (a refusal)
    is read even when the server then resets the connection for the bytes it left unread."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as conn:
        def send() -> None:
            try:
                conn.sendall(data)
            except OSError:  # the server refused and closed: its answer is read below
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        sender.join(GUARD)
    return received


def click_path(message_id: str, destination: str) -> str:
    rewritten = make_tracker().rewrite_html(f'<a href="{destination}">a</a>', message_id=message_id,
                                            recipient="ann@example.com")
    return rewritten.html.split('href="', 1)[1].split('"', 1)[0].split("example.com", 1)[1]


@pytest.mark.parametrize("size", [70_000, 200_000])
def test_a_click_url_longer_than_64_kib_is_answered_alike_on_both_servers(server: Server, size: int) -> None:
    """uvicorn answered 400 to any URL of 64 KiB or more (``httptools.parse_url`` keeps 16-bit offsets) where
    waitress took it up to its head limit: a click with a long query (a token padded by a mail filter, a long
    signed link) went nowhere on one server and to its destination on the other."""
    path = click_path(f"<long-{size}@x>", "https://example.com/landing")
    query = "pad=" + "x" * size
    answer = sent_and_read(server.port, f"GET {path}?{query} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                           .encode())
    assert answer.startswith(b"HTTP/1.1 302 "), answer[:200]
    assert b"\r\nLocation: https://example.com/landing\r\n" in answer.replace(b"location:", b"Location:")
    bogus = sent_and_read(server.port, f"GET /c/{'a' * size} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                          .encode())
    assert bogus.startswith(b"HTTP/1.1 404 "), bogus[:200]  # the click page's own 404, not a server's 400


def test_a_url_past_the_head_limit_is_a_431_on_both_servers(server: Server) -> None:
    from mailtrack.http.loop_server import HEAD_BYTES

    answer = sent_and_read(server.port, f"GET /c/{'a' * (HEAD_BYTES + 10_000)} HTTP/1.1\r\nHost: t\r\n"
                           "Connection: close\r\n\r\n".encode())
    assert answer.split(b"\r\n", 1)[0].endswith(b" 431 Request Header Fields Too Large"), answer[:200]


@pytest.mark.parametrize("target", ["//healthz", "///healthz", "//healthz?x=1"])
def test_leading_slashes_route_alike_on_both_servers(server: Server, target: str) -> None:
    """``//healthz`` was a 404 under uvicorn and a 200 under waitress (which gives ``PATH_INFO`` with one
    leading slash): the same request now routes the same on both."""
    answer = sent_and_read(server.port, f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"] in ("ok", "degraded")


def test_a_doubled_slash_click_is_a_click_and_a_host_like_path_is_never_a_redirect(server: Server) -> None:
    path = click_path("<slashes@x>", "https://example.com/signed")
    answer = sent_and_read(server.port, f"GET /{path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 302 ") and b"https://example.com/signed\r\n" in answer, answer[:300]
    for target in ["//evil.com/", "//evil.com/healthz", "//evil.com" + path, "///evil.com/c/x", "//evil.com/%2e%2e/"]:
        answer = sent_and_read(server.port, f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                               .encode())
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert answer.startswith(b"HTTP/1.1 404 "), (target, answer[:200])
        assert b"\r\nlocation:" not in head and b"evil" not in head, (target, head)
