"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a real ``mailtrack serve``.

The server is a subprocess on loopback with its own database; events arrive
as a mail client makes them (the pixel and the links of rewritten messages,
fetched over HTTP) and, for earlier days, through the store's API. The key is
made with ``mailtrack apikey create``. The browser signs in through the form,
and the test checks what it shows against the store (``grouped_stats``,
``find``): the SVG bars' data attributes, the tables' numbers, the top links.
It also checks the cookie's flags, that the page's one stylesheet passes the
Content-Security-Policy (a real browser enforces it), that hostile values
are shown as text, that revoking the key ends the session, and saves
screenshots under the test's temporary folder.

Skipped, with the reason, only when Playwright or ``/usr/bin/chromium`` is
missing (``python3 tasks.py test`` installs both when it can). Playwright's own
browser downloads are never used: there is no network for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support.helpers import READER_HEADERS
from test_serve_http import Server, path_of, serve  # noqa: F401  (the fixture)

import mailtrack
from mailtrack.events import TrackingEvent
from mailtrack.storage.base import EventQuery
from mailtrack.storage.sqlite import SQLiteStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE_CAMPAIGN = "<img src=x onerror=\"document.title='pwned'\">"
FIELDS = ("opens", "unique-opens", "clicks", "unique-clicks", "unsubscribes", "unique-unsubscribes")
#: Reads every chart group's data attributes (runs in Playwright's own world: the page's CSP allows no script).
READ_GROUPS = "groups => groups.map(g => Object.assign({}, g.dataset))"
READ_ROWS = """rows => rows.map(r => ({key: r.dataset.key,
    cells: Object.fromEntries([...r.querySelectorAll('td[data-field]')].map(td => [td.dataset.field, td.textContent]))}))"""


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium from Debian, headless, through Playwright; the test is skipped when either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright; "
                                                                  "python3 tasks.py test installs the [test] extra)")
    if not CHROMIUM.exists():
        pytest.skip(os.environ.get("MAILTRACK_CHROMIUM_MISSING") or
                    f"{CHROMIUM} is missing (apt-get install chromium; python3 tasks.py test does it as root or in CI)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mailtrack", *args], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def fill(server: Server, tracker: mailtrack.Tracker) -> None:
    """Real opens and clicks over HTTP today (two campaigns), and earlier days' events through the store's API."""
    html = ('<html><body><p>Hello</p><a href="https://example.com/offer">offer</a> '
            '<a href="https://example.com/more?x=1&amp;y=2">more</a></body></html>')
    plan = [("spring", "ann@example.com", 2, [0, 1]), ("spring", "bob@example.com", 1, [0]),
            ("spring", "cy@example.com", 1, []), ("summer", "dee@example.com", 3, [1, 1])]
    for number, (campaign, recipient, opens, clicks) in enumerate(plan):
        result = tracker.rewrite_html(html, message_id=f"<m{number}@example.com>", recipient=recipient,
                                      metadata={"campaign": campaign})
        assert result.pixel is not None
        pixel = result.html.split('src="', 1)[1].split('"', 1)[0]
        for _ in range(opens):
            assert server.get(path_of(pixel), headers=READER_HEADERS).status == 200
        for link in clicks:
            assert server.get(path_of(result.links[link].tracking_url), headers=READER_HEADERS).status == 302
    store = SQLiteStore(server.db)
    try:
        now = datetime.now(timezone.utc)
        for days_ago, kind, campaign, recipient in [
                (1, "opened", "spring", "eve@example.com"), (1, "opened", "spring", "eve@example.com"),
                (1, "clicked", "spring", "eve@example.com"), (3, "opened", "summer", "fay@example.com"),
                (3, "unsubscribed", "summer", "fay@example.com"), (6, "opened", HOSTILE_CAMPAIGN, "gus@example.com"),
                (40, "opened", "spring", "old@example.com")]:  # 40 days ago: outside the default range
            store.record(TrackingEvent(event_type=kind, message_id=f"<old-{recipient}>", recipient=recipient,
                                       url="https://example.com/offer" if kind == "clicked" else None,
                                       timestamp=now - timedelta(days=days_ago), metadata={"campaign": campaign}))
    finally:
        store.close()


def window(first: str, last: str, **filters: Any) -> EventQuery:
    start = datetime.combine(date.fromisoformat(first), datetime.min.time(), timezone.utc).timestamp()
    end = datetime.combine(date.fromisoformat(last) + timedelta(days=1), datetime.min.time(), timezone.utc).timestamp()
    return EventQuery(since=start, until=end, account="", **filters)  # the parent's events: the key is the parent's


def numbers(row: Any) -> dict[str, str]:
    """A StatsRow as the dashboard's table cells show it."""
    def rate(value: float | None) -> str:
        return "\u2014" if value is None else f"{value * 100:.1f}%"
    return {"opens": f"{row.opens:,}", "unique_opens": f"{row.unique_opens:,}", "clicks": f"{row.clicks:,}",
            "unique_clicks": f"{row.unique_clicks:,}", "unsubscribes": f"{row.unsubscribes:,}",
            "open_rate": rate(row.open_rate), "click_rate": rate(row.click_rate), "click_to_open": rate(row.click_to_open),
            "machine_opens": f"{row.machine_opens or 0:,}", "machine_clicks": f"{row.machine_clicks or 0:,}",
            "machine_unsubscribes": f"{row.machine_unsubscribes or 0:,}"}


def bars(row: Any | None) -> dict[str, str]:
    """A StatsRow as a chart group's data attributes hold it (zeros for a day without events)."""
    values = (0,) * 6 if row is None else (row.opens, row.unique_opens, row.clicks, row.unique_clicks,
                                           row.unsubscribes, row.unique_unsubscribes)
    return {name.replace("-", "_"): str(value) for name, value in zip(FIELDS, values, strict=True)}


def as_dataset(group: dict[str, str]) -> dict[str, str]:
    """A chart group's dataset (camelCase names) as {field: value} with the FIELDS names, snake_case."""
    names = {"opens": "opens", "uniqueOpens": "unique_opens", "clicks": "clicks", "uniqueClicks": "unique_clicks",
             "unsubscribes": "unsubscribes", "uniqueUnsubscribes": "unique_unsubscribes"}
    return {names[key]: value for key, value in group.items() if key in names}


def test_dashboard_in_chromium_matches_the_store(serve: Callable[..., Server], tracker: mailtrack.Tracker,  # noqa: F811
                                                 browser: Any, tmp_path: Path) -> None:
    server = serve("--access-log")  # a line per request: none may hold the key
    fill(server, tracker)
    key = cli("apikey", "create", "--db", str(server.db), "--scopes", "stats.read", "--name", "dashboard")
    base = f"http://127.0.0.1:{server.port}"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    # not signed in: the login form, at the address asked for
    answer = page.goto(f"{base}/dashboard")
    assert answer is not None and answer.status == 200
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
    page.fill("input[name=key]", "mt.000000000000." + "A" * 43)
    page.click("button[type=submit]")
    assert page.text_content("[role=alert]") == "That key was not accepted."
    assert context.cookies() == []
    page.fill("input[name=key]", key)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == f"{base}/dashboard"

    (cookie,) = context.cookies()
    assert (cookie["name"], cookie["value"], cookie["path"]) == ("mailtrack_dashboard", key, "/dashboard")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["secure"] is True  # the server's base URL is https (Chromium keeps Secure cookies of 127.0.0.1)
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read the key

    # the stylesheet passed the CSP (its hash) and the charts are drawn
    assert page.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor") == "rgb(29, 35, 48)"
    box = page.locator("svg.days").bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150

    first, last = page.input_value("input[name=from]"), page.input_value("input[name=to]")
    assert (date.fromisoformat(last) - date.fromisoformat(first)).days == 29  # the last 30 days by default
    store = SQLiteStore(server.db)
    try:
        days = {row.key: row for row in store.grouped_stats(window(first, last), "day")}
        campaigns = {row.key: row for row in store.grouped_stats(window(first, last), "campaign")}
        recent = [event.event_id for event in store.find(window(first, last), limit=50).events]
        spring = window(first, last, metadata=(("campaign", "spring"),))
        spring_row = store.grouped_stats(spring, "campaign")[0]
        spring_days = {row.key: row for row in store.grouped_stats(spring, "day")}
        links = store.grouped_stats(spring, "link")
    finally:
        store.close()
    assert sum(row.opens or 0 for row in days.values()) == 11  # 7 over HTTP, 4 through the store; not the 40-day-old
    assert set(campaigns) == {"spring", "summer", HOSTILE_CAMPAIGN}

    day_groups = page.eval_on_selector_all("svg.days g.group", READ_GROUPS)
    assert len(day_groups) == 30
    assert {g["key"]: as_dataset(g) for g in day_groups} == {
        (date.fromisoformat(first) + timedelta(days=n)).isoformat(): bars(days.get(
            (date.fromisoformat(first) + timedelta(days=n)).isoformat())) for n in range(30)}
    drawn = page.locator("svg.days rect.bar[data-series=opens]:not([data-value='0'])")
    assert drawn.count() == len([row for row in days.values() if row.opens])
    for index in range(drawn.count()):  # every non-zero bar has a height on screen
        bar_box = drawn.nth(index).bounding_box()
        assert bar_box is not None and bar_box["height"] > 0

    totals = dict(zip(page.eval_on_selector_all("#totals dd", "d => d.map(e => e.dataset.field)"),
                      page.eval_on_selector_all("#totals dd", "d => d.map(e => e.textContent)"), strict=True))
    assert totals["opens"] == str(sum(row.opens or 0 for row in days.values()))
    assert totals["unique_clicks"] == str(sum(row.unique_clicks for row in days.values()))

    table = page.eval_on_selector_all("#campaigns table.stats tbody tr", READ_ROWS)
    assert {row["key"]: row["cells"] for row in table} == {key: numbers(row) for key, row in campaigns.items()}
    chart = page.eval_on_selector_all("svg.campaigns g.group", READ_GROUPS)
    assert {g["key"]: as_dataset(g) for g in chart} == {key: bars(row) for key, row in campaigns.items()}
    assert page.eval_on_selector_all("#recent tbody tr", "rows => rows.map(r => r.dataset.eventId)") == recent

    # the hostile campaign name is text: no image, no handler ran
    assert page.title() != "pwned" and page.locator("main img").count() == 0
    assert page.locator("#campaigns table.stats tbody td a", has_text=HOSTILE_CAMPAIGN).count() == 1
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # one campaign: its days, its top links
    with page.expect_navigation():
        page.click("#campaigns table.stats a:text-is('spring')")
    assert page.url.startswith(f"{base}/dashboard/campaign?name=spring&")
    summary = page.eval_on_selector_all("#campaign table.stats tbody tr", READ_ROWS)
    assert summary == [{"key": "spring", "cells": numbers(spring_row)}]
    assert {g["key"]: as_dataset(g) for g in page.eval_on_selector_all("svg.days g.group", READ_GROUPS)
            if g["key"] in spring_days} == {key: bars(row) for key, row in spring_days.items()}
    top = page.eval_on_selector_all("#links table.links tbody tr", READ_ROWS)
    assert [(row["key"], row["cells"]) for row in top] == [
        (row.key, {"clicks": str(row.clicks), "unique_clicks": str(row.unique_clicks),
                   "machine_clicks": str(row.machine_clicks)}) for row in links]
    assert [row.key for row in links] == ["https://example.com/offer", "https://example.com/more?x=1&y=2"]
    link_bars = page.eval_on_selector_all("svg.hchart g.group", READ_GROUPS)
    assert [(g["key"], g["clicks"], g["uniqueClicks"]) for g in link_bars] == [
        (row.key, str(row.clicks), str(row.unique_clicks)) for row in links]
    assert page.get_attribute("#links table a >> nth=0", "rel") == "noreferrer noopener"
    page.screenshot(path=str(tmp_path / "campaign.png"), full_page=True)

    # revoking the key ends the session at the next request, and the cookie is cleared
    cli("apikey", "revoke", key.split(".")[1], "--db", str(server.db))
    page.reload()
    assert page.text_content("[role=alert]") == "Your session has ended. Sign in again."
    assert context.cookies() == []
    context.close()

    assert problems == []  # no CSP violation, no error in the console
    for shot in ("dashboard.png", "campaign.png"):
        data = (tmp_path / shot).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    logs = server.stderr() + Path(server.stdout_path).read_text()
    assert '"POST /dashboard/login" 303' in logs and '"GET /dashboard" 200' in logs  # the access log was on
    assert key not in logs and key.split(".")[2][:8] not in logs  # and never held the key


def test_sign_out_in_chromium(serve: Callable[..., Server], browser: Any) -> None:  # noqa: F811
    server = serve()
    key = cli("apikey", "create", "--db", str(server.db), "--scopes", "stats.read")
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{server.port}/dashboard?from=2024-01-01&to=2024-01-31")
    page.fill("input[name=key]", key)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url.endswith("/dashboard?from=2024-01-01&to=2024-01-31")  # back to the page asked for
    assert "no events yet" in (page.text_content("svg.days") or "")  # an empty store renders
    with page.expect_navigation():
        page.click("header button:text-is('Sign out')")
    assert page.url.endswith("/dashboard/login") and context.cookies() == []
    page.goto(f"http://127.0.0.1:{server.port}/dashboard")
    assert page.locator("input[name=key]").count() == 1
    context.close()

