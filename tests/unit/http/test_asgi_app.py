"""The ASGI adapter answers exactly as the WSGI app does, and a pixel or click awaits its event's commit.

Both adapters wrap the same service (a real SQLite store in tmp_path); each
request goes through both and the answers (status, headers, body) must be
equal byte for byte. The opens and clicks answered on the event loop must be
stored (committed before the answer) exactly as those answered by WSGI.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.helpers import READER_HEADERS

from mailtrack import Tracker
from mailtrack.config import Config
from mailtrack.http.asgi import AsgiApp
from mailtrack.http.messages import MAX_BODY
from mailtrack.service import Service, build_service
from mailtrack.storage.sqlite import SQLiteStore

KEY = "asgi-test-key"
BASE = "https://t.example.com"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    built = build_service(Config(secret_keys=(KEY,), base_url=BASE, db=str(tmp_path / "events.sqlite")))
    yield built
    built.close()


def urls() -> dict[str, str]:
    tracker = Tracker(secret_keys=[KEY], base_url=BASE)
    html = tracker.rewrite_html('<a href="https://example.com/x?a=1">x</a><p>hi</p>', message_id="<m@x>",
                                recipient="reader@example.com").html
    found = [url[len(BASE):] for url in re.findall(r'https://t\.example\.com/[^"]+', html)]
    click = next(url for url in found if url.startswith("/c/"))
    pixel = next(url for url in found if url.startswith("/o/"))
    return {"click": click, "open": pixel}


def wsgi_call(service: Service, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
              query: str = "") -> tuple[int, list[tuple[str, str]], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path.encode("utf-8").decode("latin-1"), "QUERY_STRING": query,
        "SERVER_NAME": "t", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    seen: list[Any] = []
    chunks = service.app(environ, lambda status, headers: seen.append((status, headers)))
    status, response_headers = seen[0]
    return int(status.split()[0]), list(response_headers), b"".join(chunks)


def asgi_call(app: AsgiApp, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
              query: str = "") -> tuple[int, list[tuple[str, str]], bytes]:
    raw_headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    if body:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode("latin-1"),
             "headers": raw_headers, "client": ("127.0.0.1", 5555), "root_path": ""}
    sent: list[dict[str, Any]] = []
    parts = [body[i:i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = parts.pop(0) if parts else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, end = sent
    return (start["status"], [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]],
            end["body"])


REQUESTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("GET", "{open}", b"", {"User-Agent": "Mozilla/5.0"}),
    ("HEAD", "{open}", b"", {}),
    ("GET", "{click}", b"", {"User-Agent": "Mozilla/5.0", "Referer": "https://mail.example/"}),
    ("HEAD", "{click}", b"", {}),
    ("POST", "{click}", b"x=1", {}),
    ("GET", "/o/forged.token.here", b"", {}),
    ("GET", "/c/WyJtIiwiciIsMCwiaHR0cHM6Ly9ldmlsLmV4YW1wbGUvIl0.aaaaaa.bbbbbbbbbbbbbbbbbbbbbb", b"", {}),
    ("GET", "/u/nope", b"", {}),
    ("GET", "/nothing/here", b"", {}),
    ("GET", "/healthz", b"", {}),
    ("GET", "/openapi.json", b"", {}),
    ("GET", "/v3/tracking_settings", b"", {}),
    ("PATCH", "/v3/tracking_settings/open", b'{"enabled": true}', {"Content-Type": "application/json"}),
    ("GET", "/v1/events", b"", {"Authorization": "Bearer nope"}),
    ("GET", "/apiv2/customer.apps.json", b"", {}),
    ("GET", "/dashboard", b"", {}),
    ("POST", "/v3/tracking_settings/open", b"x" * (MAX_BODY + 10), {"Content-Type": "application/json"}),
    ("POST", "{open}", b"x" * (MAX_BODY + 10), {}),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), REQUESTS,
                         ids=[f"{m} {p[:24]} {len(b)}" for m, p, b, _ in REQUESTS])
def test_asgi_answers_byte_for_byte_as_wsgi(service: Service, method: str, path: str, body: bytes,
                                           headers: dict[str, str]) -> None:
    path = path.format(**urls())
    app = AsgiApp(service.app, threads=2)
    try:
        expected = wsgi_call(service, method, path, body, headers)
        got = asgi_call(app, method, path, body, headers)
    finally:
        app.close()
    if path == "/healthz":  # the spool's and store's numbers may move between the two calls; the shape may not
        assert got[0] == expected[0] and [h for h, _ in got[1]] == [h for h, _ in expected[1]]
        return
    assert got == expected


def test_opens_and_clicks_answered_on_the_loop_are_stored_before_the_answer(service: Service) -> None:
    found = urls()
    app = AsgiApp(service.app, threads=2)
    store = service.recorder.store
    assert store is not None
    try:
        for _ in range(3):
            assert asgi_call(app, "GET", found["open"], headers={"User-Agent": "UA"})[0] == 200
            assert asgi_call(app, "GET", found["click"], headers=READER_HEADERS)[0] == 302
            # the answer came after the commit: the events are there now, not "eventually"
        assert asgi_call(app, "HEAD", found["open"])[0] == 200  # HEAD never records
    finally:
        app.close()
    events = store.events()
    assert [e.event_type.value for e in events] == ["opened", "clicked"] * 3
    assert [e.first for e in events] == [True, True, False, False, False, False]
    assert events[0].user_agent == "UA" and events[0].ip == "127.0.0.1"
    assert events[1].url == "https://example.com/x?a=1"


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_many_concurrent_requests_share_group_commits(tmp_path: Path, writer: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """200 pixel requests awaited at once on one loop: all stored, in far fewer commits than requests (by the
    writer thread, or sent by the loop itself to the writer process)."""
    service = build_service(Config(secret_keys=(KEY,), base_url=BASE, db=str(tmp_path / "events.sqlite"),
                                   writer=writer))
    found = urls()
    app = AsgiApp(service.app, threads=2)
    commits: list[int] = []
    store = service.recorder.store
    assert store is not None
    if writer == "thread":
        original = store.record_many

        def counting(events: Any, outbox: Any = ()) -> Any:
            commits.append(len(events))
            return original(events, outbox)

        monkeypatch.setattr(store, "record_many", counting)
    else:
        from mailtrack.delivery import recorder
        from mailtrack.storage.writer_process import encode_request

        def counted(events: Any, outbox: Any) -> bytes:
            commits.append(len(events))
            return encode_request(events, outbox)

        monkeypatch.setattr(recorder, "encode_request", counted)

    async def one() -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "method": "GET", "path": found["open"], "query_string": b"", "headers": [],
                   "client": ("127.0.0.1", 1)}, receive, send)
        return int(sent[0]["status"])

    async def burst() -> list[int]:
        await one()  # the first request connects the loop's lane to the writer process (if any)
        await asyncio.sleep(0.05)
        return await asyncio.gather(*(one() for _ in range(199)))

    try:
        assert asyncio.run(burst()) == [200] * 199
    finally:
        app.close()
        service.close()
    recorded = SQLiteStore(tmp_path / "events.sqlite")
    assert recorded.count() == 200
    recorded.close()
    assert 199 <= sum(commits) <= 200  # (the first one may have gone through the thread before the lane connected)
    assert len(commits) < 100, commits  # batched: the loop queued many events during each commit
    print(f"200 concurrent pixel requests: {len(commits)} commits, sizes {commits}")


@pytest.mark.parametrize(("scope", "expected"), [
    ({"path": "//healthz"}, "/healthz"),
    ({"path": "///healthz"}, "/healthz"),
    ({"path": "//evil.com/x"}, "/evil.com/x"),  # a path, never an authority
    ({"path": "/a//b"}, "/a//b"),  # only the leading run: a token may hold anything
    ({"path": "//o/x", "root_path": "/t"}, "/t//o/x"),
    ({"path": "", "root_path": ""}, ""),
])
def test_text_path_takes_leading_slashes_as_one_as_waitress_does(scope: dict[str, str], expected: str) -> None:
    from mailtrack.http.asgi import text_path
    from mailtrack.http.messages import routed_path

    assert text_path(scope) == expected
    assert routed_path(expected) == expected


@pytest.mark.parametrize(("target", "expected"), [
    (b"/c/" + b"a" * 70_000 + b"?q=1", ("/c/" + "a" * 70_000, b"q=1")),
    (b"//c/x?q=" + b"b" * 70_000, ("//c/x", b"q=" + b"b" * 70_000)),  # a path, as httptools.parse_url reads it
    (b"http://t.example.com/o/x?" + b"c" * 70_000 + b"#frag", ("/o/x", b"c" * 70_000)),  # absolute form
    (b"/%41" + b"d" * 70_000, ("/%41" + "d" * 70_000, b"")),  # percent-decoded later, as uvicorn does
])
def test_a_long_request_target_is_split_as_httptools_splits_a_short_one(target: bytes,
                                                                         expected: tuple[str, bytes]) -> None:
    pytest.importorskip("httptools")
    import httptools

    from mailtrack.http.loop_server import _split_target

    assert _split_target(target) == expected
    short = target.replace(b"a" * 70_000, b"a").replace(b"b" * 70_000, b"b").replace(b"c" * 70_000, b"c")
    short = short.replace(b"d" * 70_000, b"d")
    parsed = httptools.parse_url(short)
    assert _split_target(short) == (parsed.path.decode("ascii"), parsed.query or b"")
