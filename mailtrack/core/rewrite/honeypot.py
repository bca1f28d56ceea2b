"""The honeypot link: one invisible click URL per HTML part, which no person follows (issue 14, opt-in).

``Tracker(honeypot=True)`` adds it where the open pixel would go (before the
last ``</body>``; ``pixel_position="top"`` puts it after ``<body>``), once per
HTML part, only while click tracking is on. It is an empty ``<a>`` with
``display:none``: no text, no box, not in the tab order (``tabindex="-1"``),
hidden from assistive technology (``aria-hidden="true"``), so a screen reader
skips it and nobody sees it; link scanners, which fetch every ``href`` in the
markup, follow it. Its URL is an ordinary click token of the message, signed
with the reserved link index :data:`HONEYPOT_INDEX` (no real link has a
negative index, and the index is signed, so nobody can forge one) and the
base URL as its destination, which is never redirected to: the endpoint
answers ``204 No Content`` and records the click with ``machine="honeypot"``
(:mod:`mailtrack.http.endpoints`). The token format is unchanged.

The link does not count toward ``max_links`` and is not in
:attr:`HtmlResult.links`; everything else of the document stays byte for byte
what the rewrite without it gives (the insertion is one more edit of the splice).
"""

from __future__ import annotations

from mailtrack.core.charrefs import escape_attribute

__all__ = ["HONEYPOT_INDEX", "HONEYPOT_STYLE", "honeypot_html"]

#: The link index signed into the honeypot's click token; real links count from 0.
HONEYPOT_INDEX = -1

#: Hidden from every reader: no box, no size, nothing to click, even where a client drops ``display:none``.
HONEYPOT_STYLE = (
    "display:none!important;visibility:hidden!important;mso-hide:all;font-size:0!important;line-height:0!important;"
    "max-height:0!important;max-width:0!important;overflow:hidden!important;opacity:0!important"
)


def honeypot_html(url: str) -> str:
    """The honeypot link for ``url``: an empty, hidden anchor no person sees or reaches with the keyboard."""
    return (f'<a href="{escape_attribute(url, chr(34))}" aria-hidden="true" tabindex="-1" '
            f'style="{HONEYPOT_STYLE}"></a>')
