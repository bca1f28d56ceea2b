"""The end-to-end demo: track a sample campaign mail, serve its URLs, and show the events.

Runs on embedded defaults (a throwaway key, ``https://t.example.com``), so it
needs no configuration; it prints what a user would want to see first: which
links were tracked, which were left alone and why, that each URL verifies back
to its destination, that forgeries are refused, and that nothing else changed.
Then it starts the tracking server (waitress, on a free loopback port, with a
SQLite store in a temporary directory), fetches the pixel and a click over HTTP
as a mail client would, and prints the events that were recorded.
"""

from __future__ import annotations

import argparse
import difflib
import http.client
import importlib.util
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailtrack.config import Config
from mailtrack.core.tracker import Tracker
from mailtrack.events import EventType
from mailtrack.exceptions import InvalidToken

__all__ = ["SAMPLE_CAMPAIGN", "register", "run_demo"]

#: The demo's throwaway keys (newest last), so it runs without any configuration.
DEMO_KEYS = ("demo-old-key", "demo-new-key")

SAMPLE_CAMPAIGN = """\
<!DOCTYPE html>
<html lang="en" xmlns:v="urn:schemas-microsoft-com:vml">
<head>
  <meta charset="utf-8">
  <title>Spring sale &mdash; up to 40% off</title>
  <style>a { color: #0a66c2; } /* <a href="https://not-a-link.example/"> */</style>
</head>
<body style="margin:0;padding:0;background:#f4f4f4;">
  <table role="presentation" width="100%" cellpadding="0" cellspacing="0">
    <tr><td align="center" style="padding:24px;font-family:Arial,sans-serif;">
      <h1 style="margin:0;">Spring is here, Ann!</h1>
      <p>Fresh picks, from caf&eacute; au lait mugs to garden chairs &ndash; 40&nbsp;% off.</p>
      <!--[if mso]>
      <v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://shop.example.com/sale?src=mail&amp;id=42"
        style="height:44px;v-text-anchor:middle;width:220px;" arcsize="10%" fillcolor="#0a66c2" stroke="f">
        <center style="color:#ffffff;">Shop the sale</center></v:roundrect>
      <![endif]-->
      <!--[if !mso]><!-->
      <a href="https://shop.example.com/sale?src=mail&amp;id=42" class="button"
         style="background:#0a66c2;color:#fff;padding:12px 24px;border-radius:4px;">Shop the sale</a>
      <!--<![endif]-->
      <p><a href='https://blog.example.com/spring-guide#plants'>Read the planting guide</a> &middot;
         <a href=https://shop.example.com/gift-cards>Gift cards</a></p>
      <p>Questions? <a href="mailto:help@example.com">Write to us</a> or call <a href="tel:+15551234567">555 1234</a>.</p>
      <p><a href="https://partner.example.org/ad" clicktracking="off">Our partner (untracked)</a></p>
      <p style="font-size:12px;color:#777;">Sent to {{email}} &middot;
         <a href="{{unsubscribe_url}}">Unsubscribe</a> &middot; <a href="#top">Back to top</a></p>
    </td></tr>
  </table>
</body>
</html>
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the subcommands ``commands``."""
    demo = commands.add_parser("demo", help="track a sample campaign mail and check every URL (no setup needed)",
                               description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    demo.add_argument("--no-diff", action="store_true", help="do not print the changed lines")
    demo.set_defaults(func=lambda args: run_demo(show_diff=not args.no_diff))


def run_demo(html: str = SAMPLE_CAMPAIGN, *, out: Callable[[str], None] = print, show_diff: bool = True) -> int:
    """Rewrite ``html`` for one recipient and report; returns a process exit code."""
    tracker = Tracker(secret_keys=list(DEMO_KEYS), base_url="https://t.example.com")
    result = tracker.rewrite_html(
        html, message_id="<spring-2026-0001@example.com>", recipient="ann@example.com", metadata={"campaign": "spring"}
    )
    out(f"Rewrote a {len(html.encode())}-byte campaign mail for ann@example.com\n")
    out(f"Tracked links ({len(result.links)}):")
    failures = 0
    for link in result.links:
        verified = tracker.verify(link.tracking_url)
        ok = verified.url == link.url and verified.kind == "click"
        failures += not ok
        out(f"  #{link.index} <{link.tag}> {link.url}")
        shown = link.tracking_url if len(link.tracking_url) < 90 else f"{link.tracking_url[:44]}...{link.tracking_url[-40:]}"
        out(f"      -> {shown}  verifies: {'yes' if ok else 'NO'}")
    out(f"\nLeft alone ({len(result.skipped)}):")
    for skip in result.skipped:
        out(f"  <{skip.tag}> {skip.raw!r}: {skip.reason}")
    pixel = result.pixel
    if pixel is not None:
        opened = tracker.verify(pixel.html.split('src="', 1)[1].split('"', 1)[0])
        out(f"\nOpen pixel inserted at offset {pixel.position} (before </body>), verifies as: {opened.kind}")
    try:
        tracker.verify(_forged(result.links[0].tracking_url))
        out("Forged URL: ACCEPTED (this is a bug)")
        failures += 1
    except InvalidToken as exc:
        out(f"Forged URL refused: {exc.reason}")
    again = tracker.rewrite_html(
        result.html, message_id="<spring-2026-0001@example.com>", recipient="ann@example.com", metadata={"campaign": "spring"}
    )
    out(f"Second pass over the output changes nothing: {again.html == result.html}")
    failures += again.html != result.html
    if show_diff:
        out("\nEvery changed line (everything else is byte-identical):")
        for line in difflib.unified_diff(html.splitlines(), result.html.splitlines(), lineterm="", n=0):
            if not line.startswith(("---", "+++", "@@")):
                out("  " + (line if len(line) < 140 else line[:137] + "..."))
    out(f"\nOutput size {result.size} bytes; Gmail would clip it: {result.gmail_clipped}")
    failures += _serve_and_fetch(html, out)
    return 1 if failures else 0


def _serve_and_fetch(html: str, out: Callable[[str], None]) -> int:
    """Serve the tracking URLs on loopback, fetch a pixel and a click, print the events; returns failures."""
    from mailtrack.http import loop_server

    use_loop = loop_server.available()  # uvicorn, as `mailtrack serve` runs by default
    if not use_loop and importlib.util.find_spec("waitress") is None:
        out("\n(neither uvicorn nor waitress is installed, so the server part is skipped: "
            "pip install 'mailtrack[serve]')")
        return 0
    from mailtrack.service import build_service, create_loop_server, create_server

    failures = 0
    with tempfile.TemporaryDirectory(prefix="mailtrack-demo-") as folder:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))  # a free port: it goes into base_url, so bind before configuring
        port = listener.getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        config = Config(secret_keys=DEMO_KEYS, base_url=base_url, db=str(Path(folder) / "events.sqlite"), threads=4)
        service = build_service(config)  # the same wiring as `mailtrack serve`
        store = service.recorder.store
        assert store is not None
        tracker = service.app.endpoints.tracker
        try:
            server = (create_loop_server(service, config, sockets=[listener]) if use_loop
                      else create_server(service, config, sockets=[listener]))
        except BaseException:
            service.close()
            raise
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            out(f"\nServing the tracking endpoints on {base_url} (mailtrack serve does the same; events in SQLite)")
            served = tracker.rewrite_html(html, message_id="<spring-2026-0001@example.com>", recipient="ann@example.com",
                                          metadata={"campaign": "spring"})
            assert served.pixel is not None
            pixel = served.pixel.html.split('src="', 1)[1].split('"', 1)[0]
            click = served.links[0].tracking_url
            # A reader's mail client and browser send these; a link scanner fetching the link as the mail arrives
            # sends no browser headers (mailtrack.machine labels its click, and stats count people apart).
            reader = {"User-Agent": "Mozilla/5.0 (demo mail client)", "Accept-Language": "en"}
            for label, url, want, agent in (("pixel", pixel, 200, reader), ("click", click, 302, reader),
                                            ("click (scanner)", click, 302, {}),
                                            ("forged click", _forged(click), 404, reader)):
                status, headers, body = _get(port, url[len(base_url):], agent)
                failures += status != want
                detail = f"Location: {headers.get('location')}" if status == 302 else f"{headers.get('content-type')}, {len(body)} bytes"
                out(f"  GET {label:<15} -> {status} {detail}")
        finally:
            _stop(server, thread)
            service.close()
        events = store.events()
        out(f"\nRecorded events ({len(events)}):")
        for event in events:
            where = f" {event.url} (link {event.link_index})" if event.url else ""
            out(f"  {event.event_type:<8} {event.message_id} {event.recipient}{where} first={event.first} "
                f"ip={event.ip} metadata={dict(event.metadata)} machine={event.machine or 'none (a person)'}")
        failures += [(e.event_type, e.machine, e.first) for e in events] != [
            (EventType.OPENED, None, True), (EventType.CLICKED, None, True), (EventType.CLICKED, "link_scanner", False)]
        store.close()
    return failures


def _forged(url: str) -> str:
    """``url`` with the first character of its token changed: the SIV tag's of an opaque token, the payload's of a
    signed one; either way no key verifies it. (Not the last: it carries base64 padding bits, and changing those
    sometimes left a signature valid: 3 of 2,000 URLs, and 3 demo runs in 70 failed.)"""
    head, token = url.rsplit("/", 1)
    return f"{head}/{'B' if token[0] == 'A' else 'A'}{token[1:]}"


def _stop(server: Any, thread: threading.Thread) -> None:
    """Stop the server whose loop runs in ``thread``.

    uvicorn (:class:`~mailtrack.http.loop_server.LoopServer`) stops from any thread: it answers what is in
    flight, closes its connections and returns. For waitress: its workers first, then the loop closes its own
    sockets.

    ``server.close()`` from this thread races both: the loop goes on selecting
    on closed descriptors and a worker finishing a request pulls the closed
    trigger, each printing "Bad file descriptor". Run from the loop thread
    (through the trigger), closing every socket empties the loop's map, and
    the loop returns.
    """
    from mailtrack.http.loop_server import LoopServer

    if isinstance(server, LoopServer):
        server.stop()
        thread.join(10)
        server.close()
        return
    from waitress import wasyncore  # type: ignore[import-untyped]

    server.task_dispatcher.shutdown()
    socket_map = server._map
    server.trigger.pull_trigger(lambda: wasyncore.close_all(socket_map))
    thread.join(10)


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()
