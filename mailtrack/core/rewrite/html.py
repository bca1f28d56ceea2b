"""Byte-exact HTML rewriting: patch link values in place, insert the open pixel.

The document is never re-serialized. :func:`rewrite_html` collects edits as
``(start, end, replacement)`` spans of the input and splices them in one pass;
everything outside those spans is copied unchanged.
"""

from __future__ import annotations

from mailtrack.core.charrefs import escape_attribute
from mailtrack.core.results import (
    GMAIL_CLIP_BYTES,
    HtmlResult,
    PixelInsertion,
    exceeds_gmail_clip,
)
from mailtrack.core.rewrite.footer import unsubscribe_edits
from mailtrack.core.rewrite.honeypot import HONEYPOT_INDEX, honeypot_html
from mailtrack.core.rewrite.links import LinkBook, earlier_tokens, track_html_links
from mailtrack.core.rewrite.plan import RewritePlan
from mailtrack.core.rewrite.splice import Edits, splice
from mailtrack.core.scanner import ScanResult, scan, text_occurrences
from mailtrack.core.tokens import MAX_TOKEN_LENGTH
from mailtrack.exceptions import ArgumentError

_PIXEL_STYLE = (
    "height:1px!important;width:1px!important;max-height:1px!important;max-width:1px!important;"
    "border:0!important;margin:0!important;padding:0!important;overflow:hidden!important"
)


def pixel_html(url: str) -> str:
    """The open-tracking pixel: a 1x1 image no client hides and no layout spaces."""
    return f'<img src="{escape_attribute(url, chr(34))}" width="1" height="1" alt="" border="0" style="{_PIXEL_STYLE}" />'


def rewrite_html(html: str, plan: RewritePlan) -> HtmlResult:
    """Rewrite ``html`` as ``plan`` says; see :meth:`mailtrack.Tracker.rewrite_html`."""
    return rewrite_html_edits(html, plan)[0]


def rewrite_html_edits(html: str, plan: RewritePlan) -> tuple[HtmlResult, Edits]:
    """:func:`rewrite_html`, plus the edits it made (so MIME re-encodes only the lines they touch)."""
    if not isinstance(html, str):
        raise ArgumentError(
            f"html must be a str, not {type(html).__name__}; decode bytes with the message part's charset first"
        )
    scanned = scan(html)
    edits: list[tuple[int, int, str]] = []
    warnings: list[str] = []
    book = LinkBook(plan)
    track_html_links(html, scanned, plan, book, edits)  # with clicks off, only another message's click URLs change

    at = _pixel_position(html, scanned, "bottom")
    ours = plan.layout.base_url in html  # one search settles both kinds' earlier tokens for most documents
    unsubscribe = unsubscribe_edits(html, plan, book, edits, warnings, text=False, at=at, ours=ours)
    present, pixels = earlier_tokens(html, plan, "open", edits, ours=ours)
    if not pixels and plan.open_token is not None:
        pixels = _place_pixels(html, scanned, plan, warnings, present)
    edits.extend((p.position, p.position + len(p.replaced), p.html) for p in unsubscribe + pixels)
    honeypot = _honeypot(html, scanned, plan, book, warnings)
    if honeypot is not None:
        edits.append((honeypot.position, honeypot.position, honeypot.html))  # after a pixel at the same place
    output = splice(html, edits)
    if exceeds_gmail_clip(output):
        at_top = bool(pixels) and pixels[0].position == scanned.body_start_end
        where = "" if at_top or not pixels else "; the open pixel may be cut off, consider pixel_position='top'"
        warnings.append(f"the output is over {GMAIL_CLIP_BYTES} bytes: Gmail will clip it{where}")
    return HtmlResult(output, book.links, book.skipped, pixels, warnings, unsubscribe, honeypot), edits


def _pixel_position(html: str, scanned: ScanResult, where: str) -> int:
    """Before the last real </body>, else </html>, else an unterminated construct at the end, else the end."""
    if where == "top" and scanned.body_start_end is not None:
        return scanned.body_start_end
    for candidate in (scanned.body_end, scanned.html_end, scanned.truncated_at):
        if candidate is not None:
            return candidate
    return len(html)


def _honeypot(
    html: str, scanned: ScanResult, plan: RewritePlan, book: LinkBook, warnings: list[str]
) -> PixelInsertion | None:
    """The honeypot link to add (:mod:`.honeypot`), where the pixel goes by default; None when off or already there."""
    if not plan.honeypot or plan.click is None or book.honeypot_present:
        return None
    url = book.prefix + plan.click(HONEYPOT_INDEX, plan.layout.base_url)
    if len(url) > MAX_TOKEN_LENGTH:
        warnings.append("the honeypot link's URL would exceed 8 KiB (metadata too large); none added")
        return None
    return PixelInsertion(_pixel_position(html, scanned, plan.pixel_position), honeypot_html(url))


def _place_pixels(
    html: str, scanned: ScanResult, plan: RewritePlan, warnings: list[str], present: bool
) -> list[PixelInsertion]:
    """Where the open pixel goes, or nowhere (with a warning saying why); ``present``: this message's is there."""
    assert plan.open_token is not None
    if present:
        warnings.append("an open pixel of ours is already present; none added")
        return []
    open_url = plan.layout.prefix("open") + plan.open_token()
    if len(open_url) > MAX_TOKEN_LENGTH:
        warnings.append("the open pixel URL would exceed 8 KiB (metadata too large); no pixel added")
        return []
    pixel = pixel_html(open_url)
    substitution = plan.substitution_tag
    if substitution:
        positions = text_occurrences(html, substitution)
        elsewhere = html.count(substitution) - len(positions)
        if elsewhere:
            warnings.append(
                f"open_tracking.substitution_tag {substitution!r} left as is {elsewhere} time(s) inside markup "
                "(an attribute, a comment, a script or style): a pixel there would break the document or never load"
            )
        if positions:
            return [PixelInsertion(at, pixel, substitution) for at in positions]
        warnings.append(f"open_tracking.substitution_tag {substitution!r} not found in the text; pixel placed at the default position")
    return [PixelInsertion(_pixel_position(html, scanned, plan.pixel_position), pixel)]