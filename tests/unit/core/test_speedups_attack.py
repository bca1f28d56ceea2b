"""Adversarial cases for the compiled rewrite loop (issue 13): each one a difference or crash once found.

Every test runs both paths (``speedups.compiled`` set, then None) or calls
``_speedups`` directly with hostile arguments; the compiled path must answer as
the pure one, and never read freed memory.
"""

from __future__ import annotations

import gc
from typing import Any, ClassVar

import pytest

import mailtrack
from mailtrack.core import speedups
from mailtrack.core.results import SkippedLink, TrackedLink
from mailtrack.core.rewrite.links import LinkBook, classify_unplain
from mailtrack.core.scanner import scan
from mailtrack.core.tokens import MAX_TOKEN_LENGTH, TokenCodec

try:
    from mailtrack.core import _speedups
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(_speedups is None, reason="the C extension is not built")

BASE = "https://t.example.com/track"


def both(call: Any) -> tuple[Any, Any]:
    """call() on the compiled path, then on the pure one: its result, or the error it raised (type and message)."""
    saved = speedups.compiled
    answers = []
    try:
        for mode in (_speedups, None):
            speedups.compiled = mode
            try:
                answers.append(call())
            except Exception as exc:  # noqa: BLE001 - compared, not swallowed
                answers.append(("raised", type(exc), str(exc)))
    finally:
        speedups.compiled = saved
    return answers[0], answers[1]


def test_a_max_links_past_the_machine_word_rewrites_as_the_pure_path() -> None:
    """max_links=10**20 is a valid option: the compiled loop raised OverflowError (Python int too large for ssize_t)."""
    tracker = mailtrack.Tracker(
        secret_keys=["k"], base_url=BASE, max_links=10**20, settings={"click_tracking": {"enable": True, "enable_text": True}}
    )
    html = '<a href="https://a.example/1">1</a><a href="https://a.example/2?a=1&amp;b=2">2</a>'

    def rewrite_html() -> Any:
        result = tracker.rewrite_html(html, message_id="<m@x>", recipient="r@x.test", issued_at=1_700_000_000)
        return result.html, result.links, result.skipped

    def rewrite_text() -> Any:
        result = tracker.rewrite_text(
            "see https://a.example/1 and https://a.example/2", message_id="<m@x>", recipient="r@x.test", issued_at=1_700_000_000
        )
        return result.text, result.links, result.skipped

    for call in (rewrite_html, rewrite_text):
        compiled, pure = both(call)
        assert compiled == pure
        assert compiled[0] != "raised" and len(compiled[1]) == 2


#: The start offsets of the tags freed so far: a tag freed while the loop still reads it is a use after free
#: (AddressSanitizer reports it; this list shows it on any build).
FREED: list[int] = []


class WatchedTag(tuple):  # type: ignore[type-arg]
    """A LinkTag-shaped tuple that says when it is freed."""

    __slots__ = ()

    def __del__(self) -> None:
        FREED.append(self[1])


def fresh_tags(html: str) -> list[Any]:
    """scan(html).links rebuilt from new objects only this list holds (clearing it frees them)."""
    tags: list[Any] = []
    for tag in scan(html).links:
        assert tag.href is not None
        raw, start, end, quote = tag.href
        href = ("".join([raw[:3], raw[3:]]), int(str(start)), int(str(end)), "".join([quote]))
        tags.append(WatchedTag(("".join([tag.tag]), tag.start, tag.end, href, *tag[4:])))
    return tags


@pytest.mark.parametrize("where", ["plain", "classify", "sign", "slow"])
def test_a_callback_that_empties_the_links_list_does_not_free_the_tag_in_hand(where: str) -> None:
    """The loop held borrowed references into `links` across Python calls: emptying it freed the tag in use."""
    assert _speedups is not None
    tracker = mailtrack.Tracker(secret_keys=["k"], base_url=BASE, placeholder_patterns=[r"\[\[x\]\]"])
    plan = tracker._plan(None, "<m@x>", "r@x.test", None, 1_700_000_000, None, text=False)  # noqa: SLF001
    unquoted = "<a href=https://a.example/0>0</a>"  # the slow body's
    quoted = '<a href="https://a.example/1?' + "q" * 100 + '">1</a>'  # the compiled loop's: plain, classify, sign
    html = unquoted + quoted + '<a href="javascript:x' + "y" * 100 + '">2</a>'
    in_hand = 0 if where == "slow" else len(unquoted)
    FREED.clear()
    links = fresh_tags(html)
    book = LinkBook(plan)
    sign = book.sign
    assert sign is not None

    def hostile(name: str) -> None:
        if where == name and links:
            links.clear()
            gc.collect()
            assert in_hand not in FREED, "the tag in hand was freed while the loop still reads it"

    def plain(url: str) -> bool:
        hostile("plain")
        return False

    def classify(url: str) -> Any:
        hostile("classify")
        return classify_unplain(url, plan)

    def signing(index: int, url: str) -> str:
        hostile("sign")
        return sign(index, url)

    book.sign = signing
    edits: list[Any] = []
    _speedups.track_links(
        html,
        links,
        book,
        plain,
        classify,
        plan.layout.lowered_base,
        None,
        lambda tag: hostile("slow"),
        edits,
        TrackedLink,
        SkippedLink,
        MAX_TOKEN_LENGTH,
        None,
    )
    assert in_hand in FREED  # let go of once the loop is done
    if where != "slow":
        assert [(link.raw, link.start, link.tag, link.quote) for link in book.links] == [
            ("https://a.example/1?" + "q" * 100, len(unquoted) + 9, "a", '"')
        ]
        assert edits == [(len(unquoted) + 9, len(unquoted) + 129, book.links[0].tracking_url)]


class Limit(int):
    """An int whose comparisons all say "at the limit": the pure loop asked it, the compiled one read its number."""

    def __le__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return False


def test_a_max_links_of_an_int_subclass_limits_both_paths_by_its_number() -> None:
    tracker = mailtrack.Tracker(secret_keys=["k"], base_url=BASE, max_links=Limit(1))
    html = '<a href="https://a.example/1">1</a><a href="https://a.example/2">2</a>'

    def rewrite() -> Any:
        result = tracker.rewrite_html(html, message_id="<m@x>", recipient="r@x.test", issued_at=1_700_000_000)
        return result.html, result.links, result.skipped

    compiled, pure = both(rewrite)
    assert compiled == pure
    assert len(compiled[1]) == 1 and [link.reason for link in compiled[2]] == ["limit"]
    assert type(tracker.max_links) is int


class Token(str):
    """A token whose "+" on the right writes another URL: prefix + token must be the operator's answer."""

    __slots__ = ()

    def __radd__(self, other: str) -> str:
        return "X" + str.__add__(other, self)


class WrappingCodec(TokenCodec):
    """A TokenCodec subclass (Tracker's extension point) whose click signer wraps the usual one."""

    wrap: Any = staticmethod(lambda token: token)
    calls: ClassVar[list[str]] = []

    def message_signers(self, kinds: Any, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        signers = super().message_signers(kinds, *args, **kwargs)
        if "click" in signers:
            inner, wrap = signers["click"], self.wrap

            def sign(index: int, url: str) -> Any:
                WrappingCodec.calls.append(url)
                return wrap(inner(index, url))

            signers["click"] = sign
        return signers


@pytest.mark.parametrize("wrap", [lambda token: token.encode(), Token, lambda token: token * 300])
def test_a_codec_subclass_signer_answers_as_on_the_pure_path(wrap: Any) -> None:
    """A signer returning bytes raised another TypeError; a str subclass's __radd__ was skipped; a too-long
    click URL was signed twice (once more by the pure body it was handed to)."""
    codec = WrappingCodec(["k"])
    codec.wrap = wrap
    tracker = mailtrack.Tracker(codec=codec, base_url=BASE)
    html = '<a href="https://a.example/1">1</a><a href="https://a.example/2?a=1&amp;b=2">2</a>'

    def rewrite() -> Any:
        WrappingCodec.calls.clear()
        result = tracker.rewrite_html(html, message_id="<m@x>", recipient="r@x.test", issued_at=1_700_000_000)
        return result.html, result.links, result.skipped, list(WrappingCodec.calls)

    compiled, pure = both(rewrite)
    assert compiled == pure


class Index(int):
    """A link index that writes itself as something else than its number."""

    def __str__(self) -> str:
        return "seven"

    def __format__(self, spec: str) -> str:
        return "seven\ud800" if spec == "" else int.__format__(self, spec)


def test_a_link_index_of_an_int_subclass_is_signed_as_its_number_on_both_paths() -> None:
    """f"{link_index}" signed the subclass's text: a lone surrogate raised UnicodeEncodeError (at another position on
    each path), a word made a token that does not decode."""
    tracker = mailtrack.Tracker(secret_keys=["k"], base_url=BASE)

    def sign() -> Any:
        return tracker.tracking_url(
            "click", message_id="<m@x>", url="https://a.example/", link_index=Index(3), issued_at=1_700_000_000
        )

    compiled, pure = both(sign)
    assert compiled == pure
    assert tracker.verify(compiled).link_index == 3
