"""Byte-exact HTML rewriting: patch link values in place, insert the open pixel.

The document is never re-serialized. :func:`rewrite_html` collects edits as
``(start, end, replacement)`` spans of the input and splices them in one pass;
everything outside those spans is copied unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .charrefs import decode_attribute, escape_attribute
from .results import GMAIL_CLIP_BYTES, HtmlResult, PixelInsertion, SkippedLink, TextResult, TrackedLink, exceeds_gmail_clip
from .rules import OptOuts, PlaceholderMatcher
from .scanner import LinkTag, ScanResult, scan, text_occurrences
from .subscription import html_footer, text_footer
from .text import find_urls
from .tokens import MAX_TOKEN_LENGTH
from .urls import ASCII_WHITESPACE, UrlLayout, add_query_parameters, destination_problem

__all__ = [
    "Edits",
    "RewritePlan",
    "pixel_html",
    "rewrite_html",
    "rewrite_html_edits",
    "rewrite_text",
    "rewrite_text_edits",
    "splice",
]

#: ``(start, end, replacement)`` spans of the input, sorted by start: what a rewrite changed.
Edits = list[tuple[int, int, str]]

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
    opt_outs: OptOuts
    max_links: int
    click: Callable[[int, str], str] | None  # signs (link_index, url); None: click tracking off
    open_token: Callable[[], str] | None  # signs the open token; None: open tracking off
    is_open_token: Callable[[str], bool]  # True for an authentic open token of ours (an earlier pass's pixel)
    substitution_tag: str | None
    pixel_position: str  # "bottom" or "top"
    utm: tuple[tuple[str, str], ...] = ()  # Google Analytics parameters added to tracked destinations
    unsubscribe: Unsubscribe | None = None  # subscription tracking; None: off
    first_index: int = 0  # link_index of the first link (later parts of a message continue the count)


@dataclass(frozen=True)
class Unsubscribe:
    """Subscription tracking for one message: how to sign the URL and where it goes."""

    token: Callable[[], str]
    is_token: Callable[[str], bool]  # True for an authentic unsubscribe token of ours
    html: str  # footer template with <% link text %>
    text: str  # footer template with <% %>
    substitution_tag: str | None  # replaced by the bare URL instead of any footer
    newline: str = ""  # line break around a text footer; "" to follow the text's own


def rewrite_html(html: str, plan: RewritePlan) -> HtmlResult:
    """Rewrite ``html`` as ``plan`` says; see :meth:`mailtrack.Tracker.rewrite_html`."""
    return rewrite_html_edits(html, plan)[0]


def rewrite_html_edits(html: str, plan: RewritePlan) -> tuple[HtmlResult, Edits]:
    """:func:`rewrite_html`, plus the edits it made (so MIME re-encodes only the lines they touch)."""
    if not isinstance(html, str):
        raise TypeError(
            f"html must be a str, not {type(html).__name__}; decode bytes with the message part's charset first"
        )
    scanned = scan(html)
    edits: list[tuple[int, int, str]] = []
    warnings: list[str] = []
    book = _LinkBook(plan)
    if plan.click is not None:
        _track_links(html, scanned, plan, book, edits)

    at = _pixel_position(html, scanned, "bottom")
    unsubscribe = _unsubscribe_edits(html, plan, book, edits, warnings, text=False, at=at)
    pixels = _place_pixels(html, scanned, plan, warnings) if plan.open_token is not None else []
    edits.extend((p.position, p.position + len(p.replaced), p.html) for p in unsubscribe + pixels)
    output = splice(html, edits)
    if exceeds_gmail_clip(output):
        at_top = bool(pixels) and pixels[0].position == scanned.body_start_end
        where = "" if at_top or not pixels else "; the open pixel may be cut off, consider pixel_position='top'"
        warnings.append(f"the output is over {GMAIL_CLIP_BYTES} bytes: Gmail will clip it{where}")
    return HtmlResult(output, book.links, book.skipped, pixels, warnings, unsubscribe), edits


def rewrite_text(text: str, plan: RewritePlan, exclude: frozenset[str] = frozenset()) -> TextResult:
    """Rewrite the URLs of a plain-text body as ``plan`` says; see :meth:`mailtrack.Tracker.rewrite_text`.

    ``exclude`` holds destinations to leave alone with reason ``opt-out`` (links
    opted out in the message's HTML part). No pixel: text cannot load one.
    """
    return rewrite_text_edits(text, plan, exclude)[0]


def rewrite_text_edits(text: str, plan: RewritePlan, exclude: frozenset[str] = frozenset()) -> tuple[TextResult, Edits]:
    """:func:`rewrite_text`, plus the edits it made."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}; decode bytes with the message part's charset first")
    edits: list[tuple[int, int, str]] = []
    warnings: list[str] = []
    book = _LinkBook(plan)
    if plan.click is not None:
        for start, end in find_urls(text):
            url = text[start:end]
            reason = "opt-out" if url in exclude else _classify_destination(url, plan)
            tracking_url = book.decide(url, reason, start, end, url, "", "text")
            if tracking_url is not None:
                edits.append((start, end, tracking_url))
    unsubscribe = _unsubscribe_edits(text, plan, book, edits, warnings, text=True, at=len(text))
    edits.extend((p.position, p.position + len(p.replaced), p.html) for p in unsubscribe)
    return TextResult(splice(text, edits), book.links, book.skipped, warnings, unsubscribe), edits


def splice(source: str, edits: Edits) -> str:
    """``source`` with each ``(start, end, replacement)`` applied; insertions at one offset keep their order."""
    if not edits:
        return source
    edits.sort(key=lambda edit: edit[0])
    out: list[str] = []
    pos = 0
    for start, end, replacement in edits:
        out.append(source[pos:start])
        out.append(replacement)
        pos = end
    out.append(source[pos:])
    return "".join(out)


def _unsubscribe_edits(
    source: str,
    plan: RewritePlan,
    book: _LinkBook,
    edits: list[tuple[int, int, str]],
    warnings: list[str],
    *,
    text: bool,
    at: int,
) -> list[PixelInsertion]:
    """Where the unsubscribe URL goes: the substitution tag's places, or a footer at ``at``.

    Other links in a footer are tracked now, like the body's (recorded with
    ``start == end == at``: they are not in the input), so that a second pass
    finds nothing left to do.
    """
    settings = plan.unsubscribe
    if settings is None:
        return []
    prefix = plan.layout.prefix("unsubscribe")
    if any(settings.is_token(token) for token in _tokens_after(source, prefix)):
        return []  # an earlier pass put it there
    url = prefix + settings.token()
    tag = settings.substitution_tag
    if tag:
        taken = [(start, end) for start, end, _ in edits]
        places, overlapping, pos = [], 0, source.find(tag)
        while pos != -1:
            if any(start < pos + len(tag) and pos < end for start, end in taken):
                overlapping += 1
            else:
                places.append(PixelInsertion(pos, url, tag))
            pos = source.find(tag, pos + len(tag))
        if places:
            if overlapping:
                warnings.append(f"subscription_tracking.substitution_tag {tag!r} inside a tracked link left as is {overlapping} time(s)")
            return places
        where = "only inside tracked links" if overlapping else "not found"
        warnings.append(f"subscription_tracking.substitution_tag {tag!r} {where}; the unsubscribe footer was added instead")
    if text:
        newline = settings.newline or ("\r\n" if "\r\n" in source else "\n")
        if not source or source.endswith(("\n\n", "\n\r\n")):
            separator = ""  # already ends with a blank line
        elif source.endswith("\n"):
            separator = newline
        else:
            separator = newline * 2
        footer = text_footer(settings.text, url)
        if plan.click is not None:
            footer = splice(footer, [
                (start, end, tracking)
                for start, end in find_urls(footer)
                if (tracking := book.decide(footer[start:end], _classify_destination(footer[start:end], plan),
                                            at, at, footer[start:end], "", "text")) is not None
            ])
        return [PixelInsertion(at, separator + footer + newline)]
    footer = html_footer(settings.html, url)
    if plan.click is not None:
        footer_edits: list[tuple[int, int, str]] = []
        _track_links(footer, scan(footer), plan, book, footer_edits, recorded_at=at)
        footer = splice(footer, footer_edits)
    return [PixelInsertion(at, footer)]


def _classify(url: str, html: str, tag: LinkTag, plan: RewritePlan) -> str | None:
    """Why a link is left alone (see :class:`SkippedLink`), or None to track it (limit aside)."""
    if not url:
        return "empty"
    if plan.opt_outs.applies(html, tag):
        return "opt-out"
    return _classify_destination(url, plan)


def _classify_destination(url: str, plan: RewritePlan) -> str | None:
    """The rules that look at the destination alone (placeholders, scheme, ours)."""
    if plan.placeholders.plain_http(url):
        return "already-tracked" if plan.layout.is_ours(url) else None
    if plan.placeholders.search(url):
        return "placeholder"
    problem = destination_problem(url)
    if problem is not None:
        return "scheme" if problem == "scheme" else "invalid"
    if plan.layout.is_ours(url):
        return "already-tracked"
    return None


class _LinkBook:
    """Counts links toward ``max_links`` in source order, signs the tracked ones, and records both lists.

    Tracked and already-tracked links both count, so a second pass sees the
    same limit as the first.
    """

    def __init__(self, plan: RewritePlan) -> None:
        self.prefix = plan.layout.prefix("click")
        self.max_links = plan.max_links
        self.sign = plan.click
        self.utm = plan.utm
        self.counted = plan.first_index  # counts toward max_links too: the limit is per message
        self.links: list[TrackedLink] = []
        self.skipped: list[SkippedLink] = []

    def decide(self, url: str, reason: str | None, start: int, end: int, raw: str, quote: str, tag: str) -> str | None:
        """The tracking URL for this link, or None (recorded as skipped, with its reason)."""
        if reason is None:
            if self.counted >= self.max_links:
                reason = "limit"
            else:
                if self.utm:
                    url = add_query_parameters(url, self.utm)  # signed, so the redirect carries them
                assert self.sign is not None, "links are decided only with click tracking on"
                tracking_url = self.prefix + self.sign(self.counted, url)
                if len(tracking_url) <= MAX_TOKEN_LENGTH:
                    self.links.append(TrackedLink(self.counted, url, tracking_url, start, end, raw, quote, tag))
                    self.counted += 1
                    return tracking_url
                reason = "too-long"
        elif reason == "already-tracked":
            self.counted += 1
        self.skipped.append(SkippedLink(raw, reason, start, end, url, tag))
        return None


def _track_links(
    html: str,
    scanned: ScanResult,
    plan: RewritePlan,
    book: _LinkBook,
    edits: list[tuple[int, int, str]],
    recorded_at: int | None = None,
) -> None:
    """Decide every link of the document in source order; schedule the tracked ones.

    ``recorded_at`` replaces the spans reported in results (for markup we add).
    """
    for tag in scanned.links:
        href = tag.href
        if href is None:
            continue
        raw, start, end, quote = href
        url = decode_attribute(raw).strip(ASCII_WHITESPACE)
        span = (start, end) if recorded_at is None else (recorded_at, recorded_at)
        tracking_url = book.decide(url, _classify(url, html, tag, plan), *span, raw, quote, tag.tag)
        if tracking_url is not None:
            edits.append((start, end, escape_attribute(tracking_url, quote)))


def _pixel_position(html: str, scanned: ScanResult, where: str) -> int:
    """Before the last real </body>, else </html>, else an unterminated construct at the end, else the end."""
    if where == "top" and scanned.body_start_end is not None:
        return scanned.body_start_end
    for candidate in (scanned.body_end, scanned.html_end, scanned.truncated_at):
        if candidate is not None:
            return candidate
    return len(html)


def _place_pixels(html: str, scanned: ScanResult, plan: RewritePlan, warnings: list[str]) -> list[PixelInsertion]:
    """Where the open pixel goes, or nowhere (with a warning saying why)."""
    assert plan.open_token is not None
    open_prefix = plan.layout.prefix("open")
    if any(plan.is_open_token(token) for token in _tokens_after(html, open_prefix)):
        warnings.append("an open pixel of ours is already present; none added")
        return []
    open_url = open_prefix + plan.open_token()
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


def _tokens_after(html: str, prefix: str) -> list[str]:
    """The token-shaped strings that follow ``prefix`` in ``html``.

    Case-sensitive: our pixels are written with this exact prefix, and a
    case-insensitive search would cost more than the rest of a rewrite.
    """
    # A sentence may end right after a URL in text: a token never ends with ".".
    return [m.group(1).rstrip(".") for m in re.finditer(re.escape(prefix) + r"([A-Za-z0-9_.-]+)", html)]
