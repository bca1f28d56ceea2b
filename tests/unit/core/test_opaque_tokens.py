"""Opaque tokens (issue 14): encrypted, deterministic, never longer than signed ones, and refused as signed ones are.

What a URL reveals is the point: these tests decode opaque tokens and find no
claim in them, check that both formats verify under either setting, that a
second rewrite pass over opaque output (HTML, text, a MIME message) changes no
byte, that garbage only ever raises InvalidToken, and that key rotation,
purpose binding and ``max_age`` behave exactly as for signed tokens.
"""

from __future__ import annotations

import base64
import email
import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.helpers import BASE_URL, make_tracker

from mailtrack.core import opaque
from mailtrack.core.tokens import MAX_TOKEN_LENGTH, TOKEN_FORMATS, TokenCodec
from mailtrack.exceptions import ConfigurationError, ExpiredToken, InvalidToken

pytestmark = pytest.mark.usefixtures("both_paths")

T0 = 1_700_000_000
SECRET = "a-secret-key-nobody-may-see"
FORMATS = list(TOKEN_FORMATS)
YEAR_10000 = 253_402_300_800


def refusal(codec: TokenCodec, token: str, **kwargs: Any) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        codec.loads(token, **kwargs)
    return info.value


def click(codec: TokenCodec, url: str = "https://shop.example/a?x=1", **claims: Any) -> str:
    claims.setdefault("recipient", "ann@example.com")
    return codec.message_signer("click", "msg-1", claims.pop("recipient"), claims.pop("metadata", None), claims.pop("at", T0),
                                claims.pop("tags", ()), claims.pop("account", None))(3, url)


# -- the format -------------------------------------------------------------------------------------------
def test_opaque_is_the_default_and_signed_stays_selectable() -> None:
    assert TokenCodec("k").token_format == "opaque" and make_tracker().codec.token_format == "opaque"
    assert TokenCodec("k", token_format="signed").token_format == "signed"
    assert click(TokenCodec("k", token_format="signed")).count(".") == 2
    with pytest.raises(ConfigurationError) as info:
        TokenCodec("k", token_format="encrypted")
    assert str(info.value) == "token_format must be one of opaque, signed, not 'encrypted'"


def test_an_opaque_token_is_url_safe_and_hides_every_claim() -> None:
    token = click(TokenCodec(SECRET), metadata={"campaign": "spring"}, tags=("weekly",), account="sub1")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token) and "." not in token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for claim in (b"msg-1", b"ann@example.com", b"shop.example", b"spring", b"weekly", b"sub1", T0.to_bytes(4, "big")):
        assert claim not in raw and claim.decode("latin-1") not in token
    claims = TokenCodec(SECRET).loads(token, kind="click")
    assert (claims.message_id, claims.recipient, claims.url, claims.link_index, dict(claims.metadata), claims.tags,
            claims.account, claims.issued_at.timestamp()) == (
        "msg-1", "ann@example.com", "https://shop.example/a?x=1", 3, {"campaign": "spring"}, ("weekly",), "sub1", T0)


def test_the_plaintext_is_the_signed_formats_payload_after_a_header_and_the_time() -> None:
    """Pinned so tokens one deployment issues verify on another: HKDF-SHA256 keys, AES-256-SIV, the documented layout."""
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    token = TokenCodec("k").message_signer("open", "m", "r", None, T0)()
    key = opaque.derive_key(b"k", "mailtrack", "open")
    assert len(key) == 64
    plaintext = AESSIV(key).decrypt(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)), None)
    assert plaintext == bytes([4]) + T0.to_bytes(4, "big") + b'["m","r"]'
    assert opaque.unpack(plaintext) == (T0, b'["m","r"]', False)


def test_both_formats_verify_whichever_format_the_codec_issues() -> None:
    issued = {name: click(TokenCodec(SECRET, token_format=name)) for name in FORMATS}
    for name in FORMATS:
        codec = TokenCodec(SECRET, token_format=name)
        for token in issued.values():
            assert codec.loads(token).url == "https://shop.example/a?x=1"


def test_deterministic_for_the_same_claims_and_time_and_different_otherwise() -> None:
    codec = TokenCodec(SECRET)
    assert click(codec) == click(TokenCodec(SECRET)) == click(codec)
    assert len({click(codec), click(codec, at=T0 + 1), click(codec, recipient="bob@example.com"),
                click(codec, url="https://shop.example/b")}) == 4


def test_broadcast_tokens_carry_no_recipient() -> None:
    tracker = make_tracker()
    result = tracker.rewrite_html('<a href="https://x.example/">x</a><body></body>', message_id="digest", issued_at=T0)
    for url in [link.tracking_url for link in result.links] + [result.html.split('src="')[1].split('"')[0]]:
        verified = tracker.verify(url)
        assert verified.recipient is None and verified.message_id == "digest"


# -- refusals: the same errors and reasons as signed tokens -------------------------------------------------
def test_a_token_issued_for_one_purpose_is_refused_for_another() -> None:
    codec = TokenCodec(SECRET)
    token = click(codec)
    for kind in ("open", "unsubscribe"):
        error = refusal(codec, token, kind=kind)
        assert (error.reason, str(error)) == ("purpose", f"token was issued for 'click', not {kind!r}")
    tracker = make_tracker()
    url = tracker.tracking_url("click", message_id="m", recipient="r", url="https://x.example/", issued_at=T0)
    with pytest.raises(InvalidToken) as info:
        tracker.verify(url.replace("/c/", "/o/"))
    assert info.value.reason == "purpose"


def test_keys_rotate_newest_first_and_a_dropped_key_fails_cleanly() -> None:
    old = TokenCodec(["key-1"])
    rotated = TokenCodec(["key-1", "key-2"])
    dropped = TokenCodec(["key-2"])
    token = click(old)
    assert rotated.loads(token).url == "https://shop.example/a?x=1"
    assert click(rotated) == click(dropped) != token  # the newest key seals
    error = refusal(dropped, token)
    assert (error.reason, str(error), error.token) == ("signature", "token does not open under any key", token)


def test_tokens_sealed_on_one_path_open_on_the_other_under_every_key() -> None:
    """The compiled SivKey and cryptography's AESSIV are one cipher: each opens what the other sealed, old keys too,
    and both refuse the same tampered tokens (whichever path this module runs on, the other is switched to)."""
    from mailtrack.core import speedups

    if speedups.compiled is None or not getattr(speedups.compiled, "SIV_AVAILABLE", 0):
        pytest.skip("one AES-SIV only here (no compiled sealer): nothing to compare")
    old, rotated = TokenCodec(["key-1"]), TokenCodec(["key-1", "key-2"])
    compiled = speedups.compiled
    issued: dict[str, list[str]] = {}
    for path in ("compiled", "pure"):
        speedups.compiled = compiled if path == "compiled" else None
        try:
            issued[path] = [click(old), click(rotated), old.message_signer("open", "m", "r", {"k": 1}, T0)(),
                            rotated.message_signer("unsubscribe", "m", None, None, T0)()]
        finally:
            speedups.compiled = compiled
    assert issued["compiled"] == issued["pure"]
    for path in ("compiled", "pure"):
        speedups.compiled = compiled if path == "compiled" else None
        try:
            for token in issued["pure" if path == "compiled" else "compiled"]:
                assert rotated.loads(token).message_id in {"msg-1", "m"}
                tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
                assert refusal(rotated, tampered).reason in {"signature", "malformed"}
        finally:
            speedups.compiled = compiled


def test_max_age_reads_the_time_inside_the_ciphertext() -> None:
    codec = TokenCodec(SECRET, clock=lambda: float(T0 + 101))
    token = codec.message_signer("open", "m", "r", None, T0)()
    assert codec.loads(token, max_age=101).kind == "open"
    with pytest.raises(ExpiredToken) as info:
        codec.loads(token, max_age=100)
    assert (str(info.value), info.value.token, info.value.reason) == ("token is 101 s old, more than 100 s", token, "expired")
    future = codec.message_signer("open", "m", "r", None, T0 + 101 + 301)()
    assert refusal(codec, future, max_age=60).reason == "future"


def test_tampering_truncation_and_other_spellings_are_refused() -> None:
    codec = TokenCodec(SECRET)
    token = click(codec)
    flipped = [token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :] for i in (0, 10, len(token) // 2, len(token) - 2)]
    for bad in flipped + [token[:-4], token[4:]]:
        assert refusal(codec, bad).reason in ("signature", "malformed"), bad
    for bad in flipped:
        assert refusal(codec, bad).reason == "signature"
    # the last character's spare bits: another spelling of the same bytes is refused, not a second valid token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    if len(raw) % 3:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        spare = alphabet[alphabet.index(token[-1]) + 1]
        assert refusal(codec, token[:-1] + spare).reason == "signature"


@pytest.mark.parametrize("token, reason", [
    ("", "malformed"), ("short", "malformed"), ("A" * 22, "malformed"), ("A" * 25, "malformed"),
    ("A" * 23 + "!", "malformed"), ("A" * 24, "signature"), ("A" * MAX_TOKEN_LENGTH, "signature"),
    ("A" * (MAX_TOKEN_LENGTH + 1), "oversized"), ("\u00e9" * 30, "malformed"),
])
def test_garbage_of_every_shape_is_invalid_with_its_reason(token: str, reason: str) -> None:
    assert refusal(TokenCodec(SECRET), token).reason == reason


def test_a_plaintext_of_a_later_version_is_malformed() -> None:
    codec = TokenCodec(SECRET)
    sealed = codec._opaque().seal("open", bytes([0x10]) + b'["m","r"]')  # noqa: SLF001 - a header bit not yet used
    assert refusal(codec, sealed).reason == "malformed"
    empty = codec._opaque().seal("open", bytes([0x07]) + b"\x00")  # noqa: SLF001 - time longer than the plaintext
    assert refusal(codec, empty).reason == "malformed"


def test_no_error_names_a_secret_or_derived_key() -> None:
    codec = TokenCodec([SECRET])
    key = opaque.derive_key(SECRET.encode(), "mailtrack", "click")
    texts = []
    for bad in (click(TokenCodec("other")), click(codec)[:-3], "A" * 40, click(codec)[::-1]):
        error = refusal(codec, bad, kind="click")
        texts.append(f"{error} {error!r} {error.token}")
    joined = " ".join(texts)
    for secret in (SECRET, key.hex(), base64.urlsafe_b64encode(key).decode()[:20]):
        assert secret not in joined


@settings(max_examples=400)
@given(garbage=st.one_of(
    st.text(max_size=200),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=0, max_size=300),
    st.binary(min_size=0, max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
    st.text(alphabet="A-_.", max_size=MAX_TOKEN_LENGTH + 2, min_size=MAX_TOKEN_LENGTH - 2),
), kind=st.sampled_from([None, "click", "open", "unsubscribe"]), max_age=st.sampled_from([None, 0, 3600]))
@example(garbage="A" * (MAX_TOKEN_LENGTH + 1), kind=None, max_age=None)
def test_loads_raises_only_invalid_token_for_garbage(garbage: str, kind: Any, max_age: Any) -> None:
    with pytest.raises(InvalidToken):  # ExpiredToken is an InvalidToken too; nothing else may escape
        TokenCodec(SECRET).loads(garbage, kind=kind, max_age=max_age)


# -- length -----------------------------------------------------------------------------------------------
claims = st.fixed_dictionaries({
    "message_id": st.text(max_size=60),
    "recipient": st.one_of(st.none(), st.emails(), st.text(max_size=40)),
    "metadata": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers()),
                                                     max_size=3)),
    "tags": st.lists(st.text(max_size=10), max_size=3).map(tuple),
    "account": st.one_of(st.none(), st.text(min_size=1, max_size=12)),
    "issued_at": st.one_of(st.integers(0, 2**40 - 1), st.just(T0), st.integers(0, 300)),
    "url": st.one_of(st.just("https://www.example.com/blog/index.html?utm_source=newsletter&utm_medium=email"),
                     st.text(max_size=300).map(lambda s: "https://x.example/" + s)),
    "index": st.integers(0, 5000),
})


@settings(max_examples=300)
@given(claims=claims, compress=st.booleans())
def test_an_opaque_token_is_never_longer_than_the_signed_token_of_the_same_claims(claims: dict[str, Any], compress: bool) -> None:
    formats = {name: TokenCodec(SECRET, token_format=name, compress=compress) for name in FORMATS}
    tokens: dict[str, dict[str, str]] = {}
    for name, codec in formats.items():
        signers = codec.message_signers(("click", "open"), claims["message_id"], claims["recipient"], claims["metadata"],
                                        claims["issued_at"], claims["tags"], claims["account"])
        try:
            tokens[name] = {"click": signers["click"](claims["index"], claims["url"]), "open": signers["open"]()}
        except UnicodeEncodeError:  # a lone surrogate: neither format can write it
            return
    for kind in ("click", "open"):
        assert len(tokens["opaque"][kind]) <= len(tokens["signed"][kind])
    if claims["issued_at"] >= YEAR_10000:
        return  # issued (tokens may be dated up to 2**40) but no datetime holds the time: refused by both formats
    back = formats["signed"].loads(tokens["opaque"]["open"], kind="open")  # (a click's URL may be one verify refuses)
    assert (back.message_id, back.recipient, back.issued_at.timestamp(), back.account) == (
        claims["message_id"], claims["recipient"], claims["issued_at"], claims["account"])


# -- a second pass is a no-op: our opaque URLs are recognized in HTML, text and whole messages -----------------
HTML = ('<html><body><p><a href="https://shop.example/a?x=1&amp;y=2">a</a> <a href="https://shop.example/b">b</a>'
        ' <a href="mailto:x@y.example">m</a></p></body></html>')
TEXT = "Shop at https://shop.example/a?x=1 today.\nOr https://shop.example/b.\n"
SETTINGS = {"click_tracking": {"enable": True, "enable_text": True}, "subscription_tracking": {"enable": True}}
MESSAGE = (b"From: news@example.com\r\nTo: ann@example.com\r\nMessage-ID: <m-1@example.com>\r\nSubject: hi\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + TEXT.replace("\n", "\r\n").encode() +
           b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + HTML.encode() + b"\r\n--b--\r\n")


@pytest.mark.parametrize("token_format", FORMATS)
@pytest.mark.parametrize("recipient", ["ann@example.com", None])
def test_a_second_pass_over_html_text_and_a_message_changes_no_byte(token_format: str, recipient: str | None) -> None:
    tracker = make_tracker(token_format=token_format, settings=SETTINGS)
    identity: dict[str, Any] = {"message_id": "<m-1@example.com>", "recipient": recipient, "issued_at": T0}
    html = tracker.rewrite_html(HTML, **identity)
    assert len(html.links) == 2 and html.html != HTML
    again = tracker.rewrite_html(html.html, **identity)
    assert again.html == html.html and not again.links  # every URL of ours is this message's: none issued again
    later = tracker.rewrite_html(html.html, **{**identity, "issued_at": T0 + 3600})  # a later pass, another time
    assert later.html == html.html
    text = tracker.rewrite_text(TEXT, **identity)
    assert len(text.links) == 2 and tracker.rewrite_text(text.text, **identity).text == text.text
    message = tracker.rewrite_message(MESSAGE, **identity)
    assert tracker.rewrite_message(message.message, **identity).message == message.message
    urls = re.findall(rf"{re.escape(BASE_URL)}/[cou]/[A-Za-z0-9_.-]+", message.message.decode())
    assert len(urls) >= 5  # two links per part, the pixel, the footer's unsubscribe links
    for url in urls:  # a message without a recipient given is the single To address's
        assert tracker.verify(url.rstrip(".")).recipient == (recipient or "ann@example.com")
        assert ("." in url.split("/")[-1].rstrip(".")) is (token_format == "signed")
    parsed = email.message_from_bytes(message.message)
    assert parsed.is_multipart()


def test_another_messages_opaque_urls_are_issued_again_for_this_one() -> None:
    tracker = make_tracker()
    first = tracker.rewrite_html(HTML, message_id="old", recipient="ann@example.com", issued_at=T0)
    second = tracker.rewrite_html(first.html, message_id="new", recipient="ann@example.com", issued_at=T0)
    assert [tracker.verify(link.tracking_url).message_id for link in second.links] == ["new", "new"]
    assert [link.url for link in second.links] == ["https://shop.example/a?x=1&y=2", "https://shop.example/b"]


def test_a_signed_pass_over_opaque_output_keeps_it_and_the_other_way_round() -> None:
    """Switching formats never re-issues a message's URLs: each is this message's, whatever its format."""
    opaque_tracker, signed_tracker = make_tracker(), make_tracker(token_format="signed")
    identity: dict[str, Any] = {"message_id": "m", "recipient": "ann@example.com", "issued_at": T0}
    first = opaque_tracker.rewrite_html(HTML, **identity)
    assert signed_tracker.rewrite_html(first.html, **identity).html == first.html
    other = signed_tracker.rewrite_html(HTML, **identity)
    assert opaque_tracker.rewrite_html(other.html, **identity).html == other.html
