"""Plain-text bodies: URL boundaries, the shared rules, and properties (with linkify-it-py as a peer)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.helpers import BASE_URL, make_tracker

import mailtrack
from mailtrack.core.rewrite.text import find_urls

ON = {"click_tracking": {"enable": True, "enable_text": True}}
T0 = 1_700_000_000


def rewrite_text(tracker: mailtrack.Tracker, text: str, **kwargs: object) -> mailtrack.TextResult:
    kwargs.setdefault("settings", ON)
    return tracker.rewrite_text(text, message_id="msg-1", recipient="ann@example.com", issued_at=T0, **kwargs)  # type: ignore[arg-type]


def urls(text: str) -> list[str]:
    return [text[start:end] for start, end in find_urls(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("See https://x.example/a.", ["https://x.example/a"]),
        ("Go: https://x.example/a?b=1&c=2, then https://y.example/!", ["https://x.example/a?b=1&c=2", "https://y.example/"]),
        ("Really?https://x.example/?", ["https://x.example/"]),
        ("(see https://x.example/a)", ["https://x.example/a"]),
        ("https://en.wikipedia.org/wiki/Foo_(bar)", ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
        ("(https://en.wikipedia.org/wiki/Foo_(bar))", ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
        ("<https://x.example/a>", ["https://x.example/a"]),
        ('"https://x.example/a"', ["https://x.example/a"]),
        ("'https://x.example/a'", ["https://x.example/a"]),
        ("\u201chttps://x.example/a\u201d", ["https://x.example/a"]),
        ("[https://x.example/a]", ["https://x.example/a"]),
        ("*https://x.example/a*", ["https://x.example/a"]),
        ("HTTPS://X.EXAMPLE/A;", ["HTTPS://X.EXAMPLE/A"]),
        ("https://x.example/it's", ["https://x.example/it's"]),
        ("https://x.example/caf\u00e9\u00a0next", ["https://x.example/caf\u00e9"]),
        ("xhttps://x.example/ and 1http://y.example/", []),
        ("mailto:ann@example.com ftp://x.example/ www.example.com", []),
        ("https://", []),
        ("line\r\nhttps://x.example/a\r\nnext", ["https://x.example/a"]),
    ],
)
def test_url_boundaries(text: str, expected: list[str]) -> None:
    assert urls(text) == expected


def test_rewrites_only_with_enable_text(tracker: mailtrack.Tracker) -> None:
    text = "Shop: https://x.example/sale?a=1&b=2.\r\n"
    assert tracker.rewrite_text(text, message_id="m", recipient="r").text == text  # default: enable_text off
    assert rewrite_text(tracker, text, settings={"click_tracking": {"enable": False, "enable_text": True}}).text == text
    result = rewrite_text(tracker, text)
    (link,) = result.links
    assert result.text == f"Shop: {link.tracking_url}.\r\n"
    assert (link.tag, link.url, link.start, link.end) == ("text", "https://x.example/sale?a=1&b=2", 6, 36)
    verified = tracker.verify(link.tracking_url)
    assert (verified.url, verified.message_id, verified.link_index) == ("https://x.example/sale?a=1&b=2", "msg-1", 0)


def test_account_enable_text_applies() -> None:
    tracker = make_tracker(settings=mailtrack.TrackingSettings.from_account({"click": {"enabled": True, "enable_text": True}}))
    assert len(tracker.rewrite_text("https://x.example/", message_id="m", recipient="r").links) == 1


def test_shared_rules(tracker: mailtrack.Tracker) -> None:
    text = (f"a https://x.example/{{{{id}}}} b https://x.example/?e=*|EMAIL|* c {BASE_URL}/c/abc.def.ghi "
            "d https://ok.example/ e https://opted.example/")
    result = rewrite_text(tracker, text, exclude=["https://opted.example/"])
    assert [link.url for link in result.links] == ["https://ok.example/"]
    assert [(s.raw, s.reason) for s in result.skipped] == [
        ("https://x.example/{{id}}", "placeholder"),
        ("https://x.example/?e=*|EMAIL|*", "placeholder"),  # the merge tag's closing "*" is kept
        (f"{BASE_URL}/c/abc.def.ghi", "not-verified"),  # under our base URL, but forged
        ("https://opted.example/", "opt-out"),
    ]
    assert result.links[0].index == 0  # a forged link is not ours: it does not count toward the limit


def test_limit() -> None:
    limited = make_tracker(max_links=2)
    result = rewrite_text(limited, " ".join(f"https://x.example/{i}" for i in range(4)))
    assert [link.index for link in result.links] == [0, 1]
    assert [s.reason for s in result.skipped] == ["limit", "limit"]


def test_bad_input(tracker: mailtrack.Tracker) -> None:
    with pytest.raises(TypeError):
        rewrite_text(tracker, b"https://x.example/")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rewrite_text(tracker, "x", exclude="https://x.example/")
    with pytest.raises(mailtrack.SettingsError):
        rewrite_text(tracker, "x", settings={"click_tracking": {"enable_text": "yes"}})


# -- properties ------------------------------------------------------------------------------
# URL path pieces: punctuation inside (kept), never at the end of a piece, so that
# only the punctuation placed after a URL decides where it ends.
_alnum = st.text(alphabet=st.sampled_from("abcxyz0189"), min_size=1, max_size=4)
_segment = st.builds(
    lambda parts, seps: "".join(p + s for p, s in zip(parts, seps, strict=False)) + parts[-1] if len(parts) > len(seps) else "".join(parts),
    st.lists(_alnum, min_size=1, max_size=3),
    st.lists(st.sampled_from(list("-_.~%=&+;:!,")), min_size=0, max_size=2),
)


@st.composite
def http_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    host = draw(st.sampled_from(["x.example", "shop.example.com", "127.0.0.1:8080", "b\u00fccher.example"]))
    path = "".join("/" + draw(_segment) for _ in range(draw(st.integers(0, 3))))
    if draw(st.booleans()):
        path += "/Foo_(" + draw(_segment) + ")"
    if draw(st.booleans()):
        path += "?" + draw(_segment) + "=" + draw(_segment)
    return f"{scheme}://{host}{path}"


_words = st.sampled_from(["Hello", "see", "caf\u00e9", "\u2014", "1.", "-", "\U0001F600", "{{name}}", "(", ")", "<", ">"])


@st.composite
def texts(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            url = draw(http_urls())
            before, after = draw(st.sampled_from([("", ""), ("(", ")"), ("<", ">"), ('"', '"'), ("", "."), ("", "!"),
                                                  ("", ","), ("", "?"), ("", ":"), ("'", "'"), ("[", "]")]))
            parts.append(before + url + after)
        else:
            parts.append(draw(_words))
        parts.append(draw(st.sampled_from([" ", "\n", "\r\n", "\t", "  "])))
    return "".join(parts)


TRACKER = make_tracker()


@settings(max_examples=300)
@given(st.one_of(texts(), st.text()))
def test_text_properties(text: str) -> None:
    result = rewrite_text(TRACKER, text)
    # fidelity: putting the original URLs back gives the input exactly
    restored, pos = [], 0
    out = result.text
    offset = 0
    for link in result.links:
        restored.append(out[pos : link.start + offset])
        restored.append(link.raw)
        pos = link.start + offset + len(link.tracking_url)
        offset += len(link.tracking_url) - (link.end - link.start)
    restored.append(out[pos:])
    assert "".join(restored) == text
    # idempotence
    assert rewrite_text(TRACKER, result.text).text == result.text
    # every tracking URL verifies to the URL as written
    for link in result.links:
        verified = TRACKER.verify(link.tracking_url)
        assert (verified.url, verified.link_index) == (text[link.start : link.end], link.index)


linkify_it = pytest.importorskip("linkify_it")
LINKIFY = linkify_it.LinkifyIt()


@settings(max_examples=300)
@given(texts())
def test_boundaries_agree_with_linkify_it(text: str) -> None:
    """Same http(s) URLs as linkify-it-py, a well-kept URL finder.

    Deliberate differences: linkify-it also finds URLs without a scheme
    (``example.com``) and other schemes, so only explicit http(s) ones are
    compared; the generated URLs avoid ``*`` and braces, where we differ on
    purpose (a trailing ``*`` is emphasis; braces are placeholders, left alone
    anyway), and ``@`` and ``$``, which linkify-it treats with e-mail and
    template heuristics of its own (``?a=@b@`` ends before the last ``@``).
    And linkify-it keeps a trailing ``:``, which the brief (and a reader of
    "visit https://x.example/faq: it helps") leaves out; that one is mapped.
    """
    theirs = [
        text[m.index : m.last_index].rstrip(":")
        for m in (LINKIFY.match(text) or [])
        if text[m.index : m.last_index].lower().startswith(("http://", "https://"))
    ]
    assert urls(text) == theirs
