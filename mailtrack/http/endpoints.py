"""The tracking endpoints as a pure request -> response function, the same under every server.

:class:`Endpoints` answers a :class:`Request` (method, path, query, headers,
client address, body) with a :class:`Response`; the WSGI app
(:mod:`mailtrack.http.wsgi`) and framework integrations only translate. Which
endpoint a path is for is :mod:`.router`'s business, and every body it
answers with is :mod:`.pages`'; here is only what each endpoint does:

* **open** (``GET``/``HEAD`` of ``{base}/o/<token>``): always ``200`` and the
  43-byte transparent GIF with no-cache headers, for any token: a broken image
  helps nobody. Only a valid token's ``GET`` records ``opened``.
* **click** (``{base}/c/<token>``): ``302`` to the signed destination, which
  :meth:`Tracker.verify` has checked with :func:`~mailtrack.core.urls.check_destination`
  (the check signing made), written as its ASCII redirect form (IDNA 2008 host).
  Anything else (forged, tampered, foreign key, wrong purpose, expired) gets a
  small ``404`` page and never a redirect. A ``GET`` records ``clicked``.
  The honeypot link's token (link index
  :data:`~mailtrack.core.rewrite.honeypot.HONEYPOT_INDEX`, which the rewriter
  adds with ``Tracker(honeypot=True)``) is answered ``204 No Content``, never a
  redirect, and its ``GET`` records ``clicked`` with ``machine="honeypot"``.
* **unsubscribe** (``{base}/u/<token>``): ``GET`` shows a confirmation page
  with a button that POSTs (link scanners fetch every URL, so a GET never
  unsubscribes); ``POST``, including RFC 8058's ``List-Unsubscribe=One-Click``
  body, records ``unsubscribed``. A ``POST`` the classifier labels
  ``link_scanner`` or ``prefetch`` is honoured only with that body (RFC 8058
  section 3.2's one-click POST carries it; a scanner replaying a URL does not):
  without it, the confirmation page is shown and nothing is recorded.

Every event gets the machine verdict (:mod:`mailtrack.machine`:
``machine`` and ``machine_reasons``), decided here on the raw request, before
the recorder's privacy mode reduces its address and user agent.
``HEAD`` never records: it is what link checkers send. Recording goes through
:class:`~mailtrack.delivery.recorder.Recorder`, which never raises, so a broken store
never breaks a response.
"""

from __future__ import annotations

import html
import ipaddress
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Literal

from mailtrack.core.results import Verified
from mailtrack.core.rewrite.honeypot import HONEYPOT_INDEX
from mailtrack.core.tracker import Tracker
from mailtrack.core.urls import TokenKind, as_uri
from mailtrack.delivery.recorder import Recorder
from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ConfigurationError
from mailtrack.http import pages
from mailtrack.http.messages import Request, Response
from mailtrack.http.pages import GIF
from mailtrack.http.router import Router
from mailtrack.machine import Classifier, Verdict, default_classifier, one_click_body

__all__ = ["GIF", "Answer", "Endpoints", "Request", "Response", "check_max_age"]

#: The reason of a honeypot click's verdict when classification is off (the classifier words its own).
_HONEYPOT_REASON = "clicked the honeypot link, which no person sees (display:none, aria-hidden)"
_MAX_HEADER = 1024  # user agents and referers are stored up to this many characters

#: An endpoint's answer: the response, and the event to record before it is sent (or None).
Answer = tuple[Response, "TrackingEvent | None"]


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
    before ``</body>`` (or at the end). It may be a callable giving the page
    (or None) each time one is shown: ``mailtrack serve`` reads the stored
    account settings so, and a PATCH of ``subscription.landing`` shows at once.
    A callable that raises falls back to the default page.

    A token signed for an account (a message rewritten for a subuser) makes
    events of that account (:attr:`TrackingEvent.account`); ``parent_account``
    names the parent, whose tokens make events without one. Its unsubscribe
    page is ``account_landing(account)`` (the subuser's stored
    ``subscription.landing``) when that gives one, else ``landing_html``.

    ``classifier`` decides each event's machine verdict (:mod:`mailtrack.machine`):
    ``"default"`` the shipped ranges file's, a :class:`~mailtrack.machine.Classifier`
    of your own (``serve --machine-ranges FILE``), or None to turn
    classification off (every event ``machine=None``, and the unsubscribe
    POST is honoured from anyone, as before).
    """

    def __init__(
        self,
        tracker: Tracker,
        recorder: Recorder | None = None,
        *,
        trusted_proxies: Iterable[str] = (),
        max_age: float | None = None,
        landing_html: str | Callable[[], str | None] | None = None,
        clock: Callable[[], float] | None = None,
        account_landing: Callable[[str], str | None] | None = None,
        parent_account: str | None = None,
        classifier: Classifier | Literal["default"] | None = "default",
    ) -> None:
        if not isinstance(tracker, Tracker):
            raise ConfigurationError(f"Endpoints needs a Tracker, not {type(tracker).__name__}")
        self.tracker = tracker
        self.recorder = recorder
        self.max_age = check_max_age(max_age)
        self.landing_html = landing_html if landing_html is not None else tracker.settings.subscription_tracking.landing
        self.clock = clock
        self.account_landing = account_landing
        self.parent_account = parent_account
        if classifier == "default":
            classifier = default_classifier()
        if classifier is not None and not isinstance(classifier, Classifier):
            raise ConfigurationError(f"classifier must be a mailtrack.machine.Classifier, 'default' or None, "
                                     f"not {type(classifier).__name__}")
        self.classifier: Classifier | None = classifier
        self._proxies = trusted_networks(trusted_proxies)
        self._router = Router(tracker.base_url, tracker.layout.paths)
        self._handlers: dict[TokenKind, Callable[[Request, str], Answer]] = {
            "open": self._open, "click": self._click, "unsubscribe": self._unsubscribe,
        }

    # -- dispatch ---------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Answer ``request``, its event recorded (committed) first; never raises for anything a client can send."""
        response, event = self.respond(request)
        if event is not None and self.recorder is not None:
            self.recorder.record(event)
        return response

    def respond(self, request: Request) -> Answer:
        """The answer to ``request`` and the event it makes (or None), not yet recorded: :meth:`handle` without the
        wait, for a server that records the event without blocking (``await Recorder.record_async``) and sends the
        response once it returns. Never raises for anything a client can send."""
        route = self._router.match(request.path)
        if route is None:
            return pages.page(404, "Not found", "There is nothing here."), None
        return self._handlers[route.kind](request, route.token)

    def kind_of(self, path: str) -> TokenKind | None:
        """Which of the tracker's URLs ``path`` is (``"open"``, ``"click"``, ``"unsubscribe"``), or None."""
        route = self._router.match(path)
        return None if route is None else route.kind

    def _open(self, request: Request, token: str) -> Answer:
        if request.method not in ("GET", "HEAD"):
            return pages.not_allowed("GET, HEAD"), None
        event = None
        if request.method == "GET":
            claims = self._verify(token, "open")
            if claims is not None:
                event = self._event(request, claims)
        return pages.pixel(head=request.method == "HEAD"), event

    def _click(self, request: Request, token: str) -> Answer:
        if request.method not in ("GET", "HEAD"):
            return pages.not_allowed("GET, HEAD"), None
        claims = self._verify(token, "click", self.max_age)
        url = None if claims is None else claims.url
        # verify already refused destinations check_destination refuses; as_uri is that same check, and never raises.
        location = None if not isinstance(url, str) else as_uri(url)
        if location is None or any(c in location for c in "\r\n\x00"):
            return pages.page(404, "Link not found", "This link is not valid or has expired.",
                              head=request.method == "HEAD"), None
        event = self._event(request, claims) if request.method == "GET" and claims is not None else None
        if claims is not None and claims.link_index == HONEYPOT_INDEX:  # no person follows it: nothing to show
            return Response(204, [*pages.NO_CACHE, ("Referrer-Policy", "no-referrer")]), event
        headers = [("Location", location), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0")]
        return Response(302, [*headers, *pages.NO_CACHE, ("Referrer-Policy", "no-referrer")]), event

    def _unsubscribe(self, request: Request, token: str) -> Answer:
        if request.method not in ("GET", "HEAD", "POST"):
            return pages.not_allowed("GET, HEAD, POST"), None
        claims = self._verify(token, "unsubscribe")
        if claims is None:
            return pages.page(404, "Link not found", "This unsubscribe link is not valid or has expired.",
                              head=request.method == "HEAD"), None
        if request.method == "POST":
            one_click = one_click_body(request.body, request.headers.get("content-type"))
            verdict = self._verdict(request, claims, one_click=one_click)
            if verdict[0] is not None and not one_click:
                # A machine (scanner, prefetch, image proxy) replaying the URL, without RFC 8058's body: ask, as a
                # GET would, and record nothing.
                return pages.confirmation(self._landing(self._account(claims))), None
            who = html.escape(claims.recipient) if claims.recipient is not None else "You"
            return (pages.page(200, "Unsubscribed", f"{who} will no longer receive these emails."),
                    self._event(request, claims, verdict))
        return pages.confirmation(self._landing(self._account(claims)), head=request.method == "HEAD"), None

    # -- helpers ----------------------------------------------------------------------
    def _account(self, claims: Verified) -> str | None:
        """The account of a token's events: the subuser signed in, None for the parent's (or no) account."""
        return None if claims.account == self.parent_account else claims.account

    def _landing(self, account: str | None = None) -> str | None:
        if account is not None and self.account_landing is not None:
            try:
                page = self.account_landing(account)
            except Exception:  # a store that cannot be read now: the parent's page, then the default
                page = None
            if page is not None:
                return page
        if not callable(self.landing_html):
            return self.landing_html
        try:
            return self.landing_html()
        except Exception:  # a store that cannot be read now: the default page, never a 500 for an unsubscribe
            return None

    def _verify(self, token: str, kind: TokenKind, max_age: float | None = None) -> Verified | None:
        try:
            return self.tracker.verify(token, kind=kind, max_age=max_age)
        except Exception:  # a MailtrackError for every refusal; anything else a hostile token provokes: a 404, never a 500
            return None

    def _verdict(self, request: Request, claims: Verified, ip: str | None = None, now: float | None = None, *,
                 one_click: bool = False) -> Verdict:
        """The machine verdict of ``request`` for a token of ``claims`` (``(None, ())`` with classification off);
        ``ip`` and ``now``: the client's address and the time, when the caller has them already; ``one_click``: an
        unsubscribe POST with RFC 8058's body (a mailbox provider relaying its user's request)."""
        if self.classifier is None:  # classification off; the honeypot link's click is still no person's
            if claims.kind == "click" and claims.link_index == HONEYPOT_INDEX:
                return "honeypot", (_HONEYPOT_REASON,)
            return None, ()
        if now is None:
            now = self.clock() if self.clock is not None else time.time()
        return self.classifier.classify(
            request.method, claims.kind, request.headers, ip if ip is not None else self.client_ip(request),
            claims.issued_at.timestamp(), now,
            honeypot=claims.kind == "click" and claims.link_index == HONEYPOT_INDEX, one_click=one_click,
        )

    def _event(self, request: Request, claims: Verified, verdict: Verdict | None = None) -> TrackingEvent | None:
        """The event ``request`` makes (None when nothing records events: no recorder), with its machine verdict."""
        if self.recorder is None:
            return None
        now = self.clock() if self.clock is not None else time.time()
        ip = self.client_ip(request)
        machine, reasons = self._verdict(request, claims, ip, now) if verdict is None else verdict
        event = TrackingEvent(
            event_type=EventType.for_kind(claims.kind),
            timestamp=datetime.fromtimestamp(now, timezone.utc),
            message_id=claims.message_id,
            recipient=claims.recipient,
            url=claims.url,
            link_index=claims.link_index,
            user_agent=_header(request, "user-agent"),
            ip=ip,
            referer=_header(request, "referer"),
            metadata=dict(claims.metadata),
            tags=claims.tags,
            account=self._account(claims),
            machine=machine,
            machine_reasons=reasons,
            esp_event={
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "headers": dict(request.headers),
                "remote_addr": request.remote_addr,
            },
        )
        return event

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


def trusted_networks(proxies: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
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
        except (ValueError, TypeError):
            raise ConfigurationError(f"trusted proxy {proxy!r} is not an IP address or network") from None
    return networks


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value[:_MAX_HEADER] if value else None
