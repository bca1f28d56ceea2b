"""The tracking endpoints as a pure request -> response function, the same under every server.

:class:`Endpoints` answers a :class:`Request` (method, path, query, headers,
client address, body) with a :class:`Response`; the WSGI app
(:mod:`mailtrack.wsgi`) and framework integrations only translate. What it
serves:

* **open** (``GET``/``HEAD`` of ``{base}/o/<token>``): always ``200`` and the
  43-byte transparent GIF with no-cache headers, for any token: a broken image
  helps nobody. Only a valid token's ``GET`` records ``opened``.
* **click** (``{base}/c/<token>``): ``302`` to the signed destination, which
  :meth:`Tracker.verify` has checked with :func:`~mailtrack.core.urls.check_destination`
  (the check signing made), written as its ASCII redirect form (IDNA 2008 host).
  Anything else (forged, tampered, foreign key, wrong purpose, expired) gets a
  small ``404`` page and never a redirect. A ``GET`` records ``clicked``.
* **unsubscribe** (``{base}/u/<token>``): ``GET`` shows a confirmation page
  with a button that POSTs (link scanners fetch every URL, so a GET never
  unsubscribes); ``POST``, including RFC 8058's ``List-Unsubscribe=One-Click``
  body, records ``unsubscribed``.

``HEAD`` never records: it is what link checkers send. Recording goes through
:class:`~mailtrack.recorder.Recorder`, which never raises, so a broken store
never breaks a response.
"""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

from mailtrack.core.results import Verified
from mailtrack.core.tracker import Tracker
from mailtrack.core.urls import TokenKind, as_uri
from mailtrack.delivery.recorder import Recorder
from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ConfigurationError, InvalidToken, MailtrackError

__all__ = ["GIF", "Endpoints", "Request", "Response", "check_max_age"]

#: A 1x1 transparent GIF89a, 43 bytes.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
assert len(GIF) == 43

NO_CACHE = (
    ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
)
_PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    *NO_CACHE,
)
_MAX_HEADER = 1024  # user agents and referers are stored up to this many characters
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class Request:
    """What the endpoints need from an HTTP request; ``headers`` keys are lowercase."""

    method: str
    path: str  # decoded path, e.g. "/c/WyJ..."
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    remote_addr: str | None = None
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def reason(self) -> str:
        return _REASONS.get(self.status, "")


_REASONS = {200: "OK", 302: "Found", 404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}


def check_max_age(value: float | None) -> float | None:
    """``value`` if it is None or a positive number of seconds; a clear error otherwise."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf")):
        raise ConfigurationError(f"max_age must be a positive number of seconds, not {value!r}")
    return value


class Endpoints:
    """Serve the tracking URLs of ``tracker``, recording events through ``recorder``.

    ``trusted_proxies`` lists the addresses or networks (``"10.0.0.0/8"``) of
    reverse proxies whose ``X-Forwarded-For`` is believed; from anyone else the
    header is ignored. ``max_age`` (seconds) refuses older click tokens;
    unsubscribe links never expire (CAN-SPAM wants them working for 30 days
    at least, and an unsubscribe that fails helps nobody). ``landing_html`` is the unsubscribe confirmation page
    (SendGrid's ``subscription_tracking.landing``); mailtrack adds its button
    before ``</body>`` (or at the end).
    """

    def __init__(
        self,
        tracker: Tracker,
        recorder: Recorder | None = None,
        *,
        trusted_proxies: Iterable[str] = (),
        max_age: float | None = None,
        landing_html: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.tracker = tracker
        self.recorder = recorder
        self.max_age = check_max_age(max_age)
        self.landing_html = landing_html if landing_html is not None else tracker.settings.subscription_tracking.landing
        self.clock = clock
        self._proxies = _networks(trusted_proxies)
        base_path = _path_of(tracker.base_url)
        # Longest prefix first: with paths like "t" and "t/o", "/t/o/..." is an open URL.
        routes = {f"{base_path}/{path}/": kind for kind, path in tracker.layout.paths.items()}
        self._routes = dict(sorted(routes.items(), key=lambda item: -len(item[0])))

    # -- dispatch ---------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Answer ``request``; never raises for anything a client can send."""
        for prefix, kind in self._routes.items():
            if request.path.startswith(prefix):
                token = request.path[len(prefix):]
                handler: Callable[[Request, str], Response] = getattr(self, f"_{kind}")
                return handler(request, token)
        return _page(404, "Not found", "There is nothing here.")

    def _open(self, request: Request, token: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD")
        if request.method == "GET":
            claims = self._verify(token, "open")
            if claims is not None:
                self._record(request, claims)
        headers = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))), *NO_CACHE]
        return Response(200, headers, GIF if request.method == "GET" else b"")

    def _click(self, request: Request, token: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD")
        claims = self._verify(token, "click", self.max_age)
        url = None if claims is None else claims.url
        # verify already refused destinations check_destination refuses; as_uri is that same check, and never raises.
        location = None if not isinstance(url, str) else as_uri(url)
        if location is None or any(c in location for c in "\r\n\x00"):
            return _page(404, "Link not found", "This link is not valid or has expired.", head=request.method == "HEAD")
        if request.method == "GET" and claims is not None:
            self._record(request, claims)
        headers = [("Location", location), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0")]
        return Response(302, [*headers, *NO_CACHE, ("Referrer-Policy", "no-referrer")])

    def _unsubscribe(self, request: Request, token: str) -> Response:
        if request.method not in ("GET", "HEAD", "POST"):
            return _not_allowed("GET, HEAD, POST")
        claims = self._verify(token, "unsubscribe")
        if claims is None:
            return _page(404, "Link not found", "This unsubscribe link is not valid or has expired.",
                         head=request.method == "HEAD")
        if request.method == "POST":
            self._record(request, claims)
            return _page(200, "Unsubscribed", f"{html.escape(claims.recipient)} will no longer receive these emails.")
        return self._confirmation(request.method == "HEAD")

    def _confirmation(self, head: bool) -> Response:
        form = (
            '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        if self.landing_html:
            page = self.landing_html
            ends = list(_BODY_END.finditer(page))
            at = ends[-1].start() if ends else -1
            body = page[:at] + form + page[at:] if at != -1 else page + form
            data = body.encode("utf-8")
            return Response(200, [*_PAGE_HEADERS, ("Content-Length", str(len(data)))], b"" if head else data)
        return _page(200, "Unsubscribe", "Do you want to stop receiving these emails?", extra=form, head=head)

    # -- helpers ----------------------------------------------------------------------
    def _verify(self, token: str, kind: TokenKind, max_age: float | None = None) -> Verified | None:
        try:
            return self.tracker.verify(token, kind=kind, max_age=max_age)
        except (InvalidToken, MailtrackError):  # ExpiredToken is an InvalidToken
            return None
        except Exception:  # anything a hostile token could still provoke: a 404, never a 500
            return None

    def _record(self, request: Request, claims: Verified) -> None:
        if self.recorder is None:
            return
        now = self.clock() if self.clock is not None else None
        event = TrackingEvent(
            event_type=EventType.for_kind(claims.kind),
            timestamp=datetime.fromtimestamp(now, timezone.utc) if now is not None else datetime.now(timezone.utc),
            message_id=claims.message_id,
            recipient=claims.recipient,
            url=claims.url,
            link_index=claims.link_index,
            user_agent=_header(request, "user-agent"),
            ip=self.client_ip(request),
            referer=_header(request, "referer"),
            metadata=dict(claims.metadata),
        )
        self.recorder.record(event)

    def client_ip(self, request: Request) -> str | None:
        """The client's address: ``remote_addr``, or from ``X-Forwarded-For`` when a trusted proxy sent it.

        Walks the header from the right (the hop nearest us) past trusted
        proxies; the first address that is not one is the client.
        """
        address = request.remote_addr
        if not self._proxies or not self._trusted(address):
            return address
        hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return address  # a garbled header: believe only the connection
            if not self._trusted(hop):
                return hop
            address = hop
        return address

    def _trusted(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)  # "::ffff:10.0.0.1" on a dual-stack socket is 10.0.0.1
        return any(ip in network or (mapped is not None and mapped in network) for network in self._proxies)


def _networks(proxies: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The trusted proxies as networks; one str is one address or network (not its characters)."""
    if isinstance(proxies, str):
        proxies = [proxies]
    if not isinstance(proxies, Iterable):
        raise ConfigurationError(f"trusted_proxies must be an iterable of addresses or networks, not {proxies!r}")
    networks = []
    for proxy in proxies:
        if not isinstance(proxy, str):
            raise ConfigurationError(f"trusted proxy {proxy!r} must be a str like '10.0.0.0/8'")
        try:
            networks.append(ipaddress.ip_network(proxy, strict=False))
        except ValueError:
            raise ConfigurationError(f"trusted proxy {proxy!r} is not an IP address or network") from None
    return networks


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value[:_MAX_HEADER] if value else None


def _path_of(base_url: str) -> str:
    return urlsplit(base_url).path.rstrip("/")


def _page(status: int, title: str, message: str, *, extra: str = "", head: bool = False) -> Response:
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width"><title>{title}</title></head><body style="font-family:sans-serif;'
        f'max-width:32em;margin:3em auto;padding:0 1em"><h1>{title}</h1><p>{message}</p>{extra}</body></html>'
    ).encode()
    return Response(status, [*_PAGE_HEADERS, ("Content-Length", str(len(body)))], b"" if head else body)


def _not_allowed(allow: str) -> Response:
    response = _page(405, "Method not allowed", "This address takes " + allow + ".")
    return Response(405, [*response.headers, ("Allow", allow)], response.body)
