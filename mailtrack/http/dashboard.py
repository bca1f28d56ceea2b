"""The dashboard: ``GET /dashboard`` and its pages, server-rendered HTML with inline SVG charts, sans-IO.

Pages (all below ``{prefix}/dashboard``):

* ``GET /dashboard?from=YYYY-MM-DD&to=YYYY-MM-DD&campaign_key=campaign``: the
  overview of a range of UTC days (default: the last 30, today included):
  totals, a per-day chart of opens, clicks and unsubscribes (totals with the
  unique counts inside), a chart and table per campaign (the value of the
  metadata key ``campaign_key``) with their rates, and the 50 latest events;
* ``GET /dashboard/campaign?name=X&from=...&to=...&campaign_key=...``: one
  campaign's totals, per-day chart, top links and latest events;
* ``GET``/``POST /dashboard/login`` (the form; POST takes ``key``) and
  ``POST /dashboard/logout``.

A key reads its own account's events, as on ``/v1/stats``: a subuser's key
the subuser's, the parent's key the parent's. Every number comes from the store's :meth:`~mailtrack.storage.base.EventStore.grouped_stats`
and :meth:`~mailtrack.storage.base.EventStore.find`, the calls behind
``GET /v1/stats`` and ``/v1/events``: one source of truth. Ranges are whole
UTC days, so the store answers from its rollups.

**Who may look.** An API key holding ``stats.read``, sent as HTTP basic
(user ``apikey``, the key as password) or kept by the login form in the cookie
``mailtrack_dashboard`` (``HttpOnly; SameSite=Strict; Path=/dashboard``, 12
hours, ``Secure`` when the base URL is https). Every request checks the key in
the store again, so a revoked key is refused at once (back to the login form,
its cookie cleared). Without credentials a browser (``Accept: text/html``)
gets the login form (200) and any other client a 401 with
``WWW-Authenticate: Basic realm="mailtrack"``; a key without the scope gets a
403 page. A wrong key on the form shows the form again with one message for
every reason (unknown, malformed, revoked): nothing about which keys exist
leaks. The login and logout POSTs are refused (403) when ``Origin`` names
another origin or ``Sec-Fetch-Site`` says the request is not same-origin.

**Hostile data.** Recipients, URLs, metadata, tags and campaign names come
from tracked messages and are attacker-controlled: every value is escaped
(:func:`~mailtrack.http.charts.escape`, attributes quoted), only ``http``/
``https`` destinations become links (``rel="noreferrer noopener"``), and pages
carry a Content-Security-Policy without scripts (``default-src 'none'``, the
one stylesheet allowed by its hash), ``X-Frame-Options: DENY``,
``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``. The key is
never logged or shown (only its public prefix).

An empty store shows "no events yet"; a store that cannot be read now gives
a 503 page, never a 500. ``HEAD`` answers as ``GET`` without a body; other
methods get 405 with ``Allow``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

from mailtrack.events import TrackingEvent
from mailtrack.exceptions import MailtrackError
from mailtrack.http.charts import Series, bar_chart, escape, hbar_chart
from mailtrack.http.messages import Request, Response
from mailtrack.storage.accounts import ApiKey
from mailtrack.storage.base import AccountStore, EventQuery, EventStore, StatsRow, StoreError

__all__ = ["COOKIE", "DEFAULT_DAYS", "MAX_DAYS", "SCOPE", "Dashboard", "safe_link"]

#: The cookie the login form sets: the key itself (checked in the store on every request).
COOKIE = "mailtrack_dashboard"
#: The scope a key needs to see the dashboard.
SCOPE = "stats.read"
#: How long the login cookie lives, in seconds (12 hours).
COOKIE_MAX_AGE = 12 * 3600
DEFAULT_DAYS = 30
#: The widest range one page shows, in days.
MAX_DAYS = 366
RECENT = 50
TOP_LINKS = 20
#: How many campaigns the campaign chart shows (the busiest); the table lists up to MAX_CAMPAIGNS.
CHART_CAMPAIGNS = 20
MAX_CAMPAIGNS = 500
_MAX_KEY = 512  # longer than any key; a longer "key" is not looked up

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}"
    "header{display:flex;flex-wrap:wrap;gap:1em;align-items:center;justify-content:space-between;"
    "padding:.6em 1.5em;background:#1d2330;color:#fff}"
    "header a{color:#fff}header h1{font-size:1.2em;margin:0}header form{display:inline;margin:0}"
    "header nav{display:flex;flex-wrap:wrap;gap:1em;align-items:center}header .muted{color:#c9d1dc}"
    "main{max-width:70em;margin:0 auto;padding:1em 1.5em 3em}"
    "section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.8em 1.2em;margin:1em 0}"
    "h2{font-size:1.1em;margin:.3em 0 .6em}"
    "table{border-collapse:collapse;width:100%;font-size:.9em}"
    "th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #eceff3;vertical-align:top}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    "td.wrap{overflow-wrap:anywhere}td.time{white-space:nowrap}"
    "dl.totals{display:flex;flex-wrap:wrap;gap:.8em;margin:0}"
    "dl.totals div{border:1px solid #dde1e7;border-radius:6px;padding:.4em .8em;min-width:8em}"
    "dt{font-size:.8em;color:#5b6577}dd{margin:0;font-size:1.4em;font-variant-numeric:tabular-nums}"
    "form.range{display:flex;flex-wrap:wrap;gap:.8em;align-items:end}"
    "form.range label{display:flex;flex-direction:column;font-size:.85em}"
    ".quick a{margin-right:.8em}.muted{color:#5b6577;font-size:.85em}"
    ".error{color:#a11;font-weight:600}.empty{fill:#5b6577;font-size:15px}"
    "svg.chart{max-width:100%;height:auto;font-size:11px;fill:#39424f}"
    "svg.chart .grid{stroke:#eceff3}svg.chart .axis-line{stroke:#8a93a3}"
    "svg.chart .hit{fill:transparent}svg.chart .group:hover .hit{fill:#f1f4f8}"
    ".login{max-width:26em;margin:4em auto}.login input{width:100%;box-sizing:border-box;padding:.4em;"
    "margin:.3em 0 .8em;font-family:monospace}"
    "button{padding:.35em 1em}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")
#: Security headers of every dashboard page: no scripts at all, styles only our own stylesheet, no framing.
SECURITY_HEADERS = (
    ("Content-Security-Policy", f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
_BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="mailtrack", charset="UTF-8"')
_TYPE_COLORS = {  # (total, unique) per event type
    "opens": ("#9ec5e8", "#1f5f9e"),
    "clicks": ("#f6c08f", "#b85a0c"),
    "unsubscribes": ("#f2a6a6", "#a32323"),
}


class _Refusal(Exception):
    """A page to answer instead of the one asked for (internal control flow: bad parameters, no access)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class Dashboard:
    """The dashboard pages over ``events`` (numbers) and ``accounts`` (keys), below ``{prefix}/dashboard``.

    ``base_url`` is the service's public URL: an https one makes the login
    cookie ``Secure``, and its origin is accepted in ``Origin`` besides the
    request's own ``Host``. ``now`` (Unix seconds) decides what "the last 30
    days" are.
    """

    def __init__(self, events: EventStore, accounts: AccountStore, *, base_url: str | None = None,
                 prefix: str = "", now: Callable[[], float] = time.time) -> None:
        self.events = events
        self.accounts = accounts
        self.root = prefix.rstrip("/") + "/dashboard"
        parts = urlsplit(base_url or "")
        self.secure = parts.scheme.lower() == "https"
        self.origin = f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None
        self.now = now

    # -- routing ------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether ``path`` is the dashboard's (``/dashboard`` and everything below it)."""
        return path == self.root or path.startswith(self.root + "/")

    def handle(self, request: Request) -> Response | None:
        """The answer to ``request``, or None when its path is not the dashboard's. Never raises, never a 500."""
        if not self.handles(request.path):
            return None
        head = request.method == "HEAD"
        page = request.path[len(self.root):].rstrip("/")
        routes: dict[str, tuple[str, ...]] = {"": ("GET", "HEAD"), "/campaign": ("GET", "HEAD"),
                                              "/login": ("GET", "HEAD", "POST"), "/logout": ("POST",)}
        if page not in routes:
            return self._message(404, "Not found", "There is no such dashboard page.", head=head)
        if request.method not in routes[page]:
            allow = ", ".join(routes[page])
            return self._message(405, "Method not allowed", f"This address takes {allow}.", head=head,
                                 headers=[("Allow", allow)])
        try:
            if page == "/login":
                return self._login(request) if request.method == "POST" else self._login_form(request, head=head)
            if page == "/logout":
                return self._logout(request)
            key, by_cookie = self._caller(request)
            params = _parameters(request.query)
            account = self._account_of(key)
            if page == "":
                body = self._overview(params, key, by_cookie, account)
            else:
                body = self._campaign(params, key, by_cookie, account)
            return _html(200, body, head=head)
        except _Refusal as refusal:
            return refusal.response if not head else _headless(refusal.response)
        except StoreError:
            return self._message(503, "Try again soon", "The event store cannot be read right now.", head=head,
                                 headers=[("Retry-After", "5")])
        except MailtrackError as exc:  # a value the store refused that the checks here let through
            return self._message(400, "Bad request", escape(exc), head=head)

    # -- who is asking ------------------------------------------------------------------------

    def _caller(self, request: Request) -> tuple[ApiKey, bool]:
        """The live key of ``request`` holding :data:`SCOPE` and whether it came in the cookie; else a refusal."""
        header = request.headers.get("authorization", "").strip()
        if header:
            scheme, _, credentials = header.partition(" ")
            user, key = _basic(credentials) if scheme.lower() == "basic" else (None, None)
            found = self._authenticate(key) if user == "apikey" else None
            if found is None:
                raise _Refusal(self._message(401, "Not signed in", "The credentials were not accepted. Sign in with "
                                             "user <code>apikey</code> and an API key as the password.",
                                             headers=[_BASIC_CHALLENGE]))
            return self._scoped(found, by_cookie=False), False
        cookie = _cookie(request.headers.get("cookie", ""), COOKIE)
        if cookie is not None:
            found = self._authenticate(cookie)
            if found is None:  # revoked since, or never valid: sign in again
                raise _Refusal(self._form(request, error="Your session has ended. Sign in again.",
                                          headers=[("Set-Cookie", self._cookie_header(""))]))
            return self._scoped(found, by_cookie=True), True
        if "text/html" in request.headers.get("accept", "").lower():
            raise _Refusal(self._form(request))
        raise _Refusal(self._message(401, "Not signed in", "Sign in with HTTP basic authentication (user "
                                     "<code>apikey</code>, an API key as the password) or through the "
                                     f'<a href="{escape(self.root)}/login">login form</a>.',
                                     headers=[_BASIC_CHALLENGE]))

    def _authenticate(self, key: str | None) -> ApiKey | None:
        if not key or len(key) > _MAX_KEY:
            return None
        return self.accounts.authenticate(key)

    def _account_of(self, key: ApiKey) -> str:
        """Whose events ``key`` reads (as ``/v1/stats`` decides): a subuser's key its own, the parent's ``""``."""
        acting = self.accounts.account(key.account)
        return key.account if acting is not None and acting.is_subuser else ""

    def _scoped(self, key: ApiKey, *, by_cookie: bool) -> ApiKey:
        if SCOPE not in key.scopes:
            raise _Refusal(self._message(403, "Access forbidden", f"This API key does not hold the {SCOPE} scope "
                                         "that the dashboard needs. Create one with "
                                         f"<code>mailtrack apikey create --scopes {SCOPE}</code>.",
                                         extra=self._logout_button() if by_cookie else ""))
        return key

    def _same_origin(self, request: Request) -> bool:
        """Whether a POST comes from our own pages (login CSRF, logout CSRF).

        ``Sec-Fetch-Site`` (set by the browser, never by a page) must say
        ``same-origin`` when sent. ``Origin``, when sent, must be ours: the
        request's own ``Host`` or the base URL's origin. ``Origin: null`` is
        what Chromium sends for a same-origin form POST from a page with
        ``Referrer-Policy: no-referrer`` (ours), so it passes only with
        ``Sec-Fetch-Site: same-origin``; sandboxed frames and ``data:`` pages
        also send ``null``, but never with that.
        """
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True  # older browsers and non-browser clients; SameSite=Strict still guards the cookie
        origin = origin.strip().lower()
        if origin == "null":
            return fetch_site is not None and fetch_site.strip().lower() == "same-origin"
        host = request.headers.get("host", "").strip().lower()
        parts = urlsplit(origin)
        return origin == self.origin or (parts.scheme in ("http", "https") and bool(host) and parts.netloc == host)

    # -- login and logout ---------------------------------------------------------------------

    def _login(self, request: Request) -> Response:
        if not self._same_origin(request):
            return self._message(403, "Access forbidden", "Sign-in requests must come from this dashboard's own page.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            fields = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, max_num_fields=10))
        except (UnicodeDecodeError, ValueError):
            fields = {}
        if content_type != "application/x-www-form-urlencoded":
            fields = {}
        target = self._next(fields.get("next", ""))
        found = self._authenticate(fields.get("key", "").strip())
        if found is None:
            return self._form(request, error="That key was not accepted.", target=target)
        if SCOPE not in found.scopes:
            return self._form(request, error=f"That key does not hold the {SCOPE} scope the dashboard needs.",
                              target=target, status=403)
        return Response(303, [("Location", target), ("Set-Cookie", self._cookie_header(fields["key"].strip())),
                              *SECURITY_HEADERS, ("Content-Length", "0")])

    def _logout(self, request: Request) -> Response:
        if not self._same_origin(request):
            return self._message(403, "Access forbidden", "Sign-out requests must come from this dashboard's own page.")
        return Response(303, [("Location", self.root + "/login"), ("Set-Cookie", self._cookie_header("")),
                              *SECURITY_HEADERS, ("Content-Length", "0")])

    def _cookie_header(self, key: str) -> str:
        """The ``Set-Cookie`` value keeping ``key`` (an empty key: the one that deletes the cookie)."""
        age = COOKIE_MAX_AGE if key else 0
        secure = "; Secure" if self.secure else ""
        return f"{COOKIE}={key}; Path={self.root}; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"

    def _next(self, target: str) -> str:
        """Where to go after signing in: a dashboard path of ours, never another site (an open redirect)."""
        ours = target == self.root or target.startswith((self.root + "/", self.root + "?"))
        path = urllib.parse.unquote(target.split("?", 1)[0])
        dotted = any(segment in (".", "..") for segment in path.split("/")) or "//" in path  # would leave /dashboard
        if ours and not dotted and target.isascii() and target.isprintable() and "\\" not in target and " " not in target:
            return target
        return self.root

    def _login_form(self, request: Request, *, head: bool) -> Response:
        params = _parameters(request.query, strict=False)
        response = self._form(request, target=self._next(params.get("next", self.root)))
        return _headless(response) if head else response

    def _form(self, request: Request, *, error: str = "", target: str | None = None, status: int = 200,
              headers: Sequence[tuple[str, str]] = ()) -> Response:
        """The login form; after signing in, the browser goes to ``target`` (default: the page asked for)."""
        if target is None:
            target = self._next(request.path + ("?" + request.query if request.query else ""))
        message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
        body = (f'<main class="login"><section><h2>Sign in to the mailtrack dashboard</h2>{message}'
                f'<form method="post" action="{escape(self.root)}/login">'
                f'<input type="hidden" name="next" value="{escape(target)}">'
                '<label for="key">API key (with the stats.read scope)</label>'
                '<input id="key" name="key" type="password" autocomplete="current-password" required '
                'spellcheck="false" placeholder="mt.…">'
                '<button type="submit">Sign in</button></form>'
                '<p class="muted">Make a key with <code>mailtrack apikey create --db PATH --scopes stats.read</code>. '
                "Scripts can use HTTP basic authentication instead: user <code>apikey</code>, the key as password.</p>"
                "</section></main>")
        response = _html(status, _document("Sign in", body))
        return Response(response.status, [*response.headers, *headers], response.body)

    def _logout_button(self) -> str:
        return (f'<form method="post" action="{escape(self.root)}/logout">'
                '<button type="submit">Sign out</button></form>')

    # -- pages --------------------------------------------------------------------------------

    def _overview(self, params: dict[str, str], key: ApiKey, by_cookie: bool, account: str) -> bytes:
        first, last, campaign_key = self._range(params)
        window = _window(first, last, account)
        days = self.events.grouped_stats(window, "day")
        campaigns = self.events.grouped_stats(window, "campaign", campaign_key=campaign_key)
        recent = self.events.find(window, limit=RECENT).events
        common = {"from": first.isoformat(), "to": last.isoformat(), "campaign_key": campaign_key}
        totals = _sum(days)
        busiest = sorted(campaigns, key=lambda row: (-_activity(row), row.key))
        shown = sorted(busiest[:CHART_CAMPAIGNS], key=lambda row: row.key)
        listed = busiest[:MAX_CAMPAIGNS]
        more = (f'<p class="muted">The {MAX_CAMPAIGNS} busiest of {len(campaigns)} campaigns are listed.</p>'
                if len(campaigns) > MAX_CAMPAIGNS else "")
        chart_note = (f'<p class="muted">The chart shows the {CHART_CAMPAIGNS} busiest campaigns.</p>'
                      if len(campaigns) > CHART_CAMPAIGNS else "")
        period = f"{first.isoformat()} to {last.isoformat()} (UTC)"
        main = (
            self._range_form(self.root, first, last, campaign_key)
            + f'<section id="totals"><h2>Totals, {period}</h2>{_totals(totals)}</section>'
            + f'<section id="per-day"><h2>Per day</h2>{_day_chart(first, last, days, "Opens, clicks and unsubscribes per day, " + period)}'
            + _day_table(first, last, days) + "</section>"
            + f'<section id="campaigns"><h2>Campaigns (metadata key <code>{escape(campaign_key)}</code>)</h2>'
            + _campaign_chart(shown, f"Opens, clicks and unsubscribes per campaign, {period}") + chart_note
            + _campaign_table(listed, self.root + "/campaign", common) + more
            + '<p class="muted">Open and click rates need the number sent, which the store does not know; '
              "click-to-open is unique clicks over unique opens.</p></section>"
            + f'<section id="recent"><h2>Latest events, {period}</h2>{_events_table(recent, campaign_key)}</section>'
        )
        return _document("Dashboard", main, nav=self._nav(key, by_cookie))

    def _campaign(self, params: dict[str, str], key: ApiKey, by_cookie: bool, account: str) -> bytes:
        first, last, campaign_key = self._range(params)
        name = params.get("name")
        if name is None:
            raise _Refusal(self._message(400, "Bad request", "Name a campaign: <code>?name=...</code>."))
        window = dataclasses.replace(_window(first, last, account), metadata=((campaign_key, name),))
        days = self.events.grouped_stats(window, "day")
        rows = self.events.grouped_stats(window, "campaign", campaign_key=campaign_key)
        links = self.events.grouped_stats(window, "link")[:TOP_LINKS]
        recent = self.events.find(window, limit=RECENT).events
        row = next((one for one in rows if one.key == name), None)
        period = f"{first.isoformat()} to {last.isoformat()} (UTC)"
        back = f"{self.root}?{urlencode({'from': first.isoformat(), 'to': last.isoformat(), 'campaign_key': campaign_key})}"
        summary = (_campaign_table([row], None, {}) if row is not None
                   else '<p class="empty-note">No events yet for this campaign in this range.</p>')
        main = (
            f'<p><a href="{escape(back)}">\u2190 All campaigns</a></p>'
            + self._range_form(self.root + "/campaign", first, last, campaign_key, name=name)
            + f'<section id="campaign"><h2>Campaign <q>{escape(name)}</q>, {period}</h2>{summary}</section>'
            + '<section id="per-day"><h2>Per day</h2>'
            + _day_chart(first, last, days, f"Opens, clicks and unsubscribes per day for campaign {name}, {period}")
            + _day_table(first, last, days) + "</section>"
            + f'<section id="links"><h2>Top links</h2>{_links(links, name)}</section>'
            + f'<section id="recent"><h2>Latest events</h2>{_events_table(recent, campaign_key)}</section>'
        )
        return _document(f"Campaign {name}", main, nav=self._nav(key, by_cookie))

    def _range(self, params: dict[str, str]) -> tuple[date, date, str]:
        """The first and last day (inclusive, UTC) and the campaign key the parameters ask for; 400 when bad."""
        problems: list[str] = []
        today = datetime.fromtimestamp(self.now(), timezone.utc).date()
        last = _day(params, "to", problems) or today
        first = _day(params, "from", problems) or last - timedelta(days=DEFAULT_DAYS - 1)
        if not problems and first > last:
            problems.append("<code>from</code> must not be after <code>to</code>.")
        if not problems and (last - first).days + 1 > MAX_DAYS:
            problems.append(f"A range is at most {MAX_DAYS} days.")
        campaign_key = params.get("campaign_key", "campaign")
        if not campaign_key:
            problems.append("<code>campaign_key</code> must not be empty.")
        if problems:
            raise _Refusal(self._message(400, "Bad request", " ".join(problems)))
        return first, last, campaign_key

    def _range_form(self, action: str, first: date, last: date, campaign_key: str, *, name: str | None = None) -> str:
        hidden = f'<input type="hidden" name="name" value="{escape(name)}">' if name is not None else ""
        quick = []
        for days in (7, 30, 90, 365):
            query = {"from": max(last - timedelta(days=days - 1), date(1970, 1, 1)).isoformat(), "to": last.isoformat(),
                     "campaign_key": campaign_key, **({"name": name} if name is not None else {})}
            quick.append(f'<a href="{escape(action)}?{escape(urlencode(query))}">last {days} days</a>')
        return (f'<section><form class="range" method="get" action="{escape(action)}">{hidden}'
                f'<label>From <input type="date" name="from" value="{first.isoformat()}" required></label>'
                f'<label>To <input type="date" name="to" value="{last.isoformat()}" required></label>'
                f'<label>Campaign key <input name="campaign_key" value="{escape(campaign_key)}" required></label>'
                f'<button type="submit">Show</button><span class="quick">{"".join(quick)}</span></form></section>')

    def _nav(self, key: ApiKey, by_cookie: bool) -> str:
        who = (f'<span class="muted">key <code>{escape(key.prefix)}\u2026</code> of <b>{escape(key.account)}</b>'
               "</span>")
        return (f'<a href="{escape(self.root)}">Overview</a>{who}' + (self._logout_button() if by_cookie else ""))

    def _message(self, status: int, title: str, message: str, *, head: bool = False, extra: str = "",
                 headers: Sequence[tuple[str, str]] = ()) -> Response:
        """A small page saying ``message`` (trusted markup) under ``title``."""
        body = (f'<main class="login"><section><h2>{escape(title)}</h2><p>{message}</p>{extra}'
                f'<p><a href="{escape(self.root)}">Dashboard</a></p></section></main>')
        response = _html(status, _document(title, body), head=head)
        return Response(status, [*response.headers, *headers], response.body)


# -- rendering helpers (every value from the store goes through escape()) -------------------------


def _document(title: str, main: str, *, nav: str = "") -> bytes:
    header = f"<header><h1>mailtrack</h1><nav>{nav}</nav></header>" if nav else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{escape(title)} \u2013 mailtrack</title><style>{_CSS}</style></head>"
            f"<body>{header}<main>{main}</main></body></html>").encode()


def _html(status: int, body: bytes, *, head: bool = False) -> Response:
    headers = [("Content-Type", "text/html; charset=utf-8"), *SECURITY_HEADERS, ("Content-Length", str(len(body)))]
    return Response(status, headers, b"" if head else body)


def _headless(response: Response) -> Response:
    return Response(response.status, response.headers, b"")


def safe_link(url: str | None, *, limit: int = 80) -> str:
    """``url`` as a link when it is an http(s) URL with a host, else as plain text; escaped either way."""
    if url is None:
        return ""
    try:
        parts = urlsplit(url)
        linkable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and url == url.strip()
    except ValueError:
        linkable = False
    shown = escape(url if len(url) <= limit else url[: limit - 1] + "\u2026")
    if not linkable:
        return f"<span>{shown}</span>"
    return f'<a href="{escape(url)}" rel="noreferrer noopener" title="{escape(url)}">{shown}</a>'


#: What the people's and the machines' numbers are (shown above the totals).
_PEOPLE_NOTE = ('<p class="muted" id="people-note">Opens, clicks, unsubscribes, their unique counts and the rates count '
                "people; the machine counts beside them are events a machine made (Apple Mail Privacy Protection, "
                "image proxies, link scanners, prefetches, honeypot clicks), kept and shown apart.</p>")


def _totals(row: StatsRow) -> str:
    cells = [("opens", "Opens", row.opens), ("unique_opens", "Unique opens", row.unique_opens),
             ("clicks", "Clicks", row.clicks), ("unique_clicks", "Unique clicks", row.unique_clicks),
             ("unsubscribes", "Unsubscribes", row.unsubscribes),
             ("click_to_open", "Click-to-open", _percent(row.click_to_open)),
             ("machine_opens", "Machine opens", row.machine_opens), ("machine_clicks", "Machine clicks",
                                                                      row.machine_clicks),
             ("machine_unsubscribes", "Machine unsubscribes", row.machine_unsubscribes)]
    return _PEOPLE_NOTE + '<dl class="totals">' + "".join(
        f'<div><dt>{label}</dt><dd data-field="{field}">{value if isinstance(value, str) else f"{value or 0:,}"}</dd></div>'
        for field, label, value in cells) + "</dl>"


def _day_series(first: date, last: date, rows: Iterable[StatsRow]) -> tuple[list[str], list[StatsRow]]:
    """Every day of the range with its row (zeros for a day without events)."""
    found = {row.key: row for row in rows}
    keys = [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]
    return keys, [found.get(key) or StatsRow(key, 0, 0, 0, 0, 0, 0) for key in keys]


def _series(rows: Sequence[StatsRow]) -> list[Series]:
    return [
        Series("opens", "Opens", _TYPE_COLORS["opens"][0], [row.opens or 0 for row in rows],
               [row.unique_opens or 0 for row in rows], "unique-opens", "Unique opens", _TYPE_COLORS["opens"][1]),
        Series("clicks", "Clicks", _TYPE_COLORS["clicks"][0], [row.clicks for row in rows],
               [row.unique_clicks for row in rows], "unique-clicks", "Unique clicks", _TYPE_COLORS["clicks"][1]),
        Series("unsubscribes", "Unsubscribes", _TYPE_COLORS["unsubscribes"][0], [row.unsubscribes or 0 for row in rows],
               [row.unique_unsubscribes or 0 for row in rows], "unique-unsubscribes", "Unique unsubscribes",
               _TYPE_COLORS["unsubscribes"][1]),
    ]


def _day_chart(first: date, last: date, rows: Iterable[StatsRow], title: str) -> str:
    keys, filled = _day_series(first, last, rows)
    return bar_chart(keys, _series(filled), title=title, labels=[key[5:] for key in keys], css_class="chart days")


def _day_table(first: date, last: date, rows: Iterable[StatsRow]) -> str:
    _, filled = _day_series(first, last, rows)
    active = [row for row in filled if _activity(row)]
    if not active:
        return ""
    return ('<details><summary>The numbers per day</summary>'
            + _stats_table(active, "Day (UTC)", None, {}) + "</details>")


def _campaign_chart(rows: Sequence[StatsRow], title: str) -> str:
    return bar_chart([row.key for row in rows], _series(rows), title=title, rotate_labels=True,
                     css_class="chart campaigns")


def _campaign_table(rows: Sequence[StatsRow], link: str | None, common: dict[str, str]) -> str:
    if not rows:
        return '<p class="empty-note">No events yet.</p>'
    return _stats_table(rows, "Campaign", link, common)


def _stats_table(rows: Sequence[StatsRow], first_column: str, link: str | None, common: dict[str, str]) -> str:
    head = "".join(f'<th class="n">{label}</th>' for label in (
        "Opens", "Unique opens", "Clicks", "Unique clicks", "Unsubscribes", "Open rate", "Click rate", "Click-to-open",
        "Machine opens", "Machine clicks", "Machine unsubscribes"))
    body = []
    for row in rows:
        name = escape(row.key)
        if link is not None:
            name = f'<a href="{escape(link)}?{escape(urlencode({"name": row.key, **common}))}">{name}</a>'
        numbers = [("opens", row.opens), ("unique_opens", row.unique_opens), ("clicks", row.clicks),
                   ("unique_clicks", row.unique_clicks), ("unsubscribes", row.unsubscribes)]
        rates = [("open_rate", row.open_rate), ("click_rate", row.click_rate), ("click_to_open", row.click_to_open)]
        cells = "".join(f'<td class="n" data-field="{field}">{value or 0:,}</td>' for field, value in numbers)
        cells += "".join(f'<td class="n" data-field="{field}">{_percent(value)}</td>' for field, value in rates)
        machines = [("machine_opens", row.machine_opens), ("machine_clicks", row.machine_clicks),
                    ("machine_unsubscribes", row.machine_unsubscribes)]
        cells += "".join(f'<td class="n machine" data-field="{field}">{value or 0:,}</td>' for field, value in machines)
        body.append(f'<tr data-key="{escape(row.key)}"><td class="wrap">{name}</td>{cells}</tr>')
    return (f'<table class="stats"><thead><tr><th>{first_column}</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _links(rows: Sequence[StatsRow], campaign: str) -> str:
    if not rows:
        return '<p class="empty-note">No clicks yet.</p>'
    chart = hbar_chart([row.key for row in rows], Series(
        "clicks", "Clicks", _TYPE_COLORS["clicks"][0], [row.clicks for row in rows], [row.unique_clicks for row in rows],
        "unique-clicks", "Unique clicks", _TYPE_COLORS["clicks"][1]), title=f"Top links of campaign {campaign}")
    body = "".join(
        f'<tr data-key="{escape(row.key)}"><td class="wrap">{safe_link(row.key, limit=120)}</td>'
        f'<td class="n" data-field="clicks">{row.clicks:,}</td>'
        f'<td class="n" data-field="unique_clicks">{row.unique_clicks:,}</td>'
        f'<td class="n machine" data-field="machine_clicks">{row.machine_clicks:,}</td></tr>' for row in rows)
    return (chart + '<table class="links"><thead><tr><th>Link</th><th class="n">Clicks</th>'
            f'<th class="n">Unique clicks</th><th class="n">Machine clicks</th></tr></thead><tbody>{body}</tbody>'
            '</table>')


def _events_table(events: Sequence[TrackingEvent], campaign_key: str) -> str:
    if not events:
        return '<p class="empty-note">No events yet.</p>'
    rows = []
    for event in events:
        when = event.timestamp.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        campaign = event.metadata.get(campaign_key)
        metadata = json.dumps(dict(event.metadata), ensure_ascii=False, sort_keys=True, default=str)
        if len(metadata) > 200:
            metadata = metadata[:199] + "\u2026"
        rows.append(
            f'<tr data-event-id="{escape(event.event_id)}"><td class="time">{when}</td><td>{escape(event.event_type.value)}</td>'
            f'<td class="wrap">{escape(event.recipient or "")}</td><td class="wrap">{escape(event.message_id)}</td>'
            f'<td class="wrap">{escape("" if campaign is None else campaign)}</td>'
            f'<td class="wrap">{safe_link(event.url)}</td><td class="wrap">{escape(", ".join(event.tags))}</td>'
            f'<td class="wrap">{escape(metadata if event.metadata else "")}</td>'
            f'<td class="wrap" data-field="machine" title="{escape("; ".join(event.machine_reasons))}">'
            f'{escape(event.machine or "")}</td></tr>')
    return ('<table class="events"><thead><tr><th>Time (UTC)</th><th>Event</th><th>Recipient</th><th>Message-ID</th>'
            '<th>Campaign</th><th>Link</th><th>Tags</th><th>Metadata</th><th>Machine</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _sum(rows: Iterable[StatsRow]) -> StatsRow:
    total = StatsRow("total", 0, 0, 0, 0, 0, 0)
    for row in rows:
        total = StatsRow("total", (total.opens or 0) + (row.opens or 0),
                         (total.unique_opens or 0) + (row.unique_opens or 0), total.clicks + row.clicks,
                         total.unique_clicks + row.unique_clicks, (total.unsubscribes or 0) + (row.unsubscribes or 0),
                         (total.unique_unsubscribes or 0) + (row.unique_unsubscribes or 0),
                         machine_opens=(total.machine_opens or 0) + (row.machine_opens or 0),
                         machine_clicks=total.machine_clicks + row.machine_clicks,
                         machine_unsubscribes=(total.machine_unsubscribes or 0) + (row.machine_unsubscribes or 0))
    return total


def _activity(row: StatsRow) -> int:
    """Every event a row counts, people's and machines'."""
    return ((row.opens or 0) + row.clicks + (row.unsubscribes or 0) + (row.machine_opens or 0) + row.machine_clicks
            + (row.machine_unsubscribes or 0))


def _percent(value: float | None) -> str:
    return "\u2014" if value is None else f"{value * 100:.1f}%"


# -- parsing ------------------------------------------------------------------------------------


def _parameters(query: str, *, strict: bool = True) -> dict[str, str]:
    """The query's parameters (the last of a repeated one); a 400 page for a query that cannot be read."""
    try:
        return dict(parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=50))
    except (ValueError, UnicodeDecodeError):
        if not strict:
            return {}
        raise _Refusal(_html(400, _document("Bad request", '<main class="login"><section><h2>Bad request</h2>'
                                            "<p>The query string cannot be read (UTF-8, at most 50 parameters)."
                                            "</p></section></main>"))) from None


def _day(params: dict[str, str], name: str, problems: list[str]) -> date | None:
    text = params.get(name)
    if not text:
        return None
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None or day.year < 1970 or day >= date(9999, 12, 31):
        problems.append(f"<code>{name}</code> must be a day written YYYY-MM-DD.")
        return None
    return day


def _window(first: date, last: date, account: str) -> EventQuery:
    """``account``'s events of the UTC days ``first`` to ``last`` inclusive (whole days: answered from rollups)."""
    since = datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp()
    return EventQuery(since=since, until=since + 86400 * ((last - first).days + 1), account=account)


def _basic(credentials: str) -> tuple[str | None, str | None]:
    """``(user, password)`` of HTTP basic credentials, or ``(None, None)`` when they cannot be read."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None, None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else (None, None)


def _cookie(header: str, name: str) -> str | None:
    """The first value of cookie ``name`` in a ``Cookie`` header (the most specific path comes first)."""
    for part in header.split(";"):
        key, equals, value = part.strip().partition("=")
        if equals and key == name and value:
            return value.strip().strip('"')
    return None
