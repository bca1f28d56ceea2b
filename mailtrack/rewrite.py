"""Byte-exact HTML rewriting: patch link values in place, insert the open pixel.

The document is never re-serialized. :func:`rewrite_html` collects edits as
``(start, end, replacement)`` spans of the input and splices them in one pass;
everything outside those spans is copied unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .charrefs import decode_attribute, escape_attribute
from .results import HtmlResult, PixelInsertion, SkippedLink, TrackedLink
from .rules import PlaceholderMatcher, opted_out
from .scanner import ScanResult, scan
from .tokens import MAX_TOKEN_LENGTH
from .urls import UrlLayout, destination_problem

__all__ = ["RewritePlan", "rewrite_html", "pixel_html"]

_ASCII_WS = "\t\n\f\r "
_PIXEL_STYLE = (
    "height:1px!important;width:1px!important;max-height:1px!important;max-width:1px!important;"
    "border:0!important;margin:0!important;padding:0!important;overflow:hidden!important"
)


def pixel_html(url: str) -> str:
    """The open-tracking pixel: a 1x1 image no client hides and no layout spaces."""
    return f'<img src="{escape_attribute(url, chr(34))}" width="1" height="1" alt="" border="0" style="{_PIXEL_STYLE}" />'


@dataclass(frozen=True)
class RewritePlan:
    """Everything one rewrite needs besides the document: resolved settings and signers."""

    layout: UrlLayout
    placeholders: PlaceholderMatcher
    opt_outs: Mapping[str, str | None]
    max_links: int
    click: Callable[[int, str], str] | None  # signs (link_index, url); None: click tracking off
    open_token: Callable[[], str] | None  # signs the open token; None: open tracking off
    substitution_tag: str | None
    pixel_position: str  # "bottom" or "top"


def rewrite_html(html: str, plan: RewritePlan) -> HtmlResult:
    """Rewrite ``html`` as ``plan`` says; see :meth:`mailtrack.Tracker.rewrite_html`."""
    if not isinstance(html, str):
        raise TypeError(
            f"html must be a str, not {type(html).__name__}; decode bytes with the message part's charset first"
        )
    scanned = scan(html)
    edits: list[tuple[int, int, str]] = []
    links: list[TrackedLink] = []
    skipped: list[SkippedLink] = []
    warnings: list[str] = []

    if plan.click is not None:
        layout = plan.layout
        click_prefix = layout.prefix("click")
        counted = 0
        for tag in scanned.links:
            href = tag.attributes.get("href")
            if href is None:
                continue
            raw, start, end, quote = href
            url = decode_attribute(raw).strip(_ASCII_WS)
            reason = None
            if not url:
                reason = "empty"
            elif opted_out(tag.attributes, plan.opt_outs):
                reason = "opt-out"
            elif plan.placeholders.search(url):
                reason = "placeholder"
            else:
                problem = destination_problem(url)
                if problem == "scheme":
                    reason = "scheme"
                elif problem is not None:
                    reason = "invalid"
                elif layout.is_ours(url):
                    reason = "already-tracked"
                    counted += 1
                elif counted >= plan.max_links:
                    reason = "limit"
            if reason is None:
                tracking_url = click_prefix + plan.click(counted, url)
                if len(tracking_url) > MAX_TOKEN_LENGTH:
                    reason = "too-long"
                else:
                    links.append(TrackedLink(counted, url, tracking_url, start, end, raw, quote, tag.tag))
                    edits.append((start, end, escape_attribute(tracking_url, quote)))
                    counted += 1
                    continue
            skipped.append(SkippedLink(raw, reason, start, end, url, tag.tag))

    pixels: list[PixelInsertion] = []
    if plan.open_token is not None:
        open_prefix = plan.layout.prefix("open")
        if open_prefix in html:
            warnings.append("open pixel already present; none added")
        else:
            open_url = open_prefix + plan.open_token()
            pixel = pixel_html(open_url)
            substitution = plan.substitution_tag
            if substitution:
                pixels = _substitutions(html, substitution, pixel, edits)
                if not pixels:
                    warnings.append(
                        f"open_tracking.substitution_tag {substitution!r} not found; pixel placed at the default position"
                    )
            if not pixels:
                pixels = [PixelInsertion(_pixel_position(html, scanned, plan.pixel_position), pixel)]
            edits.extend((p.position, p.position + len(p.replaced), p.html) for p in pixels)
            edits.sort(key=lambda edit: edit[0])

    if not edits:
        return HtmlResult(html, links, skipped, pixels, warnings)
    out: list[str] = []
    pos = 0
    for start, end, replacement in edits:
        out.append(html[pos:start])
        out.append(replacement)
        pos = end
    out.append(html[pos:])
    return HtmlResult("".join(out), links, skipped, pixels, warnings)


def _pixel_position(html: str, scanned: ScanResult, where: str) -> int:
    """Before the last real </body>, else </html>, else an unterminated construct at the end, else the end."""
    if where == "top" and scanned.body_start_end is not None:
        return scanned.body_start_end
    for candidate in (scanned.body_end, scanned.html_end, scanned.truncated_at):
        if candidate is not None:
            return candidate
    return len(html)


def _substitutions(html: str, tag: str, pixel: str, edits: list[tuple[int, int, str]]) -> list[PixelInsertion]:
    """Every occurrence of ``tag`` outside the link values being replaced."""
    found = []
    pos = html.find(tag)
    spans = sorted((start, end) for start, end, _ in edits)
    while pos != -1:
        end = pos + len(tag)
        if not any(start < end and pos < stop for start, stop in spans):
            found.append(PixelInsertion(pos, pixel, tag))
            pos = html.find(tag, end)
        else:
            pos = html.find(tag, pos + 1)
    return found
