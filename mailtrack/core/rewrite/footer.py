"""Subscription tracking (SendGrid semantics): unsubscribe footers and substitution tags.

``html`` and ``text`` are footers appended to the body; in them ``<% link text %>``
becomes a link to the signed unsubscribe URL (HTML) or the bare URL (text, where
the link text is dropped). A ``substitution_tag`` overrides both: every
occurrence of it is replaced by the bare URL and nothing is appended.
"""

from __future__ import annotations

from collections.abc import Callable

from mailtrack.core.results import PixelInsertion
from mailtrack.core.rewrite.links import LinkBook, classify_destination, earlier_tokens, track_html_links
from mailtrack.core.rewrite.plan import RewritePlan
from mailtrack.core.rewrite.splice import splice
from mailtrack.core.scanner import scan
from mailtrack.core.urlfinder import find_urls

__all__ = ["DEFAULT_HTML", "DEFAULT_TEXT", "html_footer", "text_footer"]

#: SendGrid's default footers, used when subscription tracking is on without ``html``/``text``.
DEFAULT_HTML = "<p>If you would like to unsubscribe and stop receiving these emails <% click here %>.</p>"
DEFAULT_TEXT = "If you would like to unsubscribe and stop receiving these emails click here: <% %>."

def _tags(template: str) -> list[tuple[int, int, str]]:
    r"""``(start, end, text)`` of each ``<% text %>`` in ``template``, ``text`` stripped of whitespace.

    What ``re.finditer(r"<%\s*(.*?)\s*%>", template, re.DOTALL)`` finds, in
    linear time: that expression rescans the rest of the template for every
    ``<%`` without a ``%>`` (and every whitespace split of a long blank run).
    A tag ends at the first ``%>`` after its ``<%``; when there is none, no
    later ``<%`` has one either.
    """
    found = []
    start = template.find("<%")
    while start != -1:
        end = template.find("%>", start + 2)
        if end == -1:
            break
        found.append((start, end + 2, template[start + 2 : end].strip()))  # str.strip and \s: the same spaces
        start = template.find("<%", end + 2)
    return found


def _fill(template: str, replacement: Callable[[str], str]) -> str:
    return splice(template, [(start, end, replacement(text)) for start, end, text in _tags(template)])


def html_footer(template: str, url: str) -> str:
    """``template`` with each ``<% text %>`` made a link to ``url`` (the URL itself when the text is empty)."""
    return _fill(template, lambda text: f'<a href="{url}">{text or url}</a>')


def text_footer(template: str, url: str) -> str:
    """``template`` with each ``<% ... %>`` replaced by the bare ``url``, kept apart from what follows.

    In plain text a reader's client decides where a URL ends; a template such as
    ``"<% %>-now"`` would glue ``-now`` onto the signed URL (a link that no
    longer verifies), so a space goes between them (see :func:`delimited`).
    """
    return splice(template, [(start, end, delimited(url, template[end:end + _LOOKAHEAD]))
                             for start, end, _ in _tags(template)])


#: How much of what follows a URL is enough to tell whether a reader would read it as part of the URL.
_LOOKAHEAD = 64


def delimited(url: str, following: str) -> str:
    """``url``, plus a space when a reader would read the start of ``following`` as more of the URL.

    Uses the same rules as the text rewriter (:func:`mailtrack.core.urlfinder.find_urls`),
    so what we insert is exactly the URL a mail client links, and a second pass
    finds this message's token again instead of adding another footer.
    """
    probe = url + following[:_LOOKAHEAD]
    end = next((end for start, end in find_urls(probe) if start == 0), len(url))
    return url if end <= len(url) else url + " "


def unsubscribe_edits(
    source: str,
    plan: RewritePlan,
    book: LinkBook,
    edits: list[tuple[int, int, str]],
    warnings: list[str],
    *,
    text: bool,
    at: int,
    ours: bool = True,
) -> list[PixelInsertion]:
    """Where the unsubscribe URL goes: the substitution tag's places, or a footer at ``at``.

    Other links in a footer are tracked now, like the body's (recorded with
    ``start == end == at``: they are not in the input), so that a second pass
    finds nothing left to do. Another message's unsubscribe URLs are replaced
    by this message's where they stand, instead of a footer (whether or not
    subscription tracking is on: leaving them would unsubscribe the other
    recipient). ``ours=False``: ``source`` holds no ``base_url`` (see :func:`earlier_tokens`).
    """
    settings = plan.unsubscribe
    present, replaced = earlier_tokens(source, plan, "unsubscribe", edits, ours=ours)
    if replaced:
        return replaced  # another message's unsubscribe URLs, now this one's: its footer is there already
    if settings is None or present:
        return []  # off, or an earlier pass for this message put it there
    prefix = plan.layout.prefix("unsubscribe")
    url = prefix + settings.token()
    tag = settings.substitution_tag
    if tag:
        taken = sorted((start, end) for start, end, _ in edits)
        places, overlapping, glued, pos, i = [], 0, 0, source.find(tag), 0
        while pos != -1:
            # Both in source order: one walk, not every edit for every occurrence.
            while i < len(taken) and taken[i][1] <= pos:
                i += 1
            if i < len(taken) and taken[i][0] < pos + len(tag):
                overlapping += 1
            else:
                value = delimited(url, source[pos + len(tag):pos + len(tag) + _LOOKAHEAD]) if text else url
                glued += value != url
                places.append(PixelInsertion(pos, value, tag))
            pos = source.find(tag, pos + len(tag))
        if glued:
            warnings.append(f"subscription_tracking.substitution_tag {tag!r} is followed {glued} time(s) by characters a "
                            "reader would take as part of the URL; a space was put after the URL")
        if places:
            if overlapping:
                warnings.append(f"subscription_tracking.substitution_tag {tag!r} inside a tracked link left as is {overlapping} time(s)")
            return places
        where = "only inside tracked links" if overlapping else "not found"
        warnings.append(f"subscription_tracking.substitution_tag {tag!r} {where}; the unsubscribe footer was added instead")
    if text:
        newline = settings.newline or ("\r\n" if "\r" in source and "\r\n" in source else "\n")
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
                if (tracking := book.decide(footer[start:end], classify_destination(footer[start:end], plan),
                                            at, at, footer[start:end], "", "text")) is not None
            ])
        return [PixelInsertion(at, separator + footer + newline)]
    footer = html_footer(settings.html, url)
    if plan.click is not None:
        footer_edits: list[tuple[int, int, str]] = []
        track_html_links(footer, scan(footer), plan, book, footer_edits, recorded_at=at)
        footer = splice(footer, footer_edits)
    return [PixelInsertion(at, footer)]
