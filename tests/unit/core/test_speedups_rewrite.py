"""The compiled click signer and per-link loop give exactly the pure path's rewrite, for every input (issue 13).

``_speedups.ClickSigner`` signs what ``TokenCodec``'s pure click signer signs;
``_speedups.track_links`` settles the common link and hands every other one
to the pure loop's body. Here each document is rewritten twice in one
process, with ``speedups.compiled`` set and with it None, and everything the
API returns must be equal: the output, every TrackedLink and SkippedLink
(with its reason), pixels, warnings. The trackers cover what changes the
loop's choices: opt-out attributes (with and without a common substring),
a base URL that links use in another case, custom placeholders (no one-match
test), UTM parameters, a small ``max_links``, compressed tokens, signatures
of other sizes and digests. The SHA-256 under the signer is checked against
NIST's vectors and hashlib, for the build that runs and for the portable
implementation compiled here. Skipped, saying so, when the extension is not
built.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.oracle import corpus_html_files
from support.strategies import documents, http_urls, mutated_documents

import mailtrack
from mailtrack.core import speedups
from mailtrack.core.results import SkippedLink, TrackedLink
from mailtrack.core.rewrite.links import classify_unplain
from mailtrack.core.scanner import scan
from mailtrack.core.tokens import MAX_TOKEN_LENGTH
from mailtrack.core.urls import plain_destination

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pathological import FAMILIES  # noqa: E402
from harness.newsletters import make_newsletter  # noqa: E402

try:
    from mailtrack.core import _speedups
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None  # type: ignore[assignment]

pytestmark = [pytest.mark.calls_extension, pytest.mark.skipif(
    _speedups is None, reason="the C extension is not built (python setup.py build_ext --inplace, or pip install -e .)"
)]

BASE = "https://t.example.com/track"
KEYS = ["new key", "old key"]

#: Trackers whose options change what the compiled loop may settle itself. "default" and most others issue opaque
#: tokens (ClickSigner(sealed=True) seals clicks in C; compressed ones are sealed in Python); "signed ..." and the
#: signature options issue signed ones (ClickSigner signing with HMAC-SHA256).
TRACKERS: dict[str, dict[str, Any]] = {
    "default": {},
    "signed": {"token_format": "signed"},
    "signed compressed": {"compress": True, "token_format": "signed"},
    "signed max_links 3": {"max_links": 3, "token_format": "signed"},
    "no opt-outs": {"opt_out_attributes": {}},
    "opt-outs without a common part": {"opt_out_attributes": {"x-no": None, "data-skip": "yes"}},
    "opt-out with a non-ASCII name": {"opt_out_attributes": {"data-k\u212arack": None}},
    "custom placeholders": {"placeholder_patterns": [r"\[\[[a-z]+\]\]"]},
    "max_links 3": {"max_links": 3},
    "max_links 0": {"max_links": 0},
    "utm": {"settings": {"ganalytics": {"enable": True, "utm_source": "news", "utm_medium": "email"}}},
    "compressed": {"compress": True},
    "short signatures": {"signature_size": 10, "token_format": "signed"},
    "sha512": {"digest_method": hashlib.sha512, "token_format": "signed"},
    "base URL with a path and a port": {"base_url": "https://T.Example.com:8443/x/y"},
    "click tracking off": {"settings": {"click_tracking": {"enable": False}}},
}


def make(name: str) -> mailtrack.Tracker:
    options = dict(TRACKERS[name])
    return mailtrack.Tracker(secret_keys=KEYS, base_url=options.pop("base_url", BASE), **options)


@pytest.fixture(scope="module", params=sorted(TRACKERS))
def tracker(request: pytest.FixtureRequest) -> mailtrack.Tracker:
    return make(request.param)


def outcome(tracker: mailtrack.Tracker, html: str, **kwargs: Any) -> tuple[Any, ...]:
    """Everything rewrite_html returns, or the error it raised (type and message)."""
    kwargs.setdefault("message_id", "<m-1@example.com>")
    kwargs.setdefault("recipient", "r\u00e9@example.com")
    kwargs.setdefault("issued_at", 1_700_000_000)
    try:
        result = tracker.rewrite_html(html, **kwargs)
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed
        return ("raised", type(exc), str(exc))
    return (result.html, result.links, result.skipped, result.pixels, result.warnings, result.unsubscribe)


def both(call: Callable[[], Any]) -> tuple[Any, Any]:
    """``call()`` on the compiled path, then on the pure one; ``speedups.compiled`` is put back after."""
    assert _speedups is not None
    results = []
    saved = speedups.compiled
    try:
        for module in (_speedups, None):
            speedups.compiled = module
            results.append(call())
    finally:
        speedups.compiled = saved
    return results[0], results[1]


def caught(call: Callable[[], Any], *errors: type[BaseException]) -> Any:
    """``call()``, or the type and message of one of ``errors`` it raised (compared, not swallowed)."""
    try:
        return call()
    except errors as exc:
        return (type(exc), str(exc))


def on_both_paths(tracker: mailtrack.Tracker, html: str, **kwargs: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    return both(lambda: outcome(tracker, html, **kwargs))


def assert_same(tracker: mailtrack.Tracker, html: str, **kwargs: Any) -> tuple[Any, ...]:
    compiled, pure = on_both_paths(tracker, html, **kwargs)
    assert compiled == pure, html[:300]
    if compiled[0] != "raised":
        assert all(type(link) is TrackedLink for link in compiled[1])
    return compiled


# --------------------------------------------------------------------------
# Whole rewrites: compiled == pure
# --------------------------------------------------------------------------


def test_generated_newsletters_rewrite_the_same(tracker: mailtrack.Tracker) -> None:
    for size, links in ((10_000, 10), (60_000, 100), (500_000, 1000)):
        assert_same(tracker, make_newsletter(size, links))


@pytest.mark.skipif(not corpus_html_files(), reason="the shared corpus (../shared/corpus) is absent")
def test_every_corpus_file_rewrites_the_same(tracker: mailtrack.Tracker) -> None:
    for path in corpus_html_files():
        assert_same(tracker, path.read())


@settings(max_examples=60, deadline=None)
@given(html=st.one_of(documents(), mutated_documents()))
def test_generated_documents_rewrite_the_same(tracker: mailtrack.Tracker, html: str) -> None:
    assert_same(tracker, html)


LINK_VALUES = st.one_of(
    http_urls(),
    st.sampled_from([
        "https://a.example/?x=1&amp;y=2", "https://a.example/?x=1&amp", "https://a.example/?x=1&ampy", "https://a.example/&#38;",
        "https://a.example/&amp;amp;", "&amp;", "https://a.example/&&&&&&", "&&&&&&&&&&", " https://a.example/", "https://a.example/\r\n", "https://a.example/\x00",
        "HTTPS://T.EXAMPLE.COM/TRACK/c/x", "https://t.example.com/trackX", "https://t.example.com/track", "https://t.example.com/track?q",
        "https://t.example.com/track#f", "https://t.example.com:8443/x/y/c/zz", "mailto:a@b", "", "   ", "{{url}}", "[[url]]",
        "https://a.example/{{x}}", "https://a.example/\u00e9", "https://\u00e9.example/", "https://xn--e1afmkfd.example/",
        "https://a.example:99999/", "https://a.example/" + "p" * 9000, "https://a.example/\"'<>`=",
    ]),
)


@st.composite
def link_documents(draw: st.DrawFn) -> str:
    """Links in every quoting, with and without opt-out names (any case, non-ASCII) in their tags."""
    parts = []
    for _ in range(draw(st.integers(0, 12))):
        value = draw(LINK_VALUES)
        quote = draw(st.sampled_from(['"', "'", ""]))
        if not quote:
            value = value.replace(" ", "%20").replace(">", "%3E") or "x"
        extra = draw(st.sampled_from(["", " clicktracking=off", " CLICKTRACKING=OFF", " data-k\u212arack", " data-Track=1",
                                      " x-no", " data-skip=yes", " title=\"\u00e9\"", " style='color:red'",
                                      " data-pm-no-trac\u212a", " \u0130 ses:no-track", " tr\u0130ck"]))
        tag = draw(st.sampled_from(["a", "A", "area", "v:roundrect"]))
        parts.append(f"<{tag}{extra} href={quote}{value}{quote}>x</{tag}>")
        parts.append(draw(st.sampled_from(["", "\n", " text \u00e9 ", "\U0001f600", "<p>"])))
    return "<html><body>" + "".join(parts) + "</body></html>"


@settings(max_examples=150, deadline=None)
@given(html=link_documents())
def test_links_of_every_kind_rewrite_the_same(tracker: mailtrack.Tracker, html: str) -> None:
    assert_same(tracker, html)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.kind == "html"], ids=lambda family: family.name)
def test_pathological_families_rewrite_the_same(family: Any) -> None:
    assert_same(make("default"), family.build(20_000), settings=family.settings)


def test_a_second_pass_and_another_messages_links_rewrite_the_same() -> None:
    tracker = make("default")
    first = tracker.rewrite_html(make_newsletter(10_000, 10), message_id="<a@x>", recipient="a@x.test").html
    assert_same(tracker, first, message_id="<a@x>", recipient="a@x.test")  # a no-op second pass
    assert_same(tracker, first, message_id="<b@x>", recipient="b@x.test")  # re-signed for another message


@pytest.mark.parametrize("metadata", [None, {"campaign": "spring", "n": 1}, {"\u00e9": ["\U0001f600", None, 1.5]}])
@pytest.mark.parametrize("recipient", [None, "r@example.com", "\u00fc@b\u00fccher.example"])
def test_claims_of_every_shape_rewrite_the_same(metadata: dict[str, Any] | None, recipient: str | None) -> None:
    html = make_newsletter(10_000, 10)
    assert_same(make("default"), html, recipient=recipient, metadata=metadata, tags=["a", "\u00e9"])


def test_a_message_that_starts_counting_later_rewrites_the_same() -> None:
    """rewrite_message shares one LinkBook across parts: the HTML part's first index may not be 0."""
    tracker = make("max_links 3")
    message = (
        b"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
        b"see https://a.example/1 and https://a.example/2\n--b\nContent-Type: text/html\n\n"
        b'<a href="https://a.example/3">3</a><a href="https://a.example/4">4</a><a href="https://a.example/5">5</a>\n--b--\n'
    )
    compiled, pure = both(lambda: tracker.rewrite_message(message, message_id="<m@x>", recipient="r@x.test", issued_at=1_700_000_000))
    assert compiled.message == pure.message
    assert compiled.links == pure.links and compiled.skipped == pure.skipped


# --------------------------------------------------------------------------
# The compiled loop really settles the common link itself
# --------------------------------------------------------------------------


def direct_loop(html: str, tracker: mailtrack.Tracker) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """Run _speedups.track_links as track_html_links does, with a slow path that records what it is given."""
    from mailtrack.core.rewrite.links import LinkBook

    plan = tracker._plan(None, "<m@x>", "r@x.test", None, 1_700_000_000, None, text=False)  # noqa: SLF001 - the loop's input
    book = LinkBook(plan)
    handed: list[Any] = []
    edits: list[Any] = []
    assert _speedups is not None
    _speedups.track_links(html, scan(html).links, book, None, lambda url: classify_unplain(url, plan), plan.layout.lowered_base,
                          plan.opt_outs.common, handed.append, edits, TrackedLink, SkippedLink, MAX_TOKEN_LENGTH, None)
    return book.links, book.skipped, edits, handed


@pytest.mark.parametrize("name", ["default", "signed"])
def test_plain_links_never_reach_the_python_body(name: str) -> None:
    """Opaque tokens (default) too: the compiled loop seals them itself (ClickSigner(sealed=True), or the Python
    sealer in a build without OpenSSL), as it signs signed ones, and hands nothing to the pure loop's body."""
    html = "".join(f'<a href="https://a.example/{i}?x=1&amp;y=2">{i}</a>' for i in range(50))
    links, skipped, edits, handed = direct_loop(html, make(name))
    assert handed == [] and skipped == []
    assert all(("." in link.tracking_url.rsplit("/", 1)[1]) is (name == "signed") for link in links)
    assert [link.index for link in links] == list(range(50))
    assert links[0].url == "https://a.example/0?x=1&y=2"
    assert [edit[2] for edit in edits] == [link.tracking_url for link in links]


def test_links_skipped_by_the_rules_never_reach_the_python_body() -> None:
    html = ('<a href="#top">1</a><a href="mailto:a@b.example">2</a><a href="{{u}}">3</a><a href="https://a.example/%7B">4</a>'
            '<a href="https:///x">5</a><a href="http://">6</a><a href="https://a.example:99999/">7</a><a href="tel:1%7C2">8</a>')
    links, skipped, _, handed = direct_loop(html, make("default"))
    assert handed == []
    assert [link.url for link in links] == ["https://a.example/%7B"]
    assert [(s.url, s.reason) for s in skipped] == [
        ("#top", "scheme"), ("mailto:a@b.example", "scheme"), ("{{u}}", "placeholder"), ("https:///x", "scheme"),
        ("http://", "scheme"), ("https://a.example:99999/", "invalid"), ("tel:1%7C2", "scheme"),
    ]
    assert all(type(s) is SkippedLink for s in skipped)


def test_unusual_links_reach_the_python_body_in_order() -> None:
    html = ('<a href="https://a.example/1">1</a><a clicktracking=off href="https://a.example/2">2</a>'
            '<a href=https://a.example/3>3</a><a href="https://a.example/&#38;">4</a><a href="{{u}}">5</a>'
            f'<a href="{BASE}/c/x">6</a><a href=" https://a.example/7">7</a><a href="https://a.example/8">8</a>')
    links, skipped, _, handed = direct_loop(html, make("default"))
    assert [tag.href[0] for tag in handed] == [
        "https://a.example/2", "https://a.example/3", "https://a.example/&#38;", f"{BASE}/c/x", " https://a.example/7",
    ]
    assert [link.url for link in links] == ["https://a.example/1", "https://a.example/8"]
    assert [s.url for s in skipped] == ["{{u}}"]


def test_a_slow_body_that_raises_leaves_the_count_right() -> None:
    from mailtrack.core.rewrite.links import LinkBook

    tracker = make("default")
    plan = tracker._plan(None, "<m@x>", "r@x.test", None, 1_700_000_000, None, text=False)  # noqa: SLF001
    book = LinkBook(plan)
    html = '<a href="https://a.example/1">1</a><a href="https://a.example/2">2</a><a href=x>3</a>'

    def boom(tag: Any) -> None:
        raise RuntimeError("the slow body failed")

    assert _speedups is not None
    with pytest.raises(RuntimeError, match="slow body"):
        _speedups.track_links(html, scan(html).links, book, None, str, plan.layout.lowered_base, None, boom,
                              [], TrackedLink, SkippedLink, MAX_TOKEN_LENGTH, None)
    assert book.counted == len(book.links) == 2


def test_bad_arguments_raise_type_errors_not_crashes() -> None:
    from mailtrack.core.rewrite.links import LinkBook

    assert _speedups is not None
    tracker = make("default")
    plan = tracker._plan(None, "<m@x>", "r@x.test", None, 1_700_000_000, None, text=False)  # noqa: SLF001
    book = LinkBook(plan)
    good = ["<a href=x>", [], book, None, str, "b", None, print, [], TrackedLink, SkippedLink, 10, None]
    for index, bad in [(0, b"x"), (1, ("x",)), (5, 3), (8, ()), (9, int), (10, int), (11, "x"), (12, ["x"])]:
        args = list(good)
        args[index] = bad
        with pytest.raises(TypeError):
            _speedups.track_links(*args)
    with pytest.raises(TypeError):
        _speedups.track_links(*good[:12])
    for links in ([1], [("a", 0, 1, ("x", 0, 1))], [("a", 0, 1, 5, False)]):
        with pytest.raises(TypeError):
            _speedups.track_links("<a href=x>", links, book, None, str, "b", None, print, [], TrackedLink, SkippedLink, 10, None)
    with pytest.raises(ValueError, match="outside the document"):
        _speedups.track_links("<a>", [("a", 0, 99, ("https://a.example/", 0, 1, '"'), False)], book, None, str, "b",
                              "track", print, [], TrackedLink, SkippedLink, 10_000, None)
    with pytest.raises(TypeError):  # plain must answer, and classify must be callable
        _speedups.track_links('<a href="https://a.example/">', scan('<a href="https://a.example/">').links, book, 3, str,
                              "b", None, print, [], TrackedLink, SkippedLink, 10_000, None)


# --------------------------------------------------------------------------
# The compiled one-match test for the default placeholders
# --------------------------------------------------------------------------

PURE_PLAIN = plain_destination("{%|<[$")

URLISH = st.text(alphabet=st.sampled_from(list("hHtTpPsS:/.-_xnXN09aAzZ?#@%{|<[$&=~!") + ["\u00e9", " ", "\x7f"]), max_size=40)


@st.composite
def hosts(draw: st.DrawFn) -> str:
    labels = draw(st.lists(st.text(alphabet="aZ9_-", min_size=0, max_size=70), min_size=1, max_size=5))
    return ".".join(labels) + draw(st.sampled_from(["", ".", ".."]))


@st.composite
def near_plain_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http://", "https://", "HTTPS://", "hTtPs://", "httpss://", "http:/", "ftp://", "http//"]))
    port = draw(st.sampled_from(["", ":", ":0", ":80", ":65535", ":65536", ":99999", ":123456", ":8a"]))
    rest = draw(st.sampled_from(["", "/", "/p?q#f", "?x", "#", "/a%20b", "/{x}", "/\u00e9", " /", "@x", "\\x"]))
    return scheme + draw(hosts()) + port + rest


@settings(max_examples=2000, deadline=None)
@given(url=st.one_of(near_plain_urls(), http_urls(), URLISH, st.text(max_size=30)))
def test_the_compiled_plain_test_answers_as_the_pure_one(url: str) -> None:
    assert _speedups is not None
    assert _speedups.plain_destination(url) is PURE_PLAIN(url), url


@pytest.mark.parametrize("url", [
    "https://a.example", "https://a.example.", "https://a.example..", "https://.example", "https://a..b", "https://9.example",
    "https://a.9", "https://" + "a" * 63 + ".b", "https://" + "a" * 64 + ".b", "https://b." + "a" * 63, "https://b." + "a" * 64,
    "https://" + ".".join(["a" * 50] * 5), "https://" + ".".join(["a" * 50] * 6), "https://xn--e1a.example", "https://XN--e1a.x",
    "https://a--b.example", "https://a.example:", "https://a.example:0", "https://a.example:65535/x", "https://a.example:65536",
    "https://a.example:000080", "https://a.example:8x", "https://a.example@b", "https://a.example/{{x}}", "http://a",
    "https://a.example/%41", "https://a_b-c.example/?q=1#f", "https://", "http://:80/",
])
def test_the_compiled_plain_test_answers_as_the_pure_one_on_the_edges(url: str) -> None:
    assert _speedups is not None
    assert _speedups.plain_destination(url) is PURE_PLAIN(url), url


def pure_default_rules(url: str) -> str | None | bool:
    """What default_rules must answer: classify_unplain's reason where it is scheme/placeholder/None, else False."""
    plan = make("default")._plan(None, "<m@x>", "r@x.test", None, 1_700_000_000, None, text=False)  # noqa: SLF001
    reason = classify_unplain(url, plan)
    return reason if reason in (None, "scheme", "placeholder") else False


PERCENTISH = st.lists(st.sampled_from([*"%aZ_9.-fF:/hHtTpPsS?#x", "%20", "%zz", "%ab%", "https://a.example/"]),
                      max_size=20).map("".join)


@settings(max_examples=3000, deadline=None)
@given(url=st.one_of(PERCENTISH, near_plain_urls(), http_urls(), URLISH.filter(str.isascii)))
def test_the_compiled_rules_answer_as_classify_unplain(url: str) -> None:
    assert _speedups is not None
    if not url.isascii() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url) or PURE_PLAIN(url):
        return  # track_links asks default_rules only for printable ASCII that the one-match test refused
    answer = _speedups.default_rules(url)
    if answer is not False:  # False: classify_unplain decides, which is the pure path itself
        assert answer == pure_default_rules(url), url


@pytest.mark.parametrize("url", [
    "https://a.example/%20x", "https://a.example/%name%", "https://a.example/%name%20", "https://a.example/%name%2x",
    "https://a.example/%name%", "%a%", "%_%zz", "%9a%", "https://a.example/%E2%80%99", "mailto:%name%", "mailto:x%20y",
    "#%", "https://xn--a.example/%20", "https://a.example:99999/%20", "https://us%40er@a.example/%20", "https:///%20",
])
def test_the_compiled_rules_on_the_edges(url: str) -> None:
    assert _speedups is not None
    answer = _speedups.default_rules(url)
    assert answer is False or answer == pure_default_rules(url), url


# --------------------------------------------------------------------------
# ClickSigner and its SHA-256
# --------------------------------------------------------------------------


def pure_and_compiled_signers(codec: Any, *claims: Any) -> tuple[Any, Any]:
    return both(lambda: codec.message_signer("click", *claims))


def test_the_default_codec_signs_clicks_with_the_compiled_signer() -> None:
    assert _speedups is not None
    compiled, pure = pure_and_compiled_signers(make("signed").codec, "<m@x>", "r@x.test", None, 1_700_000_000)
    assert isinstance(compiled, _speedups.ClickSigner)
    assert not isinstance(pure, _speedups.ClickSigner)
    # opaque (the default): the sealing ClickSigner where this build has OpenSSL's AES, else the Python sealer
    compiled, pure = pure_and_compiled_signers(make("default").codec, "<m@x>", "r@x.test", None, 1_700_000_000)
    assert isinstance(compiled, _speedups.ClickSigner) is bool(getattr(_speedups, "SIV_AVAILABLE", 0))
    assert not isinstance(pure, _speedups.ClickSigner) and compiled(0, "https://x.example/") == pure(0, "https://x.example/")
    compressed, _ = pure_and_compiled_signers(make("compressed").codec, "<m@x>", "r@x.test", None, 1_700_000_000)
    assert not isinstance(compressed, _speedups.ClickSigner)  # compression is decided per link, in Python


@settings(max_examples=300, deadline=None)
@given(
    message_id=st.text(max_size=30),
    recipient=st.one_of(st.none(), st.text(max_size=30)),
    metadata=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=10), st.integers()), max_size=3)),
    tags=st.lists(st.text(max_size=8), max_size=3),
    account=st.one_of(st.none(), st.text(max_size=10)),
    index=st.one_of(st.integers(0, 2000), st.integers(), st.booleans()),
    url=st.one_of(http_urls(), st.text(max_size=200)),
)
def test_click_tokens_are_the_pure_signers(
    message_id: str, recipient: str | None, metadata: dict[str, Any] | None, tags: list[str], account: str | None,
    index: int, url: str,
) -> None:
    for name in ("default", "signed", "short signatures"):
        compiled, pure = pure_and_compiled_signers(make(name).codec, message_id, recipient, metadata, 1_700_000_000, tags, account)
        try:
            expected: Any = pure(index, url)
        except UnicodeEncodeError:
            expected = UnicodeEncodeError
        try:
            actual: Any = compiled(index, url)
        except UnicodeEncodeError:
            actual = UnicodeEncodeError
        assert actual == expected


@settings(max_examples=200, deadline=None)
@given(
    message_id=st.text(max_size=30),
    recipient=st.one_of(st.none(), st.text(max_size=30)),
    metadata=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3)),
    tags=st.lists(st.text(max_size=8), max_size=3),
    account=st.one_of(st.none(), st.text(max_size=10)),
    key=st.one_of(st.text(min_size=1, max_size=10), st.binary(min_size=65, max_size=100)),
)
def test_open_and_unsubscribe_tokens_are_the_pure_signers(
    message_id: str, recipient: str | None, metadata: dict[str, Any] | None, tags: list[str], account: str | None, key: Any,
) -> None:
    try:
        codec = mailtrack.Tracker(secret_keys=[key], base_url=BASE, token_format="signed").codec  # sign_value's
    except mailtrack.MailtrackError:
        return  # a key UTF-8 cannot write: refused on both paths
    for kind in ("open", "unsubscribe"):
        def token(kind: str = kind) -> Any:
            try:
                return codec.message_signer(kind, message_id, recipient, metadata, 1_700_000_000, tags, account)()
            except UnicodeEncodeError:
                return UnicodeEncodeError

        compiled, pure = both(token)
        assert compiled == pure


def test_sign_value_misuse_raises_not_crashes() -> None:
    assert _speedups is not None
    with pytest.raises(ValueError, match="between 10 and 32"):
        _speedups.sign_value(b"k", b"d", b".s", 9)
    with pytest.raises(TypeError):
        _speedups.sign_value("k", b"d", b".s", 16)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.sign_value(b"k", b"d", b".s")  # type: ignore[call-arg]
    assert _speedups.sign_value(b"k", b"", b"", 32).startswith(".")


def test_compiled_click_tokens_verify() -> None:
    tracker = make("default")
    compiled, _ = pure_and_compiled_signers(tracker.codec, "<m@x>", "r@x.test", {"k": "v"}, 1_700_000_000)
    verified = tracker.verify(compiled(3, "https://a.example/?q=\u00e9\"\\"))
    assert verified.url == "https://a.example/?q=\u00e9\"\\"
    assert verified.link_index == 3


def test_click_signer_misuse_raises_not_crashes() -> None:
    assert _speedups is not None
    signer_type = _speedups.ClickSigner
    with pytest.raises(ValueError, match="between 10 and 32"):
        signer_type(b"k", b"[", b"]", b".x", 33)
    with pytest.raises(TypeError):
        signer_type("k", b"[", b"]", b".x", 16)
    unset = signer_type.__new__(signer_type)
    with pytest.raises(ValueError, match="not initialised"):
        unset(0, "https://a.example/")
    signer = signer_type(b"k" * 200, b"[", b"]", b".x", 16)
    with pytest.raises(TypeError):
        signer(0, b"https://a.example/")
    with pytest.raises(TypeError):
        signer(0)
    with pytest.raises(TypeError):
        signer(0, "u", extra=1)


NIST_VECTORS = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


def check_sha256(module: Any) -> None:
    for data, digest in NIST_VECTORS:
        assert module.sha256(data).hex() == digest
    for length in range(300):  # every padding case, around each block boundary
        data = bytes(range(256))[: length % 256] * (1 + length // 256)
        data = data[:length]
        assert module.sha256(data) == hashlib.sha256(data).digest(), length
    assert module.sha256(memoryview(b"abc")) == hashlib.sha256(b"abc").digest()
    with pytest.raises(TypeError):
        module.sha256("abc")


def test_sha256_of_this_build_matches_the_vectors() -> None:
    assert _speedups is not None
    assert _speedups.SHA256_BACKEND in ("openssl", "portable")
    check_sha256(_speedups)


def build_portable(tmp_path: Path) -> ModuleType:
    """The extension compiled here without OpenSSL (its portable SHA-256), loaded under its own name."""
    include = sysconfig.get_paths()["include"]
    if shutil.which("gcc") is None or not (Path(include) / "Python.h").is_file():
        pytest.skip("gcc or the Python headers are missing: the portable SHA-256 cannot be built here")
    target = tmp_path / f"_speedups{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", f"-I{include}", str(ROOT / "mailtrack" / "core" / "_speedups.c"),
                    "-o", str(target)], check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("_speedups", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def portable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    yield build_portable(tmp_path_factory.mktemp("portable"))


def test_the_portable_sha256_matches_the_vectors(portable: ModuleType) -> None:
    assert portable.SHA256_BACKEND == "portable"
    check_sha256(portable)


def test_the_portable_build_seals_no_tokens_and_says_so(portable: ModuleType) -> None:
    """Without OpenSSL there is no AES-SIV in C: opaque clicks take the pure sealer (cryptography's), never a stub."""
    assert portable.SIV_AVAILABLE == 0
    with pytest.raises(ValueError, match="OpenSSL"):
        portable.ClickSigner(b"k" * 64, b"[", b"]", b"\x04abcd", 16, sealed=True)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=1, max_size=150), url=st.text(max_size=300), index=st.integers(0, 10**6))
def test_the_portable_signer_signs_as_the_pure_one(portable: ModuleType, key: bytes, url: str, index: int) -> None:
    codec = mailtrack.Tracker(secret_keys=[key], base_url=BASE, token_format="signed").codec
    compiled, pure = pure_and_compiled_signers(codec, "<m@x>", "r@x.test", {"k": 1}, 1_700_000_000)
    assert isinstance(compiled, _speedups.ClickSigner)
    twin = portable.ClickSigner(codec._click_key, b'["<m@x>","r@x.test"', b',{"k":1}]', compiled_stamp(codec), 16)  # noqa: SLF001
    try:
        expected: Any = pure(index, url)
    except UnicodeEncodeError:
        expected = UnicodeEncodeError
    try:
        actual: Any = twin(index, url)
    except UnicodeEncodeError:
        actual = UnicodeEncodeError
    assert actual == expected


def compiled_stamp(codec: Any) -> bytes:
    from itsdangerous.encoding import base64_encode, int_to_bytes

    return b"." + base64_encode(int_to_bytes(1_700_000_000))


# --------------------------------------------------------------------------
# splice and utf8_length
# --------------------------------------------------------------------------

WIDE_TEXT = st.text(alphabet=st.sampled_from(["a", "<", "\u00e9", "\u0100", "\u20ac", "\U0001f600", "\ud800", "\x00"]), max_size=60)


@st.composite
def sources_and_edits(draw: st.DrawFn) -> tuple[str, list[tuple[int, int, str]]]:
    source = draw(WIDE_TEXT)
    n = len(source)
    bound = st.integers(-3, n + 3) if draw(st.booleans()) else st.integers(0, n)
    edits = []
    for _ in range(draw(st.integers(0, 6))):
        start = draw(bound)
        end = draw(st.one_of(st.just(start), bound))
        edits.append((start, end, draw(WIDE_TEXT)))
    return source, edits


@settings(max_examples=3000, deadline=None)
@given(case=sources_and_edits())
def test_the_compiled_splice_returns_what_the_pure_one_does(case: tuple[str, list[tuple[int, int, str]]]) -> None:
    from mailtrack.core.rewrite.splice import splice

    source, edits = case
    compiled, pure = both(lambda: splice(source, list(edits)))
    assert compiled == pure  # equal str are stored at the same (narrowest) width: a wider one compares unequal
    assert sys.getsizeof(compiled) == sys.getsizeof(pure)


def test_splice_leaves_what_it_cannot_do_straight_to_the_pure_loop() -> None:
    assert _speedups is not None
    assert _speedups.splice("abcdef", [(1, 2, "X"), (4, 6, "Y")]) == "aXcdY"
    assert _speedups.splice("abc", [(2, 3, "X"), (1, 2, "Y")]) is None  # overlapping / unsorted
    assert _speedups.splice("abc", [(0, 9, "X")]) is None
    assert _speedups.splice("abc", [(-1, 2, "X")]) is None
    assert _speedups.splice("a\U0001f600b", [(1, 2, "c")]) is None  # the only astral character goes
    assert _speedups.splice("a\U0001f600b", [(0, 1, "c")]) == "c\U0001f600b"
    assert _speedups.splice("abc", [(0, 1, 5)]) is None  # type: ignore[list-item]
    assert _speedups.splice("abc", [(True, 1, "x")]) is None
    with pytest.raises(TypeError):
        _speedups.splice(b"abc", [])  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(width=st.sampled_from(["\xe9", "\u4e2d", "\U0001f600", "\ud800"]), size=st.integers(0, 300),
       places=st.lists(st.tuples(st.integers(0, 299), st.sampled_from(["\x7f", "\x80", "\xff", "\u07ff", "\u0800",
                                                                     "\uffff", "\U00010000", "\U0010ffff", "\udfff"])),
                       max_size=6))
def test_utf8_length_counts_long_mostly_ascii_text_block_by_block(width: str, size: int,
                                                                  places: list[tuple[int, str]]) -> None:
    """utf8_length reads 32 bytes at a time where no character is past ASCII: sparse wide characters at any
    offset of a long text, in each storage width, at block edges and in the tail, are each counted."""
    assert _speedups is not None
    chars = list("a" * size)
    for at, char in places:
        if at < size:
            chars[at] = char
    text = width + "".join(chars)  # the first character sets the storage width
    assert _speedups.utf8_length(text) == len(text.encode("utf-8", "surrogatepass"))
    assert _speedups.utf8_length(text[1:]) == len(text[1:].encode("utf-8", "surrogatepass"))


@settings(max_examples=500, deadline=None)
@given(width=st.sampled_from(["\xe9", "\u4e2d", "\U0001f600"]), size=st.integers(0, 300),
       places=st.lists(st.tuples(st.integers(0, 299), st.sampled_from(["\x7f", "\x80", "\xff", "\u07ff", "\u0800",
                                                                     "\ud7ff", "\ud800", "\udfff", "\ue000",
                                                                     "\uffff", "\U00010000", "\U0010ffff"])),
                       max_size=6))
def test_utf8_encode_writes_long_mostly_ascii_text_block_by_block(width: str, size: int,
                                                                   places: list[tuple[int, str]]) -> None:
    """utf8_encode narrows 32 bytes at a time where no character is past ASCII: sparse wide characters (and
    surrogates, refused as str.encode refuses them) at any offset, in each storage width, at block edges and in
    the tail, come out as str.encode writes them."""
    assert _speedups is not None
    chars = list("a" * size)
    for at, char in places:
        if at < size:
            chars[at] = char
    for text in (width + "".join(chars), "".join(chars)):
        try:
            expected: bytes | None = text.encode("utf-8")
        except UnicodeEncodeError:
            expected = None
        assert _speedups.utf8_encode(text) == expected


@settings(max_examples=2000, deadline=None)
@given(text=st.one_of(WIDE_TEXT, st.text()))
def test_utf8_encode_is_str_encode_or_none_where_that_raises(text: str) -> None:
    assert _speedups is not None
    try:
        expected: bytes | None = text.encode("utf-8")
    except UnicodeEncodeError:
        expected = None
    assert _speedups.utf8_encode(text) == expected
    with pytest.raises(TypeError):
        _speedups.utf8_encode(b"abc")  # type: ignore[arg-type]


@settings(max_examples=2000, deadline=None)
@given(text=st.one_of(WIDE_TEXT, st.text()))
def test_utf8_length_counts_what_encoding_writes(text: str) -> None:
    assert _speedups is not None
    assert _speedups.utf8_length(text) == len(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("extra", ["", "\u00e9", "\U0001f600", "\ud800"])
@pytest.mark.parametrize("size", [25_000, 60_000, 102_000, 102_400, 102_401])
def test_the_gmail_clip_warning_is_the_same_on_both_paths(size: int, extra: str) -> None:
    from mailtrack.core.results import exceeds_gmail_clip

    text = "a" * (size - len(extra.encode("utf-8", "surrogatepass"))) + extra
    compiled, pure = both(lambda: exceeds_gmail_clip(text))
    assert compiled is pure


# --------------------------------------------------------------------------
# Text parts and whole messages: the loop's text mode
# --------------------------------------------------------------------------

TEXT_PIECES = st.sampled_from([
    "https://a.example/x", "http://A.example/p?q=1&r=2", "https://a.example/%20y", "https://a.example/%name%", "{{u}}",
    "https://a.example/{{u}}", "(see https://a.example/a)", "https://en.example/wiki/Foo_(bar)", "<https://a.example/b>",
    "https://a.example/\u00e9", "https://\u00e9.example/", "https://t.example.com/track/c/zzz", "HTTPS://T.EXAMPLE.COM/TRACK",
    "https://a.example:99999/", "https://xn--e1a.example/", "mailto:a@b", "https://a.example/" + "p" * 9000, " ", "\n",
    "word", ".", "\u00e9", "\U0001f600", "\r\n", "*|X|*", "https://a.example/*|X|*",
])


@st.composite
def texts_and_exclusions(draw: st.DrawFn) -> tuple[str, frozenset[str]]:
    text = "".join(draw(st.lists(TEXT_PIECES, max_size=25)))
    from mailtrack.core.urlfinder import find_urls

    urls = [text[s:e] for s, e in find_urls(text)]
    excluded = frozenset(draw(st.lists(st.sampled_from(urls), max_size=3))) if urls else frozenset()
    return text, excluded


@settings(max_examples=120, deadline=None)
@given(case=texts_and_exclusions())
def test_texts_rewrite_the_same(tracker: mailtrack.Tracker, case: tuple[str, frozenset[str]]) -> None:
    from mailtrack.core.rewrite.text import rewrite_text_edits

    text, excluded = case
    def rewrite() -> Any:
        plan = tracker._plan(None, "<m@x>", "r@x.test", None, 1_700_000_000, None, text=True)  # noqa: SLF001
        return caught(lambda: rewrite_text_edits(text, plan, excluded), Exception)

    compiled, pure = both(rewrite)
    assert compiled == pure, text[:300]


def corpus_messages() -> list[Path]:
    manifest = ROOT.parent / "shared" / "corpus" / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    rows = [line.split("\t") for line in manifest.read_text(encoding="utf-8").splitlines()[1:]]
    return [manifest.parent / row[0] for row in rows if len(row) > 11 and row[11] == "eml"]


@pytest.mark.skipif(not corpus_messages(), reason="the shared corpus (../shared/corpus) is absent")
@pytest.mark.parametrize("name", ["default", "opt-outs without a common part", "max_links 3", "custom placeholders"])
def test_corpus_messages_rewrite_the_same(name: str) -> None:
    tracker = make(name)
    settings = {"click_tracking": {"enable": True, "enable_text": True}, "subscription_tracking": {"enable": True}}
    for path in corpus_messages():
        raw = path.read_bytes()
        def rewrite(raw: bytes = raw) -> Any:
            result = tracker.rewrite_message(raw, recipient="r@x.test", issued_at=1_700_000_000, settings=settings, force=True)
            return (result.message, result.links, result.skipped, result.warnings, result.list_unsubscribe)

        compiled, pure = both(lambda: caught(rewrite, Exception))
        assert compiled == pure, path.name


def test_generated_messages_rewrite_the_same() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_message

    tracker = bench_message.make_tracker()
    for variant in bench_message.build_variants():
        def rewrite(raw: bytes = variant.raw) -> Any:
            result = tracker.rewrite_message(raw, **bench_message.IDENTITY)
            return (result.message, result.links, result.skipped, result.warnings)

        compiled, pure = both(rewrite)
        assert compiled == pure, variant.name


def test_the_default_placeholders_are_the_ones_the_compiled_rules_mirror() -> None:
    """``default_rules`` and ``plain_authority`` in _speedups_links.h hand-code these patterns and trigger characters.

    Changing a default placeholder (or the characters that can start one) without changing the C twin would let
    the compiled path track a link the pure one leaves alone only where the differential tests happen to reach:
    this pin fails first, and says where to look.
    """
    from mailtrack.core.rewrite import rules

    assert rules.DEFAULT_PLACEHOLDERS == (
        r"(?s:\{\{.*?\}\})", r"(?s:\{%.*?%\})", r"(?s:\*\|.*?\|\*)", r"(?s:<%.*?%>)",
        r"%[A-Za-z_][A-Za-z0-9_.-]*%(?![0-9A-Fa-f]{2})", r"\A\[[^\[\]]+\]\Z", r"(?s:\$\{.*?\})",
    ), "update default_rules/percent_tag/plain_authority in mailtrack/core/_speedups_links.h with the defaults"
    assert rules._TRIGGER_CHARS == "{%|<[$", "plain_authority in _speedups_links.h refuses exactly these characters"
