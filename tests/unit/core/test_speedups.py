"""The compiled scanner (mailtrack/core/_speedups.c) returns exactly what the pure one returns, for every input.

Issue 13: the C extension is optional and the pure-Python modules are the
reference. Every input here goes through both ``scanner.scan_pure`` and
``_speedups.scan`` (called directly, so these tests compare both paths even
under ``MAILTRACK_PURE=1``) and the two ``ScanResult``s must be equal: the
same LinkTag tuples, offsets, href values and quote kinds, body/html ends and
truncation point. Inputs: every HTML file of the shared corpus, hypothesis's
HTML strategies, random strings over a markup-heavy alphabet, the
pathological families of ``benchmarks/bench_pathological.py``, every prefix
of a few documents in all three ``str`` widths, lone surrogates, astral
characters, NULs and huge attributes. The module is skipped, saying so,
only when the extension is not built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.oracle import corpus_html_files
from support.strategies import documents, email_html, markup_soup, mutated_documents

import mailtrack
from mailtrack.core import scanner, speedups
from mailtrack.core.scanner import LinkTag, ScanResult, scan_pure

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pathological import FAMILIES  # noqa: E402

try:
    from mailtrack.core import _speedups
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None  # type: ignore[assignment]

needs_extension = pytest.mark.skipif(
    _speedups is None, reason="the C extension is not built (python setup.py build_ext --inplace, or pip install -e .)"
)
pytestmark = pytest.mark.calls_extension  # the main pass runs these; tasks.py test's pure pass skips them

CORPUS = corpus_html_files()
FIXTURE = settings(max_examples=400)


def compiled_scan(text: str) -> ScanResult:
    assert _speedups is not None
    return ScanResult(*_speedups.scan(text, LinkTag))


def assert_same(text: str) -> None:
    """Both scanners agree on ``text``, field by field, and on the type of each link."""
    expected, actual = scan_pure(text), compiled_scan(text)
    assert actual == expected, text[:300]
    assert all(type(link) is LinkTag for link in actual.links)


def widths(text: str) -> list[str]:
    """``text`` as a UCS1, UCS2 and UCS4 ``str`` (a suffix sets the width; offsets before it stay the same)."""
    return [text, text + "\u0100", text + "\U0001f600"]


# --------------------------------------------------------------------------
# Dispatch and the switch
# --------------------------------------------------------------------------


def test_speedups_enabled_says_which_path_runs() -> None:
    assert mailtrack.speedups_enabled() is speedups.speedups_enabled()
    pure = os.environ.get("MAILTRACK_PURE", "") not in ("", "0")
    assert speedups.speedups_enabled() is (not pure and _speedups is not None)


@pytest.mark.parametrize("value", ["1", "yes"])
def test_mailtrack_pure_forces_the_pure_path(value: str) -> None:
    probe = "import mailtrack; print(mailtrack.speedups_enabled())"
    env = {**os.environ, "MAILTRACK_PURE": value, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@needs_extension
def test_without_mailtrack_pure_the_compiled_path_runs() -> None:
    probe = "import mailtrack; print(mailtrack.speedups_enabled())"
    env = {k: v for k, v in os.environ.items() if k != "MAILTRACK_PURE"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


@needs_extension
def test_scan_dispatches_to_the_compiled_scanner(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Spy:
        @staticmethod
        def scan(text: str, link_tag: type[Any]) -> Any:
            calls.append(text)
            assert _speedups is not None
            return _speedups.scan(text, link_tag)

    monkeypatch.setattr(speedups, "compiled", Spy)
    assert scanner.scan('<a href="x">') == scan_pure('<a href="x">')
    assert calls == ['<a href="x">']
    monkeypatch.setattr(speedups, "compiled", None)
    assert scanner.scan("<a href=y>").links[0].href == ("y", 8, 9, "")
    assert calls == ['<a href="x">']


@needs_extension
def test_bad_arguments_raise_type_error_not_crash() -> None:
    assert _speedups is not None
    scan: Any = _speedups.scan
    with pytest.raises(TypeError):
        scan(b"<a href=x>", LinkTag)
    with pytest.raises(TypeError):
        scan("<a href=x>", dict)
    with pytest.raises(TypeError):
        scan("<a href=x>")
    with pytest.raises(TypeError):
        scan("<a href=x>", LinkTag, None)


# --------------------------------------------------------------------------
# The differential tests
# --------------------------------------------------------------------------


@needs_extension
@pytest.mark.skipif(not CORPUS, reason="the shared corpus is not present (../shared/corpus)")
def test_every_corpus_file_scans_the_same() -> None:
    for item in CORPUS:
        text = item.read()
        assert_same(text)
        assert_same(text + "\U0001f600")


@needs_extension
@FIXTURE
@given(email_html)
def test_generated_documents_scan_the_same(html: str) -> None:
    for text in widths(html):
        assert_same(text)


@needs_extension
@FIXTURE
@given(st.one_of(documents(), mutated_documents(), markup_soup), st.data())
def test_generated_documents_cut_anywhere_scan_the_same(html: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(html)))
    assert_same(html[:cut])
    assert_same(html[cut:])


@needs_extension
@FIXTURE
@given(markup_soup)
def test_markup_soup_scans_the_same(html: str) -> None:
    for text in widths(html):
        assert_same(text)


#: Pieces that switch the tokenizer's state, and characters it treats specially.
_PIECES = [
    "<", ">", "/", "=", '"', "'", " ", "\t", "\n", "\r", "\f", "-", "!", "?", "[", "]", "<!--", "-->", "--!>",
    "<!--[if mso]>", "<![endif]-->", "<![endif]--!>", "<!-->", "<!--->", "<a", "<A", "<area", "<AREA", "</a>",
    " href", " HREF", " hReF=", "=x", "<v:roundrect", "<V:Rect", "<v:", "<body", "</body", "</BODY", "</html",
    "<script>", "</script", "<style", "</style>", "<title>", "</TITLE ", "<textarea", "</textarea>", "<xmp>",
    "<iframe>", "<noembed>", "<noframes>", "</noframes >", "<plaintext>", "<!doctype html>", "<?x", "</>",
    "</ x>", "<b", "<abbr", "<bodyx", "</htmlx", "x", "é", "\u2603", "\U0001f600", "\x00", "\ud800", "\udfff",
    "\u212a", "\u0131", "\u017f", "<!--[IF", "<![ENDIF]-->", "if", "]>",
]


@needs_extension
@settings(max_examples=1500)
@given(st.lists(st.sampled_from(_PIECES), max_size=60).map("".join))
def test_random_markup_scans_the_same(html: str) -> None:
    assert_same(html)


@needs_extension
@settings(max_examples=500)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=200))
def test_any_code_points_scan_the_same(text: str) -> None:
    assert_same(text)
    assert_same("<a href=" + text)
    assert_same('<!--[if mso]><v:rect href="' + text + '"><![endif]-->')


@needs_extension
@pytest.mark.parametrize("family", [f for f in FAMILIES if f.kind != "message"], ids=lambda f: f.name)
def test_pathological_families_scan_the_same(family: Any) -> None:
    for size in (1_000, 100_000):
        document = family.build(size)
        for text in widths(document):
            assert_same(text)


# Every prefix of these: each construct cut at every character.
_DOCUMENT = (
    "<!DOCTYPE html><html><head><title>T <a href=no></title><style>a{}</style><?pi x?>"
    "<!-- c <a href=\"no\"> --><!----><!--><!---><!-- x --!><![CDATA[<a href=no>]]></head>"
    "<BODY class=x><p>1 < 2 </ x></><a\thref = 'https://a.example/?q=1&amp;r=2' id=a>A</a>"
    "<area shape=rect HREF=https://b.example/ alt><a title=\"x>y\" href>no value</a><a href=>e</a>"
    "<!--[if mso]><v:roundrect xmlns:v=\"urn:schemas-microsoft-com:vml\" href=\"https://c.example/\">"
    "<v:textbox/></v:roundrect><a href=https://d.example/>d</a><body><![endif]-->"
    "<!--[if !mso]><!--><a href=\"https://e.example/\">e</a><!--<![endif]-->"
    "<script>if (a</b) {}</script ><textarea><a href=no></textarea><xmp></xmp>"
    "<a =href=x href\n=\n\"https://f.example/\" href=dup>f</a></body ></html ><plaintext><a href=no>"
)


@needs_extension
@pytest.mark.parametrize("document", [_DOCUMENT, _DOCUMENT.upper(), _DOCUMENT.replace("e", "\u00e9"),
                                      _DOCUMENT.replace("x", "\ud800"), _DOCUMENT.replace("a", "\U0001f600a")],
                         ids=["mixed", "upper", "ucs1", "surrogates", "astral"])
def test_every_prefix_and_suffix_of_a_document_scans_the_same(document: str) -> None:
    for cut in range(len(document) + 1):
        assert_same(document[:cut])
        assert_same(document[cut:])


@needs_extension
@pytest.mark.skipif(not CORPUS, reason="the shared corpus is not present (../shared/corpus)")
def test_every_prefix_of_a_corpus_file_with_a_conditional_comment_scans_the_same() -> None:
    with_vml = [item for item in CORPUS if item.row.get("has_vml_href") == "1"] or CORPUS
    text = min((item.read() for item in with_vml), key=len)[:20_000]
    for cut in range(0, len(text) + 1, 7):
        assert_same(text[:cut])


@needs_extension
@pytest.mark.parametrize(
    "text",
    [
        "", "<", "<a", "<a ", "<a href", "<a href=", "<a href='", '<a href="x', "<a href=x", "<a href=x>", "<!", "<!-",
        "<!--", "<!--[if", "<!--[if]>", "<!--[if x]><![endif]-->", "<!--[if x]><a href=1><![endif]--!>", "</", "<?",
        "<script", "<script>", "<script></script", "<plaintext", "\x00<a href=\x00>\x00", "\ud800<a href=\udc00>",
        "<a href=\U0001f600>", "<v:rect href=x>", "<!--[if mso]><v:>x<v:r href=y><![endif]-->",
        "<!--[if mso]><V:RECT HREF=y><![ENDIF]-->", "<!--[if mso]><v:r\u0130 href=y><![endif]-->",
        "<a href=1 href=2>", "<a\u212a href=1>", "<\u0430 href=1>", "<aREA href=1>", "</body></body></html></HTML>",
        "<body a><body b>", "<!--[if mso]><body></body><script><![endif]-->x<body>",
    ],
)
def test_odd_inputs_scan_the_same(text: str) -> None:
    for variant in widths(text):
        assert_same(variant)


@needs_extension
@pytest.mark.parametrize("size", [1_000_000])
def test_huge_attributes_and_unterminated_markup_scan_the_same(size: int) -> None:
    big = "x" * size
    for text in [
        f'<a href="{big}">', f"<a title='{big}' href=y>", f"<a href={big}>", f'<a href="{big}', f"<b {big}",
        f"<!-- {big}", f"<!--[if mso]>{big}", f"<!--[if mso]><a href={big}><![endif]-->", f"<script>{big}",
        f"<!{big}", f"<?{big}", f"</{big}", "<a " + " x=y" * (size // 4) + ">", "<" * size, "<a" * (size // 2),
        "<!--" * (size // 4), "</a" * (size // 3), "<a href=x>" * (size // 10),
    ]:
        for variant in widths(text):
            assert_same(variant)


# --------------------------------------------------------------------------
# qp_lines: quoted-printable for touched MIME lines, as binascii writes it
# --------------------------------------------------------------------------

QP_BYTES = st.binary(max_size=400) | st.lists(
    st.sampled_from([b"a", b" ", b"\t", b".", b"=", b"\r", b"\n", b"\r\n", b"\x00", b"\xe9", b"x" * 70, b"\x7f", b"~"]),
    max_size=60).map(b"".join)


@needs_extension
@settings(max_examples=3000, deadline=None)
@given(data=QP_BYTES, eol=st.sampled_from([b"\n", b"\r\n"]))
def test_qp_lines_writes_what_binascii_writes_line_by_line(data: bytes, eol: bytes) -> None:
    from mailtrack.core.mime.transfer import _qp_lines_pure

    assert _speedups.qp_lines(data, eol) == _qp_lines_pure(data, eol)


@needs_extension
@pytest.mark.parametrize("data", [
    b"", b"\n", b"\r\n", b"\r", b".", b".\n", b".\r\n", b".\r", b"\x00", b".\x00", b"a.", b" ", b" \n", b"\t\r\n",
    b"=" * 200, b"x" * 75, b"x" * 76, b"x" * 77, b"x" * 74 + b"=", b"x" * 73 + b"==", b"\xff" * 100 + b"\n" + b"." + b" " * 80,
    bytes(range(256)) * 3, b"a\rb\r\n\rc\n\n\n", b"x" * 75 + b"\n" + b"y" * 75 + b" ",
])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_qp_lines_on_the_edges(data: bytes, eol: bytes) -> None:
    from mailtrack.core.mime.transfer import _qp_lines_pure

    assert _speedups.qp_lines(data, eol) == _qp_lines_pure(data, eol)


@needs_extension
def test_qp_lines_refuses_what_is_not_bytes() -> None:
    with pytest.raises(TypeError):
        _speedups.qp_lines("text", b"\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.qp_lines(b"x", "\n")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# find_urls: the plain-text URL finder
# --------------------------------------------------------------------------

#: What the finder's rules turn on: the scheme's letters in both cases, brackets and their partners, trailing
#: punctuation and quotes (ASCII and not), the "|*" of a merge tag, what ends a URL (every kind of Unicode
#: whitespace, < > "), letters and digits before an "h", a newline, non-BMP and surrogate code points.
_URL_PIECES = st.sampled_from([
    "h", "H", "t", "T", "p", "P", "s", "S", ":", "/", "://", "http://", "https://", "HTTPS://", "hTtP://", "xhttp://",
    "1https://", "(", ")", "[", "]", "{", "}", ".", ",", ";", "!", "?", "'", "*", "|", "|*", "<", ">", '"', " ", "\n",
    "\t", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u00a0", "\u1680", "\u2028", "\u3000", "\u200b", "\u2019",
    "\u201d", "\u00bb", "a", "Z", "0", "_", "-", "é", "\U0001f600", "\ud800", "example.com/a", "%20",
])


@needs_extension
@settings(max_examples=3000, deadline=None)
@given(pieces=st.lists(_URL_PIECES, max_size=60), tail=st.text(max_size=20))
def test_find_urls_finds_what_the_pure_finder_finds(pieces: list[str], tail: str) -> None:
    from mailtrack.core.urlfinder import find_urls_pure

    text = "".join(pieces) + tail
    assert _speedups.find_urls(text) == list(find_urls_pure(text))


@needs_extension
def test_find_urls_on_texts_of_every_str_kind_and_the_corner_cases() -> None:
    from mailtrack.core.urlfinder import find_urls_pure

    cases = ["", "http://", "http://x", "https://x", "https:/x", "httpss://x", "xhttp://y https://z", "(see https://a.b/c)",
             "https://w.org/wiki/Foo_(bar)", "https://a.b/x))))", "https://a.b/*|NAME|*", "https://a.b/end.*",
             "<https://a.b/>", '"https://a.b/"', "https://a.b/),https://c.d/", "é https://a.b/é", "😀https://a.b/😀",
             "\ud800https://a.b/\ud800", "https://a.b/\u2028next", "ahttps://no 1https://no _https://yes"]
    for text in cases + [case * 50 for case in cases]:
        assert _speedups.find_urls(text) == list(find_urls_pure(text)), text
    with pytest.raises(TypeError):
        _speedups.find_urls(b"https://a.b/")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# ClickSigner(sealed=True): opaque click tokens, AES-256-SIV through OpenSSL
# --------------------------------------------------------------------------

needs_siv = pytest.mark.skipif(_speedups is None or not getattr(_speedups, "SIV_AVAILABLE", 0),
                               reason="this build seals no tokens (no extension, or built without OpenSSL 3)")


def pure_seal(key: bytes, head: bytes, tail: bytes, stamp: bytes, index: int, url: str) -> str:
    """The opaque click token as the pure path makes it: cryptography's AES-SIV over stamp + the click payload."""
    import base64
    import json

    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    payload = head + f",{index},{json.encoder.encode_basestring(url)}".encode() + tail
    sealed = AESSIV(key).encrypt(stamp + payload, None)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


@needs_siv
@settings(max_examples=1500, deadline=None)
@given(key=st.binary(min_size=64, max_size=64), stamp=st.binary(min_size=1, max_size=8),
       head=st.text(max_size=80).map(lambda t: t.encode("utf-8", "replace")),
       tail=st.text(max_size=300).map(lambda t: t.encode("utf-8", "replace")),
       index=st.integers(min_value=-1, max_value=10**6), url=st.text(max_size=3000))
def test_sealed_click_tokens_are_cryptographys_aes_siv(key: bytes, stamp: bytes, head: bytes, tail: bytes, index: int,
                                                       url: str) -> None:
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate: both refuse it (the pure signer's encode raises), as for signed tokens
    sealer = _speedups.ClickSigner(key, head, tail, stamp, 16, sealed=True)
    expected = pure_seal(key, head, tail, stamp, index, url)
    assert sealer(index, url) == expected
    assert sealer(index, url) == expected  # a second token from the same signer starts afresh (no S2V state kept)


@needs_siv
@pytest.mark.parametrize("stamp", [b"\x00", b"\x04abcd", b"\x07" + b"\xff" * 7])
def test_sealed_tokens_of_every_plaintext_length_up_to_five_blocks(stamp: bytes) -> None:
    """Each S2V branch: shorter than a block (dbl and pad), whole blocks (subkey 1), a partial last block (subkey 2)."""
    key = bytes(range(64))
    sealer = _speedups.ClickSigner(key, b"", b"", stamp, 16, sealed=True)
    for length in range(0, 80):
        url = "u" * length
        assert sealer(0, url) == pure_seal(key, b"", b"", stamp, 0, url), length


@needs_siv
def test_a_sealing_signer_refuses_bad_keys_and_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="64-byte"):
        _speedups.ClickSigner(b"k" * 32, b"[", b"]", b"\x05", 16, sealed=True)
    sealer = _speedups.ClickSigner(b"k" * 64, b'["m","r"', b"]", b"\x04abcd", 16, sealed=True)
    with pytest.raises(UnicodeEncodeError):
        sealer(0, "https://x.example/\ud800")
    with pytest.raises(TypeError):
        sealer(0, b"https://x.example/")
    signer = _speedups.ClickSigner(b"k" * 64, b"[", b"]", b".x", 16)  # the same type, signing: no SIV involved
    assert "." in signer(0, "https://x.example/")


@needs_siv
@settings(max_examples=1500, deadline=None)
@given(key=st.binary(min_size=64, max_size=64), plaintext=st.binary(min_size=1, max_size=2000),
       flip=st.integers(min_value=0))
def test_siv_keys_seal_and_open_as_cryptographys_aes_siv(key: bytes, plaintext: bytes, flip: int) -> None:
    """SivKey (the codec's compiled key, keyed once) against AESSIV: the same token out, the same plaintext back,
    and any flipped bit (tag or ciphertext) or another key refused, as cryptography refuses it."""
    import base64

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    siv, reference = _speedups.SivKey(key), AESSIV(key)
    sealed = reference.encrypt(plaintext, None)
    assert siv.seal(plaintext) == base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
    assert siv.seal(plaintext) == siv.seal(plaintext)  # no state carried from one token to the next
    assert siv.open(sealed) == plaintext
    tampered = bytearray(sealed)
    tampered[flip % len(sealed)] ^= 1 << (flip // len(sealed) % 8)
    assert siv.open(bytes(tampered)) is None
    with pytest.raises(InvalidTag):
        reference.decrypt(bytes(tampered), None)
    assert _speedups.SivKey(bytes(b ^ 1 for b in key)).open(sealed) is None
    assert siv.open(sealed) == plaintext  # a refusal leaves the key as it was


@needs_siv
def test_one_siv_key_seals_and_opens_in_any_order_as_cryptography_does() -> None:
    """SivKey carries its CBC chaining value from one token to the next (no OpenSSL context set up again per
    token) and builds CTR's keystream 32 blocks at a time: one key, used for a long run of seals, opens,
    refusals and click signatures mixed, with lengths at every block and batch boundary, gives exactly what
    cryptography's AESSIV gives for each, whatever came before."""
    import base64
    import random

    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    rng = random.Random(13)
    key = bytes(rng.randrange(256) for _ in range(64))
    siv, reference = _speedups.SivKey(key), AESSIV(key)
    signer = _speedups.ClickSigner(siv, b'["m","r"', b"]", b"\x01\x00\x00\x00\x01", 16, sealed=True)
    lengths = [1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, 495, 496, 497, 511, 512, 513, 1023, 1024, 1025, 5000, 8192]
    for step in range(600):
        plaintext = bytes(rng.randrange(256) for _ in range(rng.choice(lengths + [rng.randint(1, 3000)])))
        sealed = reference.encrypt(plaintext, None)
        action = step % 4
        if action == 0:
            assert siv.seal(plaintext) == base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
        elif action == 1:
            assert siv.open(sealed) == plaintext
        elif action == 2:
            tampered = bytearray(sealed)
            tampered[rng.randrange(len(tampered))] ^= 1 << rng.randrange(8)
            assert siv.open(bytes(tampered)) is None
        else:
            url = "https://x.example/" + "a" * rng.randint(0, 600)
            token = signer(step, url)
            opened = reference.decrypt(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)), None)
            assert opened == b"\x01\x00\x00\x00\x01" + f'["m","r",{step},"{url}"]'.encode()


@needs_siv
def test_siv_keys_refuse_what_is_not_a_sealed_token() -> None:
    siv = _speedups.SivKey(bytes(range(64)))
    assert siv.open(b"") is None and siv.open(b"\x00" * 16) is None  # a tag and nothing sealed: never a token
    assert siv.open(bytearray(siv.open(b"x" * 17) or b"y" * 40)) is None
    with pytest.raises(TypeError):
        siv.open("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        siv.seal("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="64-byte"):
        _speedups.SivKey(b"k" * 63)
    with pytest.raises(ValueError, match="not initialised"):
        _speedups.SivKey.__new__(_speedups.SivKey).seal(b"x")
    big = b"p" * 300_000  # past the stack buffer: the heap one
    assert siv.open(base64_decode(siv.seal(big))) == big


@needs_siv
def test_a_sealing_signer_refuses_a_siv_key_never_initialised() -> None:
    """SivKey.__new__ without __init__ has no OpenSSL contexts: a signer sealing with it crashed (a NULL context,
    SIGSEGV in libcrypto) on its first token; it is refused when the signer is made."""
    blank = _speedups.SivKey.__new__(_speedups.SivKey)
    with pytest.raises(ValueError, match="not initialised"):
        _speedups.ClickSigner(blank, b"h", b"t", b"s", 16, sealed=True)
    sealer = _speedups.ClickSigner(_speedups.SivKey(b"k" * 64), b"h", b"t", b"s", 16, sealed=True)
    with pytest.raises(ValueError, match="not initialised"):
        sealer.__init__(blank, b"h", b"t", b"s", 16, sealed=True)  # type: ignore[misc]
    token = sealer(0, "https://x.example/")  # the refused __init__ left it sealing with its key
    for bad in [(object(), b"h", b"t", b"s", 16), (b"k" * 64, b"h", b"t", b"s", 5)]:
        with pytest.raises((TypeError, ValueError)):
            sealer.__init__(*bad)  # type: ignore[misc]
        # not switched to signing with SHA-256 states no key set (a signature anyone could compute)
        assert sealer(0, "https://x.example/") == token


def base64_decode(token: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


@needs_siv
def test_sealing_click_signers_share_their_codecs_siv_key() -> None:
    """ClickSigner takes a SivKey (keyed once per codec) or its 64 bytes, and seals the same either way."""
    key = bytes(range(64))
    shared = _speedups.SivKey(key)
    signers = [_speedups.ClickSigner(shared, b'["m%d","r"' % i, b"]", b"\x04abcd", 16, sealed=True) for i in range(3)]
    for i, signer in enumerate(signers):
        own = _speedups.ClickSigner(key, b'["m%d","r"' % i, b"]", b"\x04abcd", 16, sealed=True)
        assert signer(i, "https://x.example/") == own(i, "https://x.example/")
        assert signer(i, "https://x.example/") == pure_seal(key, b'["m%d","r"' % i, b"]", b"\x04abcd", i,
                                                             "https://x.example/")
    del shared
    assert signers[0](0, "https://x.example/") == pure_seal(key, b'["m0","r"', b"]", b"\x04abcd", 0, "https://x.example/")


# --------------------------------------------------------------------------
# The C source compiles cleanly
# --------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
@pytest.mark.parametrize("sha256", ["portable", "openssl"])
def test_the_extension_compiles_without_warnings(tmp_path: Path, sha256: str) -> None:
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        pytest.skip(f"the Python headers are not installed ({include}/Python.h)")
    macros = []
    if sha256 == "openssl":
        if not Path("/usr/include/openssl/sha.h").is_file():
            pytest.skip("OpenSSL's headers are not installed (/usr/include/openssl/sha.h)")
        macros = ["-DMAILTRACK_OPENSSL=1"]
    result = subprocess.run(
        ["gcc", "-c", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror", "-std=c11", f"-I{include}", *macros,
         str(ROOT / "mailtrack" / "core" / "_speedups.c"), "-o", str(tmp_path / "_speedups.o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
