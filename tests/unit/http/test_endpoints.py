"""The pure request -> response layer (mailtrack.web) and its WSGI wrapper (mailtrack.wsgi).

Requests are built by hand and answered in process; events land in a real
SQLite store through a real Recorder. Real HTTP is covered by
test_serve_http.py.
"""

from __future__ import annotations

import io
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import WSGIWarning, validator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.helpers import BASE_URL, READER_HEADERS, make_tracker

import mailtrack
from mailtrack.delivery.recorder import Recorder
from mailtrack.http.endpoints import GIF, Endpoints, Request, Response
from mailtrack.http.wsgi import MAX_BODY, WsgiApp
from mailtrack.storage.sqlite import SQLiteStore

ISSUED = 1_700_000_000
DEST = "https://example.com/page?a=1&b=2#top"
NO_CACHE = {
    "cache-control": "no-cache, no-store, must-revalidate, max-age=0",
    "pragma": "no-cache",
    "expires": "0",
}


# -- fixtures and helpers -------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "events.sqlite")
    yield store
    store.close()


@pytest.fixture
def recorder(store: SQLiteStore) -> Iterator[Recorder]:
    recorder = Recorder(store, retry_interval=0.05, max_retry_interval=0.2)
    yield recorder
    recorder.close()


@pytest.fixture
def endpoints(tracker: mailtrack.Tracker, recorder: Recorder) -> Endpoints:
    return Endpoints(tracker, recorder)


def path(url: str, base: str = BASE_URL) -> str:
    """The request path of a tracking URL (``base`` may carry a path prefix, which stays)."""
    assert url.startswith(base)
    return url[len(_origin(base)):]


def _origin(base: str) -> str:
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def url_of(tracker: mailtrack.Tracker, kind: str, **kwargs: Any) -> str:
    kwargs.setdefault("message_id", "msg-1")
    kwargs.setdefault("recipient", "ann@example.com")
    if kind == "click":
        kwargs.setdefault("url", DEST)
        kwargs.setdefault("link_index", 3)
    return tracker.tracking_url(kind, **kwargs)


#: A person's browser (lowercase names, as Request holds them): bare requests seconds after signing are scanners'.
READER = {name.lower(): value for name, value in READER_HEADERS.items()}


def get(endpoints: Endpoints, target: str, method: str = "GET", **kwargs: Any) -> Response:
    return endpoints.handle(Request(method, target, **kwargs))


def headers(response: Response) -> dict[str, str]:
    names = [name.lower() for name, _ in response.headers]
    assert len(names) == len(set(names)), f"duplicate headers: {response.headers}"
    return {name.lower(): value for name, value in response.headers}


def assert_gif(response: Response, *, head: bool = False) -> None:
    h = headers(response)
    assert response.status == 200
    assert h["content-type"] == "image/gif"
    assert h["content-length"] == "43"
    for name, value in NO_CACHE.items():
        assert h[name] == value
    assert response.body == (b"" if head else GIF)


def assert_not_found(response: Response, *, head: bool = False) -> None:
    h = headers(response)
    assert response.status == 404
    assert "location" not in h
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["x-content-type-options"] == "nosniff"
    if head:
        assert response.body == b""
    else:
        assert int(h["content-length"]) == len(response.body) > 0
        assert response.body.startswith(b"<!doctype html>")


def tamper(token: str) -> str:
    """Flip one character of the payload (still in the token alphabet)."""
    first = token[0]
    return ("B" if first != "B" else "C") + token[1:]


def bad_tokens(tracker: mailtrack.Tracker, kind: str) -> dict[str, str]:
    """Every kind of token that must not verify as ``kind``, keyed by what is wrong with it: signed ones taken apart
    (from ``tracker``'s signed twin, same keys) and changed opaque ones (``tracker`` issues opaque, the default)."""
    sealed = url_of(tracker, kind).rsplit("/", 1)[1]
    other_kind = "open" if kind != "open" else "click"
    opaque_tokens = {
        "opaque-tampered": tamper(sealed),
        "opaque-last-character": sealed[:-1] + ("A" if sealed[-1] != "A" else "B"),
        "opaque-truncated": sealed[:-4],
        "opaque-foreign-key": url_of(mailtrack.Tracker(secret_keys=["someone-elses-key"], base_url=BASE_URL),
                                     kind).rsplit("/", 1)[1],
        "opaque-wrong-purpose": url_of(tracker, other_kind).rsplit("/", 1)[1],
        "opaque-oversized": "A" * 9000,
    }
    tracker = make_tracker(token_format="signed")
    good = url_of(tracker, kind).rsplit("/", 1)[1]
    payload, stamp, signature = good.split(".")
    foreign = mailtrack.Tracker(secret_keys=["someone-elses-key"], base_url=BASE_URL, token_format="signed")
    return {
        **opaque_tokens,
        "forged": "WyJtc2ctMSIsImFubkBleGFtcGxlLmNvbSJd.ZVPxAA.AAAAAAAAAAAAAAAAAAAAAA",
        "tampered-payload": f"{tamper(payload)}.{stamp}.{signature}",
        "tampered-signature": f"{payload}.{stamp}.{tamper(signature)}",
        "tampered-timestamp": f"{payload}.{tamper(stamp)}.{signature}",
        "foreign-key": url_of(foreign, kind).rsplit("/", 1)[1],
        "wrong-purpose": url_of(tracker, other_kind).rsplit("/", 1)[1],
        "malformed": "not-a-token",
        "malformed-json": "bm90IGpzb24.ZVPxAA.AAAAAAAAAAAAAAAAAAAAAA",
        "oversized": "A" * 9000 + "." + stamp + "." + signature,
        "empty": "",
        "with-slash": f"{payload}/{stamp}.{signature}",
        "url-in-token": good + "/https://evil.example/",
        "percent": good + "%0d%0a",
        "control": good[:5] + "\r\n" + good[5:],
    }


BAD_KINDS = list(bad_tokens(make_tracker(), "click"))


# -- open -------------------------------------------------------------------------------


def test_open_get_serves_gif_and_records(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore) -> None:
    url = url_of(tracker, "open", metadata={"campaign": "spring", "n": [1, 2]})
    response = get(endpoints, path(url), headers={"user-agent": "Mail/1.0", "referer": "https://mail.example/"},
                   remote_addr="198.51.100.7")
    assert_gif(response)
    [event] = store.events()
    assert event.event_type == "opened"
    assert (event.message_id, event.recipient) == ("msg-1", "ann@example.com")
    assert event.metadata == {"campaign": "spring", "n": [1, 2]}
    assert (event.user_agent, event.referer, event.ip) == ("Mail/1.0", "https://mail.example/", "198.51.100.7")
    assert event.url is None and event.link_index is None
    assert event.first is True
    assert event.timestamp.tzinfo is not None
    assert_gif(get(endpoints, path(url)))
    assert [e.first for e in store.events()] == [True, False]


def test_gif_is_a_valid_transparent_1x1_gif() -> None:
    assert len(GIF) == 43
    assert GIF.startswith(b"GIF89a\x01\x00\x01\x00")
    assert GIF.endswith(b";")


def test_open_head_serves_headers_and_never_records(endpoints: Endpoints, tracker: mailtrack.Tracker,
                                                    store: SQLiteStore) -> None:
    assert_gif(get(endpoints, path(url_of(tracker, "open")), "HEAD"), head=True)
    assert store.count() == 0


@pytest.mark.parametrize("bad", BAD_KINDS)
def test_open_serves_gif_for_any_token_but_records_only_valid(
    endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore, bad: str
) -> None:
    token = bad_tokens(tracker, "open")[bad]
    assert_gif(get(endpoints, "/o/" + token))
    assert_gif(get(endpoints, "/o/" + token, "HEAD"), head=True)
    assert store.count() == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_open_other_methods_405(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore, method: str) -> None:
    response = get(endpoints, path(url_of(tracker, "open")), method)
    assert response.status == 405
    assert headers(response)["allow"] == "GET, HEAD"
    assert store.count() == 0


# -- click ------------------------------------------------------------------------------


def test_click_get_redirects_and_records(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore) -> None:
    url = url_of(tracker, "click", metadata={"k": "v"})
    response = get(endpoints, path(url), headers={"user-agent": "UA", "accept-language": "en"}, remote_addr="2001:db8::5")
    h = headers(response)
    assert response.status == 302
    assert h["location"] == DEST
    assert h["referrer-policy"] == "no-referrer"
    assert h["content-length"] == "0" and response.body == b""
    for name, value in NO_CACHE.items():
        assert h[name] == value
    [event] = store.events()
    assert (event.event_type, event.url, event.link_index, event.metadata) == ("clicked", DEST, 3, {"k": "v"})
    assert event.ip == "2001:db8::5"
    assert event.first is True


def test_click_first_flag_is_per_message_and_recipient(recorder: Recorder, tracker: mailtrack.Tracker,
                                                       store: SQLiteStore) -> None:
    # a person's clicks, seconds apart (two links of one message clicked within a second are a scanner's: issue 14)
    ticks = iter(range(1_700_000_000, 1_700_001_000, 10))
    endpoints = Endpoints(tracker, recorder, clock=lambda: float(next(ticks)))
    for recipient, link in [("a@x", 0), ("a@x", 1), ("b@x", 0), ("a@x", 0)]:
        assert get(endpoints, path(url_of(tracker, "click", recipient=recipient, link_index=link)),
                   headers=READER).status == 302
    assert [(e.recipient, e.link_index, e.first) for e in store.events()] == [
        ("a@x", 0, True), ("a@x", 1, False), ("b@x", 0, True), ("a@x", 0, False)
    ]


def test_click_head_redirects_and_never_records(endpoints: Endpoints, tracker: mailtrack.Tracker,
                                                store: SQLiteStore) -> None:
    response = get(endpoints, path(url_of(tracker, "click")), "HEAD")
    assert response.status == 302
    assert headers(response)["location"] == DEST
    assert store.count() == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_click_other_methods_405(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore, method: str) -> None:
    response = get(endpoints, path(url_of(tracker, "click")), method)
    assert response.status == 405
    assert headers(response)["allow"] == "GET, HEAD"
    assert "location" not in headers(response)
    assert store.count() == 0


@pytest.mark.parametrize("bad", BAD_KINDS)
def test_click_bad_token_404_never_redirects(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore,
                                             bad: str) -> None:
    token = bad_tokens(tracker, "click")[bad]
    assert_not_found(get(endpoints, "/c/" + token))
    assert_not_found(get(endpoints, "/c/" + token, "HEAD"), head=True)
    assert store.count() == 0


def test_click_unsubscribe_token_is_wrong_purpose(endpoints: Endpoints, tracker: mailtrack.Tracker,
                                                  store: SQLiteStore) -> None:
    token = url_of(tracker, "unsubscribe").rsplit("/", 1)[1]
    assert_not_found(get(endpoints, "/c/" + token))
    assert get(endpoints, "/u/" + url_of(tracker, "click").rsplit("/", 1)[1]).status == 404
    assert store.count() == 0


@pytest.mark.parametrize(
    "destination",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://example.com/file",
        "mailto:ann@example.com",
        "//evil.example/",
        "/relative/path",
        "https:///evil.example/",
        "https://\\evil.example/",
        "https://good.example/\r\nSet-Cookie: a=b",
        "https://good.example/\nx",
        "https://good.example/\x00",
        "https://good.example/\x85",
        "",
    ],
)
def test_click_non_http_destination_signed_directly_is_refused(
    endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore, destination: str
) -> None:
    # Tracker.tracking_url refuses these, so sign below it: a key holder's mistake must still not redirect.
    sign = tracker.codec.message_signer("click", "msg-1", "ann@example.com", None, ISSUED)
    token = sign(0, destination)
    response = get(endpoints, "/c/" + token)
    assert_not_found(response)
    assert all("\r" not in v and "\n" not in v for _, v in response.headers)
    assert_not_found(get(endpoints, "/c/" + token, "HEAD"), head=True)
    assert store.count() == 0


def test_click_uppercase_scheme_destination_is_redirected(endpoints: Endpoints, tracker: mailtrack.Tracker) -> None:
    token = tracker.codec.message_signer("click", "m", "r", None, ISSUED)(0, "HTTPS://Example.com/")
    response = get(endpoints, "/c/" + token)
    assert response.status == 302
    assert headers(response)["location"] == "HTTPS://Example.com/"


# -- max_age and the tracker's clock -------------------------------------------------------


@pytest.fixture
def clocked() -> tuple[mailtrack.Tracker, list[float]]:
    now = [float(ISSUED)]
    return make_tracker(clock=lambda: now[0]), now


def test_max_age_refuses_expired_clicks_but_never_unsubscribes(
    clocked: tuple[mailtrack.Tracker, list[float]], recorder: Recorder, store: SQLiteStore
) -> None:
    tracker, now = clocked
    endpoints = Endpoints(tracker, recorder, max_age=3600, clock=lambda: now[0])
    click = path(url_of(tracker, "click", issued_at=ISSUED))
    unsubscribe = path(url_of(tracker, "unsubscribe", issued_at=ISSUED))
    opened = path(url_of(tracker, "open", issued_at=ISSUED))

    now[0] = ISSUED + 3599
    assert get(endpoints, click).status == 302
    assert get(endpoints, unsubscribe).status == 200
    assert [e.timestamp.timestamp() for e in store.events()] == [ISSUED + 3599]  # the Endpoints clock stamps events

    now[0] = ISSUED + 3601
    assert_not_found(get(endpoints, click))
    assert_not_found(get(endpoints, click, "HEAD"), head=True)
    # An unsubscribe link keeps working (CAN-SPAM: at least 30 days; a failed unsubscribe helps nobody).
    assert get(endpoints, unsubscribe).status == 200
    assert get(endpoints, unsubscribe, "POST", body=b"List-Unsubscribe=One-Click").status == 200
    assert store.count() == 2
    # the pixel has no max_age: always the GIF, and a valid open still counts
    assert_gif(get(endpoints, opened))
    assert store.count() == 3


def test_token_from_the_future_is_refused(clocked: tuple[mailtrack.Tracker, list[float]], recorder: Recorder,
                                          store: SQLiteStore) -> None:
    tracker, _ = clocked
    endpoints = Endpoints(tracker, recorder, max_age=3600)
    assert_not_found(get(endpoints, path(url_of(tracker, "click", issued_at=ISSUED + 86400))))
    assert get(endpoints, path(url_of(tracker, "click", issued_at=ISSUED + 60))).status == 302  # within clock skew
    assert store.count() == 1


def test_without_max_age_old_tokens_work(clocked: tuple[mailtrack.Tracker, list[float]], recorder: Recorder) -> None:
    tracker, now = clocked
    now[0] = ISSUED + 10 * 365 * 86400
    assert get(Endpoints(tracker, recorder), path(url_of(tracker, "click", issued_at=ISSUED))).status == 302


# -- unsubscribe --------------------------------------------------------------------------


def test_unsubscribe_get_shows_form_and_never_records(endpoints: Endpoints, tracker: mailtrack.Tracker,
                                                      store: SQLiteStore) -> None:
    target = path(url_of(tracker, "unsubscribe"))
    response = get(endpoints, target)
    h = headers(response)
    assert response.status == 200
    assert h["content-type"] == "text/html; charset=utf-8"
    assert "form-action 'self'" in h["content-security-policy"]
    assert int(h["content-length"]) == len(response.body)
    assert b'<form method="post">' in response.body
    assert b'name="List-Unsubscribe" value="One-Click"' in response.body
    head = get(endpoints, target, "HEAD")
    assert head.status == 200 and head.body == b""
    assert headers(head)["content-length"] == h["content-length"]
    for _ in range(3):  # link scanners fetch every URL, repeatedly
        get(endpoints, target)
    assert store.count() == 0


@pytest.mark.parametrize("body", [b"List-Unsubscribe=One-Click", b""])
def test_unsubscribe_post_records(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore,
                                  body: bytes) -> None:
    target = path(url_of(tracker, "unsubscribe", recipient="bob<b>@example.com"))
    # A browser's POST (without RFC 8058's body too); a scanner's without it is refused (tests/unit/test_machine_http.py).
    browser = {"content-type": "application/x-www-form-urlencoded", "accept-language": "en",
               "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}
    response = get(endpoints, target, "POST", body=body, headers=browser)
    assert response.status == 200
    assert b"bob&lt;b&gt;@example.com" in response.body  # escaped
    assert b"<b>" not in response.body
    [event] = store.events()
    assert (event.event_type, event.recipient, event.first) == ("unsubscribed", "bob<b>@example.com", True)
    get(endpoints, target, "POST", body=body, headers=browser)
    assert [e.first for e in store.events()] == [True, False]


@pytest.mark.parametrize("bad", BAD_KINDS)
def test_unsubscribe_bad_token_404(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore, bad: str) -> None:
    token = bad_tokens(tracker, "unsubscribe")[bad]
    assert_not_found(get(endpoints, "/u/" + token))
    assert_not_found(get(endpoints, "/u/" + token, "HEAD"), head=True)
    assert_not_found(get(endpoints, "/u/" + token, "POST", body=b"List-Unsubscribe=One-Click"))
    assert store.count() == 0


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_unsubscribe_other_methods_405(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore,
                                       method: str) -> None:
    response = get(endpoints, path(url_of(tracker, "unsubscribe")), method)
    assert response.status == 405
    assert headers(response)["allow"] == "GET, HEAD, POST"
    assert store.count() == 0


FORM = b'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'


def test_landing_html_gets_form_before_closing_body(tracker: mailtrack.Tracker, recorder: Recorder) -> None:
    landing = "<html><body><h1>Leaving so soon?</h1><p>ünïcødé</p></BODY></html>"
    endpoints = Endpoints(tracker, recorder, landing_html=landing)
    response = get(endpoints, path(url_of(tracker, "unsubscribe")))
    text = response.body.decode("utf-8")
    assert response.status == 200
    assert text.startswith("<html><body><h1>Leaving so soon?</h1><p>ünïcødé</p><form method=\"post\">")
    assert text.endswith("</button></form></BODY></html>")
    assert int(headers(response)["content-length"]) == len(response.body)


def test_landing_html_without_body_tag_gets_form_appended(tracker: mailtrack.Tracker) -> None:
    endpoints = Endpoints(tracker, landing_html="<p>Bye</p>")
    body = get(endpoints, path(url_of(tracker, "unsubscribe"))).body
    assert body.startswith(b"<p>Bye</p>" + FORM)
    assert body.endswith(b"</form>")


def test_landing_html_uses_last_closing_body(tracker: mailtrack.Tracker) -> None:
    landing = "<body><pre>&lt;/body&gt; </body> in text</pre></body>"
    body = get(Endpoints(tracker, landing_html=landing), path(url_of(tracker, "unsubscribe"))).body.decode()
    assert body.endswith("</form></body>")
    assert body.count("<form") == 1


def test_landing_html_from_account_settings(recorder: Recorder) -> None:
    settings = mailtrack.TrackingSettings(subscription_tracking=mailtrack.SubscriptionTracking(landing="<p>Ours</p></body>"))
    tracker = make_tracker(settings=settings)
    body = get(Endpoints(tracker, recorder), path(url_of(tracker, "unsubscribe"))).body
    assert body.startswith(b"<p>Ours</p>" + FORM)
    # an explicit landing_html wins over the settings
    body = get(Endpoints(tracker, recorder, landing_html="<i>x</i>"), path(url_of(tracker, "unsubscribe"))).body
    assert body.startswith(b"<i>x</i><form")


def test_landing_html_with_dotted_capital_i_gets_the_form_before_its_closing_tag(tracker: mailtrack.Tracker) -> None:
    # "İ".lower() is two code points, so an index into page.lower() is off by one per "İ" in page.
    landing = "<html><body><p>İptal İşlemi</p></body></html>"
    body = get(Endpoints(tracker, landing_html=landing), path(url_of(tracker, "unsubscribe"))).body.decode()
    assert body.startswith("<html><body><p>İptal İşlemi</p><form"), body
    assert body.endswith("</form></body></html>"), body


# -- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["/", "", "/c", "/u", "/x/abc", "/favicon.ico", "/robots.txt", "/C/abc", "/track/c/abc", "//c/abc",
               "/cc/abc", "/../c/abc"]
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_unknown_paths_404(endpoints: Endpoints, store: SQLiteStore, target: str, method: str) -> None:
    response = get(endpoints, target, method)
    assert response.status == 404
    assert "location" not in headers(response)
    assert store.count() == 0


def test_empty_click_token_404_and_empty_open_token_gif(endpoints: Endpoints) -> None:
    assert_not_found(get(endpoints, "/c/"))
    assert_gif(get(endpoints, "/o/"))
    assert_not_found(get(endpoints, "/u/"))


def test_query_string_is_ignored(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore) -> None:
    response = get(endpoints, path(url_of(tracker, "click")), query="utm_source=scanner&x=%0d%0a")
    assert response.status == 302
    assert headers(response)["location"] == DEST
    assert store.count() == 1


def test_base_url_with_path_prefix_and_custom_paths(recorder: Recorder, store: SQLiteStore) -> None:
    base = "https://t.example.com/track"
    tracker = mailtrack.Tracker(secret_keys=["k"], base_url=base + "/",
                                paths={"click": "go", "open": "px.gif/v1", "unsubscribe": "bye"})
    endpoints = Endpoints(tracker, recorder)
    click, opened, unsubscribe = (url_of(tracker, kind) for kind in ("click", "open", "unsubscribe"))
    assert click.startswith(base + "/go/") and opened.startswith(base + "/px.gif/v1/")
    assert get(endpoints, path(click, base)).status == 302
    assert_gif(get(endpoints, path(opened, base)))
    assert get(endpoints, path(unsubscribe, base), "POST", body=b"List-Unsubscribe=One-Click").status == 200
    assert [e.event_type for e in store.events()] == ["clicked", "opened", "unsubscribed"]
    # without the prefix, or at the default paths, nothing is served
    for wrong in (path(click, base)[len("/track"):], path(click, base).replace("/go/", "/c/"),
                  path(opened, base)[len("/track"):]):
        assert_not_found(get(endpoints, wrong))
    assert store.count() == 3


def test_nested_custom_paths_route_like_the_url_layout(recorder: Recorder, store: SQLiteStore) -> None:
    # paths may hold "/" and one may extend another; UrlLayout.split (and verify) tell them apart, Endpoints
    # matches the first prefix in dict order, so /t/o/<token> is served by the click handler: a 404 page, no GIF.
    tracker = make_tracker(paths={"click": "t", "open": "t/o"})
    opened = url_of(tracker, "open")
    assert tracker.verify(opened).kind == "open"
    response = get(Endpoints(tracker, recorder), path(opened))
    assert_gif(response)
    assert store.count() == 1


# -- client address --------------------------------------------------------------------------


def ip(proxies: list[str], remote: str | None, forwarded: str | None = None) -> str | None:
    endpoints = Endpoints(make_tracker(), trusted_proxies=proxies)
    hdrs = {"x-forwarded-for": forwarded} if forwarded is not None else {}
    return endpoints.client_ip(Request("GET", "/", headers=hdrs, remote_addr=remote))


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        # no trusted proxies: the header is never believed
        ([], "203.0.113.9", "1.2.3.4", "203.0.113.9"),
        ([], None, "1.2.3.4", None),
        # single trusted address
        (["10.0.0.1"], "10.0.0.1", "1.2.3.4", "1.2.3.4"),
        (["10.0.0.1"], "10.0.0.2", "1.2.3.4", "10.0.0.2"),  # untrusted remote: header ignored
        (["10.0.0.1"], "10.0.0.1", None, "10.0.0.1"),
        (["10.0.0.1"], "10.0.0.1", "", "10.0.0.1"),
        (["10.0.0.1"], "10.0.0.1", " , ,", "10.0.0.1"),
        # CIDR, and a chain through several trusted hops
        (["10.0.0.0/8"], "10.1.2.3", "1.2.3.4, 10.9.9.9", "1.2.3.4"),
        (["10.0.0.0/8"], "10.1.2.3", "10.5.5.5, 10.9.9.9", "10.5.5.5"),  # all trusted: the farthest hop
        (["10.0.0.0/8", "192.168.0.0/16"], "192.168.1.1", "1.2.3.4,10.0.0.7", "1.2.3.4"),
        # spoofed chain: the client wrote 6.6.6.6 itself; our proxy appended the real 1.2.3.4
        (["10.0.0.1"], "10.0.0.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),
        (["10.0.0.1"], "10.0.0.1", "10.0.0.1, 1.2.3.4", "1.2.3.4"),
        # IPv6
        (["2001:db8::/32"], "2001:db8::1", "2001:db9::7", "2001:db9::7"),
        (["::1"], "::1", "1.2.3.4", "1.2.3.4"),
        (["::1"], "127.0.0.1", "1.2.3.4", "127.0.0.1"),
        (["2001:db8::/32"], "2001:db9::1", "1.2.3.4", "2001:db9::1"),
        (["10.0.0.1"], "10.0.0.1", "2001:db8::abcd", "2001:db8::abcd"),
        # garbage: believe only the connection
        (["10.0.0.1"], "10.0.0.1", "not-an-ip", "10.0.0.1"),
        (["10.0.0.1"], "10.0.0.1", "1.2.3.4, <script>", "10.0.0.1"),
        (["10.0.0.1"], "10.0.0.1", "1.2.3.4:5678", "10.0.0.1"),
        (["10.0.0.1"], "10.0.0.1", "999.1.1.1", "10.0.0.1"),
        (["10.0.0.1"], "10.0.0.1", "1.2.3.4\r\nX: y", "10.0.0.1"),
        # an unparsable remote address is never trusted
        (["10.0.0.0/8"], "unix:/run/sock", "1.2.3.4", "unix:/run/sock"),
        (["10.0.0.0/8"], "", "1.2.3.4", ""),
    ],
)
def test_client_ip(proxies: list[str], remote: str | None, forwarded: str | None, expected: str | None) -> None:
    assert ip(proxies, remote, forwarded) == expected


def test_client_ip_is_recorded(tracker: mailtrack.Tracker, recorder: Recorder, store: SQLiteStore) -> None:
    endpoints = Endpoints(tracker, recorder, trusted_proxies=["127.0.0.0/8"])
    get(endpoints, path(url_of(tracker, "open")), remote_addr="127.0.0.1",
        headers={"x-forwarded-for": "6.6.6.6, 198.51.100.1"})
    get(endpoints, path(url_of(tracker, "open")), remote_addr="203.0.113.5", headers={"x-forwarded-for": "6.6.6.6"})
    assert [e.ip for e in store.events()] == ["198.51.100.1", "203.0.113.5"]


def test_bad_trusted_proxy_is_refused_at_construction(tracker: mailtrack.Tracker) -> None:
    with pytest.raises(ValueError):
        Endpoints(tracker, trusted_proxies=["not-a-network"])


def test_user_agent_and_referer_truncated(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore) -> None:
    long_ua, long_ref = "U" * 5000, "https://r.example/" + "x" * 5000
    get(endpoints, path(url_of(tracker, "open")), headers={"user-agent": long_ua, "referer": long_ref})
    get(endpoints, path(url_of(tracker, "open")), headers={"user-agent": "u" * 1024, "referer": ""})
    first, second = store.events()
    assert first.user_agent == "U" * 1024 and first.referer == long_ref[:1024]
    assert second.user_agent == "u" * 1024 and second.referer is None


def test_without_recorder_everything_is_still_served(tracker: mailtrack.Tracker) -> None:
    endpoints = Endpoints(tracker)
    assert_gif(get(endpoints, path(url_of(tracker, "open"))))
    assert get(endpoints, path(url_of(tracker, "click"))).status == 302
    assert get(endpoints, path(url_of(tracker, "unsubscribe"))).status == 200
    assert get(endpoints, path(url_of(tracker, "unsubscribe")), "POST").status == 200
    assert_not_found(get(endpoints, "/c/forged"))


def test_broken_store_never_breaks_a_response(tmp_path: Path, tracker: mailtrack.Tracker) -> None:
    store = SQLiteStore(tmp_path / "gone.sqlite", busy_timeout=0.01)
    recorder = Recorder(store, spool_dir=tmp_path / "spool", retry_interval=60)
    try:
        store._connection().execute("DROP TABLE events")  # every write now fails
        assert_gif(get(Endpoints(tracker, recorder), path(url_of(tracker, "open"))))
        assert get(Endpoints(tracker, recorder), path(url_of(tracker, "click"))).status == 302
        spooled = b"".join(p.read_bytes() for p in (tmp_path / "spool").glob("*.jsonl"))
        assert spooled.count(b"\n") == 2
    finally:
        recorder.close(timeout=1)
        store.close()


# -- WSGI ------------------------------------------------------------------------------------


def environ_for(target: str, method: str = "GET", body: bytes = b"", **extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": target,
                               "QUERY_STRING": "", "REMOTE_ADDR": "192.0.2.1"}
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    environ["wsgi.input"] = io.BytesIO(body)
    environ.update(extra)
    setup_testing_defaults(environ)
    return environ


def call(app: Any, environ: dict[str, Any], *, validate: bool = True) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, response_headers
        return lambda data: None

    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        result = (validator(app) if validate else app)(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
    return seen["status"], seen["headers"], body


@pytest.fixture
def app(endpoints: Endpoints) -> WsgiApp:
    return WsgiApp(endpoints)


def test_wsgi_every_route_is_pep3333_compliant(app: WsgiApp, tracker: mailtrack.Tracker, store: SQLiteStore) -> None:
    cases = [
        (path(url_of(tracker, "open")), "GET", b"", "200 OK"),
        (path(url_of(tracker, "open")), "HEAD", b"", "200 OK"),
        (path(url_of(tracker, "unsubscribe")), "GET", b"", "200 OK"),
        (path(url_of(tracker, "unsubscribe")), "POST", b"List-Unsubscribe=One-Click", "200 OK"),
        ("/c/forged", "GET", b"", "404 Not Found"),
        ("/nothing", "GET", b"", "404 Not Found"),
        (path(url_of(tracker, "open")), "POST", b"x=1", "405 Method Not Allowed"),
    ]
    for target, method, body, status in cases:
        got_status, got_headers, got_body = call(app, environ_for(target, method, body))
        assert got_status == status, (target, method)
        for _name, value in got_headers:
            value.encode("latin-1")
            assert "\r" not in value and "\n" not in value
        declared = {n.lower(): v for n, v in got_headers}.get("content-length")
        if method != "HEAD" and declared is not None:
            assert int(declared) == len(got_body)
        if method == "HEAD":
            assert got_body == b""
    assert [e.event_type for e in store.events()] == ["opened", "unsubscribed"]


def test_wsgi_click_redirect(app: WsgiApp, tracker: mailtrack.Tracker, store: SQLiteStore) -> None:
    for method in ("GET", "HEAD"):
        status, response_headers, body = call(app, environ_for(path(url_of(tracker, "click")), method), validate=False)
        assert status == "302 Found"
        assert dict(response_headers)["Location"] == DEST
        assert body == b""
    assert store.count() == 1


def test_click_redirect_passes_the_wsgiref_validator(app: WsgiApp, tracker: mailtrack.Tracker) -> None:
    # wsgiref.validate (check_content_type) requires Content-Type on every response but 204/304; the 302 has
    # none ("No Content-Type header found in headers"). Every other route passes the validator.
    status, _, _ = call(app, environ_for(path(url_of(tracker, "click"))))
    assert status == "302 Found"


def test_wsgi_request_translation(tracker: mailtrack.Tracker, recorder: Recorder, store: SQLiteStore) -> None:
    app = WsgiApp(Endpoints(tracker, recorder, trusted_proxies=["192.0.2.1"]))
    environ = environ_for(path(url_of(tracker, "click")), "get", HTTP_USER_AGENT="Agent/2",
                          HTTP_REFERER="https://ref.example/", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.3",
                          QUERY_STRING="a=b")
    status, _, _ = call(app, environ, validate=False)  # lowercase method: not PEP 3333, but tolerated
    assert status == "302 Found"
    [event] = store.events()
    assert (event.user_agent, event.referer, event.ip) == ("Agent/2", "https://ref.example/", "198.51.100.3")


def test_wsgi_script_name_prefix(recorder: Recorder, store: SQLiteStore) -> None:
    tracker = mailtrack.Tracker(secret_keys=["k"], base_url="https://t.example.com/track")
    app = WsgiApp(Endpoints(tracker, recorder))
    token_path = path(url_of(tracker, "click"), "https://t.example.com/track")
    assert token_path.startswith("/track/c/")
    status, _, _ = call(app, environ_for(token_path[len("/track"):], SCRIPT_NAME="/track"), validate=False)
    assert status == "302 Found"
    status, _, _ = call(app, environ_for(token_path), validate=False)
    assert status == "302 Found"
    assert store.count() == 2


def test_wsgi_oversized_body_413(app: WsgiApp, tracker: mailtrack.Tracker, store: SQLiteStore) -> None:
    target = path(url_of(tracker, "unsubscribe"))
    environ = environ_for(target, "POST", b"x" * (MAX_BODY + 1))
    stream = environ["wsgi.input"]
    status, _, body = call(app, environ)
    assert status == "413 Content Too Large"
    assert body == b""
    assert stream.tell() == 0  # not read
    assert store.count() == 0
    status, _, _ = call(app, environ_for(target, "POST", b"x" * MAX_BODY))
    assert status == "200 OK"


@pytest.mark.parametrize("length", ["abc", "-5", "", " "])
def test_wsgi_bad_content_length_is_no_body(app: WsgiApp, tracker: mailtrack.Tracker, length: str) -> None:
    environ = environ_for(path(url_of(tracker, "unsubscribe")), "POST", CONTENT_LENGTH=length)
    status, _, _ = call(app, environ, validate=False)
    assert status == "200 OK"


@pytest.mark.parametrize(
    "raw_path",
    [b"/c/\xff\xfe", b"/o/\xc3", b"/u/\xed\xa0\x80", b"/\x80", b"/c/%ZZ", b"/c/\x00"],
)
def test_wsgi_non_utf8_path_does_not_crash(app: WsgiApp, store: SQLiteStore, raw_path: bytes) -> None:
    environ = environ_for(raw_path.decode("latin-1"))  # PEP 3333: bytes as latin-1
    status, response_headers, _ = call(app, environ)
    assert status in ("404 Not Found", "200 OK")
    if raw_path.startswith(b"/o/"):
        assert dict(response_headers)["Content-Type"] == "image/gif"
    assert store.count() == 0


def test_safe_headers_strip_cr_lf_nul() -> None:
    response = Response(302, [("Location", "https://a.example/\r\nSet-Cookie: x=1\x00"), ("X", "ok")])
    assert response.safe_headers == [
        ("Location", "https://a.example/Set-Cookie: x=1"),
        ("X", "ok"),
    ]


@pytest.mark.parametrize(
    ("destination", "location"),
    [
        ("https://example.com/日本", "https://example.com/%E6%97%A5%E6%9C%AC"),
        ("https://Bücher.example:8080/ü?q=ä#f", "https://xn--bcher-kva.example:8080/%C3%BC?q=%C3%A4#f"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("https://example.com/%C3%BC/ü", "https://example.com/%C3%BC/%C3%BC"),  # existing escapes kept
        ("https://example.com/plain?a=1&b=%20#x", "https://example.com/plain?a=1&b=%20#x"),  # ASCII: unchanged
    ],
)
def test_non_ascii_destination_redirects_to_an_ascii_uri(app: WsgiApp, tracker: mailtrack.Tracker, store: SQLiteStore,
                                                         destination: str, location: str) -> None:
    # rewrite_html tracks such hrefs; PEP 3333 servers send header values as latin-1 (waitress: 500 otherwise)
    result = tracker.rewrite_html(f'<a href="{destination}">x</a>', message_id="m", recipient="r@x")
    [link] = result.links
    assert link.url == destination
    status, response_headers, _ = call(app, environ_for(path(link.tracking_url)), validate=False)
    assert status == "302 Found"
    assert dict(response_headers)["Location"] == location
    [event] = store.events()
    assert event.url == destination  # the event keeps the destination as signed


def test_redirect_adds_no_query_when_only_the_fragment_holds_a_question_mark(
    endpoints: Endpoints, tracker: mailtrack.Tracker
) -> None:
    # urls.as_uri appends "?" whenever "?" occurs anywhere in the URL, also inside the fragment: a non-ASCII
    # https://example.com/ü#a?b is redirected to https://example.com/%C3%BC?#a?b (an empty query it did not have).
    response = get(endpoints, path(url_of(tracker, "click", url="https://example.com/ü#a?b")))
    assert headers(response)["location"] == "https://example.com/%C3%BC#a?b"


def test_wsgi_location_never_carries_line_breaks(app: WsgiApp, tracker: mailtrack.Tracker) -> None:
    sign = tracker.codec.message_signer("click", "m", "r", None, ISSUED)
    status, response_headers, _ = call(app, environ_for("/c/" + sign(0, "https://a.example/\r\nSet-Cookie: x=1")))
    assert status == "404 Not Found"
    assert "Location" not in dict(response_headers)
    status, response_headers, _ = call(app, environ_for("/c/" + sign(0, "https://a.example/%0d%0aSet-Cookie:x")),
                                       validate=False)
    assert status == "302 Found"
    assert dict(response_headers)["Location"] == "https://a.example/%0d%0aSet-Cookie:x"  # encoded: harmless


def test_response_reason_phrases() -> None:
    assert [Response(s, []).reason for s in (200, 302, 404, 405, 413)] == [
        "OK", "Found", "Not Found", "Method Not Allowed", "Content Too Large"]
    assert re.fullmatch(r"\d{3} .+", f"413 {Response(413, []).reason}")


# -- moved from tests/integration/test_serve_review.py (issue 8) -------------------------------


def test_head_never_carries_a_body_not_even_on_404() -> None:
    app = WsgiApp(Endpoints(make_tracker()))
    for target in ("/favicon.ico", "/c/forged", "/u/forged", "/o/anything"):
        status, response_headers, body = call(app, environ_for(target, "HEAD"), validate=False)
        assert body == b"" and int(dict(response_headers)["Content-Length"]) > 0, (target, status)


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_the_wsgi_entry_point_reads_every_option_from_the_environment(tmp_path: Path, writer: str) -> None:
    from mailtrack.service import from_environment
    from mailtrack.storage.writer_process import ProcessWriter

    landing = tmp_path / "landing.html"
    landing.write_text("<html><body><h1>Leaving us?</h1></body></html>", encoding="utf-8")
    env = {"MAILTRACK_SECRET_KEY": "older-key,newest-key", "MAILTRACK_BASE_URL": BASE_URL,
           "MAILTRACK_DB": str(tmp_path / "e.sqlite"), "MAILTRACK_TRUSTED_PROXIES": "10.0.0.0/8",
           "MAILTRACK_MAX_AGE": "60", "MAILTRACK_LANDING": str(landing),
           "MAILTRACK_WEBHOOK": "http://127.0.0.1:9/hook", "MAILTRACK_WEBHOOK_SECRET": "s" * 16,
           "MAILTRACK_WRITER": writer}
    service = from_environment(env)
    # process (the default): a child writes the events and rolls the stats; thread: the server does both
    assert isinstance(service.recorder._own_writer, ProcessWriter) is (writer == "process")
    assert (service.roller is None) is (writer == "process")
    app = service.app
    try:
        tracker = make_tracker()
        pixel = path(tracker.tracking_url("open", message_id="w1", recipient="r@x.example"))
        status, _, _ = call(app, environ_for(pixel, REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="203.0.113.9"),
                            validate=False)
        assert status.startswith("200")
        old = path(tracker.tracking_url("click", message_id="w1", recipient="r@x.example", url="https://x.example/",
                                        issued_at=ISSUED))  # long before now
        assert call(app, environ_for(old), validate=False)[0].startswith("404")  # MAILTRACK_MAX_AGE
        unsubscribe = path(tracker.tracking_url("unsubscribe", message_id="w1", recipient="r@x.example"))
        page = call(app, environ_for(unsubscribe), validate=False)[2]
        assert b"Leaving us?" in page and b'method="post"' in page
        store = SQLiteStore(env["MAILTRACK_DB"])
        assert [e.ip for e in store.events()] == ["203.0.113.9"]
        assert [row["target"] for row in store.outbox_rows()] == ["http://127.0.0.1:9/hook"]
        # the writer process (or the roller thread) adds the event to the stats rollups, off the request
        deadline = time.monotonic() + 30
        while store.unrolled() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.unrolled() == 0
        assert service.roller is None or service.roller.rolled == 1
        store.close()
    finally:
        service.close()
    if service.roller is not None:
        assert service.roller._thread is not None and not service.roller._thread.is_alive()  # stopped with the service
    else:  # the writer process is gone with the service
        writer_process = service.recorder._own_writer
        assert isinstance(writer_process, ProcessWriter) and writer_process._process is None
    with pytest.raises(mailtrack.MailtrackError, match="MAILTRACK_WEBHOOK_SECRET"):
        from_environment({**env, "MAILTRACK_WEBHOOK_SECRET": ""})
    with pytest.raises(mailtrack.MailtrackError, match="max_age"):
        from_environment({**env, "MAILTRACK_MAX_AGE": "-1"})


def test_user_agent_and_referer_are_read_as_utf8(tracker: mailtrack.Tracker, recorder: Recorder,
                                                 store: SQLiteStore) -> None:
    app = WsgiApp(Endpoints(tracker, recorder))
    pixel = path(tracker.tracking_url("open", message_id="u1", recipient="r@x.example"))
    as_wsgi = "Mozilla/5.0 (café)".encode().decode("latin-1")  # what PEP 3333 hands over
    call(app, environ_for(pixel, HTTP_USER_AGENT=as_wsgi, HTTP_REFERER="https://ex.example/ü".encode().decode("latin-1")),
         validate=False)
    [event] = store.events()
    assert (event.user_agent, event.referer) == ("Mozilla/5.0 (café)", "https://ex.example/ü")


@pytest.mark.parametrize("value", [-1, 0, float("nan"), float("inf"), True])
def test_max_age_must_be_a_positive_number(value: float) -> None:
    with pytest.raises(mailtrack.MailtrackError, match="max_age"):
        Endpoints(make_tracker(), max_age=value)


# -- destinations: one check when signing and when redirecting ----------------------------------------------

@pytest.mark.parametrize(
    "destination",
    [
        "https://[::1/é",
        "https://[évil]/",
        "https://good.com\uff0f@evil.com/",
        "https://good.com\\@evil.com/",
        "https://a\u200db.com/",
        "https://example.com:65536/",
        "https://ex%61mple.com/",
        "https://0x7f.1/",
    ],
)
def test_click_token_signed_by_an_older_version_with_a_refused_destination_is_a_404_not_a_500(
    endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore, destination: str
) -> None:
    # Older versions signed these (rewrite_html tracked them); the redirect then raised ValueError in as_uri.
    token = tracker.codec.message_signer("click", "m", "r", None, ISSUED)(0, destination)
    assert_not_found(get(endpoints, "/c/" + token))
    assert_not_found(get(endpoints, "/c/" + token, "HEAD"), head=True)
    assert store.count() == 0


@pytest.mark.parametrize(
    ("destination", "location"),
    [
        ("https://faß.de/", "https://xn--fa-hia.de/"),  # IDNA 2003 said fass.de
        ("https://ςοφια.gr/", "https://xn--mxaprlv.gr/"),  # IDNA 2003 said xn--mxaprpq.gr
        ("https://u:p@bücher.de:8080/", "https://u:p@xn--bcher-kva.de:8080/"),
        ("https://x.com/a#", "https://x.com/a#"),
        ("https://x.com/ü#", "https://x.com/%C3%BC#"),
    ],
)
def test_idn_destination_redirects_where_browsers_go(endpoints: Endpoints, tracker: mailtrack.Tracker,
                                                     destination: str, location: str) -> None:
    response = get(endpoints, path(url_of(tracker, "click", url=destination)))
    assert response.status == 302
    assert headers(response)["location"] == location


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))  # a lone surrogate cannot be signed at all
_PIECE = st.one_of(st.sampled_from(["[", "]", ":", "@", "/", "\\", "\uff0f", "%", "::1", "é", "\u200d", "a.b"]),
                   st.text(st.characters(blacklist_categories=("Cs",)), max_size=3))
_URLISH = st.lists(_PIECE, max_size=8).map(lambda parts: "https://" + "".join(parts))
_CLICK_ENDPOINTS = Endpoints(make_tracker())


@settings(max_examples=500)
@given(st.one_of(_TEXT, _URLISH, _TEXT.map(lambda s: "http://a.b/" + s)))
def test_click_never_answers_500_for_any_signed_destination(destination: str) -> None:
    sign = _CLICK_ENDPOINTS.tracker.codec.message_signer("click", "m", "r", None, ISSUED)
    response = get(_CLICK_ENDPOINTS, "/c/" + sign(0, destination))
    assert response.status in (302, 404)
    if response.status == 302:
        location = headers(response)["location"]
        assert location.isascii() and all(0x21 <= ord(c) <= 0x7E for c in location)
