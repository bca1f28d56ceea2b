"""The contenders of the rewrite benchmark, one ``fn(html) -> html`` each, on the same data.

Every contender tracks clicks and opens for message ``msg-1`` to
``ann@example.com`` with metadata ``{"campaign": "spring"}`` under
``https://t.example.com``:

* ``mailtrack``  - :meth:`mailtrack.Tracker.rewrite_html` (byte-exact splice, default options: opaque tokens,
  AES-SIV per link);
* ``mailtrack-signed`` - the same with ``token_format="signed"`` (HMAC-SHA256 per link, readable payload): the
  price of opaque tokens is ``mailtrack`` ÷ ``mailtrack-signed``;
* ``pytracking`` - ``pytracking.html.adapt_html`` 0.2.2 (lxml parse + re-serialize; its tokens are
  unsigned base64 JSON, as Fernet encryption would need ``cryptography`` and be slower still);
* ``bs4``        - a naive BeautifulSoup(lxml) rewrite: signed base64 JSON per ``<a href>``, ``str(soup)``;
* ``floor``      - one regex pass over quoted http(s) ``href`` values, one HMAC-SHA256 per link,
  the pixel spliced in, one ``join``: the least work any tracker has to do.

Factories import their library lazily, so the harness can run the others while
one is missing (``mailtrack`` under development, say).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "BASE_URL",
    "CONTENDERS",
    "METADATA",
    "MESSAGE_ID",
    "RECIPIENT",
    "Rewrite",
    "SECRET_KEYS",
    "make_tracker",
]

Rewrite = Callable[[str], str]

MESSAGE_ID = "msg-1"
RECIPIENT = "ann@example.com"
METADATA: dict[str, Any] = {"campaign": "spring"}
BASE_URL = "https://t.example.com"
SECRET_KEYS = ["older-key", "newest-key"]
_SIGNING_KEY = SECRET_KEYS[-1].encode("utf-8")


def _b64(data: bytes) -> str:
    """Unpadded URL-safe base64, the usual token alphabet (no ``&``, quotes or ``<``)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_tracker(**options: Any) -> Any:
    """The mailtrack Tracker every mailtrack measurement uses (default options, unless ``options`` say otherwise)."""
    import mailtrack

    return mailtrack.Tracker(secret_keys=SECRET_KEYS, base_url=BASE_URL, **options)


def make_mailtrack() -> Rewrite:
    """mailtrack: scan, sign, splice; the document is otherwise kept byte for byte."""
    tracker = make_tracker()

    def rewrite(html: str) -> str:
        return str(tracker.rewrite_html(html, message_id=MESSAGE_ID, recipient=RECIPIENT, metadata=METADATA).html)

    return rewrite


def make_mailtrack_signed() -> Rewrite:
    """mailtrack issuing signed tokens (the format before issue 14), beside the default opaque ones."""
    tracker = make_tracker(token_format="signed")

    def rewrite(html: str) -> str:
        return str(tracker.rewrite_html(html, message_id=MESSAGE_ID, recipient=RECIPIENT, metadata=METADATA).html)

    return rewrite


def make_mailtrack_pure() -> Rewrite:
    """mailtrack on its pure-Python path (the compiled speedups switched off for the call), to compare both in one run.

    Dropped from the run (not measured) where the speedups are not compiled or ``MAILTRACK_PURE=1`` is set:
    the ``mailtrack`` column is then the pure path already.
    """
    from mailtrack.core import speedups

    if speedups.compiled is None:
        raise RuntimeError("the compiled speedups are off (not built, or MAILTRACK_PURE=1): the mailtrack column is pure")
    tracker = make_tracker()

    def rewrite(html: str) -> str:
        compiled, speedups.compiled = speedups.compiled, None
        try:
            return str(tracker.rewrite_html(html, message_id=MESSAGE_ID, recipient=RECIPIENT, metadata=METADATA).html)
        finally:
            speedups.compiled = compiled

    return rewrite


def make_pytracking() -> Rewrite:
    """pytracking 0.2.2 ``adapt_html`` with click and open tracking, as its README shows."""
    from pytracking.html import adapt_html

    extra = {"message_id": MESSAGE_ID, "recipient": RECIPIENT, **METADATA}

    def rewrite(html: str) -> str:
        return str(
            adapt_html(
                html,
                extra_metadata=extra,
                click_tracking=True,
                open_tracking=True,
                base_open_tracking_url=BASE_URL + "/o/",
                base_click_tracking_url=BASE_URL + "/c/",
            )
        )

    return rewrite


def make_bs4() -> Rewrite:
    """The obvious hand-rolled tracker: parse with BeautifulSoup(lxml), edit the tree, ``str()`` it."""
    import warnings

    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

    # Corpus files include XHTML and tiny fragments; the warnings would only flood the output.
    warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)
    warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)

    def sign(payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        return body + "." + _b64(hmac.new(_SIGNING_KEY, body.encode("ascii"), hashlib.sha256).digest())

    def rewrite(html: str) -> str:
        soup = BeautifulSoup(html, "lxml")
        for index, a in enumerate(soup.find_all("a", href=True)):
            href = a["href"]
            if isinstance(href, str) and href.startswith(("http://", "https://")):
                token = sign({"u": href, "m": MESSAGE_ID, "r": RECIPIENT, "i": index, "md": METADATA})
                a["href"] = f"{BASE_URL}/c/{token}"
        pixel = soup.new_tag(
            "img", attrs={"src": f"{BASE_URL}/o/" + sign({"m": MESSAGE_ID, "r": RECIPIENT}), "width": "1", "height": "1", "alt": ""}
        )
        (soup.body or soup).append(pixel)
        return str(soup)

    return rewrite


# Quoted http(s) href values, either quote. Case-insensitive, as HTML attribute
# names are (Outlook writes HREF=); a case-sensitive pattern is ~30 % faster but
# would miss links a tracker must rewrite.
_FLOOR_HREF = re.compile(r"""href=(?:"(https?://[^"]*)"|'(https?://[^']*)')""", re.IGNORECASE)


def make_floor() -> Rewrite:
    """The floor: one regex pass over hrefs, one HMAC-SHA256 per link, one pixel, one join.

    The MAC is pre-keyed with the message identity, so each link costs one
    ``copy()`` + ``update(value)`` + ``digest()``; the token is the value in
    base64 plus a 128-bit tag. No entity decoding, no tokenizer, no metadata
    per link: anything a real tracker does beyond this is overhead. Output is
    assembled from slices in one ``join`` with the pixel before the last
    ``</body>`` (at the end when there is none), so the document is copied once
    (``re.sub`` plus slicing the pixel in would copy it three times).
    """
    keyed = hmac.new(_SIGNING_KEY, f"{MESSAGE_ID}\x00{RECIPIENT}\x00".encode(), hashlib.sha256)
    click_prefix = BASE_URL + "/c/"
    pixel = f'<img src="{BASE_URL}/o/{_b64(keyed.copy().digest()[:16])}" width="1" height="1" alt="">'
    finditer = _FLOOR_HREF.finditer

    def rewrite(html: str) -> str:
        body_end = html.rfind("</body>")
        if body_end < 0:
            body_end = len(html)
        pieces: list[str] = []
        pos = 0
        placed = False
        for match in finditer(html):
            start = match.start()
            if not placed and start >= body_end:
                pieces += (html[pos:body_end], pixel)
                pos, placed = body_end, True
            value, quote = match.group(1), '"'
            if value is None:
                value, quote = match.group(2), "'"
            data = value.encode("utf-8")
            mac = keyed.copy()
            mac.update(data)
            pieces += (html[pos:start], f"href={quote}{click_prefix}{_b64(data)}.{_b64(mac.digest()[:16])}{quote}")
            pos = match.end()
        if not placed:
            pieces += (html[pos:body_end], pixel)
            pos = body_end
        pieces.append(html[pos:])
        return "".join(pieces)

    return rewrite


#: Contender name -> factory, in the order tables list them.
CONTENDERS: dict[str, Callable[[], Rewrite]] = {
    "mailtrack": make_mailtrack,
    "mailtrack-signed": make_mailtrack_signed,
    "mailtrack-pure": make_mailtrack_pure,
    "pytracking": make_pytracking,
    "bs4": make_bs4,
    "floor": make_floor,
}
