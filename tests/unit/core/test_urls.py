"""Destinations: the one check used when signing and when redirecting, IDN hosts, the URL layout, charrefs."""

from __future__ import annotations

import ipaddress
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.helpers import BASE_URL, links_only, make_tracker
from support.oracle import decode_attribute_value

import mailtrack
from mailtrack.core import urls
from mailtrack.core.charrefs import decode_attribute, escape_attribute
from mailtrack.core.urls import Destination, UrlLayout, as_uri, check_destination, destination_problem

#: Destinations a browser would send elsewhere than a naive parser thinks, or that no parser agrees on.
ATTACKS = [
    "https://[::1/é",  # unclosed IPv6 literal
    "https://[évil]/",  # not an IPv6 address
    "https://[::1]x/",  # junk after the literal
    "https://[::1%25eth0]/",  # zone id: browsers refuse it
    "https://[1.2.3.4]/",  # IPv4 in brackets
    "https://good.com\uff0f@evil.com/",  # fullwidth solidus: the browser goes to evil.com
    "https://good.com\uff0fevil.com/",  # NFKC '/' inside the host
    "https://good.com\uff1f.evil.com/",  # NFKC '?'
    "https://good.com\uff03.evil.com/",  # NFKC '#'
    "https://good.com\uff20evil.com/",  # NFKC '@'
    "https://good.com\uff1a8080/",  # NFKC ':'
    "https://good.com\\@evil.com/",  # backslash ends the authority in browsers, not in urllib
    "https://good.com\\evil.com/",
    "https://good.com%2f@evil.com/",  # percent-encoded host characters
    "https://ex%61mple.com/",
    "https://good.com%2F.evil.com/",
    "https://example.com:65536/",  # port out of range
    "https://example.com:99999999999/",
    "https://example.com:-1/",
    "https://example.com:+80/",
    "https://example.com:8o/",
    "https://example.com:\u0668\u0660/",  # Arabic-Indic digits are str.isdigit()
    "https://example.com:80:81/",
    "https://user@/",  # empty host
    "https://:80/",
    "https://@/",
    "https://exa mple.com/",  # space in the host
    "https://example .com/",
    "https://" + "a" * 64 + ".com/",  # label longer than 63
    "https://" + ".".join(["a" * 60] * 5) + "/",  # name longer than 253
    "https://a..com/",  # empty label
    "https://.a.com/",
    "https://a.com../",
    "https://us\u00e9r@example.com/",  # non-ASCII userinfo
    "https://us er@example.com/",
    "https://a<b@example.com/",
    "https://a\u200db.com/",  # zero-width joiner: browsers refuse
    "https://xn--a.com/",  # invalid punycode
    "https://xn--abc-.com/",
    "https://\u00ad/",  # maps to nothing: empty host
    "https://0x7f.1/",  # browsers read these as IPv4 addresses
    "https://127.1/",
    "https://010.0.0.1/",
    "https://1.2.3.4.5/",
    "https://256.1.1.1/",
    "https://1.2.3.4./",
    "https://example.0x/",
    "https://example.123/",
    "https://exa!mple.com/",
    "https://exa*mple.com/",
    "https://a\ud800.com/",  # lone surrogate
    "https://a.com/\x00",
    "https://a.com/\r\nLocation: x",
    "https://a.com/\x85",
]

ACCEPTED = {
    # destination -> host approved
    "https://example.com/": "example.com",
    "HTTPS://Example.COM/": "example.com",
    "http://a_b.example.com/": "a_b.example.com",  # browsers accept what strict IDNA 2008 refuses
    "http://-a.example.com/": "-a.example.com",
    "http://ab--cd.example.com/": "ab--cd.example.com",
    "https://example.com./": "example.com.",
    "https://example.com:8080/x": "example.com",
    "https://example.com:/x": "example.com",
    "https://user:pw@example.com/": "example.com",
    "https://1.2.3.4/": "1.2.3.4",
    "https://[::1]/": "::1",
    "https://[2001:DB8::1]:443/": "2001:db8::1",
    "https://[::ffff:1.2.3.4]/": "::ffff:1.2.3.4",
    "https://faß.de/": "xn--fa-hia.de",
    "https://ςοφια.gr/": "xn--mxaprlv.gr",
    "https://Bücher.example/": "xn--bcher-kva.example",
    "https://bücher\u3002de/": "xn--bcher-kva.de",  # ideographic full stop separates labels, as in browsers
    "https://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/": "127.0.0.1",  # fullwidth digits and dots
    "https://xn--fa-hia.de/": "xn--fa-hia.de",
    "https://my_host.bücher.de/": "my_host.xn--bcher-kva.de",
    "https://a\u00adb.com/": "ab.com",  # soft hyphen maps to nothing (UTS #46)
    "https://example.com?q": "example.com",
    "https://example.com#f": "example.com",
    "https://" + "a" * 63 + ".com/": "a" * 63 + ".com",
}


@pytest.mark.parametrize("url", ATTACKS)
def test_attacker_destination_is_refused_by_the_check(url: str) -> None:
    assert destination_problem(url) in ("invalid", "control")
    assert as_uri(url) is None


@pytest.mark.parametrize(("url", "host"), list(ACCEPTED.items()))
def test_accepted_destination_has_the_host_a_browser_uses(url: str, host: str) -> None:
    checked = check_destination(url)
    assert isinstance(checked, Destination), checked
    assert checked.host == host
    uri = as_uri(url)
    assert uri is not None and uri.isascii()
    assert (urlsplit(uri).hostname or "") == host.lower()


@pytest.mark.parametrize(
    ("url", "uri"),
    [
        ("https://faß.de/", "https://xn--fa-hia.de/"),  # IDNA 2003 (the stdlib codec) says fass.de
        ("https://ςοφια.gr/", "https://xn--mxaprlv.gr/"),  # IDNA 2003 says xn--mxaprpq.gr
        ("https://user:pw@bücher.de:8080/ü?q=ä#f", "https://user:pw@xn--bcher-kva.de:8080/%C3%BC?q=%C3%A4#f"),
        ("https://usEr@Bücher.de/", "https://usEr@xn--bcher-kva.de/"),
        ("https://x.com/a#", "https://x.com/a#"),  # an empty fragment is kept
        ("https://x.com/ü#", "https://x.com/%C3%BC#"),
        ("https://x.com/ü?", "https://x.com/%C3%BC?"),
        ("https://x.com/ü#a?b", "https://x.com/%C3%BC#a?b"),
        ("HTTPS://Example.com/", "HTTPS://Example.com/"),  # ASCII: exactly as signed
        ("https://[::1]:8080/ü", "https://[::1]:8080/%C3%BC"),
    ],
)
def test_redirect_form_of_a_destination(url: str, uri: str) -> None:
    assert as_uri(url) == uri


def test_zero_width_joiner_host_is_refused_not_sent_to_the_host_without_it() -> None:
    # IDNA 2003 drops U+200D and redirects to ab.com; browsers (UTS #46, CheckJoiners) refuse the URL.
    assert destination_problem("https://a\u200db.com/") == "invalid"


@pytest.mark.parametrize("url", ["https://[::1/é", "https://[évil]/", "https://good.com\uff0f@evil.com/",
                                 "https://faß\u200d.de/"])
def test_invalid_destinations_are_skipped_as_invalid_everywhere(url: str) -> None:
    tracker = make_tracker()
    html = f'<a href="{url}">x</a>'
    result = links_only(tracker, html)
    assert result.html == html
    assert [(s.reason, s.url) for s in result.skipped] == [("invalid", url)]
    text = tracker.rewrite_text(f"see {url} now", message_id="m", recipient="r@x.example",
                                settings={"click_tracking": {"enable_text": True}})
    assert text.links == [] and "invalid" in {s.reason for s in text.skipped}
    message = EmailMessage()
    message["To"] = "r@x.example"
    message["Message-ID"] = "<m@x.example>"
    message.set_content(html, subtype="html")
    rewritten = tracker.rewrite_message(message.as_bytes(), settings={"open_tracking": {"enable": False}})
    assert rewritten.message == message.as_bytes()
    with pytest.raises(mailtrack.MailtrackError):
        tracker.tracking_url("click", message_id="m", recipient="r", url=url)


# -- the property: the check and the redirect form agree --------------------------------------------------

_URLISH = st.builds(
    lambda scheme, userinfo, host, port, tail: f"{scheme}://{userinfo}{host}{port}{tail}",
    st.sampled_from(["http", "https", "HTTPS", "ftp"]),
    st.one_of(st.just(""), st.text(max_size=8).map(lambda s: s + "@")),
    st.one_of(
        st.text(max_size=20),
        st.text(alphabet="ab.-_0123456789xn[]:%@\\/\uff0f\uff0e\u3002\u200d\u00dfé", max_size=20),
        st.from_regex(r"\[[0-9a-fA-F:.%]{0,20}\]", fullmatch=True),
        st.sampled_from(["example.com", "faß.de", "ςοφια.gr", "1.2.3.4", "0x7f.1", "[::1]", "bücher\u3002de"]),
    ),
    st.one_of(st.just(""), st.from_regex(r":[0-9]{0,7}", fullmatch=True), st.text(max_size=6).map(lambda s: ":" + s)),
    st.text(max_size=20),
)


@settings(max_examples=2000)
@given(st.one_of(st.text(), _URLISH))
def test_the_check_refuses_or_the_redirect_form_is_a_safe_uri_to_the_approved_host(url: str) -> None:
    checked = check_destination(url)
    if isinstance(checked, str):
        assert checked in ("scheme", "control", "invalid")
        assert as_uri(url) is None
        return
    uri = as_uri(url)
    assert uri is not None and uri == checked.uri
    assert uri.isascii() and all(0x21 <= ord(c) <= 0x7E for c in uri), uri
    parts = urlsplit(uri)
    assert parts.scheme in ("http", "https")
    host = parts.hostname or ""
    if checked.host.count(":"):
        assert ipaddress.IPv6Address(host) == ipaddress.IPv6Address(checked.host)
    else:
        assert host == checked.host.lower()
    assert parts.port is None or 0 <= parts.port <= 65535
    # the redirect form is itself approved, for the same host
    again = check_destination(uri)
    assert isinstance(again, Destination) and again.host == checked.host


@settings(max_examples=1000)
@given(st.one_of(_URLISH, st.from_regex(r"[hH][tT]{2}[pP][sS]?://[A-Za-z0-9_.-]{0,70}(:[0-9]{0,6})?([/?#][ -~]{0,10})?",
                                       fullmatch=True)))
def test_the_fast_path_of_the_check_agrees_with_the_full_check(url: str) -> None:
    assert check_destination(url) == urls._check(url)


# -- the layout -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".evil.net", "-x", ":8080", "x", "@evil.net", "%2f"])
def test_a_base_url_followed_by_more_host_is_not_ours(suffix: str) -> None:
    layout = UrlLayout.create(BASE_URL)
    assert not layout.is_ours(BASE_URL + suffix)
    assert not layout.is_ours(BASE_URL + suffix + "/c/x.y.z")


@pytest.mark.parametrize("suffix", ["", "/", "?", "#", "/c/x.y.z", "?a=1"])
def test_a_base_url_followed_by_a_path_query_or_fragment_is_ours(suffix: str) -> None:
    layout = UrlLayout.create(BASE_URL)
    assert layout.is_ours(BASE_URL + suffix)
    assert layout.is_ours((BASE_URL + suffix).upper())


# -- charrefs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quote", ['"', "'", ""])
@pytest.mark.parametrize(
    "raw",
    [
        "?a&amp/b",  # legacy name without ";" before a non-alphanumeric: decoded
        "?a&ampx=1",  # legacy name before an alphanumeric: kept as written
        "?a&amp=1",  # legacy name before "=": kept as written
        "?a&amp",  # at the end: decoded
        "?a&copy=2&amp;b&lt",
        "?a&notit;",
        "?a&notin;",
        "https://e.example/a\x00b",  # NUL becomes U+FFFD (tokenizer), not kept
        "https://e.example/a&#0;b",
        "https://e.example/a\r\nb\rc",  # input stream: CR LF and CR become LF
        "https://e.example/&#13;&#10;",  # a reference to CR stays CR
        "a\r&amp;\x00&#x0;",
    ],
)
def test_attribute_values_decode_as_html5lib_tokenizes_them(raw: str, quote: str) -> None:
    if quote == "" and any(c in raw for c in "\r\n"):
        pytest.skip("whitespace ends an unquoted value")
    assert decode_attribute(raw) == decode_attribute_value(raw, quote)


def test_legacy_reference_branches() -> None:
    assert decode_attribute("?a&amp/b") == "?a&/b"
    assert decode_attribute("?a&ampx=1") == "?a&ampx=1"


def test_nul_in_an_attribute_value_is_tracked_as_the_browser_follows_it() -> None:
    tracker = make_tracker()
    html = '<p>\x00</p><a href="https://e.example/a\x00b">x</a><p>\x00</p>'
    result = links_only(tracker, html)
    [link] = result.links
    assert link.url == "https://e.example/a\ufffdb"
    assert link.raw == "https://e.example/a\x00b"
    before, after = html.split('"https://e.example/a\x00b"')
    assert result.html.startswith(before + '"') and result.html.endswith('"' + after)


@pytest.mark.parametrize(
    ("quote", "escaped"),
    [('"', "a&quot;b'c&amp;d"), ("'", "a\"b&#39;c&amp;d"), ("", "a&quot;b&#39;c&amp;d")],
)
def test_escape_attribute_escapes_only_the_quote_of_its_context(quote: str, escaped: str) -> None:
    assert escape_attribute("a\"b'c&d", quote) == escaped
    assert decode_attribute_value(escaped, quote) == "a\"b'c&d"


def test_escape_attribute_leaves_the_other_quote_alone() -> None:
    assert escape_attribute("a'b", '"') == "a'b"
    assert escape_attribute('a"b', "'") == 'a"b'
    assert escape_attribute("plain", '"') == escape_attribute("plain", "'") == "plain"


@settings(max_examples=1000)
@given(st.text(alphabet="abcz09-.\u00df\u03c2\u03c3\u00fc\u00e9\u200c\u200d\u00ad\u3002\uff0e\u0661\u05d0\u094d\u0915I\u0130",
               min_size=1, max_size=24))
def test_non_ascii_hosts_get_the_ascii_form_idna_2008_gives_them(host: str) -> None:
    import idna

    if host.isascii():
        host += "\u00fc"
    checked = check_destination(f"https://{host}/")
    try:
        expected = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        # Refused by idna: refused by us too, unless a label is plain ASCII that browsers accept ("-a", "ab--c").
        if isinstance(checked, Destination):
            labels = checked.host.rstrip(".").split(".")
            assert any(not label.startswith("xn--") and not idna_ok(label) for label in labels), checked
        return
    if isinstance(checked, str):
        assert expected.rstrip(".").split(".")[-1].isdigit(), (host, expected)  # numeric hosts: IPv4 rules
    else:
        assert checked.host == expected


def idna_ok(label: str) -> bool:
    import idna

    try:
        idna.alabel(label)
    except idna.IDNAError:
        return False
    return True
