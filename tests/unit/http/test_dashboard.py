"""The dashboard (mailtrack.http.dashboard), sans-IO over a real SQLite store: access, numbers, escaping, refusals."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
from bs4 import BeautifulSoup, Tag

from mailtrack.events import TrackingEvent
from mailtrack.http.dashboard import COOKIE, Dashboard, safe_link
from mailtrack.http.messages import Request, Response
from mailtrack.http.wsgi import WsgiApp
from mailtrack.storage.base import EventQuery, StoreUnavailable
from mailtrack.storage.sqlite import SQLiteStore

NOW = datetime(2024, 3, 20, 15, 30, tzinfo=timezone.utc)
TODAY = NOW.date()
FIRST = TODAY - timedelta(days=29)  # the default range: the last 30 days, today included
HOSTILE = {
    "recipient": '"><script>alert("recipient")</script>@x',
    "campaign": "<img src=x onerror=alert('campaign')>",
    "url": "javascript:alert('url')",
    "tag": "<u onmouseover=alert('tag')>t</u>",
    "message_id": "<svg onload=alert('mid')>",
    "meta": "</td><script>alert('meta')</script>",
}


@dataclass
class Keys:
    full: str
    no_scope: str
    revoked: str


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "events.sqlite")
    for i in range(60):
        kind = ["opened", "opened", "clicked", "unsubscribed"][i % 4]
        store.record(TrackingEvent(
            event_type=kind, message_id=f"m{i % 7}", recipient=f"r{i % 5}@example.com",
            url=f"https://example.com/{['a', 'b', 'c'][i % 3]}" if kind == "clicked" else None,
            timestamp=NOW - timedelta(days=i % 12, hours=i % 3),
            metadata={"campaign": ["spring", "fall"][i % 2], "batch": f"b{i % 3}"}, tags=("news",) if i % 2 else ()))
    for i in range(12):  # a subuser's: never on the parent's pages
        store.record(TrackingEvent(
            event_type="opened" if i % 3 else "clicked", message_id=f"s{i % 3}", recipient=f"s{i % 2}@example.com",
            url="https://sub.example/x" if i % 3 == 0 else None, timestamp=NOW - timedelta(days=i % 4),
            metadata={"campaign": "sub-campaign"}, account="sub1"))
    store.record(TrackingEvent(  # outside the default range: never counted by the default page
        event_type="opened", message_id="old", recipient="old@example.com", timestamp=NOW - timedelta(days=45),
        metadata={"campaign": "spring"}))
    yield store
    store.close()


@pytest.fixture
def keys(store: SQLiteStore) -> Keys:
    store.create_account("parent")
    full = store.create_key("parent", ["stats.read"])[1]
    no_scope = store.create_key("parent", ["events.read"])[1]
    revoked_key, revoked = store.create_key("parent", ["stats.read"])
    store.revoke_key(revoked_key.key_id)
    return Keys(full, no_scope, revoked)


def dashboard(store: SQLiteStore, base_url: str = "http://127.0.0.1:8080") -> Dashboard:
    return Dashboard(store, store, base_url=base_url, now=NOW.timestamp)


def basic(key: str, user: str = "apikey") -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def get(board: Dashboard, path: str = "/dashboard", query: dict[str, str] | str = "", method: str = "GET",
        headers: dict[str, str] | None = None, body: bytes = b"") -> Response:
    response = board.handle(Request(method, path, query=query if isinstance(query, str) else urlencode(query),
                                    headers=headers or {}, body=body))
    assert response is not None
    return response


def header(response: Response, name: str) -> str | None:
    values = [value for key, value in response.headers if key.lower() == name.lower()]
    assert len(values) <= 1, values
    return values[0] if values else None


def soup(response: Response) -> BeautifulSoup:
    return BeautifulSoup(response.body.decode("utf-8"), "html.parser")


def login(board: Dashboard, key: str, next_: str = "/dashboard", headers: dict[str, str] | None = None) -> Response:
    return get(board, "/dashboard/login", method="POST", body=urlencode({"key": key, "next": next_}).encode(),
               headers={"content-type": "application/x-www-form-urlencoded", "host": "127.0.0.1:8080",
                        "origin": "http://127.0.0.1:8080", **(headers or {})})


def groups(page: BeautifulSoup, chart: str) -> list[Tag]:
    svg = page.select_one(f"svg.{chart}")
    assert svg is not None, chart
    return list(svg.select("g.group"))


def row_numbers(row: Tag) -> dict[str, str]:
    return {str(cell["data-field"]): cell.get_text() for cell in row.select("td[data-field]")}


def expected_numbers(stats_row: object) -> dict[str, str]:
    d = stats_row.to_dict()  # type: ignore[attr-defined]
    rate = {key: "\u2014" if d[key] is None else f"{d[key] * 100:.1f}%" for key in ("open_rate", "click_rate")}
    cto = "\u2014" if d["click_to_open_rate"] is None else f"{d['click_to_open_rate'] * 100:.1f}%"
    return {"opens": f"{d['opens']:,}", "unique_opens": f"{d['unique_opens']:,}", "clicks": f"{d['clicks']:,}",
            "unique_clicks": f"{d['unique_clicks']:,}", "unsubscribes": f"{d['unsubscribes']:,}", **rate,
            "click_to_open": cto, "machine_opens": f"{d['machine_opens']:,}",
            "machine_clicks": f"{d['machine_clicks']:,}", "machine_unsubscribes": f"{d['machine_unsubscribes']:,}"}


def window(first: object = FIRST, last: object = TODAY, account: str = "") -> EventQuery:
    since = datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp()  # type: ignore[attr-defined]
    return EventQuery(since=since, until=since + 86400 * ((last - first).days + 1),  # type: ignore[operator]
                      account=account)


# -- who may look ---------------------------------------------------------------------------------


def test_without_credentials_an_api_client_gets_401_basic_and_a_browser_the_login_form(store: SQLiteStore) -> None:
    board = dashboard(store)
    api = get(board, query={"from": "2024-03-01"})
    assert api.status == 401 and header(api, "WWW-Authenticate") == 'Basic realm="mailtrack", charset="UTF-8"'
    browser = get(board, query={"from": "2024-03-01"}, headers={"accept": "text/html,application/xhtml+xml"})
    assert browser.status == 200 and header(browser, "WWW-Authenticate") is None  # no native basic dialog
    form = soup(browser).select_one("form[method=post]")
    assert form is not None and form["action"] == "/dashboard/login"
    assert form.select_one("input[name=key][type=password]") is not None
    nxt = form.select_one("input[name=next]")
    assert nxt is not None and nxt["value"] == "/dashboard?from=2024-03-01"  # back to the page asked for
    assert "Totals" not in browser.body.decode()


def test_basic_authentication_with_a_stats_key_shows_the_dashboard(store: SQLiteStore, keys: Keys) -> None:
    response = get(dashboard(store), headers=basic(keys.full))
    assert response.status == 200 and header(response, "Content-Type") == "text/html; charset=utf-8"
    page = soup(response)
    assert page.select_one("#totals") is not None and page.select_one("form[action='/dashboard/logout']") is None
    assert keys.full not in response.body.decode() and keys.full.split(".")[1] in response.body.decode()  # prefix only


@pytest.mark.parametrize("credentials", [
    "wrong", "revoked", "user", "garbage", "bearer", "empty"])
def test_basic_refusals_are_401_with_the_challenge_and_say_nothing_about_the_key(
        store: SQLiteStore, keys: Keys, credentials: str) -> None:
    headers = {
        "wrong": basic(keys.full[:-4] + "AAAA"), "revoked": basic(keys.revoked), "user": basic(keys.full, user="admin"),
        "garbage": {"authorization": "Basic !!not-base64!!"}, "bearer": {"authorization": f"Bearer {keys.full}"},
        "empty": basic(""),
    }[credentials]
    response = get(dashboard(store), headers={**headers, "accept": "text/html"})
    assert response.status == 401 and header(response, "WWW-Authenticate", ) == 'Basic realm="mailtrack", charset="UTF-8"'
    reference = get(dashboard(store), headers={**basic("mt.000000000000." + "A" * 43), "accept": "text/html"})
    assert response.body == reference.body  # one answer for every reason


def test_a_key_without_the_stats_scope_gets_403(store: SQLiteStore, keys: Keys) -> None:
    response = get(dashboard(store), headers=basic(keys.no_scope))
    assert response.status == 403 and "stats.read" in response.body.decode()
    by_cookie = get(dashboard(store), headers={"cookie": f"{COOKIE}={keys.no_scope}"})
    assert by_cookie.status == 403 and soup(by_cookie).select_one("form[action='/dashboard/logout']") is not None


def test_the_login_form_sets_a_strict_httponly_cookie_that_then_opens_the_dashboard(store: SQLiteStore, keys: Keys) -> None:
    board = dashboard(store)
    response = login(board, keys.full, "/dashboard?from=2024-03-10&to=2024-03-20")
    assert response.status == 303 and header(response, "Location") == "/dashboard?from=2024-03-10&to=2024-03-20"
    assert header(response, "Set-Cookie") == (f"{COOKIE}={keys.full}; Path=/dashboard; Max-Age=43200; HttpOnly; "
                                              "SameSite=Strict")
    page = get(board, headers={"cookie": f"other=1; {COOKIE}={keys.full}", "accept": "text/html"})
    assert page.status == 200 and soup(page).select_one("#totals") is not None
    assert soup(page).select_one("form[action='/dashboard/logout']") is not None  # a cookie session can sign out
    secure = login(dashboard(store, "https://t.example.com"), keys.full, headers={"origin": "https://t.example.com"})
    assert secure.status == 303 and (header(secure, "Set-Cookie") or "").endswith("; HttpOnly; SameSite=Strict; Secure")


@pytest.mark.parametrize("which", ["unknown", "revoked", "malformed", "empty"])
def test_a_wrong_key_on_the_form_shows_the_form_again_with_one_error_and_no_cookie(
        store: SQLiteStore, keys: Keys, which: str) -> None:
    key = {"unknown": "mt.000000000000." + "A" * 43, "revoked": keys.revoked, "malformed": "letmein", "empty": ""}[which]
    response = login(dashboard(store), key)
    assert response.status == 200 and header(response, "Set-Cookie") is None
    alert = soup(response).select_one("[role=alert]")
    assert alert is not None and alert.get_text() == "That key was not accepted."
    assert soup(response).select_one("input[name=key]") is not None
    if key:
        assert key not in response.body.decode()  # the key typed is not echoed back


def test_the_form_refuses_a_key_without_the_scope_without_setting_the_cookie(store: SQLiteStore, keys: Keys) -> None:
    response = login(dashboard(store), keys.no_scope)
    assert response.status == 403 and header(response, "Set-Cookie") is None
    assert "stats.read" in (soup(response).select_one("[role=alert]") or Tag(name="x")).get_text()


def test_a_revoked_or_unknown_cookie_goes_back_to_the_login_form_and_is_cleared(store: SQLiteStore, keys: Keys) -> None:
    board = dashboard(store)
    assert get(board, headers={"cookie": f"{COOKIE}={keys.full}"}).status == 200
    store.revoke_key(keys.full.split(".")[1])  # revoked while signed in: the next request is refused
    for cookie in (keys.full, "garbage", keys.revoked):
        response = get(board, query={"to": "2024-03-19"}, headers={"cookie": f"{COOKIE}={cookie}"})
        assert response.status == 200 and "Totals" not in response.body.decode()
        assert (soup(response).select_one("[role=alert]") or Tag(name="x")).get_text() == \
            "Your session has ended. Sign in again."
        assert header(response, "Set-Cookie") == f"{COOKIE}=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Strict"
        nxt = soup(response).select_one("input[name=next]")
        assert nxt is not None and nxt["value"] == "/dashboard?to=2024-03-19"


@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.example"}, {"origin": "null"}, {"origin": "http://127.0.0.1:9999"},
    {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}, {"origin": "null", "sec-fetch-site": "cross-site"},
    {"origin": "http://127.0.0.1:8080", "sec-fetch-site": "cross-site"},
])
def test_login_and_logout_posts_from_another_origin_are_refused(store: SQLiteStore, keys: Keys,
                                                                headers: dict[str, str]) -> None:
    board = dashboard(store)
    response = login(board, keys.full, headers=headers)
    assert response.status == 403 and header(response, "Set-Cookie") is None
    logout = get(board, "/dashboard/logout", method="POST", headers={"host": "127.0.0.1:8080", **headers})
    assert logout.status == 403 and header(logout, "Set-Cookie") is None


def test_same_origin_posts_are_accepted_by_host_or_by_the_base_url(store: SQLiteStore, keys: Keys) -> None:
    board = dashboard(store, "https://dash.example.com")
    assert login(board, keys.full, headers={"origin": "http://127.0.0.1:8080"}).status == 303  # the Host's origin
    assert login(board, keys.full, headers={"origin": "https://dash.example.com"}).status == 303  # behind a proxy
    no_origin = get(board, "/dashboard/login", method="POST", body=urlencode({"key": keys.full}).encode(),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert no_origin.status == 303  # a client that sends no Origin (SameSite=Strict still guards the cookie)
    # what Chromium sends for our own form (our pages say Referrer-Policy: no-referrer, so its Origin is null)
    assert login(board, keys.full, headers={"origin": "null", "sec-fetch-site": "same-origin"}).status == 303
    wrong_type = get(board, "/dashboard/login", method="POST", body=urlencode({"key": keys.full}).encode(),
                     headers={"content-type": "text/plain"})
    assert wrong_type.status == 200 and header(wrong_type, "Set-Cookie") is None


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "/other",
                                    "/dashboardx", "javascript:alert(1)", "/dashboard\r\nSet-Cookie: x=1",
                                    "/dashboard/..%2f..%2f/evil", "/dashboard/../../evil", "/dashboard//evil",
                                    "/dashboard/./%2e%2e/x"])
def test_login_never_redirects_off_the_dashboard(store: SQLiteStore, keys: Keys, target: str) -> None:
    response = login(dashboard(store), keys.full, target)
    assert response.status == 303 and header(response, "Location") == "/dashboard"


def test_logout_clears_the_cookie(store: SQLiteStore) -> None:
    response = get(dashboard(store), "/dashboard/logout", method="POST",
                   headers={"origin": "http://127.0.0.1:8080", "host": "127.0.0.1:8080"})
    assert response.status == 303 and header(response, "Location") == "/dashboard/login"
    assert header(response, "Set-Cookie") == f"{COOKIE}=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Strict"


# -- the numbers ----------------------------------------------------------------------------------


def test_the_overview_shows_the_stores_numbers(store: SQLiteStore, keys: Keys) -> None:
    response = get(dashboard(store), headers=basic(keys.full))
    page = soup(response)
    days = {row.key: row for row in store.grouped_stats(window(), "day")}
    day_groups = groups(page, "days")
    assert [g["data-key"] for g in day_groups] == [(FIRST + timedelta(days=n)).isoformat() for n in range(30)]
    for group in day_groups:
        row = days.get(str(group["data-key"]))
        assert {name: int(str(group[f"data-{name}"])) for name in (
            "opens", "unique-opens", "clicks", "unique-clicks", "unsubscribes", "unique-unsubscribes")} == (
            {"opens": row.opens, "unique-opens": row.unique_opens, "clicks": row.clicks,
             "unique-clicks": row.unique_clicks, "unsubscribes": row.unsubscribes,
             "unique-unsubscribes": row.unique_unsubscribes} if row else dict.fromkeys(
                ("opens", "unique-opens", "clicks", "unique-clicks", "unsubscribes", "unique-unsubscribes"), 0))
    assert sum(row.opens or 0 for row in days.values()) == 30  # 60 events, half opens; the 45-day-old one left out
    totals = {str(dd["data-field"]): dd.get_text() for dd in page.select("#totals dd")}
    assert totals["opens"] == "30" and totals["clicks"] == str(sum(row.clicks for row in days.values()))

    campaigns = store.grouped_stats(window(), "campaign")
    table = page.select("#campaigns table.stats tbody tr")
    assert sorted(str(tr["data-key"]) for tr in table) == ["fall", "spring"]
    for tr in table:
        row = next(r for r in campaigns if r.key == tr["data-key"])
        assert row_numbers(tr) == expected_numbers(row)
        link = tr.select_one("a")
        assert link is not None and link["href"] == (
            f"/dashboard/campaign?name={row.key}&from={FIRST.isoformat()}&to={TODAY.isoformat()}&campaign_key=campaign")
    chart = {str(g["data-key"]): g for g in groups(page, "campaigns")}
    assert {key: int(str(g["data-unique-clicks"])) for key, g in chart.items()} == {
        row.key: row.unique_clicks for row in campaigns}

    recent = page.select("#recent table.events tbody tr")
    assert [tr["data-event-id"] for tr in recent] == [e.event_id for e in store.find(window(), limit=50).events]
    assert len(recent) == 50


def test_a_chosen_range_and_campaign_key(store: SQLiteStore, keys: Keys) -> None:
    first, last = TODAY - timedelta(days=3), TODAY - timedelta(days=1)
    page = soup(get(dashboard(store), query={"from": first.isoformat(), "to": last.isoformat(), "campaign_key": "batch"},
                    headers=basic(keys.full)))
    assert [g["data-key"] for g in groups(page, "days")] == [(first + timedelta(days=n)).isoformat() for n in range(3)]
    rows = store.grouped_stats(window(first, last), "campaign", campaign_key="batch")
    table = page.select("#campaigns table.stats tbody tr")
    assert {str(tr["data-key"]): row_numbers(tr) for tr in table} == {row.key: expected_numbers(row) for row in rows}
    assert {row.key for row in rows} == {"b0", "b1", "b2"}
    date_from = page.select_one("input[name=from]")
    assert date_from is not None and date_from["value"] == first.isoformat()


def test_the_campaign_page_shows_its_days_top_links_and_events(store: SQLiteStore, keys: Keys) -> None:
    response = get(dashboard(store), "/dashboard/campaign", {"name": "spring"}, headers=basic(keys.full))
    assert response.status == 200
    page = soup(response)
    query = EventQuery(since=window().since, until=window().until, metadata=(("campaign", "spring"),), account="")
    (row,) = store.grouped_stats(query, "campaign")
    summary = page.select_one("#campaign table.stats tbody tr")
    assert summary is not None and row_numbers(summary) == expected_numbers(row)
    days = {r.key: r for r in store.grouped_stats(query, "day")}
    assert {str(g["data-key"]): int(str(g["data-clicks"])) for g in groups(page, "days") if int(str(g["data-clicks"]))} \
        == {key: r.clicks for key, r in days.items() if r.clicks}
    links = store.grouped_stats(query, "link")
    assert len(links) == 3
    chart_rows = groups(page, "hchart")
    assert [(g["data-key"], int(str(g["data-clicks"])), int(str(g["data-unique-clicks"]))) for g in chart_rows] == [
        (r.key, r.clicks, r.unique_clicks) for r in links]
    table = page.select("#links table.links tbody tr")
    assert [(tr["data-key"], row_numbers(tr)["clicks"]) for tr in table] == [(r.key, str(r.clicks)) for r in links]
    assert [a["href"] for a in page.select("#links table a")] == [r.key for r in links]
    assert all(a["rel"] == ["noreferrer", "noopener"] for a in page.select("#links table a"))
    assert [tr["data-event-id"] for tr in page.select("#recent tbody tr")] == [
        e.event_id for e in store.find(query, limit=50).events]


def test_an_empty_store_renders_no_events_yet(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "empty.sqlite")
    try:
        store.create_account("parent")
        key = store.create_key("parent", ["stats.read"])[1]
        board = dashboard(store)
        for path, query in (("/dashboard", {}), ("/dashboard/campaign", {"name": "none"})):
            response = get(board, path, query, headers=basic(key))
            assert response.status == 200
            text = response.body.decode()
            assert "no events yet" in text and "No events yet" in text
            assert [dd.get_text() for dd in soup(response).select("#totals dd")][:5] in (["0"] * 5, [])
        assert "No clicks yet" in get(board, "/dashboard/campaign", {"name": "x"}, headers=basic(key)).body.decode()
    finally:
        store.close()


# -- hostile values -------------------------------------------------------------------------------


def test_hostile_values_from_the_store_are_escaped_everywhere(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "hostile.sqlite")
    try:
        store.create_account("parent")
        key = store.create_key("parent", ["stats.read"])[1]
        for kind, url in (("opened", None), ("clicked", HOSTILE["url"]), ("clicked", "https://ok.example/?a=1&b=\"2\"")):
            store.record(TrackingEvent(
                event_type=kind, message_id=HOSTILE["message_id"], recipient=HOSTILE["recipient"], url=url,
                timestamp=NOW, metadata={"campaign": HOSTILE["campaign"], HOSTILE["meta"]: HOSTILE["meta"]},
                tags=(HOSTILE["tag"],)))
        board = dashboard(store)
        pages = [get(board, headers=basic(key)), get(board, query={"campaign_key": HOSTILE["meta"]}, headers=basic(key)),
                 get(board, "/dashboard/campaign", {"name": HOSTILE["campaign"]}, headers=basic(key))]
        for response in pages:
            assert response.status == 200
            text = response.body.decode()
            page = soup(response)
            assert page.find("script") is None and page.find("img") is None and page.find("u") is None
            assert not any(name.startswith("on") for tag in page.find_all(True) for name in tag.attrs)
            assert "javascript:" not in " ".join(str(a.get("href")) for a in page.find_all("a"))
            assert '<script>alert("recipient")' not in text and "<img src=x" not in text
            charts = re.findall(r"<svg .*?</svg>", text, re.S)
            assert charts and all(ET.fromstring(svg).get("role") == "img" for svg in charts)  # well-formed XML
        overview = soup(pages[0]).get_text()
        for value in (HOSTILE["recipient"], HOSTILE["campaign"], HOSTILE["tag"], HOSTILE["message_id"], HOSTILE["url"]):
            assert value in overview  # shown as text, exactly
        links = soup(pages[2]).select("#links table a")
        assert [a["href"] for a in links] == ['https://ok.example/?a=1&b="2"']  # the javascript: one is text only
        assert html.escape(HOSTILE["url"]) in pages[2].body.decode()
    finally:
        store.close()


@pytest.mark.parametrize(("url", "linked"), [
    ("https://e.com/a", True), ("http://e.com", True), ("HTTPS://E.COM/", True), ("javascript:alert(1)", False),
    (" https://e.com", False), ("data:text/html,x", False), ("https:///nohost", False), ("//e.com/x", False),
    ("http://[::1", False), (None, False)])
def test_safe_link_links_only_http_urls_with_a_host(url: str | None, linked: bool) -> None:
    out = safe_link(url)
    assert out.startswith("<a ") == linked
    if linked:
        assert 'rel="noreferrer noopener"' in out


# -- HTTP details ---------------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers_and_the_csp_allows_only_our_stylesheet(
        store: SQLiteStore, keys: Keys) -> None:
    board = dashboard(store)
    answers = [get(board, headers=basic(keys.full)), get(board), get(board, headers={"accept": "text/html"}),
               get(board, headers=basic(keys.no_scope)), get(board, "/dashboard/nope"), get(board, method="POST"),
               login(board, keys.full), login(board, "wrong"), get(board, "/dashboard/login"),
               get(board, query={"from": "yesterday"}, headers=basic(keys.full))]
    for response in answers:
        assert header(response, "X-Frame-Options") == "DENY"
        assert header(response, "Cache-Control") == "no-store"
        assert header(response, "Referrer-Policy") == "no-referrer"
        assert header(response, "X-Content-Type-Options") == "nosniff"
        csp = header(response, "Content-Security-Policy") or ""
        for directive in ("default-src 'none'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"):
            assert directive in csp
        assert "script-src" not in csp and "unsafe" not in csp
        if response.body:
            styles = re.findall(rb"<style>(.*?)</style>", response.body, re.S)
            assert len(styles) == 1
            digest = base64.b64encode(hashlib.sha256(styles[0]).digest()).decode()
            assert f"style-src 'sha256-{digest}'" in csp
            assert b"<script" not in response.body and b"style=" not in response.body  # no inline script or style


def test_head_is_get_without_a_body_and_other_methods_are_405(store: SQLiteStore, keys: Keys) -> None:
    board = dashboard(store)
    for path, query in (("/dashboard", {}), ("/dashboard/campaign", {"name": "spring"}), ("/dashboard/login", {})):
        full = get(board, path, query, headers=basic(keys.full))
        head = get(board, path, query, method="HEAD", headers=basic(keys.full))
        assert head.status == full.status == 200 and head.body == b""
        assert header(head, "Content-Length") == str(len(full.body)) and head.headers == full.headers
    refused = get(board, method="HEAD")
    assert refused.status == 401 and refused.body == b""
    for method, path, allow in (("POST", "/dashboard", "GET, HEAD"), ("DELETE", "/dashboard/campaign", "GET, HEAD"),
                                ("PUT", "/dashboard/login", "GET, HEAD, POST"), ("GET", "/dashboard/logout", "POST")):
        response = get(board, path, method=method, headers=basic(keys.full))
        assert response.status == 405 and header(response, "Allow") == allow
    assert get(board, "/dashboard/other", headers=basic(keys.full)).status == 404
    assert get(board, "/dashboard/", headers=basic(keys.full)).status == 200
    for path in ("/dashboardx", "/v1/stats", "/"):
        assert board.handle(Request("GET", path)) is None  # not the dashboard's: the next handler answers


@pytest.mark.parametrize("query", [
    {"from": "yesterday"}, {"to": "2024-13-01"}, {"from": "2024-03-10", "to": "2024-03-01"},
    {"from": "2022-01-01", "to": "2024-03-01"}, {"campaign_key": ""}, {"from": "1969-12-31"}, "from=%ff%fe",
    {"to": "9999-12-31"}])
def test_bad_parameters_are_a_400_page(store: SQLiteStore, keys: Keys, query: dict[str, str] | str) -> None:
    response = get(dashboard(store), query=query, headers=basic(keys.full))
    assert response.status == 400 and "Bad request" in response.body.decode()


def test_the_campaign_page_needs_a_name(store: SQLiteStore, keys: Keys) -> None:
    assert get(dashboard(store), "/dashboard/campaign", headers=basic(keys.full)).status == 400


def test_a_store_that_cannot_be_read_gives_a_503_page(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite"
    store = SQLiteStore(path)
    try:
        store.create_account("parent")
        key = store.create_key("parent", ["stats.read"])[1]
        with sqlite3.connect(path) as connection:  # the event tables went away under the store
            connection.executescript("DROP TABLE IF EXISTS rollups; DROP TABLE IF EXISTS rollup_days; "
                                     "DROP TABLE IF EXISTS rollup_totals; DROP TABLE outbox; DROP TABLE events;")
        with pytest.raises(StoreUnavailable):
            store.find(EventQuery())
        board = dashboard(store)
        response = get(board, headers=basic(key))
        assert response.status == 503 and header(response, "Retry-After") == "5"
        assert "cannot be read" in response.body.decode() and header(response, "X-Frame-Options") == "DENY"
        with sqlite3.connect(path) as connection:  # and now the keys too: checking the key itself fails
            connection.executescript("DROP TABLE api_keys;")
        assert get(board, headers=basic(key)).status == 503
        assert login(board, key).status == 503
    finally:
        store.close()


def test_through_the_wsgi_adapter_the_form_post_signs_in(store: SQLiteStore, keys: Keys) -> None:
    """WSGI keeps Content-Type out of HTTP_*; the adapter must still hand it over, or no form would be read."""
    app = WsgiApp(None, [dashboard(store).handle])  # type: ignore[arg-type]  # the endpoints are never reached here
    body = urlencode({"key": keys.full, "next": "/dashboard"}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/dashboard/login", "CONTENT_TYPE": "application/x-www-form-urlencoded",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "HTTP_HOST": "127.0.0.1:8080",
               "HTTP_ORIGIN": "http://127.0.0.1:8080"}
    response = app.respond(environ)
    assert response.status == 303 and header(response, "Set-Cookie", ).startswith(f"{COOKIE}={keys.full};")  # type: ignore[union-attr]
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/dashboard", "wsgi.input": io.BytesIO(b""),
               "HTTP_COOKIE": f"{COOKIE}={keys.full}"}
    assert app.respond(environ).status == 200


def test_a_key_reads_its_own_accounts_events_only(store: SQLiteStore, keys: Keys) -> None:
    """As on /v1/stats: the parent's key the parent's events, a subuser's key the subuser's."""
    store.create_account("sub1", parent="parent")
    sub_key = store.create_key("sub1", ["stats.read"])[1]
    board = dashboard(store)
    parent_page = soup(get(board, headers=basic(keys.full)))
    sub_page = soup(get(board, headers=basic(sub_key)))
    parent_campaigns = {str(tr["data-key"]) for tr in parent_page.select("#campaigns table.stats tbody tr")}
    sub_rows = {str(tr["data-key"]): row_numbers(tr) for tr in sub_page.select("#campaigns table.stats tbody tr")}
    assert parent_campaigns == {"spring", "fall"}
    sub_stats = store.grouped_stats(window(account="sub1"), "campaign")
    assert sub_rows == {row.key: expected_numbers(row) for row in sub_stats} and set(sub_rows) == {"sub-campaign"}
    assert [tr["data-event-id"] for tr in sub_page.select("#recent tbody tr")] == [
        e.event_id for e in store.find(window(account="sub1"), limit=50).events]
    assert {g["data-key"]: g["data-opens"] for g in groups(sub_page, "days") if g["data-opens"] != "0"} == {
        row.key: str(row.opens) for row in store.grouped_stats(window(account="sub1"), "day") if row.opens}
    sub_campaign = soup(get(board, "/dashboard/campaign", {"name": "sub-campaign"}, headers=basic(sub_key)))
    assert [tr["data-key"] for tr in sub_campaign.select("#links table.links tbody tr")] == ["https://sub.example/x"]
    hidden = get(board, "/dashboard/campaign", {"name": "sub-campaign"}, headers=basic(keys.full))
    assert "No events yet for this campaign" in hidden.body.decode()  # the parent's key does not see it
    assert "sub1" in (sub_page.select_one("header nav") or Tag(name="x")).get_text()


def test_machine_counts_are_shown_beside_peoples_and_each_events_verdict(store: SQLiteStore, keys: Keys) -> None:
    """Issue 14: totals and tables count people, with the machines' counts beside them; the latest events show
    each verdict (its reasons as the cell's title)."""
    store.record(TrackingEvent(event_type="opened", message_id="m1", recipient="mpp@example.com",
                               timestamp=NOW - timedelta(minutes=5), metadata={"campaign": "spring"},
                               machine="apple_mpp", machine_reasons=("Apple's proxy network",)))
    store.record(TrackingEvent(event_type="clicked", message_id="m1", recipient="mpp@example.com",
                               url="https://example.com/a", timestamp=NOW - timedelta(minutes=4),
                               metadata={"campaign": "spring"}, machine="link_scanner"))
    page = soup(get(dashboard(store), headers=basic(keys.full)))
    days = store.grouped_stats(window(), "day")
    totals = {str(dd["data-field"]): dd.get_text() for dd in page.select("#totals dd[data-field]")}
    assert totals["machine_opens"] == str(sum(row.machine_opens or 0 for row in days)) == "1"
    assert totals["machine_clicks"] == "1" and totals["machine_unsubscribes"] == "0"
    assert totals["opens"] == str(sum(row.opens or 0 for row in days))  # people's, as before
    assert page.select_one("#people-note") is not None
    spring = next(tr for tr in page.select("#campaigns table.stats tbody tr") if tr["data-key"] == "spring")
    assert row_numbers(spring)["machine_opens"] == "1" and row_numbers(spring)["machine_clicks"] == "1"
    verdicts = {str(td.get_text()): str(td.get("title")) for td in page.select('#recent td[data-field="machine"]')}
    assert verdicts["apple_mpp"] == "Apple's proxy network" and verdicts["link_scanner"] == ""
