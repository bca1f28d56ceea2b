"""The pure path's one-call click and open sealers give the tokens the general sealer gives (issue 13).

On the pure path (no compiled ``SivKey``) an opaque signer calls
``cryptography``'s ``AESSIV.encrypt`` and base64url-encodes in one closure
(``OpaqueCipher.pure_encrypt``) instead of going through ``OpaqueCipher.sealer``.
Each token here is opened with ``cryptography``'s AESSIV directly, sealed again
through the general sealer, and verified by the codec: all three must agree, for
any destination, index and claims, compressed or not.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack.core import opaque, speedups
from mailtrack.core.tokens import TokenCodec

T0 = 1_700_000_000


@pytest.fixture(autouse=True, scope="module")
def pure() -> Iterator[None]:
    saved, speedups.compiled = speedups.compiled, None
    try:
        yield
    finally:
        speedups.compiled = saved


_CODECS = {compress: TokenCodec(["older", "newest"], compress=compress) for compress in (False, True)}


def _reopened(codec: TokenCodec, kind: str, token: str) -> bytes:
    """The plaintext of ``token`` opened with cryptography's AESSIV under the newest key, re-sealed the general way."""
    sealed = opaque.decode(token)
    assert sealed is not None
    key = codec._opaque().keys[kind][0]  # type: ignore[index]
    plaintext = AESSIV(key).decrypt(sealed, None)
    assert codec._opaque().sealer(kind)(plaintext) == token  # type: ignore[arg-type]
    return plaintext


@settings(max_examples=300, deadline=None)
@given(url=st.text(st.characters(min_codepoint=0x21, blacklist_categories=("Cc", "Cs")), max_size=300).map(lambda path: "https://shop.example/" + path), index=st.integers(min_value=0, max_value=10**6), compress=st.booleans(),
       recipient=st.none() | st.text(max_size=20), metadata=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_a_pure_click_token_is_aes_siv_of_its_claims(url: str, index: int, compress: bool, recipient: str | None,
                                                     metadata: dict[str, int]) -> None:
    codec = _CODECS[compress]
    try:
        (url + (recipient or "")).encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates: refused before any token is made, on either path
    token = codec.message_signer("click", "msg-1", recipient, metadata, T0)(index, url)
    _reopened(codec, "click", token)
    claims = codec.loads(token, kind="click", max_age=None)
    assert (claims.url, claims.link_index, claims.recipient, dict(claims.metadata)) == (url, index, recipient, metadata)


@pytest.mark.parametrize("kind", ["open", "unsubscribe"])
@pytest.mark.parametrize("compress", [False, True])
def test_a_pure_open_or_unsubscribe_token_is_aes_siv_of_its_claims(kind: str, compress: bool) -> None:
    codec = _CODECS[compress]
    sign = codec.message_signer(kind, "msg-1", "ann@example.com", {"campaign": "x" * 60}, T0)  # type: ignore[arg-type]
    token = sign()
    assert sign() == token  # deterministic, and the closure can be called again
    _reopened(codec, kind, token)
    assert codec.loads(token, kind=kind).message_id == "msg-1"  # type: ignore[arg-type]


def test_pure_encrypt_is_none_where_the_compiled_sealer_runs() -> None:
    codec = TokenCodec(["k"])
    assert codec._opaque().pure_encrypt("click") is not None
    compiled = speedups.compiled
    try:
        from mailtrack.core import _speedups  # type: ignore[attr-defined]
    except ImportError:
        pytest.skip("the extension is not built")
    speedups.compiled = _speedups
    try:
        assert (codec._opaque().pure_encrypt("click") is None) == bool(getattr(_speedups, "SIV_AVAILABLE", 0))
    finally:
        speedups.compiled = compiled
