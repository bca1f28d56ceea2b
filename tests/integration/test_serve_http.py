"""``mailtrack serve`` over real HTTP: a real subprocess on a real socket, as a mail client meets it.

Every test talks to ``python -m mailtrack serve`` (waitress) through
``http.client`` (which never follows redirects) or a raw socket (to see the
exact bytes of a response), and checks what the server stored through
``SQLiteStore`` and the ``mailtrack events`` / ``mailtrack stats`` commands.
Servers are started by fixtures that always stop them.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from support.helpers import BASE_URL, READER_HEADERS, make_tracker, wait_until

import mailtrack
from mailtrack.delivery.webhooks import WebhookDelivery, verify_signature
from mailtrack.http.endpoints import GIF
from mailtrack.storage.sqlite import SQLiteStore

KEYS = "older-key,newest-key"  # make_tracker()'s keys, newest last
NO_CACHE = {
    "cache-control": "no-cache, no-store, must-revalidate, max-age=0",
    "pragma": "no-cache",
    "expires": "0",
}
START_TIMEOUT = 30.0  # a cold start on a busy shared machine


# -- HTTP clients ------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def http_request(port: int, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 30.0) -> Reply:
    """One request on a fresh connection; redirects are not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return Reply(response.status, response.getheaders(), data)
    finally:
        connection.close()


@dataclass
class RawReply:
    raw: bytes

    @property
    def head(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[0]

    @property
    def status(self) -> int:
        return int(self.raw.split(b" ", 2)[1])

    @property
    def header_names(self) -> list[bytes]:
        return [line.split(b":", 1)[0].strip().lower() for line in self.head.split(b"\r\n")[1:]]


def raw_request(port: int, target: str, method: str = "GET", timeout: float = 30.0) -> RawReply:
    """Send ``target`` byte for byte (percent escapes and all) and return the response's raw bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: t.example.com\r\nConnection: close\r\n\r\n".encode("latin-1"))
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return RawReply(b"".join(chunks))


def path_of(url: str) -> str:
    assert url.startswith(BASE_URL + "/"), url
    return url[len(BASE_URL):]


# -- the server --------------------------------------------------------------------------------


class Server:
    """A running ``mailtrack serve`` subprocess."""

    def __init__(self, db: Path, workdir: Path, *extra: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.db = db
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"serve-{time.time_ns()}.out"
        self.stderr_path = self.stdout_path.with_suffix(".err")
        command = [sys.executable, "-m", "mailtrack", "serve", "--db", str(db), "--secret-key", KEYS, "--base-url",
                   BASE_URL, "--port", "0", *extra]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})}, cwd=cwd)
        try:
            self.port = self._wait_for_port()
        except BaseException:
            self.stop()
            raise

    def _wait_for_port(self) -> int:
        def port() -> int | None:
            text = self.stdout_path.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                if line.startswith("mailtrack: serving ") and " on http://127.0.0.1:" in line:
                    return int(line.split(" on http://127.0.0.1:", 1)[1].split()[0])
            if self.proc.poll() is not None:
                raise AssertionError(f"mailtrack serve exited with {self.proc.returncode}: {self.stderr()}")
            return None

        return wait_until(port, START_TIMEOUT, what="mailtrack serve to report its port")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        return http_request(self.port, method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def raw(self, target: str, method: str = "GET") -> RawReply:
        return raw_request(self.port, target, method)

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(*args, db=None)`` starts a server (default DB: tmp_path/events.sqlite); all are stopped afterwards.

    ``db`` may be a ``postgresql://`` URL (a str): that server runs in tmp_path, where it keeps its spool.
    """
    started: list[Server] = []

    def start(*extra: str, db: Path | str | None = None, env: dict[str, str] | None = None) -> Server:
        url = isinstance(db, str) and db.startswith("postgresql://")
        server = Server(db or tmp_path / "events.sqlite", tmp_path / "logs", *extra, env=env,  # type: ignore[arg-type]
                        cwd=tmp_path if url else None)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the endpoint tests (each uses its own message ids); saves a start per test."""
    workdir = tmp_path_factory.mktemp("shared")
    server = Server(workdir / "events.sqlite", workdir)
    try:
        yield server
    finally:
        server.stop()


def stored(db: Path, **filters: Any) -> list[mailtrack.TrackingEvent]:
    store = SQLiteStore(db)
    try:
        return store.events(**filters)
    finally:
        store.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailtrack", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


@pytest.fixture(scope="module")
def tracker() -> mailtrack.Tracker:  # module-scoped twin of conftest's (same keys), for `shared` tests
    return make_tracker()


# -- 1. the open pixel -------------------------------------------------------------------------


def assert_pixel(reply: Reply, *, head: bool = False) -> None:
    assert reply.status == 200
    assert reply.header("Content-Type") == "image/gif"
    for name, value in NO_CACHE.items():
        assert reply.all(name) == [value], name
    assert reply.body == (b"" if head else GIF)
    assert len(GIF) == 43 and GIF.startswith(b"GIF89a")


def test_open_pixel_serves_gif_and_records_opened(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("open")
    url = tracker.tracking_url("open", message_id=message_id, recipient="ann@example.com",
                               metadata={"campaign": "spring", "n": 1})
    headers = {"User-Agent": "Mozilla/5.0 (pixel test)", "Referer": "https://mail.example/inbox"}
    before = datetime.now(timezone.utc)
    first = shared.get(path_of(url), headers=headers)
    after = datetime.now(timezone.utc)
    assert_pixel(first)
    assert first.header("Content-Length") == "43"
    assert first.all("Set-Cookie") == [] and first.all("Location") == []

    (event,) = stored(shared.db, message_id=message_id)
    assert (event.event_type, event.recipient, event.url, event.link_index) == ("opened", "ann@example.com", None, None)
    assert (event.user_agent, event.ip, event.referer) == ("Mozilla/5.0 (pixel test)", "127.0.0.1", "https://mail.example/inbox")
    assert dict(event.metadata) == {"campaign": "spring", "n": 1}
    assert event.first is True and event.machine is None
    assert event.timestamp.tzinfo is not None and before <= event.timestamp <= after  # the time of the request

    assert_pixel(shared.get(path_of(url), headers={"User-Agent": "second"}))
    events = stored(shared.db, message_id=message_id)
    assert [(e.first, e.user_agent) for e in events] == [(True, "Mozilla/5.0 (pixel test)"), (False, "second")]

    # the same, as a user sees it through the command line
    proc = cli("events", "--db", str(shared.db), "--json", "--message-id", message_id)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines == [e.to_dict() for e in events]
    assert lines[0]["timestamp"].endswith("Z") and lines[0]["event_id"] != lines[1]["event_id"]
    assert {k: lines[0][k] for k in ("event_type", "user_agent", "ip", "referer", "metadata", "first")} == {
        "event_type": "opened", "user_agent": "Mozilla/5.0 (pixel test)", "ip": "127.0.0.1",
        "referer": "https://mail.example/inbox", "metadata": {"campaign": "spring", "n": 1}, "first": True}
    assert lines[1]["first"] is False


def test_open_pixel_for_bad_tokens_is_still_a_gif_and_records_nothing(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("open-bad")
    good = path_of(tracker.tracking_url("open", message_id=message_id, recipient="ann@example.com"))
    token = good[len("/o/"):]
    foreign = mailtrack.Tracker(["someone-else"], BASE_URL).tracking_url("open", message_id=message_id, recipient="x")
    click = tracker.tracking_url("click", message_id=message_id, recipient="ann@example.com", url="https://x.example/")
    before = len(stored(shared.db))
    for path in (
        "/o/garbage",
        "/o/",
        "/o/" + "A" * 40 + "." + "B" * 6 + "." + "C" * 22,  # token-shaped, signed by nobody
        "/o/" + token[:-3],  # truncated
        "/o/" + ("B" if token[0] != "B" else "C") + token[1:],  # tampered payload
        path_of(foreign),  # another key
        "/o/" + path_of(click)[len("/c/"):],  # a click token on the pixel path
        "/o/" + "A" * 9000,  # oversized
    ):
        reply = shared.get(path)
        try:
            assert_pixel(reply)
        except AssertionError as exc:
            raise AssertionError(f"{path[:80]}: {exc}") from None
    assert_pixel(http_request(shared.port, "GET", "/o/" + token + "%0d%0aSet-Cookie:%20a=b"))
    assert len(stored(shared.db)) == before


def test_open_pixel_head_same_headers_no_body_no_event(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("open-head")
    path = path_of(tracker.tracking_url("open", message_id=message_id, recipient="ann@example.com"))
    head = shared.request("HEAD", path)
    assert_pixel(head, head=True)
    get = shared.get(path)
    assert sorted((k.lower(), v) for k, v in head.headers if k.lower() != "date") == sorted(
        (k.lower(), v) for k, v in get.headers if k.lower() != "date")
    assert [e.first for e in stored(shared.db, message_id=message_id)] == [True]  # only the GET; it was the first


# -- 2. clicks ---------------------------------------------------------------------------------


def test_click_redirects_to_signed_destination_and_records_clicked(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("click")
    result = tracker.rewrite_html(
        '<p><a href="https://shop.example/a?x=1&amp;y=2">a</a> <a href="https://shop.example/b#frag">b</a></p>',
        message_id=message_id, recipient="bob@example.com", metadata={"campaign": "c1"})
    second = result.links[1]
    reply = shared.get(path_of(second.tracking_url), headers={"User-Agent": "clicker", "Referer": "https://webmail.example/",
                                                              "Accept-Language": "en"})
    assert reply.status == 302
    assert reply.all("Location") == ["https://shop.example/b#frag"]
    assert reply.body == b"" and reply.all("Set-Cookie") == []
    (event,) = stored(shared.db, message_id=message_id)
    assert (event.event_type, event.url, event.link_index, event.recipient) == (
        "clicked", "https://shop.example/b#frag", 1, "bob@example.com")
    assert (event.user_agent, event.ip, event.referer, dict(event.metadata), event.first) == (
        "clicker", "127.0.0.1", "https://webmail.example/", {"campaign": "c1"}, True)

    reply = shared.get(path_of(result.links[0].tracking_url), headers=READER_HEADERS)
    assert (reply.status, reply.header("Location")) == (302, "https://shop.example/a?x=1&y=2")
    events = stored(shared.db, message_id=message_id)
    assert [(e.link_index, e.first) for e in events] == [(1, events[0].machine is None), (0, False)]  # per recipient
    # two links of one message and recipient clicked within a second are a scanner's (issue 14): this test's two
    # requests may come that close or not, and either way both clicks get the same verdict
    assert events[0].machine == events[1].machine in (None, "link_scanner")

    head = shared.request("HEAD", path_of(second.tracking_url))
    assert (head.status, head.header("Location"), head.body) == (302, "https://shop.example/b#frag", b"")
    assert len(stored(shared.db, message_id=message_id)) == 2  # HEAD (link checkers) records nothing


def flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]


def bad_click_targets(tracker: mailtrack.Tracker, message_id: str) -> dict[str, str]:
    """Request targets (as sent on the wire) that must all get a 404 page: signed tokens taken apart, opaque ones
    changed (``tracker`` issues opaque tokens, the default; the signed format's parts come from its signed twin)."""
    sealed = path_of(tracker.tracking_url("click", message_id=message_id, recipient="ann@example.com",
                                          url="https://ok.example/"))[len("/c/"):]
    sealed_open = path_of(tracker.tracking_url("open", message_id=message_id, recipient="ann@example.com"))[3:]
    opaque_targets = {
        "opaque flipped": "/c/" + flip(sealed, 7),
        "opaque last character": "/c/" + flip(sealed, len(sealed) - 1),
        "opaque truncated": "/c/" + sealed[:-4],
        "opaque open token": "/c/" + sealed_open,
        "opaque foreign key": path_of(mailtrack.Tracker(["a-foreign-key"], BASE_URL).tracking_url(
            "click", message_id=message_id, recipient="ann@example.com", url="https://ok.example/")),
        "opaque oversized": "/c/" + sealed + "A" * 9000,
    }
    tracker = mailtrack.Tracker(["older-key", "newest-key"], BASE_URL, token_format="signed")
    url = tracker.tracking_url("click", message_id=message_id, recipient="ann@example.com", url="https://ok.example/")
    token = path_of(url)[len("/c/"):]
    payload, stamp, signature = token.split(".")
    open_token = path_of(tracker.tracking_url("open", message_id=message_id, recipient="ann@example.com"))[3:]
    unsub_token = path_of(tracker.tracking_url("unsubscribe", message_id=message_id, recipient="ann@example.com"))[3:]
    foreign = mailtrack.Tracker(["a-foreign-key"], BASE_URL, token_format="signed").tracking_url(
        "click", message_id=message_id, recipient="ann@example.com", url="https://ok.example/")
    return {
        **opaque_targets,
        "forged": "/c/" + os.urandom(24).hex() + "." + "AAAAAA" + "." + "Zm9yZ2VkZm9yZ2VkZm9yZ2Vk",
        "garbage": "/c/not-a-token",
        "empty": "/c/",
        "tampered payload": "/c/" + flip(payload, 5) + "." + stamp + "." + signature,
        "tampered signature": "/c/" + payload + "." + stamp + "." + flip(signature, 3),
        "tampered timestamp": "/c/" + payload + "." + flip(stamp, 1) + "." + signature,
        "foreign key": path_of(foreign),
        "open token": "/c/" + open_token,
        "unsubscribe token": "/c/" + unsub_token,
        "truncated": "/c/" + token[:-4],
        "truncated payload": "/c/" + token[10:],
        "CRLF injected": "/c/" + token + "%0d%0aSet-Cookie:%20a=b",
        "CRLF injected inside": "/c/" + payload + "%0d%0aLocation:%20https://evil.example/" + "." + stamp + "." + signature,
        "encoded slash": "/c/" + payload + "%2f." + stamp + "." + signature,
        "trailing slash": "/c/" + token + "/",
        "NUL injected": "/c/" + token + "%00",
        "non-ASCII": "/c/" + payload + "%C3%A9." + stamp + "." + signature,
        "not UTF-8": "/c/" + payload + "%FF." + stamp + "." + signature,
        "oversized": "/c/" + token + "A" * 9000,
    }


@pytest.mark.parametrize("token_format", ["opaque", "signed"])
def test_a_broadcast_rendering_without_a_recipient_is_served_and_recorded(shared: Server, token_format: str) -> None:
    """One rendering for many readers (recipient=None), in either format: the server verifies it end to end."""
    tracker = make_tracker(token_format=token_format)
    message_id = unique(f"broadcast-{token_format}")
    result = tracker.rewrite_html('<p><a href="https://shop.example/deal?id=7">deal</a></p><body></body>',
                                  message_id=message_id, metadata={"campaign": "digest"})
    (link,) = result.links
    assert ("." in path_of(link.tracking_url)) is (token_format == "signed")  # an opaque URL shows no claim
    pixel = result.html.split('src="', 1)[1].split('"', 1)[0]
    for reader in ("reader-1", "reader-2"):
        assert_pixel(shared.get(path_of(pixel), headers={"User-Agent": reader}))
        reply = shared.get(path_of(link.tracking_url), headers={"User-Agent": reader})
        assert (reply.status, reply.header("Location")) == (302, "https://shop.example/deal?id=7")
    events = stored(shared.db, message_id=message_id)
    assert sorted((e.event_type, e.user_agent) for e in events) == [
        ("clicked", "reader-1"), ("clicked", "reader-2"), ("opened", "reader-1"), ("opened", "reader-2")]
    assert {(e.recipient, e.url if e.event_type == "clicked" else None, dict(e.metadata)["campaign"]) for e in events} == {
        (None, "https://shop.example/deal?id=7", "digest"), (None, None, "digest")}


def assert_not_found_page(reply: RawReply, *, head: bool = False) -> None:
    assert reply.status == 404, reply.raw[:300]
    assert b"location" not in reply.header_names, reply.head
    assert b"set-cookie" not in reply.raw.lower(), reply.raw[:500]
    assert b"content-type: text/html; charset=utf-8" in reply.head.lower()
    if not head:
        assert b"Link not found" in reply.raw.split(b"\r\n\r\n", 1)[1]


def test_click_bad_tokens_get_404_and_never_redirect(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("click-bad")
    before = len(stored(shared.db))
    targets = bad_click_targets(tracker, message_id)
    for kind, target in targets.items():
        for method in ("GET", "HEAD"):
            reply = shared.raw(target, method)
            try:
                assert_not_found_page(reply, head=method == "HEAD")
            except AssertionError as exc:
                raise AssertionError(f"{kind} ({method}): {exc}") from None
    assert len(stored(shared.db)) == before
    # and the good token next to them works
    good = tracker.tracking_url("click", message_id=message_id, recipient="ann@example.com", url="https://ok.example/")
    assert shared.get(path_of(good)).header("Location") == "https://ok.example/"


@pytest.mark.parametrize("destination", [
    "javascript:alert(1)",
    "https://x.example/\r\nSet-Cookie: a=b",
    "https://x.example/\nSet-Cookie: a=b",
    "https://x.example/\x00",
    "ftp://x",
    "//evil.example",
    "data:text/html,<script>alert(1)</script>",
    "HTTPS:\\\\evil.example",
])
def test_click_signed_unsafe_destination_is_never_a_location(shared: Server, tracker: mailtrack.Tracker,
                                                             destination: str) -> None:
    """A token genuinely signed with our key for an unsafe URL (a bug elsewhere, a leaked key): still a 404."""
    sign = tracker.codec.message_signer("click", unique("unsafe"), "ann@example.com", None, int(time.time()))
    token = sign(0, destination)
    before = len(stored(shared.db))
    for method in ("GET", "HEAD"):
        assert_not_found_page(shared.raw("/c/" + token, method), head=method == "HEAD")
    assert len(stored(shared.db)) == before


@pytest.mark.parametrize(("html", "host", "path", "query"), ids=["idn-host-cjk-path", "latin-1-path"], argvalues=[
    ('<a href="https://例え.jp/パス?q=ü">x</a>', "例え.jp", "/パス", "q=ü"),  # IDN host, CJK path
    ('<a href="https://x.example/caf&eacute;?q=d&#252;">x</a>', "x.example", "/café", "q=dü"),  # Latin-1 only
])
def test_non_ascii_destination_redirects_with_an_ascii_location(shared: Server, tracker: mailtrack.Tracker,
                                                          html: str, host: str, path: str, query: str) -> None:
    """A link to a non-ASCII URL (rewrite_html tracks it as written) must redirect with a valid, ASCII Location.

    Found by this suite (fixed): Endpoints._click puts the destination in ``Location`` unconverted.
    Outside Latin-1 (an IDN host, a CJK path) waitress cannot encode the header
    and answers ``500 Internal Server Error`` (UnicodeEncodeError in
    waitress/task.py build_response_header), after the click was recorded;
    inside Latin-1 the header carries raw bytes like ``caf\\xe9`` that are not
    a URI (RFC 9110: Location is a URI-reference; browsers read those bytes as
    UTF-8). The destination should go out as a URI: IDNA host, UTF-8
    percent-encoded path and query.
    """
    from urllib.parse import unquote, urlsplit

    message_id = unique("iri")
    (link,) = tracker.rewrite_html(html, message_id=message_id, recipient="ann@example.com").links
    reply = shared.raw(path_of(link.tracking_url))
    assert reply.status == 302, reply.raw[:200]
    (location,) = [line.split(b":", 1)[1].strip() for line in reply.head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"location:")]
    assert location.isascii(), location
    parts = urlsplit(location.decode("ascii"))
    assert (parts.scheme, (parts.hostname or "").encode("ascii").decode("idna")) == ("https", host)
    assert (unquote(parts.path), unquote(parts.query)) == (path, query)
    assert [e.url for e in stored(shared.db, message_id=message_id)] == [link.url]


def test_click_wrong_purpose_on_pixel_path_gets_gif_but_no_event(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("purpose")
    click = path_of(tracker.tracking_url("click", message_id=message_id, recipient="a@x.example", url="https://x.example/"))
    assert_pixel(shared.get("/o/" + click[len("/c/"):]))
    unsub = path_of(tracker.tracking_url("unsubscribe", message_id=message_id, recipient="a@x.example"))
    assert_pixel(shared.get("/o/" + unsub[len("/u/"):]))
    assert shared.get("/u/" + click[len("/c/"):]).status == 404
    assert stored(shared.db, message_id=message_id) == []


def test_click_expired_token_gets_404_with_max_age(serve: Callable[..., Server], tracker: mailtrack.Tracker) -> None:
    server = serve("--max-age", "600")  # the fresh link below stays valid however slow this machine is
    old = time.time() - 3600
    result = tracker.rewrite_html('<a href="https://x.example/old">x</a>', message_id="m-exp", recipient="a@x.example",
                                  issued_at=old)
    assert_not_found_page(server.raw(path_of(result.links[0].tracking_url)))
    # Unsubscribe links never expire (CAN-SPAM): the old one still works.
    unsub = tracker.tracking_url("unsubscribe", message_id="m-exp", recipient="a@x.example", issued_at=old)
    assert server.get(path_of(unsub)).status == 200
    assert server.request("POST", path_of(unsub), body=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}).status == 200
    # opens have no expiry: the pixel is served and the open is real
    assert_pixel(server.get(path_of(tracker.tracking_url("open", message_id="m-exp", recipient="a@x.example", issued_at=old))))
    fresh = tracker.tracking_url("click", message_id="m-exp", recipient="a@x.example", url="https://x.example/new")
    assert server.get(path_of(fresh)).header("Location") == "https://x.example/new"
    assert [(e.event_type, e.url) for e in stored(server.db)] == [
        ("unsubscribed", None), ("opened", None), ("clicked", "https://x.example/new")]


def test_unknown_paths_are_404(shared: Server) -> None:
    for target in ("/", "/favicon.ico", "/x/abc", "/c", "/o"):
        reply = shared.get(target)
        assert reply.status == 404 and reply.all("Location") == [] and b"Not found" in reply.body


# -- 3. unsubscribe ----------------------------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_unsubscribe_flow(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("unsub")
    path = path_of(tracker.tracking_url("unsubscribe", message_id=message_id, recipient="cy@example.com",
                                        metadata={"list": "news"}))
    page = shared.get(path, headers={"User-Agent": "link-scanner"})
    assert page.status == 200 and page.header("Content-Type") == "text/html; charset=utf-8"
    assert b'<form method="post">' in page.body and b'name="List-Unsubscribe" value="One-Click"' in page.body
    assert page.header("Cache-Control") == NO_CACHE["cache-control"]
    head = shared.request("HEAD", path)
    assert (head.status, head.body, head.header("Content-Type")) == (200, b"", "text/html; charset=utf-8")
    assert stored(shared.db, message_id=message_id) == []  # a GET (a link scanner) never unsubscribes

    # RFC 8058: what a mail client's one-click unsubscribe sends
    done = shared.request("POST", path, body=b"List-Unsubscribe=One-Click",
                          headers={**FORM, "User-Agent": "Gmail one-click"})
    assert done.status == 200 and b"cy@example.com will no longer receive" in done.body
    (event,) = stored(shared.db, message_id=message_id)
    assert (event.event_type, event.recipient, event.user_agent, event.ip, dict(event.metadata), event.first) == (
        "unsubscribed", "cy@example.com", "Gmail one-click", "127.0.0.1", {"list": "news"}, True)

    # the confirmation page's own button: the same form, posted by a browser
    again = shared.request("POST", path, body=b"List-Unsubscribe=One-Click", headers=FORM)
    assert again.status == 200
    assert [e.first for e in stored(shared.db, message_id=message_id)] == [True, False]


def test_unsubscribe_invalid_token_and_wrong_method(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("unsub-bad")
    path = path_of(tracker.tracking_url("unsubscribe", message_id=message_id, recipient="cy@example.com"))
    before = len(stored(shared.db))
    for bad in ("/u/garbage", "/u/" + flip(path[3:], 4), "/u/" + path[3:-2]):
        reply = shared.request("POST", bad, body=b"List-Unsubscribe=One-Click", headers=FORM)
        assert reply.status == 404 and reply.all("Location") == [], bad
        assert shared.get(bad).status == 404
    put = shared.request("PUT", path, body=b"List-Unsubscribe=One-Click", headers=FORM)
    assert put.status == 405 and put.header("Allow") == "GET, HEAD, POST"
    for other in (path_of(tracker.tracking_url("open", message_id=message_id, recipient="c")),
                  path_of(tracker.tracking_url("click", message_id=message_id, recipient="c", url="https://x.example/"))):
        for method in ("PUT", "POST", "DELETE"):
            reply = shared.request(method, other, body=b"x")
            assert (reply.status, reply.header("Allow")) == (405, "GET, HEAD"), (method, other)
    assert len(stored(shared.db)) == before


def test_oversized_body_is_refused(shared: Server, tracker: mailtrack.Tracker) -> None:
    message_id = unique("unsub-big")
    path = path_of(tracker.tracking_url("unsubscribe", message_id=message_id, recipient="cy@example.com"))
    reply = shared.request("POST", path, body=b"x" * (65 * 1024), headers=FORM)
    assert reply.status == 413
    assert stored(shared.db, message_id=message_id) == []


# -- 4. X-Forwarded-For ------------------------------------------------------------------------


XFF_CASES = [
    ("203.0.113.7", "203.0.113.7"),
    ("198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the hop nearest us that is not a trusted proxy
    ("198.51.100.1, 203.0.113.7, 127.0.0.1", "203.0.113.7"),  # past a trusted hop
    ("not-an-ip", "127.0.0.1"),  # garbled: believe only the connection
]


def send_forwarded(server: Server, tracker: mailtrack.Tracker) -> list[str | None]:
    for n, (header, _) in enumerate(XFF_CASES):
        path = path_of(tracker.tracking_url("open", message_id=f"xff-{n}", recipient="a@x.example"))
        assert server.get(path, headers={"X-Forwarded-For": header}).status == 200
    return [e.ip for e in stored(server.db)]


def test_x_forwarded_for_ignored_without_trusted_proxy(serve: Callable[..., Server], tmp_path: Path,
                                                       tracker: mailtrack.Tracker) -> None:
    assert send_forwarded(serve(), tracker) == ["127.0.0.1"] * len(XFF_CASES)
    # trusting some other proxy does not make the header believable from us
    other = serve("--trusted-proxy", "10.0.0.0/8", db=tmp_path / "other.sqlite")
    assert send_forwarded(other, tracker) == ["127.0.0.1"] * len(XFF_CASES)


def test_x_forwarded_for_from_a_trusted_proxy_is_recorded_as_the_client_ip(serve: Callable[..., Server],
                                                                           tracker: mailtrack.Tracker) -> None:
    """``--trusted-proxy 127.0.0.1`` must make the recorded ip the forwarded client.

    Found by this suite (fixed): waitress 3.x defaults ``clear_untrusted_proxy_headers=True`` and, with
    no waitress ``trusted_proxy`` configured, deletes ``HTTP_X_FORWARDED_FOR``
    from the environ before mailtrack's app sees it, so Endpoints.client_ip
    never gets the header and every event records 127.0.0.1. ``_serve`` should
    pass ``clear_untrusted_proxy_headers=False`` to ``waitress.create_server``
    (mailtrack does its own trust check).
    """
    proxied = serve("--trusted-proxy", "127.0.0.1")
    assert send_forwarded(proxied, tracker) == [expected for _, expected in XFF_CASES]


# -- 5. stats ----------------------------------------------------------------------------------


def test_stats_after_opens_and_clicks_from_two_recipients(serve: Callable[..., Server], tracker: mailtrack.Tracker) -> None:
    server = serve()
    html = '<a href="https://a.example/">a</a><a href="https://b.example/">b</a>'
    ann = tracker.rewrite_html(html, message_id="m-stats", recipient="ann@example.com")
    bob = tracker.rewrite_html(html, message_id="m-stats", recipient="bob@example.com")
    other = tracker.rewrite_html(html, message_id="m-other", recipient="ann@example.com")
    pixel = {name: path_of(tracker.tracking_url("open", message_id=m, recipient=r))
             for name, m, r in (("ann", "m-stats", "ann@example.com"), ("bob", "m-stats", "bob@example.com"),
                                ("other", "m-other", "ann@example.com"))}
    for name in ("ann", "ann", "bob", "other"):
        assert server.get(pixel[name]).status == 200
    # one link per reader: two links of one message clicked by one reader within a second are a scanner's (issue 14)
    for link in (ann.links[0], ann.links[0], bob.links[1], other.links[1]):
        assert server.get(path_of(link.tracking_url), headers=READER_HEADERS).status == 302

    proc = cli("stats", "--db", str(server.db), "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats == {"messages": [
        {"message_id": "m-other", "recipients": 1, "opened_total": 1, "opened_unique": 1, "clicked_total": 1,
         "clicked_unique": 1, "unsubscribed_total": 0, "unsubscribed_unique": 0, "ctr": 1.0, "click_to_open": 1.0,
         "machine_opened": 0, "machine_clicked": 0, "machine_unsubscribed": 0,
         "links": [{"link_index": 1, "url": "https://b.example/", "clicks": 1, "unique": 1}]},
        {"message_id": "m-stats", "recipients": 2, "opened_total": 3, "opened_unique": 2, "clicked_total": 3,
         "clicked_unique": 2, "unsubscribed_total": 0, "unsubscribed_unique": 0, "ctr": 1.0, "click_to_open": 1.0,
         "machine_opened": 0, "machine_clicked": 0, "machine_unsubscribed": 0,
         "links": [{"link_index": 0, "url": "https://a.example/", "clicks": 2, "unique": 1},
                   {"link_index": 1, "url": "https://b.example/", "clicks": 1, "unique": 1}]},
    ]}
    text = cli("stats", "--db", str(server.db))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        ("m-other: 1 recipient(s) seen; opens 1 (1 unique), clicks 1 (1 unique), unsubscribes 0; CTR 100.0% (of recipients seen), "
         "click-to-open 100.0%"),
        "  link 1: 1 click(s), 1 unique  https://b.example/",
        ("m-stats: 2 recipient(s) seen; opens 3 (2 unique), clicks 3 (2 unique), unsubscribes 0; CTR 100.0% (of recipients seen), "
         "click-to-open 100.0%"),
        "  link 0: 2 click(s), 1 unique  https://a.example/",
        "  link 1: 1 click(s), 1 unique  https://b.example/",
    ]


# -- 6. webhooks -------------------------------------------------------------------------------


@dataclass
class Received:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A real HTTP webhook receiver: answers 500 to the first ``failures`` POSTs, then 200."""

    failures: int = 0
    port: int = 0
    delay: float = 0.0  # seconds each answer takes (a slow receiver)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay)
                status = 500 if len(receiver.received) < receiver.failures else 200
                receiver.received.append(Received(status, body, dict(self.headers.items())))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Received]:
        return [r for r in list(self.received) if r.status == 200]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        started.append(receiver)
        return receiver

    try:
        yield start
    finally:
        for receiver in started:
            receiver.stop()


def checked(received: Received, secret: str) -> dict[str, Any]:
    """The received webhook's JSON, after its signature checked out."""
    return verify_signature(received.body, received.headers["Mailtrack-Signature"], secret)


def outbox(db: Path) -> list[dict[str, Any]]:
    store = SQLiteStore(db)
    try:
        return store.outbox_rows()
    finally:
        store.close()


def test_webhook_signed_and_retried_until_the_receiver_recovers(serve: Callable[..., Server],
                                                                receivers: Callable[..., Receiver],
                                                                tracker: mailtrack.Tracker) -> None:
    receiver = receivers(failures=2)
    server = serve("--webhook", receiver.url, "--webhook-secret", "s3cret-0123456789")
    url = tracker.tracking_url("click", message_id="m-hook", recipient="ann@example.com", url="https://x.example/w",
                               link_index=2, metadata={"campaign": "hooks"})
    assert server.get(path_of(url), headers={"User-Agent": "hook-ua"}).status == 302
    (good,) = wait_until(receiver.delivered, timeout=30, what="a delivery answered 200")
    (event,) = stored(server.db)
    rows = wait_until(lambda: [r for r in outbox(server.db) if r["delivered"] is not None], timeout=10,
                    what="the outbox row marked delivered")
    assert [r.status for r in receiver.received] == [500, 500, 200]

    for attempt in receiver.received:  # every attempt is signed and carries the same event
        document = checked(attempt, "s3cret-0123456789")
        assert document["type"] == "email.clicked"
        assert document["data"] == event.to_dict()
        assert attempt.headers["Mailtrack-Event-Id"] == event.event_id
        assert attempt.headers["Content-Type"] == "application/json"
    data = checked(good, "s3cret-0123456789")["data"]
    assert (data["event_type"], data["url"], data["link_index"], data["user_agent"], data["metadata"]) == (
        "clicked", "https://x.example/w", 2, "hook-ua", {"campaign": "hooks"})
    with pytest.raises(mailtrack.MailtrackError):
        verify_signature(good.body, good.headers["Mailtrack-Signature"], "wrong-secret-0123456")
    with pytest.raises(mailtrack.MailtrackError):
        verify_signature(good.body.replace(b"hook-ua", b"hook-UA"), good.headers["Mailtrack-Signature"], "s3cret-0123456789")
    # the backoff between attempts grows (1 s, then 2 s by default, each times a jitter in [0.5, 1]), as logged
    for attempt, longest in ((1, 1.0), (2, 2.0)):
        logged = re.search(rf"webhook attempt {attempt} for event {event.event_id} failed \(HTTP 500\); "
                           r"retry in ([0-9.]+)s", server.stderr())
        assert logged and longest / 2 - 0.05 <= float(logged.group(1)) <= longest, server.stderr()
    (row,) = rows
    assert (row["event_id"], row["target"], row["attempts"], row["dead"], row["last_error"]) == (
        event.event_id, receiver.url, 3, 0, "HTTP 500")


def test_webhook_receiver_down_at_first_loses_nothing(serve: Callable[..., Server], receivers: Callable[..., Receiver],
                                                     tracker: mailtrack.Tracker) -> None:
    with socket.socket() as probe:  # a port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = f"http://127.0.0.1:{port}/hook"
    server = serve("--webhook", hook, "--webhook-secret", "s3cret-0123456789")
    paths = [path_of(tracker.tracking_url("open", message_id="m-down", recipient=f"r{n}@example.com")) for n in range(3)]
    paths.append(path_of(tracker.tracking_url("click", message_id="m-down", recipient="r0@example.com",
                                              url="https://x.example/")))
    paths.append(path_of(tracker.tracking_url("unsubscribe", message_id="m-down", recipient="r1@example.com")))
    for path in paths[:-1]:
        assert server.get(path).status in (200, 302)
    assert server.request("POST", paths[-1], body=b"List-Unsubscribe=One-Click", headers=FORM).status == 200
    wait_until(lambda: len([r for r in outbox(server.db) if r["attempts"] >= 1]) == 5, timeout=20,
             what="a failed first attempt for every event")
    assert all(r["delivered"] is None and r["last_error"] for r in outbox(server.db))

    receiver = receivers(port=port)
    wait_until(lambda: len(receiver.delivered()) >= 5 and all(r["delivered"] for r in outbox(server.db)), timeout=30,
             what="every event delivered after the receiver came up")
    events = {e.event_id: e for e in stored(server.db)}
    documents = [checked(r, "s3cret-0123456789") for r in receiver.delivered()]
    assert sorted(d["data"]["event_id"] for d in documents) == sorted(events)
    assert Counter(d["type"] for d in documents) == {"email.opened": 3, "email.clicked": 1, "email.unsubscribed": 1}
    for document in documents:
        assert document["data"] == events[document["data"]["event_id"]].to_dict()


class SteppedClock:
    """A clock that moves only when the test moves it; the delivery thread reads it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_webhook_backoff_in_process_against_real_receiver(tmp_path: Path, receivers: Callable[..., Receiver]) -> None:
    """The retry schedule: WebhookDelivery's thread with a 50 ms backoff over real HTTP, on a clock the test moves."""
    receiver = receivers(failures=3)
    store = SQLiteStore(tmp_path / "hooks.sqlite")
    dead_url = "http://127.0.0.1:9/never"  # discard port: connection refused
    event = store.record(mailtrack.TrackingEvent("opened", datetime.now(timezone.utc), "m", "r@x.example"),
                         outbox=[receiver.url, dead_url])
    clock = SteppedClock(time.time())

    def failed(attempts: int) -> Callable[[], dict[str, Any] | None]:
        def row() -> dict[str, Any] | None:
            return next((r for r in store.outbox_rows() if r["target"] == receiver.url and r["attempts"] == attempts), None)
        return row

    delivery = WebhookDelivery(store, receiver.url, "k" * 16, backoff=0.05, poll_interval=0.01, clock=clock,
                               jitter=False).start()
    doomed = WebhookDelivery(store, dead_url, "k" * 16, backoff=0.01, max_attempts=3, poll_interval=0.01, timeout=2).start()
    schedule = []
    try:
        for attempt in (1, 2, 3):
            row = wait_until(failed(attempt), timeout=20, what=f"failed attempt {attempt}")
            schedule.append(round(row["next_attempt"] - clock.now, 6))
            assert len(receiver.received) == attempt  # no retry before the clock reaches next_attempt
            clock.now = row["next_attempt"]
        wait_until(lambda: receiver.delivered(), timeout=20, what="delivery")
        wait_until(lambda: any(r["dead"] for r in store.outbox_rows()), timeout=20, what="the dead target given up")
    finally:
        delivery.stop()
        doomed.stop()
    assert [r.status for r in receiver.received] == [500, 500, 500, 200]
    assert schedule == [0.05, 0.1, 0.2]  # 0.05 * 2**(n-1)
    rows = {r["target"]: r for r in store.outbox_rows()}
    assert rows[receiver.url]["attempts"] == 4 and rows[receiver.url]["delivered"] is not None
    assert rows[dead_url]["attempts"] == 3 and rows[dead_url]["dead"] == 1 and rows[dead_url]["delivered"] is None
    for received in receiver.received:
        assert checked(received, "k" * 16)["data"]["event_id"] == event.event_id
    store.close()


def test_several_workers_deliver_each_webhook_once(serve: Callable[..., Server], tmp_path: Path,
                                                  receivers: Callable[..., Receiver],
                                                  tracker: mailtrack.Tracker) -> None:
    """Three ``serve`` workers on one DB and one webhook: each event should be POSTed once, with attempts == 1.

    Found by this suite (fixed): every worker runs its own WebhookDelivery over the shared outbox, and
    ``deliver_due`` reads a batch of due rows (up to 50) without claiming them,
    then POSTs them one by one; another worker reading the outbox meanwhile
    POSTs the same rows. Against a receiver taking 50 ms per request, 60 events
    gave 152 POSTs (each event up to 3 times) and ``attempts`` 2 or 3 on rows
    delivered at the first try. Delivery is documented as at-least-once, but
    this duplicates in normal operation, and the inflated ``attempts`` reach
    ``max_attempts`` (row marked dead: the event never delivered) up to N
    times sooner while a receiver is down. Rows need claiming (e.g. bump
    ``next_attempt`` to a lease in the same transaction that selects them).
    """
    receiver = receivers(delay=0.05)
    db = tmp_path / "hooks.sqlite"
    servers = [serve("--webhook", receiver.url, "--webhook-secret", "s3cret-0123456789", db=db) for _ in range(3)]
    for i in range(30):
        path = path_of(tracker.tracking_url("open", message_id="m-workers", recipient=f"r{i}@example.com"))
        assert servers[i % 3].get(path).status == 200

    def all_delivered() -> bool:
        rows = outbox(db)
        return len(rows) == 30 and all(r["delivered"] for r in rows)

    wait_until(all_delivered, timeout=40, what="every outbox row delivered")
    for server in servers:  # a clean stop joins each delivery thread: every POST it sent has been answered
        server.stop()
        assert server.proc.returncode == 0, server.stderr()
    posted = Counter(r.headers["Mailtrack-Event-Id"] for r in receiver.received)
    assert len(posted) == 30
    assert {event_id: n for event_id, n in posted.items() if n > 1} == {}
    assert sorted({r["attempts"] for r in outbox(db)}) == [1]


# -- 7. the store fails during a click ---------------------------------------------------------


@pytest.mark.timeout(180)  # the responses must not wait for the lock: a hang here is that bug
def spool_empty(spool: Path) -> bool:
    """True if every spool file left is empty; one the drain removes while we look counts as empty (it was drained)."""
    for path in spool.glob("*.jsonl"):
        try:
            if path.stat().st_size:
                return False
        except FileNotFoundError:
            continue
    return True


def test_locked_store_still_serves_then_spool_drains(serve: Callable[..., Server], tracker: mailtrack.Tracker) -> None:
    server = serve()
    click = path_of(tracker.tracking_url("click", message_id="m-lock", recipient="ann@example.com",
                                         url="https://x.example/locked"))
    pixel = path_of(tracker.tracking_url("open", message_id="m-lock", recipient="ann@example.com"))
    assert server.get(pixel, headers={"User-Agent": "before"}).status == 200  # the store exists and works

    lock = sqlite3.connect(server.db, timeout=10, isolation_level=None)  # (waits out a stats roll in progress)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        reply = server.get(click, headers={"User-Agent": "locked-click", "Accept-Language": "en"})
        assert reply.status == 302 and reply.header("Location") == "https://x.example/locked"
        opened = server.get(pixel, headers={"User-Agent": "locked-open"})
        assert opened.status == 200 and opened.body == GIF
        # readers still read (WAL); nothing was written
        assert lock.execute("SELECT user_agent FROM events").fetchall() == [("before",)]
        wait_until(lambda: "retry from spool failed" in server.stderr(), timeout=40,
                   what="the background drain failing while locked")
        assert lock.execute("SELECT user_agent FROM events").fetchall() == [("before",)]  # it failed: still nothing
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    spool = Path(str(server.db) + ".spool")
    wait_until(lambda: len(stored(server.db)) >= 3, timeout=40, what="the spooled events in the store")
    wait_until(lambda: spool_empty(spool), timeout=10, what="the spool emptied")
    events = stored(server.db)
    assert Counter(e.user_agent for e in events) == {"before": 1, "locked-click": 1, "locked-open": 1}  # once each
    by_ua = {e.user_agent: e for e in events}
    assert (by_ua["locked-click"].event_type, by_ua["locked-click"].url, by_ua["locked-click"].first) == (
        "clicked", "https://x.example/locked", True)
    assert (by_ua["locked-open"].event_type, by_ua["locked-open"].first) == ("opened", False)
    assert "database is locked" in server.stderr()  # the failure was logged ...
    assert "Traceback" not in server.stderr()  # ... not raised


# -- 8. kill -9 mid-load -----------------------------------------------------------------------


@dataclass
class Load:
    """Requests from several threads; which of them got a complete response."""

    port: int
    paths: list[str]
    threads: int = 6
    completed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._worker, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in workers:
            worker.start()
        return workers

    def _worker(self, n: int) -> None:
        for i in range(n, len(self.paths), self.threads):
            agent = f"load-{i}"
            try:
                reply = http_request(self.port, "GET", self.paths[i], headers={"User-Agent": agent}, timeout=30)
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failed[agent] = repr(exc)
                continue
            complete = (reply.status == 200 and reply.body == GIF) or (reply.status == 302 and reply.header("Location"))
            with self.lock:
                if complete:
                    self.completed.add(agent)
                else:
                    self.failed[agent] = f"HTTP {reply.status}"


def mixed_paths(tracker: mailtrack.Tracker, count: int, message_id: str, recipients: int = 10) -> list[str]:
    paths = []
    for i in range(count):
        recipient = f"r{i % recipients}@example.com"
        if i % 3 == 2:
            paths.append(path_of(tracker.tracking_url("click", message_id=message_id, recipient=recipient,
                                                      url=f"https://x.example/{i % 4}", link_index=i % 4)))
        else:
            paths.append(path_of(tracker.tracking_url("open", message_id=message_id, recipient=recipient)))
    return paths


def assert_no_duplicates(events: list[mailtrack.TrackingEvent]) -> None:
    ids = Counter(e.event_id for e in events)
    assert [i for i, n in ids.items() if n > 1] == []
    agents = Counter(e.user_agent for e in events)
    assert [a for a, n in agents.items() if n > 1] == []  # each request's event stored once


def assert_firsts_consistent(events: list[mailtrack.TrackingEvent]) -> None:
    """Exactly one first=True per (type, message, recipient) among people's events, and it is the earliest stored;
    none on a machine's (a load's clicks of several links of one message within a second are a scanner's: issue 14).
    """
    groups: dict[tuple[str, str, str], list[bool]] = {}
    for event in events:
        assert not (event.first and event.machine is not None), event
        if event.machine is None:
            groups.setdefault((event.event_type, event.message_id, event.recipient), []).append(bool(event.first))
    for key, firsts in groups.items():
        assert firsts[0] is True and firsts.count(True) == 1, (key, firsts)


@pytest.mark.skipif(os.name != "posix" or not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_kill_9_mid_load_loses_no_answered_event(serve: Callable[..., Server], tracker: mailtrack.Tracker) -> None:
    server = serve("--threads", "8")
    load = Load(server.port, mixed_paths(tracker, 400, "m-kill"))
    workers = load.run()
    wait_until(lambda: len(load.completed) >= 100, timeout=60, interval=0.002, what="100 answered requests")
    os.kill(server.pid, signal.SIGKILL)
    for worker in workers:
        worker.join(60)
    assert server.proc.wait(10) == -signal.SIGKILL
    answered = set(load.completed)
    assert 100 <= len(answered) < 400, len(answered)  # killed partway through
    assert len(load.failed) >= 1  # requests after the kill failed

    restarted = serve(db=server.db)  # recovers whatever the killed process spooled
    assert restarted.get("/o/x").status == 200
    wait_until(lambda: answered <= {e.user_agent for e in stored(server.db)}, timeout=20,
             what="every answered request's event in the store")
    events = stored(server.db)
    agents = {e.user_agent for e in events}
    assert answered <= agents, sorted(answered - agents)[:10]
    assert agents <= {f"load-{i}" for i in range(400)}
    assert_no_duplicates(events)
    assert_firsts_consistent(events)


@pytest.mark.skipif(os.name != "posix" or not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_kill_9_with_events_in_the_spool_recovered_by_next_start(serve: Callable[..., Server],
                                                                tracker: mailtrack.Tracker) -> None:
    """The store is locked, so every event goes to the spool; kill -9; the next server moves them in, once."""
    server = serve()
    assert server.get("/o/warm-up").status == 200
    paths = mixed_paths(tracker, 12, "m-spool", recipients=3)
    lock = sqlite3.connect(server.db, timeout=0, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        load = Load(server.port, paths, threads=3)
        for worker in load.run():
            worker.join(60)
        assert len(load.completed) == 12, load.failed
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(10)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert stored(server.db) == []
    spooled = list(Path(str(server.db) + ".spool").glob("*.jsonl"))
    # One file, or several when a retry rotated it while the store was still locked.
    assert spooled and sum(path.read_bytes().count(b"\n") for path in spooled) == 12

    serve(db=server.db)
    wait_until(lambda: len(stored(server.db)) >= 12, timeout=20, what="the dead server's spool recovered")
    wait_until(lambda: not list(Path(str(server.db) + ".spool").glob("*.jsonl")), timeout=10, what="the spool removed")
    events = stored(server.db)
    assert {e.user_agent for e in events} == load.completed
    assert_no_duplicates(events)
    assert_firsts_consistent(events)


# -- 9. several worker processes on one SQLite file --------------------------------------------


def test_three_processes_share_one_database(serve: Callable[..., Server], tmp_path: Path,
                                            tracker: mailtrack.Tracker) -> None:
    db = tmp_path / "shared.sqlite"
    servers = [serve(db=db) for _ in range(3)]
    total = 300
    paths = mixed_paths(tracker, total, "m-multi", recipients=7)
    results: dict[str, int] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(n, total, 9):
            agent = f"load-{i}"
            try:
                reply = servers[i % 3].get(paths[i], headers={"User-Agent": agent})
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(f"{agent}: {exc!r}")
                continue
            with lock:
                results[agent] = reply.status

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(results) == total
    assert sorted(set(results.values())) == [200, 302]

    wait_until(lambda: len(stored(db)) >= total, timeout=30, what="every event stored")
    events = stored(db)
    assert len(events) == total
    assert {e.user_agent for e in events} == set(results)
    assert_no_duplicates(events)
    assert_firsts_consistent(events)
    for server in servers:
        assert server.proc.poll() is None
        assert "database is locked" not in server.stderr()
        assert "Traceback" not in server.stderr()


# -- configuration from the environment, and shutdown ------------------------------------------


def test_serve_from_environment_and_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "env.sqlite"
    env = {**os.environ, "MAILTRACK_SECRET_KEY": KEYS, "MAILTRACK_BASE_URL": BASE_URL, "MAILTRACK_DB": str(db)}
    out = tmp_path / "serve.out"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "mailtrack", "serve", "--port", "0"], stdout=stdout,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    try:
        def reported_port() -> int | None:
            text = out.read_text(encoding="utf-8", errors="replace")
            if " on http://127.0.0.1:" in text:
                return int(text.split(" on http://127.0.0.1:", 1)[1].split()[0])
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "serve exited")
            return None

        port = wait_until(reported_port, START_TIMEOUT, what="mailtrack serve to report its port")
        tracker = make_tracker()
        pixel = path_of(tracker.tracking_url("open", message_id="env-1", recipient="r@x.example"))
        assert http_request(port, "GET", pixel).status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0  # SIGTERM (systemd, docker) stops it like Ctrl-C
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert [e.message_id for e in SQLiteStore(db).events()] == ["env-1"]


def test_serve_without_configuration_says_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRACK_")}
    proc = subprocess.run([sys.executable, "-m", "mailtrack", "serve", "--port", "0"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 2 and "--secret-key" in proc.stderr and "Traceback" not in proc.stderr


# -- moved from tests/integration/test_serve_review.py (issue 8) -------------------------------


def test_an_oversized_body_is_refused_before_it_is_read(serve: Callable[..., Server]) -> None:
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"POST /u/x HTTP/1.1\r\nHost: t\r\nContent-Length: 200000000\r\n\r\n" + b"x" * 1024)
        reply = connection.recv(4096)  # answered without the 200 MB ever being sent
    assert reply.startswith(b"HTTP/1.1 413")


def test_serve_uses_the_landing_page_file(serve: Callable[..., Server], tmp_path: Path) -> None:
    landing = tmp_path / "landing.html"
    landing.write_text("<html><body><p>Sorry to see you go</p></body></html>", encoding="utf-8")
    server = serve("--landing", str(landing))
    url = make_tracker().tracking_url("unsubscribe", message_id="l1", recipient="r@x.example")
    reply = server.get(path_of(url))
    assert reply.status == 200 and b"Sorry to see you go" in reply.body and b'<form method="post">' in reply.body
