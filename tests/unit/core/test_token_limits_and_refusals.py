"""Tokens at their edges: the wire format, the size bounds, the clock and every refusal's message.

Written against mutation testing (``python3 tasks.py mutate``): each test pins a
behaviour a user sees (a token that verifies or not, its length, the words and
``token`` of an error they log), exactly at the edges where an off-by-one hides.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
from itsdangerous import TimestampSigner

import mailtrack
from mailtrack.core.tokens import _ZDICT, TokenCodec, TruncatedHMAC
from mailtrack.exceptions import ConfigurationError, ExpiredToken, InvalidToken

T0 = 1_700_000_000
KIB8 = 8192  # the documented bound, spelled out rather than imported


def reference_sign(payload: bytes | str, kind: str = "click", key: bytes = b"k", issued_at: int = T0) -> str:
    """Sign as the module docstring describes, with itsdangerous alone: salt ``mailtrack.<kind>``,
    HMAC key derivation, HMAC-SHA256 cut to 128 bits. ``payload`` bytes are base64url-encoded first."""
    if isinstance(payload, bytes):
        payload = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()

    class FixedTime(TimestampSigner):
        def get_timestamp(self) -> int:
            return issued_at

    signer = FixedTime(key, salt=f"mailtrack.{kind}", key_derivation="hmac", digest_method=hashlib.sha256,
                       algorithm=TruncatedHMAC(hashlib.sha256, 16))
    return signer.sign(payload).decode("ascii")


def deflated(body: bytes) -> str:
    """A compressed payload as the format describes it: "." then base64url of raw DEFLATE with the preset dictionary."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return "." + base64.urlsafe_b64encode(deflate.compress(body) + deflate.flush()).rstrip(b"=").decode()


def signed_codec(*keys: str, **options: object) -> TokenCodec:
    """A codec issuing the signed format, whose bytes these tests pin (the opaque format's are in test_opaque_tokens.py)."""
    return TokenCodec(*keys, token_format="signed", **options)  # type: ignore[arg-type]


def refusal(codec: TokenCodec, token: str, **kwargs: object) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        codec.loads(token, **kwargs)  # type: ignore[arg-type]
    return info.value


# -- the wire format ------------------------------------------------------------------------------
def test_default_codec_signs_exactly_the_documented_format() -> None:
    """Tokens issued by one deployment must verify on another: pin the format to itsdangerous' own signer."""
    codec = signed_codec("k")
    metadata = {"z": 1, "a": ["\u00e9"]}  # keys sorted, compact separators, UTF-8 (not \\u escapes)
    payload = '["m\u00e9","r",3,"https://x.example/\u00fc",{"a":["\u00e9"],"z":1}]'.encode()
    expected = reference_sign(payload)
    assert codec.message_signer("click", "m\u00e9", "r", metadata, T0)(3, "https://x.example/\u00fc") == expected
    claims = codec.loads(expected, kind="click")
    assert (claims.message_id, claims.url, claims.link_index, claims.metadata) == ("m\u00e9", "https://x.example/\u00fc", 3, metadata)
    assert claims.issued_at.timestamp() == T0 and claims.issued_at.utcoffset() is not None
    opened = codec.message_signer("open", "m", "r", None, T0)()
    assert opened == reference_sign(b'["m","r"]', kind="open")
    assert not opened.startswith(".")  # no compression unless asked for


def test_default_signature_is_128_bits() -> None:
    token = signed_codec("k").message_signer("open", "m", "r", None, T0)()
    assert len(token.rsplit(".", 1)[1]) == 22  # 16 bytes in unpadded base64url
    assert len(TruncatedHMAC().get_signature(b"key", b"value")) == 16


@pytest.mark.parametrize("size", [10, 18, 21, 24, 27, 30, 32])
def test_every_allowed_signature_size_round_trips(size: int) -> None:
    """Sizes 10..32 bytes (SHA-256) all work, whatever characters the signature ends with."""
    codec = signed_codec("k", signature_size=size)
    endings = set()
    for i in range(160):
        token = codec.message_signer("open", f"m{i}", "r", None, T0)()
        endings.add(token[-1])
        assert codec.loads(token).message_id == f"m{i}"
        assert len(token.rsplit(".", 1)[1]) == -(-size * 4 // 3)
    if size % 3 == 0:
        assert "X" in endings  # every base64 letter occurs, padding stripping must not touch them


@pytest.mark.parametrize("size", [9, 33])
def test_signature_size_outside_10_to_digest_size_is_refused(size: int) -> None:
    with pytest.raises(ConfigurationError) as info:
        signed_codec("k", signature_size=size)
    assert str(info.value) == f"signature size must be between 10 bytes and the digest size, not {size}"


@pytest.mark.parametrize(
    "keys, message",
    [([], "secret_keys must hold at least one key"), (["k", ""], "every secret key must be a non-empty str or bytes")],
)
def test_bad_keys_are_refused_with_a_clear_message(keys: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        TokenCodec(keys)
    assert str(info.value) == message


# -- size bounds ------------------------------------------------------------------------------------
def test_token_of_exactly_8_kib_is_read_and_one_character_more_is_oversized() -> None:
    codec = signed_codec("k")
    sign = codec.message_signer("click", "m", "r", None, T0)
    at_bound = sign(0, "https://x.example/" + "a" * 6089)
    past_bound = sign(0, "https://x.example/" + "a" * 6090)
    assert (len(at_bound), len(past_bound)) == (KIB8, KIB8 + 1)
    assert codec.loads(at_bound).url == "https://x.example/" + "a" * 6089
    error = refusal(codec, past_bound)
    assert (error.reason, str(error), error.token) == ("oversized", "token is longer than 8 KiB", past_bound[:64])


def test_compressed_payload_inflating_to_exactly_24_kib_is_read_and_one_byte_more_is_refused() -> None:
    """The decompression-bomb bound is three times the token bound, inclusive."""
    codec = signed_codec("k")
    head, tail = b'["m","r",0,"https://x.example/', b'"]'
    for size, accepted in ((3 * KIB8, True), (3 * KIB8 + 1, False)):
        body = head + b"a" * (size - len(head) - len(tail)) + tail
        token = reference_sign(deflated(body))
        if accepted:
            assert len(codec.loads(token).url or "") == size - len(head) - len(tail) + len("https://x.example/")
        else:
            error = refusal(codec, token)
            assert (error.reason, str(error), error.token) == (
                "malformed", "payload cannot be decoded: compressed payload is truncated or too large", token)


def test_truncated_compressed_payload_is_refused_as_truncated() -> None:
    body = b'["m","r",0,"https://x.example/' + b"abc" * 50 + b'"]'
    packed = deflated(body)
    raw = base64.urlsafe_b64decode(packed[1:] + "=" * (-len(packed[1:]) % 4))
    cut = "." + base64.urlsafe_b64encode(raw[:-3]).rstrip(b"=").decode()
    error = refusal(signed_codec("k"), reference_sign(cut))
    assert str(error) == "payload cannot be decoded: compressed payload is truncated or too large"


# -- compression ------------------------------------------------------------------------------------
def _plain_and_packed(url: str) -> tuple[str, str]:
    plain = signed_codec("k").message_signer("click", "m", "r", None, T0)(0, url)
    packed = signed_codec("k", compress=True).message_signer("click", "m", "r", None, T0)(0, url)
    return plain, packed


# Found by search: URLs whose DEFLATE'd payload is one character longer than, as long as, or one shorter than plain.
ONE_LONGER = "https://x.example/" + (
    "\u0560\ue055\uaff0\u6a09\u1a65\u1b62\u4ed0\u3349\ud7b2\uc6fc\uacad\ud3cd\u0486\ud063\u7410\u0fdb"
    "\u69a1\ua3a5\u7ce1\u771d\u35cf\ue439\u9737\u9d92\u1363\u01dd\u494b\u06ae\u5ff6\u4eca\uefed")
SAME_LENGTH = "https://x.example/" + (
    "\u013f\u05c9\u05ff\u0307\u0735\u0150\xb1\u0415\u06ce\u077f\u0185\u04a5\u052d\u06bf\u03a4\u0465\u049e"
    "\u031f\u01a6\u077e\u033a\u0292\u0298\u0559\u03db\u05b9\xa4\u0618\u04f6\u019f\u05dd\xf4\u0286\xc4"
    "\u018d\u01ca\u01dd\u0144")
ONE_SHORTER = "https://x.example/" + (
    "\U0001253c\U000511f8\U000dc88b\U000c9850\U00104ac7\U000be86a\U000e3cbe\U0010116f\U000895ed\U000126ca"
    "\ue154\U000ba681\U000ee0e9\U000a315d\U000c2995\U000d8eb8\U0010d377\U000543fd\U0005ae0f\U00078ed2\U00076198")


@pytest.mark.parametrize("url, compressed", [(ONE_LONGER, False), (SAME_LENGTH, False), (ONE_SHORTER, True)])
def test_compression_is_used_only_when_the_token_gets_shorter(url: str, compressed: bool) -> None:
    plain, packed = _plain_and_packed(url)
    assert packed.startswith(".") is compressed
    assert len(packed) == (len(plain) - 1 if compressed else len(plain))
    assert signed_codec("k").loads(packed).url == url


def test_payloads_up_to_48_bytes_stay_plain() -> None:
    """The cut-off below which compression is not even tried (it changes the bytes of every short token)."""
    at_cutoff = "https://www.example.com/blog/blog/"  # a 48-byte payload that would compress well
    above = at_cutoff + "x"  # 49 bytes
    assert not _plain_and_packed(at_cutoff)[1].startswith(".")
    assert _plain_and_packed(above)[1].startswith(".")


def test_preset_dictionary_makes_newsletter_links_much_shorter() -> None:
    url = "https://www.example.com/blog/index.html?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
    plain, packed = _plain_and_packed(url)
    assert len(plain) - len(packed) >= 50
    assert signed_codec("k").loads(packed).url == url


# -- the clock ----------------------------------------------------------------------------------------
def test_default_clock_skew_is_300_seconds_inclusive() -> None:
    codec = signed_codec("k", clock=lambda: float(T0))
    sign = codec.message_signer
    at_skew = sign("open", "m", "r", None, T0 + 300)()
    past_skew = sign("open", "m", "r", None, T0 + 301)()
    assert codec.loads(at_skew, max_age=60).message_id == "m"
    error = refusal(codec, past_skew, max_age=60)
    assert (error.reason, str(error), error.token) == (
        "future", "token is dated 301 s in the future (allowed clock skew: 300 s)", past_skew)


def test_expiry_names_the_age_and_the_token() -> None:
    codec = signed_codec("k", clock=lambda: float(T0 + 101))
    token = codec.message_signer("open", "m", "r", None, T0)()
    assert codec.loads(token, max_age=101).kind == "open"  # exactly max_age old: still valid
    with pytest.raises(ExpiredToken) as info:
        codec.loads(token, max_age=100)
    assert (str(info.value), info.value.token) == ("token is 101 s old, more than 100 s", token)


def test_max_age_zero_accepts_a_token_signed_this_second() -> None:
    codec = signed_codec("k", clock=lambda: float(T0))
    assert codec.loads(codec.message_signer("open", "m", "r", None, T0)(), max_age=0).kind == "open"


# -- every refusal: reason, message, and the token it was about ----------------------------------------
def test_wrong_input_type_is_a_type_error_naming_the_type() -> None:
    with pytest.raises(TypeError) as info:
        signed_codec("k").loads(b"a.b.c")  # type: ignore[arg-type]
    assert str(info.value) == "token must be a str, not bytes"


@pytest.mark.parametrize(
    "token, reason, message",
    [
        ("a b.c.d", "malformed", "token is in neither token format (opaque or signed)"),
        ("eyJ9.AAAAAA." + "A" * 21, "signature", "signature is not canonically encoded"),  # 21 chars: not base64 at all
        ("eyJ9.AAAAAA." + "B" * 22, "signature", "signature is not canonically encoded"),  # spare bits set
        ("eyJ9.AAAAAA." + "A" * 22, "signature", "signature does not match any key"),
    ],
)
def test_unsigned_or_misspelled_tokens(token: str, reason: str, message: str) -> None:
    error = refusal(signed_codec("k"), token)
    assert (error.reason, str(error), error.token) == (reason, message, token)


@pytest.mark.parametrize(
    "payload, kind, message",
    [
        (b"not json", "open", "payload cannot be decoded: Expecting value: line 1 column 1 (char 0)"),
        (b'"abc"', "open", "payload has the wrong shape"),
        (b"5", "open", "payload has the wrong shape"),
        (b'["m"]', "open", "payload has the wrong shape"),
        (b'["m","r",0,"https://x.example/",{},{}]', "click", "payload has the wrong types"),  # tags must be a list
        (b'["m","r",0,"https://x.example/",{},[],[]]', "click", "payload has the wrong types"),  # account: a str
        (b'["m","r",0,"https://x.example/",{},[],"a","b"]', "click", "payload has the wrong shape"),
        (b'["m","r",{},[],"a","b"]', "open", "payload has the wrong types"),
        (b'["m","r",{},[],7]', "open", "payload has the wrong types"),
        (b'["m","r",{},[1]]', "open", "payload has the wrong types"),
        (b'["m","r",{},[],[]]', "open", "payload has the wrong types"),
        (b'["m",7]', "open", "payload has the wrong types"),
        (b'["m","r",0]', "click", "click payload has the wrong shape"),
        (b'["m","r",0,5]', "click", "click payload has the wrong types"),
        (b'["m","r",true,"https://x.example/"]', "click", "click payload has the wrong types"),
        (b'["m","r",{},{}]', "open", "payload has the wrong types"),
        (b'["m",1]', "open", "payload has the wrong types"),
        (b'["m","r",[]]', "open", "payload has the wrong types"),
        (b'["m","r",0,"javascript:' + b"a" * 300 + b'"]', "click",
         "destination refused (scheme): " + repr("javascript:" + "a" * 189)),
    ],
)
def test_signed_payloads_refused_with_their_reason(payload: bytes, kind: str, message: str) -> None:
    token = reference_sign(payload, kind=kind)
    error = refusal(signed_codec("k"), token)
    assert error.reason == ("destination" if "destination" in message else "malformed")
    assert (str(error), error.token) == (message, token)


def test_purpose_is_found_whichever_other_purpose_signed_it() -> None:
    codec = signed_codec("k")
    unsubscribe = codec.message_signer("unsubscribe", "m", "r", None, T0)()  # the last of the other purposes
    error = refusal(codec, unsubscribe, kind="click")
    assert (error.reason, str(error), error.token) == ("purpose", "token was signed for 'unsubscribe', not 'click'", unsubscribe)


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"n": float("nan")}, "metadata must be JSON text: Out of range float values are not JSON compliant"),
        ({"t": (1, 2)}, "metadata must survive JSON unchanged: use str keys, lists (not tuples), and JSON types"),
    ],
)
def test_claims_that_would_not_come_back_are_refused_when_signing(metadata: dict[str, object], message: str) -> None:
    from mailtrack.core.tokens import check_claims

    with pytest.raises(mailtrack.ArgumentError) as info:
        check_claims("m", "r", metadata)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("field", ["message_id", "recipient"])
def test_the_claim_that_is_no_json_text_is_named(field: str) -> None:
    from mailtrack.core.tokens import check_claims

    claims = {"message_id": "m", "recipient": "r", field: "\ud800"}
    with pytest.raises(mailtrack.ArgumentError, match=f"^{field} must be JSON text: "):
        check_claims(claims["message_id"], claims["recipient"], None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"digest_method": "sha1"}, "digest_method must be a hashlib constructor like hashlib.sha256, not 'sha1'"),
        ({"signature_size": "16"}, "signature size must be an int (bytes), not '16'"),
        ({"signature_size": True}, "signature size must be an int (bytes), not True"),
        ({"clock": "now"}, "clock must be a function returning seconds since the epoch, not 'now'"),
        ({"max_clock_skew": True}, "max_clock_skew must be a finite number of seconds >= 0, not True"),
        ({"max_clock_skew": "300"}, "max_clock_skew must be a finite number of seconds >= 0, not '300'"),
        ({"max_clock_skew": -1}, "max_clock_skew must be a finite number of seconds >= 0, not -1"),
        ({"max_clock_skew": float("inf")}, "max_clock_skew must be a finite number of seconds >= 0, not inf"),
    ],
)
def test_codec_options_are_refused_with_a_message_naming_them(options: dict[str, object], message: str) -> None:
    with pytest.raises(mailtrack.ConfigurationError) as info:
        signed_codec("k", **options)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_an_unknown_kind_is_named_with_the_kinds_there_are() -> None:
    codec = signed_codec("k")
    with pytest.raises(mailtrack.ArgumentError) as info:
        codec.loads("a.b.c", kind="visit")  # type: ignore[arg-type]
    assert str(info.value) == "kind must be one of click, open, unsubscribe, not 'visit'"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (True, "secret_keys must be a key or a list of keys, not bool"),
        (5, "secret_keys must be a key or a list of keys, not int"),
        ("\ud800", "every secret key must be text that UTF-8 can write (a lone surrogate cannot be)"),
        (["ok", "\udcff"], "every secret key must be text that UTF-8 can write (a lone surrogate cannot be)"),
    ],
)
def test_secret_keys_that_are_no_keys_are_refused_when_built(keys: object, message: str) -> None:
    with pytest.raises(mailtrack.ConfigurationError) as info:
        TokenCodec(keys)  # type: ignore[arg-type]
    assert str(info.value) == message
