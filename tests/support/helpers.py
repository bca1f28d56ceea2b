"""Shared test helpers: the corpus location, deterministic rewrites, waiting for another thread or process."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import mailtrack

T = TypeVar("T")

#: ``../shared/corpus`` next to the checkout; absent on a user's machine.
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
BASE_URL = "https://t.example.com"


def make_tracker(**kwargs: object) -> mailtrack.Tracker:
    return mailtrack.Tracker(secret_keys=["older-key", "newest-key"], base_url=BASE_URL, **kwargs)  # type: ignore[arg-type]


def rewrite(tracker: mailtrack.Tracker, html: str, **kwargs: object) -> mailtrack.HtmlResult:
    """Rewrite with fixed identity and timestamp (deterministic)."""
    kwargs.setdefault("message_id", "msg-1")
    kwargs.setdefault("recipient", "ann@example.com")
    kwargs.setdefault("issued_at", 1_700_000_000)
    return tracker.rewrite_html(html, **kwargs)  # type: ignore[arg-type]


def links_only(tracker: mailtrack.Tracker, html: str, **kwargs: object) -> mailtrack.HtmlResult:
    """Rewrite with open tracking off, to look at links alone."""
    kwargs.setdefault("settings", {"open_tracking": {"enable": False}})
    return rewrite(tracker, html, **kwargs)


def assert_left_alone(tracker: mailtrack.Tracker, html: str, reason: str) -> None:
    """``html`` holds one link, skipped for ``reason``, and comes out unchanged."""
    result = links_only(tracker, html)
    assert result.links == []
    assert [s.reason for s in result.skipped] == [reason]
    assert result.html == html


def tracked(tracker: mailtrack.Tracker, html: str, **kwargs: object) -> list[str]:
    """Destinations tracked in ``html``."""
    return [link.url for link in links_only(tracker, html, **kwargs).links]


def restore(result: mailtrack.HtmlResult, original: str) -> str:
    """Undo a rewrite using only the result's spans: original values back, pixel out."""
    edits = [(link.start, link.end, link.raw) for link in result.links]
    edits += [(p.position, p.position + len(p.replaced), p.replaced) for p in result.pixels]
    out, pos_out, pos_in = [], 0, 0
    html = result.html
    for start, end, raw in sorted(edits):
        # the output has the same text as the input up to ``start``
        out.append(html[pos_out : pos_out + (start - pos_in)])
        pos_out += start - pos_in
        replacement_len = _replacement_length(result, start)
        out.append(raw)
        pos_out += replacement_len
        pos_in = end
    out.append(html[pos_out:])
    return "".join(out)


def _replacement_length(result: mailtrack.HtmlResult, start: int) -> int:
    from mailtrack.core.charrefs import escape_attribute

    for link in result.links:
        if link.start == start:
            return len(escape_attribute(link.tracking_url, link.quote))
    for pixel in result.pixels:
        if pixel.position == start:
            return len(pixel.html)
    raise AssertionError(f"no edit at {start}")


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, *, interval: float = 0.01, what: str | None = None) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail at the deadline.

    The way to wait for something another thread or process does: the test goes
    on as soon as it happened, and a clear AssertionError says what never
    happened instead of a later, puzzling failure. ``timeout`` is a hang guard
    (generous: the machine is shared), never a measurement.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


@contextlib.contextmanager
def serving(server: Any) -> Iterator[Any]:
    """``server`` (a waitress server made by ``mailtrack.http.server.create``) run in a thread; closed at the end."""
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield server
    finally:
        server.close()


async def asgi_lifespan(receive: Any, send: Any) -> None:
    """Answer an ASGI lifespan scope (startup, then shutdown) for a test app run by the loop server."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


#: What a person's browser sends with a click or an image fetch. Since issue 14 a bare client (no User-Agent, no
#: Accept-Language) a few seconds after a message was signed is labelled a link scanner (mailtrack.machine), and its
#: clicks take no first slot and count as machines: tests that stand for a person reading send these.
READER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36",
    "Accept-Language": "en-GB,en;q=0.9",
}
