"""The per-link and per-message shortcuts of the pure path answer exactly as the code they replaced.

Each shortcut (issue 13, "quick wins on the pure path") skips work the common
case does not need; each test here runs the straightforward version it
replaced beside it, on hypothesis inputs built to reach the corner cases, and
asks for the same answer (or the same error).
"""

from __future__ import annotations

import json
import math
import pickle
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.oracle import corpus_html_files
from support.strategies import BASE_URL, documents, mutated_documents

import mailtrack
from mailtrack.core.charrefs import decode_attribute, escape_attribute
from mailtrack.core.results import SkippedLink, TrackedLink
from mailtrack.core.rewrite.links import (
    ANOTHER_MESSAGE,
    LinkBook,
    classify_destination,
    tokens_after,
    track_html_links,
)
from mailtrack.core.rewrite.plan import RewritePlan
from mailtrack.core.scanner import scan
from mailtrack.core.tokens import MAX_TOKEN_LENGTH, check_claims
from mailtrack.core.urls import ASCII_WHITESPACE, add_query_parameters

#: Both implementations of the scanner (issue 13): the compiled fast path and the pure-Python reference.
pytestmark = pytest.mark.usefixtures("both_paths")

CORPUS = corpus_html_files()

PREFIX = "https://t.example.com/o/"


def tokens_after_by_regex(html: str, prefix: str) -> list[tuple[str, int]]:
    """What ``tokens_after`` did before: one regex pass over the whole document."""
    if prefix not in html:
        return []
    return [(m.group(1).rstrip("."), m.start(1)) for m in re.finditer(re.escape(prefix) + r"([A-Za-z0-9_.-]+)", html)]


# Pieces that make prefixes overlap tokens and each other: "https" is token-shaped, so is "t.example.com".
_PIECES = st.sampled_from([PREFIX, PREFIX[:-1], "https://", "t.example.com", "/o/", "abc", "A-_", ".", "..", "x.y.z",
                           " ", '"', "<", "é", "\ud800", "/", "?", ""])


@given(st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=40).map("".join))
def test_tokens_after_finds_what_the_regex_pass_found(html: str) -> None:
    assert tokens_after(html, PREFIX) == tokens_after_by_regex(html, PREFIX)


@pytest.mark.parametrize(
    "html",
    [
        "",
        PREFIX,
        PREFIX + PREFIX + "tok",
        PREFIX + "abc" + PREFIX + "def",  # the first token swallows the "https" of the second prefix: one match
        PREFIX + "a." + PREFIX.removesuffix("/") + "b",
        PREFIX + "https" + PREFIX[5:] + "x",  # the same, with a token that is only "https"
        "x" * 10 + PREFIX + "tok. and " + PREFIX + "." + PREFIX,
    ],
)
def test_tokens_after_pinned_cases(html: str) -> None:
    assert tokens_after(html, PREFIX) == tokens_after_by_regex(html, PREFIX)


def check_claims_by_round_trip(message_id: Any, recipient: Any, metadata: Any, tags: Any = ()) -> None:
    """What ``check_claims`` did before: encode every part, then a whole JSON round trip."""
    value = [message_id, recipient, dict(metadata or {}), list(tags)]
    for name, part in zip(("message_id", "recipient", "metadata", "tags"), value, strict=True):
        try:
            json.dumps(part, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise mailtrack.ArgumentError(f"{name} must be JSON text: {exc}") from None
    dumped = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
    if json.loads(dumped) != value:
        raise mailtrack.ArgumentError("metadata must survive JSON unchanged: use str keys, lists (not tuples), and JSON types")


class _Str(str):
    pass


class _Int(int):
    pass


_TEXT = st.one_of(st.text(max_size=6), st.sampled_from(["\ud800", "a\udfff", "é", ""]), st.builds(_Str, st.text(max_size=3)))
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**64 - 1, 2**64, -(2**64), 10**30, -0.0, math.inf, -math.inf, math.nan, 1e308]),
    st.floats(),
    st.builds(_Int, st.integers()),
    _TEXT,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(_TEXT, st.integers(), st.none()), inner, max_size=3),
    ),
    max_leaves=12,
)


def _outcome(check: Any, *args: Any) -> str:
    try:
        check(*args)
    except mailtrack.ArgumentError as exc:
        return f"ArgumentError: {exc}"
    except Exception as exc:  # the same foreign error is the same answer
        return f"{type(exc).__name__}: {exc}"
    return "ok"


@settings(max_examples=400)
@given(_TEXT, st.one_of(st.none(), _TEXT), st.one_of(st.none(), st.dictionaries(st.text(max_size=4), _VALUES, max_size=4)),
       st.lists(_TEXT, max_size=3))
def test_check_claims_answers_as_the_round_trip_did(message_id: str, recipient: str | None, metadata: Any,
                                                    tags: list[str]) -> None:
    assert _outcome(check_claims, message_id, recipient, metadata, tags) == _outcome(
        check_claims_by_round_trip, message_id, recipient, metadata, tags
    )


def test_check_claims_of_a_cycle_a_wide_structure_or_a_huge_int_is_left_to_the_round_trip() -> None:
    looped: list[Any] = []
    looped.append(looped)
    wide = {"k": [[0] * 100] * 200}  # 20,000 values: over the shortcut's budget, still plain JSON
    huge = 10**5000  # more digits than str() writes by default: json.dumps refuses it
    for metadata in ({"a": looped}, wide, {"a": [looped] * 5000}, {"a": huge}):
        assert _outcome(check_claims, "m", "r", metadata) == _outcome(check_claims_by_round_trip, "m", "r", metadata)


# -- the per-link loop: against the loop it replaced, with the result objects built eagerly ----------------------


def _old_track_html_links(html: str, plan: RewritePlan, book: _OldBook) -> list[tuple[int, int, str]]:
    """``track_html_links`` before issue 13's quick wins: classify_tag, then decide, escaping every value."""
    edits = []
    only_ours = plan.click is None
    for tag in scan(html).links:
        if tag.href is None:
            continue
        raw, start, end, quote = tag.href
        url = decode_attribute(raw).strip(ASCII_WHITESPACE)
        if only_ours and not plan.layout.is_ours(url):
            continue
        if not url:
            reason: Any = "empty"
        elif plan.opt_outs.applies(html, tag):
            reason = "opt-out"
        else:
            reason = classify_destination(url, plan)
        if only_ours and reason != ANOTHER_MESSAGE:
            continue
        tracking_url = book.decide(url, reason, start, end, raw, quote, tag.tag)
        if tracking_url is not None:
            edits.append((start, end, escape_attribute(tracking_url, quote)))
    return edits


class _OldBook(LinkBook):
    """LinkBook.decide before issue 13: TrackedLink and SkippedLink built by their constructors."""

    def decide(self, url: str, reason: Any, start: int, end: int, raw: str, quote: str, tag: str) -> str | None:
        if reason == ANOTHER_MESSAGE:
            earlier = self.reissue.read(url, "click")
            assert earlier is not None and earlier.url is not None
            if self.sign is None:
                return earlier.url
            return self.decide(earlier.url, None, start, end, raw, quote, tag) or earlier.url
        if reason is None:
            if self.counted >= self.max_links:
                reason = "limit"
            else:
                if self.utm:
                    url = add_query_parameters(url, self.utm)
                assert self.sign is not None
                tracking_url = self.prefix + self.sign(self.counted, url)
                if len(tracking_url) <= MAX_TOKEN_LENGTH:
                    self.links.append(TrackedLink(self.counted, url, tracking_url, start, end, raw, quote, tag))
                    self.counted += 1
                    return tracking_url
                reason = "too-long"
        elif reason == "already-tracked":
            self.counted += 1
        self.skipped.append(SkippedLink(raw, reason, start, end, url, tag))
        return None


_TRACKERS = {
    "default": mailtrack.Tracker(secret_keys=["older-key", "newest-key"], base_url=BASE_URL, max_links=40),
    # no string of 3+ characters common to every name: OptOuts.common is "" and every tag is parsed
    "custom": mailtrack.Tracker(secret_keys=["k"], base_url=BASE_URL.upper() + "/T", max_links=5,
                                opt_out_attributes={"X-NO": None, "data-skip": "YES", "ab": "1"}),
    "none": mailtrack.Tracker(secret_keys=["k"], base_url=BASE_URL, opt_out_attributes={}),
}
_SETTINGS = [None, {"click_tracking": {"enable": False}}, {"ganalytics": {"enable": True, "utm_source": "n l"}}]


def _plan(tracker: mailtrack.Tracker, settings: Any, message_id: str = "msg-1") -> RewritePlan:
    return tracker._plan(settings, message_id, "ann@example.com", {"c": 1}, 1_700_000_000, None, text=False)


def _assert_same_as_old_loop(html: str) -> None:
    tracked_once = _TRACKERS["default"].rewrite_html(html, message_id="msg-0", issued_at=1).html  # another message's URLs
    for document in (html, tracked_once):
        for tracker in _TRACKERS.values():
            for options in _SETTINGS:
                plan = _plan(tracker, options)
                new_book, old_book = LinkBook(plan), _OldBook(plan)
                new_edits: list[tuple[int, int, str]] = []
                track_html_links(document, scan(document), plan, new_book, new_edits)
                assert new_edits == _old_track_html_links(document, plan, old_book)
                assert (new_book.links, new_book.skipped, new_book.counted) == (old_book.links, old_book.skipped, old_book.counted)
                assert [type(link) for link in new_book.links] == [TrackedLink] * len(new_book.links)
                assert [type(link) for link in new_book.skipped] == [SkippedLink] * len(new_book.skipped)


@settings(max_examples=150)
@given(st.one_of(documents(), mutated_documents()))
def test_the_link_loop_decides_as_the_old_one_on_generated_documents(html: str) -> None:
    _assert_same_as_old_loop(html)


@pytest.mark.skipif(not CORPUS, reason="../shared/corpus is absent")
@pytest.mark.parametrize("entry", CORPUS, ids=[c.path for c in CORPUS])
def test_the_link_loop_decides_as_the_old_one_on_the_corpus(entry: Any) -> None:
    _assert_same_as_old_loop(entry.read())


@pytest.mark.parametrize(
    "html",
    [
        '<a href="https://x.example/" ClickTracking="OFF">x</a><a href="https://x.example/" data-PM-no-TRACK>y</a>',
        '<a href="https://x.example/" x-no>x</a><a href=https://x.example/?a=1 data-skip=" yes ">y</a><a ab=1 href=/>',
        "<a href=''><a href='{{u}}' clicktracking=on><a href='https://t.example.com/c/bad'><a href=mailto:x@y>",
        '<a href="https://x.example/a=b&amp;c" title=\'it"s\'>x</a><a href=https://x.example/`q>y</a>',
    ],
)
def test_the_link_loop_decides_as_the_old_one_on_pinned_opt_outs(html: str) -> None:
    _assert_same_as_old_loop(html)


def test_rewrite_results_pickle_and_compare_as_named_tuples() -> None:
    html = '<a href="https://x.example/">x</a><a href="mailto:a@b">m</a><a href="{{x}}">p</a>'
    result = _TRACKERS["default"].rewrite_html(html, message_id="m", issued_at=1)
    assert pickle.loads(pickle.dumps(result)) == result
    assert result.links == [TrackedLink(*result.links[0])] and result.links[0]._asdict()["url"] == "https://x.example/"
    assert [s.reason for s in result.skipped] == ["scheme", "placeholder"]
    assert result.skipped == [SkippedLink(*s) for s in result.skipped]
