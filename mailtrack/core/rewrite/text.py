"""Plain-text bodies: track the URLs a reader sees (:mod:`mailtrack.core.urlfinder`), patch them in place."""

from __future__ import annotations

from collections.abc import Iterable

from mailtrack.core import speedups
from mailtrack.core.results import SkippedLink, TextResult, TrackedLink
from mailtrack.core.rewrite.footer import unsubscribe_edits
from mailtrack.core.rewrite.links import ANOTHER_MESSAGE, LinkBook, classify_destination, classify_unplain
from mailtrack.core.rewrite.plan import RewritePlan
from mailtrack.core.rewrite.splice import Edits, splice
from mailtrack.core.tokens import MAX_TOKEN_LENGTH
from mailtrack.core.urlfinder import find_urls
from mailtrack.exceptions import ArgumentError

__all__ = ["rewrite_text", "rewrite_text_edits"]


def rewrite_text(text: str, plan: RewritePlan, exclude: frozenset[str] = frozenset()) -> TextResult:
    """Rewrite the URLs of a plain-text body as ``plan`` says; see :meth:`mailtrack.Tracker.rewrite_text`.

    ``exclude`` holds destinations to leave alone with reason ``opt-out`` (links
    opted out in the message's HTML part). No pixel: text cannot load one.
    """
    return rewrite_text_edits(text, plan, exclude)[0]


def rewrite_text_edits(text: str, plan: RewritePlan, exclude: frozenset[str] = frozenset()) -> tuple[TextResult, Edits]:
    """:func:`rewrite_text`, plus the edits it made."""
    if not isinstance(text, str):
        raise ArgumentError(f"text must be a str, not {type(text).__name__}; decode bytes with the message part's charset first")
    edits: list[tuple[int, int, str]] = []
    warnings: list[str] = []
    book = LinkBook(plan)

    def run(spans: Iterable[tuple[int, int]]) -> None:
        for start, end in spans:
            url = text[start:end]
            if plan.click is None and not plan.layout.is_ours(url):
                continue
            reason = "opt-out" if url in exclude else classify_destination(url, plan)
            if plan.click is None and reason != ANOTHER_MESSAGE:
                continue  # click tracking off: nothing is tracked or reported, but another message's click URLs must go
            tracking_url = book.decide(url, reason, start, end, url, "", "text")
            if tracking_url is not None:
                edits.append((start, end, tracking_url))

    compiled = speedups.compiled
    if compiled is not None and plan.click is not None and not book.utm:
        # The compiled loop of the HTML parts, in its text mode: each URL as written, excluded ones to run().
        tags = [("text", start, end, (text[start:end], start, end, ""), False) for start, end in find_urls(text)]
        compiled.track_links(text, tags, book, None if plan.placeholders.defaults else plan.placeholders.plain,
                             lambda url: classify_unplain(url, plan), plan.layout.lowered_base, None,
                             lambda tag: run(((tag[1], tag[2]),)), edits, TrackedLink, SkippedLink, MAX_TOKEN_LENGTH,
                             frozenset(exclude))
    else:
        run(find_urls(text))
    unsubscribe = unsubscribe_edits(text, plan, book, edits, warnings, text=True, at=len(text))
    edits.extend((p.position, p.position + len(p.replaced), p.html) for p in unsubscribe)
    return TextResult(splice(text, edits), book.links, book.skipped, warnings, unsubscribe), edits
