"""Every body the endpoints serve: the open pixel, the small HTML pages, the unsubscribe confirmation.

Kept apart from the endpoints so what a reader sees (markup, the security
headers every page carries, the no-cache headers) is written once and the
endpoints only decide *which* answer to give. Titles and messages are
trusted text (mailtrack's own, or escaped by the caller); a landing page is
the operator's HTML, served as given with the unsubscribe button added.
"""

from __future__ import annotations

import re

from mailtrack.http.messages import Response

__all__ = ["GIF", "NO_CACHE", "confirmation", "not_allowed", "page", "pixel"]

#: A 1x1 transparent GIF89a, 43 bytes.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
assert len(GIF) == 43

#: Headers that keep every cache (browser, proxy, mail client image cache) from answering in our place.
NO_CACHE = (
    ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
)
_PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    *NO_CACHE,
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE | re.ASCII)
#: The button of the confirmation page: a POST, as RFC 8058's one-click unsubscribe sends it.
_UNSUBSCRIBE_FORM = (
    '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
    '<button type="submit">Unsubscribe</button></form>'
)


def pixel(*, head: bool = False) -> Response:
    """``200`` with the transparent GIF, never cached (so every open reaches us)."""
    headers = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))), *NO_CACHE]
    return Response(200, headers, b"" if head else GIF)


def page(status: int, title: str, message: str, *, extra: str = "", head: bool = False) -> Response:
    """A small HTML page saying ``message`` under ``title`` (both trusted markup), then ``extra``."""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width"><title>{title}</title></head><body style="font-family:sans-serif;'
        f'max-width:32em;margin:3em auto;padding:0 1em"><h1>{title}</h1><p>{message}</p>{extra}</body></html>'
    ).encode()
    return _html(status, body, head)


def not_allowed(allow: str) -> Response:
    """``405`` naming the methods this address takes, in the page and in ``Allow``."""
    response = page(405, "Method not allowed", "This address takes " + allow + ".")
    return Response(405, [*response.headers, ("Allow", allow)], response.body)


def confirmation(landing_html: str | None, *, head: bool = False) -> Response:
    """The unsubscribe confirmation: ``landing_html`` with the button before its last ``</body>`` (or at its end).

    Without a landing page, a plain one asks the question. The button POSTs:
    link scanners fetch every URL, so a GET must never unsubscribe.
    """
    if not landing_html:
        return page(200, "Unsubscribe", "Do you want to stop receiving these emails?", extra=_UNSUBSCRIBE_FORM, head=head)
    ends = list(_BODY_END.finditer(landing_html))
    at = ends[-1].start() if ends else len(landing_html)
    return _html(200, (landing_html[:at] + _UNSUBSCRIBE_FORM + landing_html[at:]).encode("utf-8"), head)


def _html(status: int, body: bytes, head: bool) -> Response:
    return Response(status, [*_PAGE_HEADERS, ("Content-Length", str(len(body)))], b"" if head else body)
