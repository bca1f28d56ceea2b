"""The pure path against the compiled one on documents aimed at issue 13's second round (attack14).

The scanner's skipped-tag names are read by a trie (``scanner._other_name``): these documents use tag names
that are the trie's words, their prefixes and their extensions (``<scrip``, ``<areax``, ``<v:``, ``<NoFrameS``),
in any case, followed by attributes of every quoting and tails cut off anywhere. The rewrite runs with the
trackers whose rules take other branches of the pure link loop (custom placeholder lists with and without
back-references, custom opt-outs, a click URL over the length limit, a one-link limit, compressed tokens):
``rewrite_html`` and ``rewrite_text`` must give the same result (or the same error) on both paths.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mailtrack
from mailtrack.core import scanner, speedups
from mailtrack.core.rewrite.rules import DEFAULT_PLACEHOLDERS
from mailtrack.core.scanner import LinkTag, ScanResult

_WORDS = ["a", "area", "body", "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
          "plaintext", "v:", "v:roundrect", "html", "b", "abbr"]
_WS = [" ", "\t", "\n", "\r", "\f", "/", " / ", "", "\x0b", "\xa0"]
_VALUES = ['"https://x.example/p?a=1&amp;b=2"', "'https://x.example/'", "https://y.example/q", '"{{ url }}"',
           '"*|UNSUB|*"', '"[[x]]"', '"%%tag%%"', '"{% url %}"', '"https://x.example/&#38;x"', '"https://x.example/\r\nx"',
           '"http://a\x00b.example/"', '""', "=", '"', "'", '"mailto:a@b.example"', '"https://t.example.com/c/abc"',
           '"HTTPS://A.B.EXAMPLE:8080/x"', '"http://a.1b/"', '"http://' + "a" * 64 + '.com/"',
           '"http://x.example/' + "y" * 3000 + '"', '"https://x.example/&amp;amp;"', '"https://x.example/\ud800"',
           '"tmpl"', "'xtmplx'", '"https://x.example/é"']
_ATTRIBUTES = ["href", "HREF", "hReF", "title", "data-x", "clicktracking", "x-skip", "=", '"', "hrefx", "hre"]
_PIECES = ["<!--", "-->", "<!-->", "<!--[if mso]>", "<![endif]-->", "<![CDATA[", "]]>", "</a>", "</body>", "</html>",
           "</script>", "</style>", "</textarea>", "</title>", "</xmp>", "<", ">", "&amp;", "</", "<!", "<?x>", "text"]


@st.composite
def _names(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(_WORDS))
    how = draw(st.integers(0, 3))
    if how == 1:
        word = word[: draw(st.integers(0, len(word)))]
    elif how == 2:
        word += draw(st.sampled_from(["x", "1", "-", ":", "a", "\u017f", "\u212a", "=", "\x00"]))
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if flip else c for c, flip in zip(word, flips, strict=True))


@st.composite
def _tags(draw: st.DrawFn) -> str:
    tag = "<" + draw(_names())
    for _ in range(draw(st.integers(0, 3))):
        attribute = draw(st.sampled_from(_ATTRIBUTES))
        if draw(st.booleans()):
            attribute += draw(st.sampled_from(["=", " = ", "\n="])) + draw(st.sampled_from(_VALUES))
        tag += draw(st.sampled_from(_WS)) + attribute
    return tag + draw(st.sampled_from(_WS)) + draw(st.sampled_from([">", ">", "/>", "", ">text"]))


_DOCUMENTS = st.lists(st.one_of(_tags(), _tags(), st.sampled_from(_PIECES)), max_size=20).map("".join)

_KEYS = {"secret_keys": ["older-key", "newest-key"], "base_url": "https://t.example.com"}
_TRACKERS: dict[str, Callable[[], mailtrack.Tracker]] = {
    "defaults": lambda: mailtrack.Tracker(**_KEYS),  # type: ignore[arg-type]
    "custom placeholders": lambda: mailtrack.Tracker(
        **_KEYS, placeholder_patterns=[*DEFAULT_PLACEHOLDERS, r"(['\"x])tmpl\1"]),  # type: ignore[arg-type]
    "two delimited pairs": lambda: mailtrack.Tracker(
        **_KEYS, placeholder_patterns=[r"(?s:\*\|.*?\|\*)", r"(?s:\{%.*?%\})"]),  # type: ignore[arg-type]
    "no placeholders": lambda: mailtrack.Tracker(**_KEYS, placeholder_patterns=[]),  # type: ignore[arg-type]
    "custom opt-outs": lambda: mailtrack.Tracker(
        **_KEYS, opt_out_attributes={"x-skip": None, "clicktracking": "off", "data-x": "NO"}),  # type: ignore[arg-type]
    "one link": lambda: mailtrack.Tracker(**_KEYS, max_links=1),  # type: ignore[arg-type]
    "click URLs too long": lambda: mailtrack.Tracker(
        secret_keys=["k"], base_url="https://t.example.com/" + "p" * 1500),
    "compressed": lambda: mailtrack.Tracker(**_KEYS, compress_tokens=True),  # type: ignore[arg-type]
}


def _outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("returned", call())
    except mailtrack.MailtrackError as error:
        return ("raised", (type(error).__name__, str(error)))


def _both(call: Callable[[], object]) -> tuple[tuple[str, object], tuple[str, object]]:
    saved = speedups.compiled
    try:
        fast = _outcome(call)
        speedups.compiled = None
        slow = _outcome(call)
    finally:
        speedups.compiled = saved
    return fast, slow


needs_extension = pytest.mark.skipif(speedups.compiled is None, reason="the compiled path is off: nothing to compare")


@needs_extension
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_DOCUMENTS)
def test_the_scanners_agree_on_names_near_the_tries_words(text: str) -> None:
    assert speedups.compiled is not None
    assert ScanResult(*speedups.compiled.scan(text, LinkTag)) == scanner.scan_pure(text)


@needs_extension
@pytest.mark.parametrize("which", sorted(_TRACKERS))
def test_rewrites_agree_on_both_paths_with_every_rule_branch(which: str) -> None:
    tracker = _TRACKERS[which]()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_DOCUMENTS, st.booleans())
    def check(text: str, html: bool) -> None:
        def rewrite() -> object:
            if html:
                return tracker.rewrite_html(text, message_id="msg-1", recipient="ann@example.com",
                                            issued_at=1_700_000_000, settings={"open_tracking": {"enable": False}})
            return tracker.rewrite_text(text, message_id="msg-1", recipient="ann@example.com", issued_at=1_700_000_000,
                                        settings={"click_tracking": {"enable": True, "enable_text": True}})

        fast, slow = _both(rewrite)
        assert fast == slow

    check()
