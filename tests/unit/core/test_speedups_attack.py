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

pytestmark = [pytest.mark.calls_extension, pytest.mark.skipif(_speedups is None, reason="the C extension is not built")]

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


# --------------------------------------------------------------------------
# Attack on issue 13's last three commits: the carried CBC chaining value and
# batched CTR keystream of SivKey, format_index, the Py_BuildValue-free link
# tuples, the block-wise UTF-8 length and the pure scanner's "=\"...\"" branch
# and scanner object. Each held when written; kept as regression tests.
# --------------------------------------------------------------------------

import base64 as _base64  # noqa: E402
import json as _json  # noqa: E402
import time as _time  # noqa: E402
import tracemalloc as _tracemalloc  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mailtrack.core.results import GMAIL_CLIP_BYTES, exceeds_gmail_clip  # noqa: E402
from mailtrack.core.scanner import LinkTag, ScanResult, scan_pure  # noqa: E402

needs_siv = pytest.mark.skipif(_speedups is None or not getattr(_speedups, "SIV_AVAILABLE", 0),
                               reason="this build seals no tokens")


def _b64(data: bytes) -> str:
    return _base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(token: str) -> bytes:
    return _base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


#: Plaintext lengths at S2V's block edges, CTR's 32-block batch edges and the stack/heap buffer edges.
_EDGE_LENGTHS = [1, 15, 16, 17, 31, 32, 33, 511, 512, 513, 527, 528, 529, 1007, 1008, 1009, 8191, 8192, 8193,
                 65535, 65536, 65537, 70001]
_INDEXES = [0, 1, -1, 9, 10, -10, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**40, -(10**40),
            True, False]

_ACTIONS = st.lists(
    st.tuples(st.sampled_from(["seal", "open", "tamper", "click", "surrogate", "badkey", "rekey", "junk"]),
              st.one_of(st.sampled_from(_EDGE_LENGTHS), st.integers(1, 300)),
              st.integers(0, 2**32)),
    min_size=1, max_size=25,
)


@needs_siv
@settings(max_examples=300, deadline=None)
@given(actions=_ACTIONS, keys=st.lists(st.binary(min_size=64, max_size=64), min_size=2, max_size=2))
def test_one_siv_key_in_any_interleaving_is_cryptographys_aes_siv(actions: list[tuple[str, int, int]],
                                                                 keys: list[bytes]) -> None:
    """Seals, opens, refused tampered tokens, click signers sharing the key (one raising on a lone surrogate),
    refused and accepted re-keying, plaintexts past 8 KiB and 64 KiB: each answer is AESSIV's, whatever came
    before (the chaining value carried in SivKey never leaks from one token into the next)."""
    import random

    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    current = 0
    siv = _speedups.SivKey(keys[0])
    heads = [b'["m%d","r"' % i for i in range(3)]
    signers = [_speedups.ClickSigner(siv, head, b"]", b"\x01\x00\x00\x00\x05", 16, sealed=True) for head in heads]
    for action, length, seed in actions:
        rng = random.Random(seed)
        reference = AESSIV(keys[current])
        plaintext = rng.randbytes(length)
        if action == "seal":
            assert siv.seal(plaintext) == _b64(reference.encrypt(plaintext, None))
        elif action == "open":
            assert siv.open(bytearray(reference.encrypt(plaintext, None))) == plaintext  # type: ignore[arg-type]
        elif action == "tamper":
            sealed = bytearray(reference.encrypt(plaintext, None))
            sealed[rng.randrange(len(sealed))] ^= 1 << rng.randrange(8)
            assert siv.open(memoryview(sealed)) is None  # type: ignore[arg-type]
        elif action == "click":
            which = rng.randrange(3)
            index = rng.choice(_INDEXES + [rng.randint(-(10**12), 10**12)])
            url = "https://x.example/" + "".join(rng.choice('a"\\\x01é\U0001f600') for _ in range(length % 5000))
            token = signers[which](index, url)
            expected = (b"\x01\x00\x00\x00\x05" + heads[which]
                        + f",{index},{_json.encoder.encode_basestring(url)}".encode() + b"]")
            assert reference.decrypt(_unb64(token), None) == expected
        elif action == "surrogate":
            with pytest.raises(UnicodeEncodeError):
                signers[rng.randrange(3)](rng.choice(_INDEXES), "https://x.example/" + "a" * (length % 700) + "\udc80")
        elif action == "badkey":
            with pytest.raises(ValueError):
                siv.__init__(b"k" * rng.choice([0, 32, 63, 65]))  # type: ignore[misc]
        elif action == "rekey":
            current = 1 - current
            siv.__init__(keys[current])  # type: ignore[misc]
        else:
            assert siv.open(b"\x00" * (length % 17)) is None
            assert siv.open(rng.randbytes(17 + length)) is None


@pytest.mark.parametrize("token_format", ["opaque", "signed"])
def test_click_signers_write_any_link_index_as_the_pure_signer(token_format: str) -> None:
    """format_index against f"{link_index}": the edges of long long, past it, bools and int subclasses, on the
    codec's click signer (compiled: ClickSigner; pure: the closures), sealed and signed."""
    from mailtrack.core.tokens import TokenCodec

    class Sub(int):
        pass

    class Loud(int):
        def __format__(self, spec: str) -> str:
            return "loud" + spec

    indexes = [*_INDEXES, Sub(5), Sub(-(2**63)), Sub(2**64), Loud(3)]

    def tokens() -> Any:
        codec = TokenCodec(["k"], token_format=token_format)
        sign = codec.message_signer("click", "<m@x>", "r@x.test", None, 1_700_000_000)
        return [sign(index, "https://a.example/é") for index in indexes]

    compiled, pure = both(tokens)
    assert compiled == pure and compiled[0] != "raised"


_HOSTILE = ["<a", "<A", "<area", "<p", " ", "\t", "\r", "\n", "\x0c", "=", '"', "'", ">", "/", "href", "HREF", "x",
            'a=b="c>"', '="', '=""', "\x00", "\ud800", "\U0001f600", "é", "<!--", "-->", "<!--[if mso]>",
            "<![endif]-->", "<v:rect", "<script>", "</script>", "<body", "</body>", "</html>", 'href="u"', "href='u'",
            "href=u", '= "x"', "='x'", "<", "<textarea>", "</textarea", "&amp;", 'a= "x"', "==", '="x"="y"',
            'x="', '"x="']


def _native_scan(text: str) -> ScanResult:
    return ScanResult(*_speedups.scan(text, LinkTag))


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_HOSTILE), max_size=80).map("".join))
def test_the_scanners_agree_on_hostile_attribute_soup(text: str) -> None:
    assert _native_scan(text) == scan_pure(text)


@pytest.mark.parametrize("unit", ['<a x="', '<a =" ', '<p x="y"', '<a x="y" z= "w" ', 'a="b" ', '<a x="a"="b',
                                  '<!--[if mso]><v:r x="y"'])
def test_the_scanners_agree_and_stay_linear_on_unterminated_values(unit: str) -> None:
    """The pure scanner's new '="..."' first alternative beside the general one: two ways to match one attribute
    must not make a failing tag retry each attribute both ways (2**n)."""
    times = []
    for count in (10_000, 40_000):
        text = unit * count + ' c="'
        started = _time.perf_counter()
        pure = scan_pure(text)
        times.append(_time.perf_counter() - started)
        assert _native_scan(text) == pure
    assert times[1] < 10 * times[0] + 0.05, times  # 4x the input: linear ~4x, quadratic 16x


@pytest.mark.parametrize("chars", [["a", "\x80", "\xff"], ["a", "é", "\u07ff", "\u0800", "\ud800", "\udfff", "\uffff"],
                                   ["a", "é", "\u0800", "\udc00", "\U00010000", "\U0010ffff"]])
def test_utf8_length_counts_a_wide_character_at_every_place_in_a_block(chars: list[str]) -> None:
    widest = max(chars, key=ord)
    for n in range(1, 80):
        for pos in range(n):
            for char in chars:
                text = "a" * pos + char + "a" * (n - pos - 1) + widest
                assert _speedups.utf8_length(text) == len(text.encode("utf-8", "surrogatepass")), (n, pos, char)


@pytest.mark.parametrize("char", ["é", "\u0800", "\ud800", "\U00010000"])
@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_the_clip_check_at_the_limit_for_each_width(char: str, extra: int) -> None:
    width = len(char.encode("utf-8", "surrogatepass"))
    target = GMAIL_CLIP_BYTES + extra
    for text in (char * (target // width) + "a" * (target % width),
                 "\U00010000" + char * ((target - 4) // width) + "a" * ((target - 4) % width),
                 "a" * (target - 10 * width) + char * 10):
        expected = len(text.encode("utf-8", "surrogatepass")) > GMAIL_CLIP_BYTES
        assert both(lambda text=text: exceeds_gmail_clip(text)) == (expected, expected)


def test_the_compiled_link_loop_keeps_no_reference() -> None:
    """new_link_tag's borrowed items and append_skipped's stolen reason and url: tracked, scheme, placeholder,
    invalid, not-verified, too-long and empty links rewritten 800 times leave no Python object behind."""
    tracker = mailtrack.Tracker(secret_keys=["k"], base_url=BASE, settings={"click_tracking": {"enable": True}})
    html = ('<a href="https://a.example/1">1</a><a href=\'https://a.example/2?a=1&amp;b=2\'>2</a><a href=mailto:x@y>m'
            '</a><a href="{{unsub}}">p</a><a href="https://a.example/' + "x" * 9000 + '">long</a><a href>e</a>'
            '<a href="https://t.example.com/track/zzz">ours</a><a href="https://a.example/%zz">bad</a>'
            '<A HREF = "https://b.example/é">é</A>')

    def rewrite() -> Any:
        return tracker.rewrite_html(html, message_id="<m@x>", recipient="r@x.test", issued_at=1_700_000_000)

    result = rewrite()
    assert {link.reason for link in result.skipped} >= {"scheme", "placeholder", "too-long", "empty"}
    for _ in range(200):
        rewrite()
    gc.collect()
    _tracemalloc.start()
    try:
        before = _tracemalloc.get_traced_memory()[0]
        for _ in range(800):
            rewrite()
        gc.collect()
        grown = _tracemalloc.get_traced_memory()[0] - before
    finally:
        _tracemalloc.stop()
    assert grown < 64 * 1024, grown
