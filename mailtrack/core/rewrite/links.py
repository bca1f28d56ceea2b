"""The per-link decision shared by HTML and text: track, skip (with a reason) or leave alone.

One :class:`LinkBook` per message holds the ``max_links`` budget, the link
indexes and the results, so HTML and text parts of a message share them.
"""

from __future__ import annotations

import re

from mailtrack.core.charrefs import decode_attribute, escape_attribute
from mailtrack.core.results import (
    SkippedLink,
    TrackedLink,
)
from mailtrack.core.rewrite.plan import RewritePlan
from mailtrack.core.scanner import LinkTag, ScanResult
from mailtrack.core.tokens import MAX_TOKEN_LENGTH
from mailtrack.core.urls import ASCII_WHITESPACE, add_query_parameters, destination_problem


def classify_tag(url: str, html: str, tag: LinkTag, plan: RewritePlan) -> str | None:
    """Why a link is left alone (see :class:`SkippedLink`), or None to track it (limit aside)."""
    if not url:
        return "empty"
    if plan.opt_outs.applies(html, tag):
        return "opt-out"
    return classify_destination(url, plan)


def classify_destination(url: str, plan: RewritePlan) -> str | None:
    """The rules that look at the destination alone (placeholders, scheme, destination check, ours)."""
    if not plan.placeholders.plain_http(url) and plan.placeholders.search(url):
        return "placeholder"
    problem = destination_problem(url)  # the check the redirect makes too (mailtrack.core.urls)
    if problem is not None:
        return "scheme" if problem == "scheme" else "invalid"
    if plan.layout.is_ours(url):
        return "already-tracked"
    return None


class LinkBook:
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


def track_html_links(
    html: str,
    scanned: ScanResult,
    plan: RewritePlan,
    book: LinkBook,
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
        tracking_url = book.decide(url, classify_tag(url, html, tag, plan), *span, raw, quote, tag.tag)
        if tracking_url is not None:
            edits.append((start, end, escape_attribute(tracking_url, quote)))


def tokens_after(html: str, prefix: str) -> list[str]:
    """The token-shaped strings that follow ``prefix`` in ``html``.

    Case-sensitive: our pixels are written with this exact prefix, and a
    case-insensitive search would cost more than the rest of a rewrite.
    """
    # A sentence may end right after a URL in text: a token never ends with ".".
    return [m.group(1).rstrip(".") for m in re.finditer(re.escape(prefix) + r"([A-Za-z0-9_.-]+)", html)]
