"""Opaque tokens: a token's claims sealed with AES-SIV (RFC 5297), so a tracking URL reveals only its length.

One idea: turn the bytes :class:`~mailtrack.core.tokens.TokenCodec` would sign
into a URL-safe string nobody without a secret key can read or change, and back.

Why AES-SIV. A tracking token must be *deterministic*: the same message,
recipient, link and issue time give the same token, so a second rewrite of
rewritten output is byte-identical and a batch is reproducible. AES-SIV is the
standard deterministic authenticated encryption: its synthetic IV is a PRF
(S2V, an AES-CMAC) of the plaintext, so no nonce is carried, equal inputs give
equal outputs (which reveals only that two tokens are equal: the same claims)
and any change to the token fails the 128-bit tag check, made in constant
time. The AES is never written here: it is OpenSSL's, through ``cryptography``
on the pure path, or through the compiled speedups' ``SivKey`` (which writes
out only S2V's and CMAC's block bookkeeping, RFC 5297 and RFC 4493, over
OpenSSL's AES, and compares tags with ``CRYPTO_memcmp``); this module derives
keys and lays out bytes.

Layout. A token is base64url without padding (``A-Z a-z 0-9 - _``, no ``.``:
a signed token always holds two dots, so the two formats are told apart by
shape) of ``SIV tag (16 bytes) || ciphertext``. The plaintext is::

    header (1 byte) || issue time (0-7 bytes, big-endian, as itsdangerous writes it) || payload

where the header's low three bits are the issue time's length, bit 3 says the
payload is DEFLATE-compressed (with the signed format's preset dictionary) and
the high four bits are zero (anything else is refused: room for a later
version). ``payload`` is the compact JSON array the signed format carries. So
an opaque token costs ``16 + 1`` bytes beyond the signed format's payload and
time, where a signed one costs two dots and a 22-character signature: it is
never longer (a property test checks it for arbitrary claims). The issue time
is inside the ciphertext, so ``max_age`` works without revealing when a mail
was sent.

Keys. Each secret key gives one AES-256-SIV key (64 bytes) per purpose, by
HKDF-SHA256 (RFC 5869) with the salt ``mailtrack.opaque.v1`` (not the signed
format's, so no key is shared between the formats) and the info
``{salt}.{purpose}``. A click token therefore does not open under the open key:
it is refused with reason ``purpose``, as a signed one is. The newest key
seals; every key is tried, newest first (rotation, as in the signed format).

Compression before encryption leaks only length: when the codec compresses,
how well a payload compresses shows in the token's length, never its content.

``cryptography`` is imported when the first :class:`OpaqueCipher` is made,
not with ``mailtrack``: its OpenSSL bindings cost tens of milliseconds to load,
which a program that never signs or verifies a token need not pay.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mailtrack.core import speedups
from mailtrack.core.urls import KINDS, TokenKind

__all__ = ["HKDF_SALT", "TAG_SIZE", "OpaqueCipher", "decode", "encode", "pack", "unpack"]

#: The HKDF salt of the opaque format's keys: not the signed format's ``mailtrack.<purpose>`` HMAC salts.
HKDF_SALT = b"mailtrack.opaque.v1"
#: AES-SIV's synthetic IV, which is its authentication tag.
TAG_SIZE = 16
_KEY_SIZE = 64  # AES-256-SIV: two AES-256 keys (S2V's CMAC and CTR)
_COMPRESSED = 0x08
_TIME_LENGTH = 0x07
#: ``bytes.translate`` table from base64 to base64url.
URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def encode(data: bytes) -> str:
    """URL-safe base64 without padding: what follows ``/c/`` in an opaque click URL."""
    return binascii.b2a_base64(data, newline=False).translate(URLSAFE).rstrip(b"=").decode("ascii")


def decode(token: str) -> bytes | None:
    """The bytes ``token`` spells, or None when it is not the one canonical spelling :func:`encode` writes.

    base64 ignores the spare bits of the last character: without this check
    one token would have several spellings that all verify.
    """
    if len(token) % 4 == 1:
        return None
    try:
        data = binascii.a2b_base64(token.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(token) % 4))
    except (binascii.Error, UnicodeEncodeError):
        return None
    return data if encode(data) == token else None


def pack(issued_at: bytes, payload: bytes, *, compressed: bool) -> bytes:
    """The plaintext: the header byte, the issue time's bytes (at most 7), then the payload."""
    if len(issued_at) > _TIME_LENGTH:
        raise ValueError("issue time does not fit in 7 bytes")
    return bytes((len(issued_at) | (_COMPRESSED if compressed else 0),)) + issued_at + payload


def unpack(plaintext: bytes) -> tuple[int, bytes, bool] | None:
    """``(issued_at, payload, compressed)`` from a plaintext :func:`pack` wrote, or None if it is not one."""
    if not plaintext:
        return None
    header = plaintext[0]
    if header & ~(_COMPRESSED | _TIME_LENGTH):
        return None  # a later version's header, or garbage sealed under our key
    length = header & _TIME_LENGTH
    if len(plaintext) < 1 + length:
        return None
    return int.from_bytes(plaintext[1 : 1 + length], "big"), plaintext[1 + length :], bool(header & _COMPRESSED)


def derive_key(secret: bytes, salt: str, kind: TokenKind) -> bytes:
    """One purpose's AES-256-SIV key from one secret key (HKDF-SHA256; see the module docstring)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=_KEY_SIZE, salt=HKDF_SALT, info=f"{salt}.{kind}".encode()).derive(secret)


class OpaqueCipher:
    """Seals and opens opaque tokens for every purpose with one list of secret keys (oldest first).

    Two implementations of the same AES-SIV, chosen per call: the compiled
    speedups' ``SivKey`` (S2V's bookkeeping in C over OpenSSL's AES, keyed once
    per key and purpose, for every message: a token costs a fraction of a
    microsecond) when they are built with OpenSSL and switched on, else
    ``cryptography``'s ``AESSIV`` (which sets its cipher up again for each
    token). Both give the same bytes: the differential tests seal and open
    with each. Either is made on first use.
    """

    def __init__(self, secret_keys: Sequence[bytes], salt: str, kinds: Iterable[TokenKind] = KINDS) -> None:
        #: Per purpose, one AES-SIV key per secret key, newest first: the first seals, each opens in turn.
        self.keys: dict[TokenKind, list[bytes]] = {
            kind: [derive_key(secret, salt, kind) for secret in reversed(secret_keys)] for kind in kinds
        }
        self._pure: dict[TokenKind, list[Any]] = {}
        self._compiled: dict[TokenKind, list[Any]] = {}

    def siv_keys(self, kind: TokenKind) -> list[Any] | None:
        """``kind``'s compiled ``SivKey`` objects, newest first; None where the compiled sealer is off or not built."""
        compiled = speedups.compiled
        if compiled is None or not getattr(compiled, "SIV_AVAILABLE", 0):
            return None
        keys = self._compiled.get(kind)
        if keys is None:
            keys = self._compiled[kind] = [compiled.SivKey(key) for key in self.keys[kind]]
        return keys

    def _ciphers(self, kind: TokenKind) -> list[Any]:
        """``kind``'s ``cryptography`` AESSIV objects, newest first (the pure path)."""
        ciphers = self._pure.get(kind)
        if ciphers is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESSIV

            ciphers = self._pure[kind] = [AESSIV(key) for key in self.keys[kind]]
        return ciphers

    def pure_encrypt(self, kind: TokenKind) -> Callable[[bytes, None], bytes] | None:
        """The newest key's ``cryptography`` ``AESSIV.encrypt`` for ``kind``; None where the compiled sealer runs.

        For callers that build one closure per message around it (a click
        signer encrypts and encodes in one Python call instead of three):
        ``encode(encrypt(plaintext, None))`` is the token :meth:`sealer`'s function returns.
        """
        if self.siv_keys(kind) is not None:
            return None
        encrypt: Callable[[bytes, None], bytes] = self._ciphers(kind)[0].encrypt
        return encrypt

    def sealer(self, kind: TokenKind) -> Callable[[bytes], str]:
        """The newest key's ``plaintext -> token`` for ``kind`` (bound once per message): :meth:`seal` without lookups."""
        keys = self.siv_keys(kind)
        if keys is not None:
            seal: Callable[[bytes], str] = keys[0].seal
            return seal
        encrypt = self._ciphers(kind)[0].encrypt
        return lambda plaintext: encode(encrypt(plaintext, None))

    def seal(self, kind: TokenKind, plaintext: bytes) -> str:
        """The opaque token of ``plaintext`` for ``kind``: the same plaintext always gives the same token."""
        return self.sealer(kind)(plaintext)

    def open(self, kind: TokenKind, sealed: bytes) -> bytes | None:
        """The plaintext of ``sealed`` (decoded token bytes) under any of ``kind``'s keys, or None if none opens it.

        A failed tag check says nothing about why (another key, another
        purpose, tampering): the caller words that, and no key ever appears in it.
        """
        if len(sealed) <= TAG_SIZE:
            return None
        keys = self.siv_keys(kind)
        if keys is not None:
            for key in keys:
                opened: bytes | None = key.open(sealed)
                if opened is not None:
                    return opened
            return None
        from cryptography.exceptions import InvalidTag

        for cipher in self._ciphers(kind):
            try:
                plaintext: bytes = cipher.decrypt(sealed, None)
            except InvalidTag:
                continue
            return plaintext
        return None
