"""Machine verdicts end to end: ``mailtrack serve`` over loopback, events read back from its SQLite store (issue 14).

The scanners' addresses reach the server the way a reverse proxy hands them
over: ``--trusted-proxy 127.0.0.1`` and ``X-Forwarded-For``, so the verdict
is made on the address ``Endpoints.client_ip`` resolves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from support.helpers import BASE_URL, make_tracker
from test_serve_http import Server, cli, path_of, serve, stored, unique  # noqa: F401, F811  (serve: the fixture)

from mailtrack.core.rewrite.honeypot import HONEYPOT_INDEX

GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
SAFE_LINKS = "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/57.0.2987.133 Safari/537.36"
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
           "Accept-Language": "en"}
FROM_EOP = {"User-Agent": SAFE_LINKS, "X-Forwarded-For": "40.107.218.12"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_verdicts_are_stored(serve: Callable[..., Server]) -> None:  # noqa: F811
    server = serve("--trusted-proxy", "127.0.0.1")
    tracker = make_tracker()
    message = unique("machine")
    ids = {"message_id": message, "recipient": "ann@example.com"}
    opened = path_of(tracker.tracking_url("open", **ids))
    click = path_of(tracker.tracking_url("click", url="https://example.com/a", **ids))

    assert server.get(opened, headers={"User-Agent": GMAIL, "X-Forwarded-For": "66.249.84.1"}).status == 200
    assert server.request("HEAD", click, headers=FROM_EOP).status == 302  # HEAD: answered, never recorded
    reply = server.get(click, headers=FROM_EOP)
    assert reply.status == 302 and reply.header("Location") == "https://example.com/a"
    assert server.get(click, headers=BROWSER).status == 302
    events = stored(server.db, message_id=message)
    assert [(e.event_type, e.machine, e.ip) for e in events] == [
        ("opened", "image_proxy", "66.249.84.1"), ("clicked", "link_scanner", "40.107.218.12"),
        ("clicked", None, "127.0.0.1")]


def test_the_honeypot_link_of_a_rewrite(serve: Callable[..., Server]) -> None:  # noqa: F811
    server = serve()
    tracker = make_tracker(honeypot=True)
    message = unique("honeypot")
    html = tracker.rewrite_html('<html><body><a href="https://example.com/">x</a></body></html>',
                                message_id=message, recipient="bob@example.com").html
    [honeypot] = [href for href in html.split('href="')[1:] if 'aria-hidden="true"' in href]
    target = path_of(honeypot.split('"', 1)[0])
    assert tracker.verify(BASE_URL + target).link_index == HONEYPOT_INDEX
    reply = server.get(target, headers=BROWSER)
    assert reply.status == 204 and reply.body == b"" and reply.header("Location") is None
    assert [(e.event_type, e.machine) for e in stored(server.db, message_id=message)] == [("clicked", "honeypot")]


def test_a_scanner_is_never_unsubscribed_without_rfc_8058(serve: Callable[..., Server]) -> None:  # noqa: F811
    server = serve("--trusted-proxy", "127.0.0.1")
    tracker = make_tracker()
    message = unique("unsub-scanner")
    target = path_of(tracker.tracking_url("unsubscribe", message_id=message, recipient="cy@example.com"))
    page = server.get(target, headers=FROM_EOP)
    assert page.status == 200 and b'<form method="post">' in page.body
    refused = server.request("POST", target, body=b"", headers={**FROM_EOP, **FORM})
    assert refused.status == 200 and b"will no longer receive" not in refused.body
    prefetch = server.request("POST", target, body=b"", headers={**BROWSER, **FORM, "Sec-Purpose": "prefetch"})
    assert b"will no longer receive" not in prefetch.body
    assert stored(server.db, message_id=message) == []
    done = server.request("POST", target, body=b"List-Unsubscribe=One-Click", headers={**FROM_EOP, **FORM})
    assert done.status == 200 and b"will no longer receive" in done.body
    assert [(e.event_type, e.machine) for e in stored(server.db, message_id=message)] == [
        ("unsubscribed", "link_scanner")]


def test_ranges_replaced_or_off(serve: Callable[..., Server], tmp_path: Path) -> None:  # noqa: F811
    ranges = tmp_path / "ranges.csv"
    ranges.write_text("network,label,source,retrieved\n127.0.0.0/8,link_scanner,https://example.com/ours,2026-11-30\n",
                      encoding="utf-8")
    tracker = make_tracker()
    ours = serve("--machine-ranges", str(ranges))
    message = unique("ranges")
    ours.get(path_of(tracker.tracking_url("open", message_id=message, recipient="d@example.com")), headers=BROWSER)
    assert [e.machine for e in stored(ours.db, message_id=message)] == ["link_scanner"]  # loopback, by our file
    off = serve(db=tmp_path / "off.sqlite", env={"MAILTRACK_MACHINE_RANGES": "off"})
    message = unique("off")
    off.get(path_of(tracker.tracking_url("open", message_id=message, recipient="d@example.com")),
            headers={"User-Agent": GMAIL})
    assert [e.machine for e in stored(off.db, message_id=message)] == [None]


def test_a_bad_ranges_file_stops_serve_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("network,label,source,retrieved\n# fine\n10.0.0.0/33,link_scanner,https://x,2026-11-30\n",
                   encoding="utf-8")
    result = cli("serve", "--db", str(tmp_path / "e.sqlite"), "--secret-key", "k", "--base-url", BASE_URL,
                 "--port", "0", "--machine-ranges", str(bad))
    assert result.returncode != 0
    assert "line 3" in result.stderr and "--machine-ranges" in result.stderr, result.stderr
