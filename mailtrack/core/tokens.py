"""Compact, deterministic tracking tokens in two formats: opaque (encrypted, the default) and signed.

Both carry the same claims, as a compact JSON array (no keys, so a click costs
little more than its URL): ``[message_id, recipient, link_index, url, metadata?, tags?, account?]``
for clicks, ``[message_id, recipient, metadata?, tags?, account?]`` for opens and
unsubscribes. ``recipient`` is ``null`` for a message tracked without one
(sent to several people as one copy); ``metadata`` is ``{}`` when only tags
follow; ``tags`` is a list of str (django-anymail's ``msg.tags``), given
back in the events (``[]`` when only an account follows); ``account`` is the
subuser the message was rewritten for. Each optional part is left out when
it and those after it are empty, so a token without an account has the
bytes it had before accounts existed (and those tokens still verify). With
``compress=True``, raw DEFLATE with a preset dictionary of URL fragments
shortens the payload when it can. Both hold the time they were issued, so
``max_age`` can refuse old tokens, and both are deterministic: the same claims
and issue time give the same token (a second rewrite pass changes nothing).

**opaque** (``token_format="opaque"``, the default; :mod:`mailtrack.core.opaque`):
the time and payload sealed with AES-256-SIV (RFC 5297) under a key derived
per purpose (HKDF-SHA256) from each secret key, written as base64url without
dots. Anyone holding the token learns its length and nothing else; changing
it fails the SIV tag check. Never longer than the signed token of the same claims.

**signed** (``token_format="signed"``): itsdangerous' timestamped format,
``payload.timestamp.signature``:

* ``payload`` is base64url of the JSON array, readable by anyone holding the
  token; compressed payloads are marked with a leading ``.``.
* ``timestamp`` is when it was signed.
* ``signature`` is HMAC-SHA256 (key derived per purpose with HMAC from the
  secret and a salt like ``mailtrack.click``) truncated to 128 bits, checked by
  itsdangerous with ``hmac.compare_digest`` (constant time).

Verification takes either format whatever ``token_format`` says (a signed
token has two dots, an opaque one none), so switching formats never breaks a
mail already sent. Keys and salts differ per purpose in both, so a click token
is refused as an open token (reason ``purpose``). The newest secret signs;
every secret verifies, newest first (key rotation).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import zlib
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from itsdangerous import BadData, BadSignature, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode, int_to_bytes, want_bytes
from itsdangerous.signer import HMACAlgorithm

from mailtrack.core import opaque, speedups
from mailtrack.core.results import Verified
from mailtrack.core.urls import KINDS, TokenKind, destination_problem
from mailtrack.exceptions import ArgumentError, ConfigurationError, ExpiredToken, InvalidToken

__all__ = ["MAX_TOKEN_LENGTH", "TOKEN_FORMATS", "TokenClaims", "TokenCodec", "TruncatedHMAC", "check_claims"]

#: The token formats a :class:`TokenCodec` issues (it verifies both whatever it issues); the first is the default.
TOKEN_FORMATS = ("opaque", "signed")

#: Longest token (or tracking URL) ``verify`` will look at.
MAX_TOKEN_LENGTH = 8192
_MAX_PAYLOAD_BYTES = 3 * MAX_TOKEN_LENGTH  # inflated size bound (decompression bombs)

# Common URL and mail fragments, most frequent last (DEFLATE favours the end of a dictionary).
_ZDICT = (
    b"utm_term=utm_content=utm_campaign=utm_medium=emailutm_source=newsletter"
    b".html.php.aspx?id=&ref=&amp;/index/products/blog/unsubscribe/account/"
    b"@gmail.com@outlook.com@example.com.org/.net/.co.uk/.de/.com/www.http://https://"
)
_TOKEN_SHAPE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")
#: An opaque token: base64url, no dots (a signed token always has two), at least tag and header (17 bytes: 23 characters).
_OPAQUE_SHAPE = re.compile(r"[A-Za-z0-9_-]{23,}")
_JSON_SEPARATORS = (",", ":")


class TruncatedHMAC(HMACAlgorithm):
    """HMAC with the digest cut to ``size`` bytes: 128 bits are plenty and save 21 characters per link."""

    def __init__(self, digest_method: Any = hashlib.sha256, size: int = 16) -> None:
        super().__init__(digest_method)
        try:
            digest_size = digest_method().digest_size
        except Exception:  # a name ("sha256") or anything else that is not a hashlib constructor
            raise ConfigurationError(f"digest_method must be a hashlib constructor like hashlib.sha256, not {digest_method!r}") from None
        if isinstance(size, bool) or not isinstance(size, int) or not isinstance(digest_size, int):
            raise ConfigurationError(f"signature size must be an int (bytes), not {size!r}")
        if not 10 <= size <= digest_size:
            raise ConfigurationError(f"signature size must be between 10 bytes and the digest size, not {size}")
        self.size = size

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return super().get_signature(key, value)[: self.size]


#: What a verified token says: the same type :meth:`Tracker.verify` returns (one type, two names).
TokenClaims = Verified


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _b64(data: bytes) -> bytes:
    """URL-safe base64 without padding (itsdangerous' ``base64_encode``, without its type checks)."""
    return b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _hmac_pads(key: bytes, digest_method: Any) -> tuple[Any, Any]:
    """HMAC's keyed inner and outer hash states (RFC 2104), ready to be copied."""
    block = digest_method().block_size
    if len(key) > block:
        key = digest_method(key).digest()
    key = key.ljust(block, b"\0")
    return digest_method(key.translate(_IPAD)), digest_method(key.translate(_OPAD))


def _encodes_as_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: What ``json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)`` uses,
#: built once: ``json.dumps`` builds a new encoder on every call that passes options (a few microseconds each,
#: several per message).
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=_JSON_SEPARATORS, sort_keys=True, allow_nan=False)


def _compact_json(value: Any) -> str:
    return _COMPACT_JSON.encode(value)


def check_claims(
    message_id: str, recipient: str | None, metadata: Mapping[str, Any] | None, tags: Sequence[str] = ()
) -> None:
    """Raise :class:`MailtrackError` unless these survive a JSON round trip unchanged.

    ``verify`` must give back exactly what was signed: tuples would come back
    as lists, non-str keys as strings, and NaN is not JSON at all.
    """
    value = [message_id, recipient, dict(metadata or {}), list(tags)]
    if _plain_json(value):
        return  # the common case: plainly JSON, it comes back as it is without encoding it twice and parsing it
    for name, part in zip(("message_id", "recipient", "metadata", "tags"), value, strict=True):
        try:
            _compact_json(part).encode("utf-8")
        except (TypeError, ValueError) as exc:  # not serializable, NaN, lone surrogates, circular
            raise ArgumentError(f"{name} must be JSON text: {exc}") from None
    if json.loads(_compact_json(value)) != value:
        raise ArgumentError("metadata must survive JSON unchanged: use str keys, lists (not tuples), and JSON types")


#: How many values :func:`_plain_json` looks at before leaving the question to a real JSON round trip.
_PLAIN_JSON_BUDGET = 10_000
#: Integers this small print and parse back exactly and within ``sys.int_info``'s digit limit.
_PLAIN_INT = 1 << 64


def _plain_json(value: Any) -> bool:
    """True only if ``value`` survives :func:`_compact_json` and ``json.loads`` unchanged, answered without encoding.

    Accepts exact built-in types only: ``None``, ``bool``, ``int`` (under 2**64
    in size), finite ``float``, ``str`` that UTF-8 can write, ``list`` and
    ``dict`` with such ``str`` keys, holding the same. Anything else (a
    subclass, a tuple, a cycle, a big or unusual structure) answers False, and
    :func:`check_claims` then makes the round trip it always made, with its
    errors; so this can only skip work, never change an answer.
    """
    stack = [value]
    budget = _PLAIN_JSON_BUDGET  # values taken on the stack: bounds the time and memory of any input (a cycle too)
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and not _encodes_as_utf8(item):
                return False
        elif item is None or kind is bool:
            continue
        elif kind is int:
            if not -_PLAIN_INT < item < _PLAIN_INT:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is list or kind is dict:
            budget -= len(item)
            if budget < 0:
                return False
            if kind is list:
                stack.extend(item)
                continue
            for key in item:
                if type(key) is not str or (not key.isascii() and not _encodes_as_utf8(key)):
                    return False
            stack.extend(item.values())
        else:
            return False
    return True


def _deflate(data: bytes) -> bytes:
    """Raw DEFLATE with the preset dictionary of URL fragments: both formats' compression."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return deflate.compress(data) + deflate.flush()


def _inflate(data: bytes) -> bytes:
    """What :func:`_deflate` compressed, at most ``_MAX_PAYLOAD_BYTES`` of it; ValueError or zlib.error if not."""
    inflate = zlib.decompressobj(-15, _ZDICT)
    out = inflate.decompress(data, _MAX_PAYLOAD_BYTES)
    if inflate.unconsumed_tail or not inflate.eof:
        raise ValueError("compressed payload is truncated or too large")
    return out


class _KeyCachingSigner(TimestampSigner):
    """itsdangerous' ``TimestampSigner`` deriving each key once, not on every ``unsign`` (the derivation is an HMAC
    of the secret and salt: a fifth of the cost of verifying a token). Same keys, same signatures."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        cache: dict[bytes | None, bytes] = self.__dict__.setdefault("_derived", {})
        key = None if secret_key is None else want_bytes(secret_key)
        derived = cache.get(key)
        if derived is None:
            derived = cache[key] = super().derive_key(secret_key)
        return derived


class TokenCodec:
    """Issues and verifies tokens for every purpose with one set of secret keys.

    ``token_format`` is the format new tokens are issued in: ``"opaque"`` (the
    default: encrypted, the URL reveals only its length) or ``"signed"`` (the
    format of mailtrack before issue 14, whose payload anyone can read; pick it
    when something downstream reads the claims out of the URL). Either format
    verifies whatever this says. ``digest_method`` and ``signature_size``
    shape signed tokens only; ``salt`` and ``compress`` apply to both.
    """

    def __init__(
        self,
        secret_keys: str | bytes | Iterable[str | bytes],
        *,
        salt: str = "mailtrack",
        digest_method: Any = hashlib.sha256,
        signature_size: int = 16,
        compress: bool = False,
        clock: Callable[[], float] = time.time,
        max_clock_skew: float = 300,
        token_format: str = "opaque",
    ) -> None:
        if token_format not in TOKEN_FORMATS:
            raise ConfigurationError(f"token_format must be one of {', '.join(TOKEN_FORMATS)}, not {token_format!r}")
        if isinstance(secret_keys, (str, bytes)):
            keys: list[str | bytes] = [secret_keys]
        elif isinstance(secret_keys, Iterable):
            keys = list(secret_keys)
        else:
            raise ConfigurationError(f"secret_keys must be a key or a list of keys, not {type(secret_keys).__name__}")
        if not keys:
            raise ConfigurationError("secret_keys must hold at least one key")
        for key in keys:
            if not isinstance(key, (str, bytes)) or not key:
                raise ConfigurationError("every secret key must be a non-empty str or bytes")
            if isinstance(key, str) and not _encodes_as_utf8(key):
                raise ConfigurationError("every secret key must be text that UTF-8 can write (a lone surrogate cannot be)")
        if not callable(clock):
            raise ConfigurationError(f"clock must be a function returning seconds since the epoch, not {clock!r}")
        if isinstance(max_clock_skew, bool) or not isinstance(max_clock_skew, (int, float)) or not 0 <= max_clock_skew < math.inf:
            raise ConfigurationError(f"max_clock_skew must be a finite number of seconds >= 0, not {max_clock_skew!r}")
        self.compress = compress
        #: The format new tokens are issued in (see the class docstring); both verify.
        self.token_format = token_format
        self._secrets = [want_bytes(key) for key in keys]
        self._salt = salt
        self._cipher: opaque.OpaqueCipher | None = None  # made on first use: cryptography loads then, not at import
        #: Seconds since the epoch, for ``max_age`` checks (the signing time is passed in explicitly).
        self.clock = clock
        #: How far in the future a token's time may be (signing hosts' clocks differ) when ``max_age`` is checked.
        self.max_clock_skew = max_clock_skew
        algorithm = TruncatedHMAC(digest_method, signature_size)
        self._signers = {
            kind: _KeyCachingSigner(
                [want_bytes(key) for key in keys], salt=f"{salt}.{kind}", key_derivation="hmac", digest_method=digest_method, algorithm=algorithm
            )
            for kind in KINDS
        }
        # Signing fast path: HMAC's inner and outer hash states are prepared once
        # per purpose and copied per token. It yields exactly what
        # TimestampSigner.sign would (a test pins this) at a fraction of the cost
        # of re-deriving the key and building an hmac object for every link.
        self._pads = {kind: _hmac_pads(signer.derive_key(), digest_method) for kind, signer in self._signers.items()}
        self._size = signature_size
        #: Each purpose's key, for the compiled signers (``_speedups`` speaks HMAC-SHA256 only): None for other digests.
        self._keys = {kind: signer.derive_key() for kind, signer in self._signers.items()} if digest_method().name == "sha256" else None
        self._click_key = None if self._keys is None else self._keys["click"]

    def _opaque(self) -> opaque.OpaqueCipher:
        """The AES-SIV keys of every purpose, derived on first use (an opaque token issued or verified)."""
        cipher = self._cipher
        if cipher is None:
            cipher = self._cipher = opaque.OpaqueCipher(self._secrets, self._salt)
        return cipher

    # -- signing -----------------------------------------------------------------
    def _encode_payload(self, data: bytes) -> bytes:
        encoded = _b64(data)
        if self.compress and len(data) > 48:
            packed = _b64(_deflate(data))
            if len(packed) + 1 < len(encoded):
                return b"." + packed
        return encoded

    def message_signer(
        self,
        kind: TokenKind,
        message_id: str,
        recipient: str | None,
        metadata: Mapping[str, Any] | None,
        issued_at: int,
        tags: Sequence[str] = (),
        account: str | None = None,
    ) -> Callable[..., str]:
        """A function signing tokens of ``kind`` for one message and recipient (None: no recipient).

        For clicks it takes ``(link_index, url)``; otherwise no arguments. The
        parts shared by every link of a message (identity, metadata, tags,
        timestamp) are encoded once.
        """
        return self.message_signers((kind,), message_id, recipient, metadata, issued_at, tags, account)[kind]

    def message_signers(
        self,
        kinds: Iterable[TokenKind],
        message_id: str,
        recipient: str | None,
        metadata: Mapping[str, Any] | None,
        issued_at: int,
        tags: Sequence[str] = (),
        account: str | None = None,
    ) -> dict[TokenKind, Callable[..., str]]:
        """:meth:`message_signer` for each of ``kinds``, with the message's claims encoded once for all of them.

        A rewrite signs clicks and opens (and unsubscribes) for the same
        message: encoding the claims once per kind was most of a small
        message's fixed cost.
        """
        head = _compact_json([message_id, recipient])[:-1]
        if account is not None:
            tail = (f",{_compact_json(dict(metadata or {}))},{_compact_json(list(tags))},{_compact_json(account)}]")
        elif tags:
            tail = "," + _compact_json(dict(metadata or {})) + "," + _compact_json(list(tags)) + "]"
        else:
            tail = "]" if not metadata else "," + _compact_json(dict(metadata)) + "]"
        if self.token_format == "opaque":
            issued = int_to_bytes(issued_at)
            return {kind: self._opaque_signer(kind, head, tail, issued) for kind in kinds}
        stamp = b"." + base64_encode(int_to_bytes(issued_at))
        return {kind: self._signer(kind, head, tail, stamp) for kind in kinds}

    def _opaque_signer(self, kind: TokenKind, head: str, tail: str, issued_at: bytes) -> Callable[..., str]:
        """:meth:`message_signer`'s function for opaque tokens: the signed format's payload, sealed with AES-SIV.

        The payload is the exact JSON the signed format would carry (one
        encoder, one parser for both), compressed under the signed format's
        rule when ``compress`` is on (a payload over 48 bytes, when DEFLATE
        makes it shorter: a header bit marks it, no character is spent on a
        mark). Compressing before encrypting leaks only how well the claims
        compress, through the token's length, never what they are. The AES
        is always OpenSSL's: through :class:`~mailtrack.core.opaque.OpaqueCipher`
        (the compiled ``SivKey`` or ``cryptography``), or, for clicks on the
        compiled path, through :meth:`_compiled_click`'s ``ClickSigner`` with the
        codec's ``SivKey`` (only S2V's block bookkeeping is C there); the
        compiled link loop runs either as it runs any signer.
        """
        plain_lead = opaque.pack(issued_at, b"", compressed=False)
        if kind == "click":
            fast = self._compiled_click(head, tail, plain_lead, sealed=True)
            if fast is not None:
                return fast
        cipher = self._opaque()
        encrypt = None if self.compress else cipher.pure_encrypt(kind)
        if encrypt is not None:  # the pure path: one Python call per token, what the closures below do through three
            b2a, urlsafe = b2a_base64, opaque.URLSAFE
            if kind == "click":
                encode_str = json.encoder.encode_basestring

                def seal_click(link_index: int, url: str) -> str:
                    plaintext = plain_lead + f"{head},{link_index},{encode_str(url)}{tail}".encode()
                    return b2a(encrypt(plaintext, None), newline=False).translate(urlsafe).rstrip(b"=").decode("ascii")

                return seal_click
            raw = head + tail
            return lambda: opaque.encode(encrypt(plain_lead + raw.encode(), None))
        seal = cipher.sealer(kind)
        if self.compress:

            def sign(raw_payload: str) -> str:
                data = raw_payload.encode("utf-8")
                if len(data) > 48:
                    packed = _deflate(data)
                    if len(packed) < len(data):
                        return seal(opaque.pack(issued_at, packed, compressed=True))
                return seal(plain_lead + data)

        else:

            def sign(raw_payload: str) -> str:
                return seal(plain_lead + raw_payload.encode("utf-8"))

        if kind == "click":
            encode_str = json.encoder.encode_basestring

            def sign_click(link_index: int, url: str) -> str:
                return sign(f"{head},{link_index},{encode_str(url)}{tail}")

            return sign_click
        raw = head + tail
        return lambda: sign(raw)

    def _signer(self, kind: TokenKind, head: str, tail: str, stamp: bytes) -> Callable[..., str]:
        """The signing function of :meth:`message_signer`, from the claims encoded around the click's part."""
        inner_pad, outer_pad = self._pads[kind]
        size = self._size
        encode_payload = self._encode_payload
        compress = self.compress

        def sign(raw_payload: str) -> str:
            data = raw_payload.encode("utf-8")
            value = (encode_payload(data) if compress else _b64(data)) + stamp
            inner = inner_pad.copy()
            inner.update(value)
            outer = outer_pad.copy()
            outer.update(inner.digest())
            return (value + b"." + _b64(outer.digest()[:size])).decode("ascii")

        if kind == "click":
            fast = self._compiled_click(head, tail, stamp, sealed=False)
            if fast is not None:
                return fast
            encode_str = json.encoder.encode_basestring
            if compress:

                def sign_compressed_click(link_index: int, url: str) -> str:
                    return sign(f"{head},{link_index},{encode_str(url)}{tail}")

                return sign_compressed_click
            # The per-link path (a newsletter signs a thousand of these): sign() and _b64() inlined, one call per link.
            copy_inner, copy_outer = inner_pad.copy, outer_pad.copy

            def sign_click(link_index: int, url: str) -> str:
                value = b2a_base64(f"{head},{link_index},{encode_str(url)}{tail}".encode(), newline=False)
                value = value.translate(_URLSAFE).rstrip(b"=") + stamp
                inner = copy_inner()
                inner.update(value)
                outer = copy_outer()
                outer.update(inner.digest())
                signature = b2a_base64(outer.digest()[:size], newline=False).translate(_URLSAFE).rstrip(b"=")
                return (value + b"." + signature).decode("ascii")

            return sign_click
        raw = head + tail
        compiled = speedups.compiled
        if compiled is not None and not compress and self._keys is not None:
            key = self._keys[kind]
            try:
                data = raw.encode()
            except UnicodeEncodeError:
                return lambda: sign(raw)  # raises as it always has
            return lambda: str(compiled.sign_value(key, data, stamp, size))
        return lambda: sign(raw)

    def _compiled_click(self, head: str, tail: str, stamp: bytes, *, sealed: bool) -> Callable[[int, str], str] | None:
        """The compiled twin of a click signer (same tokens, a fraction of the cost), or None where it cannot be.

        ``sealed=False``: the signed format, ``stamp`` the issue time written
        after the payload; ``sealed=True``: the opaque format, ``stamp`` the
        plaintext's lead (header byte and issue time), sealed with AES-256-SIV
        over OpenSSL's AES (the differential tests check it against
        ``cryptography``). None on the pure path, for compressed tokens
        (compression is decided per link, in Python), for a digest other than
        SHA-256 (signed), in a build without OpenSSL (sealed:
        ``SIV_AVAILABLE`` 0), and for claims UTF-8 cannot write (a lone
        surrogate: the pure signer raises for those, as it always has).
        """
        compiled = speedups.compiled
        if compiled is None or self.compress or (not getattr(compiled, "SIV_AVAILABLE", 0) if sealed
                                                 else self._click_key is None):
            return None
        try:
            head_bytes, tail_bytes = head.encode(), tail.encode()
        except UnicodeEncodeError:
            return None
        if sealed:
            siv_keys = self._opaque().siv_keys("click")
            assert siv_keys is not None  # (SIV_AVAILABLE, checked above)
            key, size = siv_keys[0], 16
        else:
            assert self._click_key is not None
            key, size = self._click_key, self._size
        # sealed: the codec's SivKey, keyed once for every message (keying AES per message cost more than its tokens)
        signer: Callable[[int, str], str] = compiled.ClickSigner(key, head_bytes, tail_bytes, stamp, size, sealed=sealed)
        return signer

    # -- verification ------------------------------------------------------------
    def loads(self, token: str, *, kind: TokenKind | None = None, max_age: float | None = None) -> Verified:
        """Verify ``token`` and return its claims, or raise :class:`InvalidToken`.

        ``kind`` is the purpose the caller expects (from the URL path); a token
        signed for another purpose is refused with reason ``"purpose"``. Without
        ``kind`` every purpose is tried.
        """
        if max_age is not None and (
            isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or not 0 <= max_age < math.inf
        ):
            raise ArgumentError(f"max_age must be a finite number of seconds >= 0, or None, not {max_age!r}")
        if kind is not None and kind not in KINDS:
            raise ArgumentError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not isinstance(token, str):
            raise ArgumentError(f"token must be a str, not {type(token).__name__}")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token is longer than 8 KiB", reason="oversized", token=token[:64])
        if "." not in token:
            return self._loads_opaque(token, kind, max_age)
        if not _TOKEN_SHAPE.fullmatch(token):
            raise InvalidToken("token is in neither token format (opaque or signed)", reason="malformed", token=token)
        signature = token.rsplit(".", 1)[1]
        try:
            canonical = base64_encode(base64_decode(signature)).decode("ascii") == signature
        except BadData:
            canonical = False
        if not canonical:
            # base64 ignores the spare bits of the last character; accept one spelling only
            raise InvalidToken("signature is not canonically encoded", reason="signature", token=token)
        kinds = [kind] if kind is not None else list(KINDS)
        for candidate in kinds:
            try:
                payload, signed_at = self._signers[candidate].unsign(token, return_timestamp=True)
            except BadSignature:
                continue
            if max_age is not None:
                self._check_age(signed_at, max_age, token)
            return self._claims(candidate, payload, signed_at, token)
        if kind is not None:
            for other in KINDS:
                if other != kind:
                    try:
                        self._signers[other].unsign(token)
                    except BadSignature:
                        continue
                    raise InvalidToken(
                        f"token was signed for {other!r}, not {kind!r}", reason="purpose", token=token
                    )
        raise InvalidToken("signature does not match any key", reason="signature", token=token)

    def _loads_opaque(self, token: str, kind: TokenKind | None, max_age: float | None) -> Verified:
        """:meth:`loads` for a token without dots: an opaque one, with the signed format's errors and reasons.

        Every purpose's keys are tried newest first (the expected purpose's
        only, when ``kind`` is given, then the others to tell ``purpose`` from
        ``signature``). Whatever the bytes, only :class:`InvalidToken` or
        :class:`ExpiredToken` comes out, and no message names a key.
        """
        if not _OPAQUE_SHAPE.fullmatch(token) or len(token) % 4 == 1:
            raise InvalidToken("token is in neither token format (opaque or signed)", reason="malformed", token=token)
        sealed = opaque.decode(token)
        if sealed is None:
            # base64 ignores the spare bits of the last character; accept one spelling only
            raise InvalidToken("token is not canonically encoded", reason="signature", token=token)
        cipher = self._opaque()
        for candidate in [kind] if kind is not None else KINDS:
            plaintext = cipher.open(candidate, sealed)
            if plaintext is None:
                continue
            unpacked = opaque.unpack(plaintext)
            if unpacked is None:
                raise InvalidToken("opaque token has an unknown layout", reason="malformed", token=token)
            seconds, payload, compressed = unpacked
            try:
                issued_at = datetime.fromtimestamp(seconds, tz=timezone.utc)
            except (OverflowError, ValueError, OSError):
                raise InvalidToken("opaque token's time is out of range", reason="malformed", token=token) from None
            if max_age is not None:
                self._check_age(issued_at, max_age, token)
            try:
                data = _inflate(payload) if compressed else payload
            except (ValueError, zlib.error) as exc:
                raise InvalidToken(f"payload cannot be decoded: {exc}", reason="malformed", token=token) from None
            return self._fields(candidate, data, issued_at, token)
        if kind is not None:
            for other in KINDS:
                if other != kind and cipher.open(other, sealed) is not None:
                    raise InvalidToken(f"token was issued for {other!r}, not {kind!r}", reason="purpose", token=token)
        raise InvalidToken("token does not open under any key", reason="signature", token=token)

    def _check_age(self, signed_at: datetime, max_age: float, token: str) -> None:
        """Refuse an authentic token older than ``max_age`` or dated too far ahead (by our clock)."""
        age = self.clock() - signed_at.timestamp()
        if age > max_age:
            raise ExpiredToken(f"token is {age:.0f} s old, more than {max_age} s", token=token, issued_at=signed_at)
        if age < -self.max_clock_skew:
            raise InvalidToken(
                f"token is dated {-age:.0f} s in the future (allowed clock skew: {self.max_clock_skew} s)",
                reason="future",
                token=token,
            )

    def _claims(self, kind: TokenKind, payload: bytes, issued_at: datetime, token: str) -> TokenClaims:
        try:
            data = _inflate(base64_decode(payload[1:])) if payload.startswith(b".") else base64_decode(payload)
        except (ValueError, zlib.error) as exc:
            raise InvalidToken(f"payload cannot be decoded: {exc}", reason="malformed", token=token) from None
        if issued_at.tzinfo is None:
            issued_at = issued_at.replace(tzinfo=timezone.utc)
        return self._fields(kind, data, issued_at, token)

    def _fields(self, kind: TokenKind, data: bytes, issued_at: datetime, token: str) -> TokenClaims:
        """The claims of a verified token's JSON payload (either format), or :class:`InvalidToken` ``malformed``."""
        try:
            fields = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidToken(f"payload cannot be decoded: {exc}", reason="malformed", token=token) from None
        if not isinstance(fields, list) or not 2 <= len(fields) <= 7:
            raise InvalidToken("payload has the wrong shape", reason="malformed", token=token)
        message_id, recipient, *rest = fields
        url = link_index = None
        if kind == "click":
            if len(rest) not in (2, 3, 4, 5):
                raise InvalidToken("click payload has the wrong shape", reason="malformed", token=token)
            link_index, url, *rest = rest
            if not isinstance(link_index, int) or isinstance(link_index, bool) or not isinstance(url, str):
                raise InvalidToken("click payload has the wrong types", reason="malformed", token=token)
            problem = destination_problem(url)
            if problem is not None:
                raise InvalidToken(f"destination refused ({problem}): {url[:200]!r}", reason="destination", token=token)
        metadata = rest[0] if rest else {}
        tags = rest[1] if len(rest) > 1 else []
        account = rest[2] if len(rest) > 2 else None
        if (
            len(rest) > 3
            or not isinstance(account, (str, type(None)))
            or not isinstance(message_id, str)
            or not isinstance(recipient, (str, type(None)))
            or not isinstance(metadata, dict)
            or not isinstance(tags, list)
            or not all(isinstance(tag, str) for tag in tags)
        ):
            raise InvalidToken("payload has the wrong types", reason="malformed", token=token)
        return Verified(kind, message_id, recipient, issued_at, url, link_index, metadata, token, tuple(tags), account)
