"""The per-link decision shared by HTML and text: track, skip (with a reason) or leave alone.

One :class:`LinkBook` per message holds the ``max_links`` budget, the link
indexes and the results, so HTML and text parts of a message share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, Literal, Union

from mailtrack.core import speedups
from mailtrack.core.charrefs import decode_attribute, escape_attribute
from mailtrack.core.results import (
    PixelInsertion,
    SkippedLink,
    SkipReason,
    TrackedLink,
)
from mailtrack.core.rewrite.honeypot import HONEYPOT_INDEX
from mailtrack.core.rewrite.plan import RewritePlan
from mailtrack.core.scanner import LinkTag, ScanResult
from mailtrack.core.tokens import MAX_TOKEN_LENGTH
from mailtrack.core.urls import ASCII_WHITESPACE, TokenKind, add_query_parameters, destination_problem

#: Not a reason anyone sees: a click URL of ours signed for another message, to be signed again for this one.
ANOTHER_MESSAGE: Final = "another-message"
#: What the rules decide for one link: a reason to skip it, or that it is another message's to sign again.
Decision = Union[SkipReason, Literal["another-message"]]  # noqa: UP007 - a runtime alias on Python 3.10


def classify_destination(url: str, plan: RewritePlan) -> Decision | None:
    """The rules that look at the destination alone (placeholders, scheme, destination check, ours)."""
    if plan.placeholders.plain(url):  # settles most links in one match, as the checks below would
        return ours(url, plan) if plan.layout.is_ours(url) else None
    return classify_unplain(url, plan)


def classify_unplain(url: str, plan: RewritePlan) -> Decision | None:
    """:func:`classify_destination` for a URL its first test (``plan.placeholders.plain``) did not settle."""
    if plan.placeholders.search(url):
        return "placeholder"
    problem = destination_problem(url)  # the check the redirect makes too (mailtrack.core.urls)
    if problem is not None:
        return "scheme" if problem == "scheme" else "invalid"
    if plan.layout.is_ours(url):
        return ours(url, plan)
    return None


def ours(url: str, plan: RewritePlan) -> Decision:
    """The reason for a URL under our base URL: ``already-tracked``, ``not-verified`` or :data:`ANOTHER_MESSAGE`.

    Open and unsubscribe URLs of another message are ``already-tracked`` here:
    the pixel and footer passes sign them again where they stand (in a link or
    not), so the link pass leaves them to those.
    """
    earlier = plan.reissue.read(url, None)
    if earlier is None:
        return "not-verified"
    return ANOTHER_MESSAGE if earlier.kind == "click" and not earlier.this_message else "already-tracked"


#: Builds a result named tuple from a tuple of its fields: what ``TrackedLink(...)`` returns, without the
#: Python-level ``__new__`` call a named tuple's constructor makes (a third of a microsecond per link).
_tuple = tuple.__new__


class LinkBook:
    """Counts links toward ``max_links`` in source order, signs the tracked ones, and records both lists.

    Tracked and already-tracked links both count, so a second pass sees the
    same limit as the first.
    """

    __slots__ = ("counted", "honeypot_present", "links", "max_links", "prefix", "quoted_as_is", "reissue", "sign",
                 "skipped", "utm")

    def __init__(self, plan: RewritePlan) -> None:
        self.prefix = plan.layout.prefix("click")
        self.max_links = plan.max_links
        self.sign = plan.click
        self.utm = plan.utm
        self.counted = plan.first_index  # counts toward max_links too: the limit is per message
        self.reissue = plan.reissue
        self.links: list[TrackedLink] = []
        self.skipped: list[SkippedLink] = []
        #: A honeypot link of this message is in the document (one found there, or another message's signed again).
        self.honeypot_present = False
        #: A click URL reads back unchanged inside quotes (token characters are base64url and "."):
        #: the per-link loop can leave out :func:`escape_attribute` for quoted values.
        self.quoted_as_is = not any(special in self.prefix for special in "&\"'")

    def decide(self, url: str, reason: Decision | None, start: int, end: int, raw: str, quote: str, tag: str) -> str | None:
        """The new value for this link, or None to leave it (recorded as skipped, with its reason).

        A click URL of another message becomes this message's click URL for the
        same destination, with the next index; past ``max_links``, when too long
        or with click tracking off, it becomes that destination (recorded, but
        with click tracking off, as skipped for ``limit`` or ``too-long``).
        """
        if reason is None:  # the common case first: track it
            counted = self.counted
            if counted >= self.max_links:
                reason = "limit"
            else:
                if self.utm:
                    url = add_query_parameters(url, self.utm)  # signed, so the redirect carries them
                sign = self.sign
                assert sign is not None, "links are decided only with click tracking on"
                tracking_url = self.prefix + sign(counted, url)
                if len(tracking_url) <= MAX_TOKEN_LENGTH:
                    self.links.append(_tuple(TrackedLink, (counted, url, tracking_url, start, end, raw, quote, tag)))
                    self.counted = counted + 1
                    return tracking_url
                reason = "too-long"
        elif reason == ANOTHER_MESSAGE:
            earlier = self.reissue.read(url, "click")
            assert earlier is not None and earlier.url is not None, "classified as a verified click URL"
            if self.sign is None:
                return earlier.url
            if earlier.link_index == HONEYPOT_INDEX:  # another message's honeypot: this message's, still no real link
                self.honeypot_present = True
                return self.prefix + self.sign(HONEYPOT_INDEX, earlier.url)
            return self.decide(earlier.url, None, start, end, raw, quote, tag) or earlier.url
        elif reason == "already-tracked":
            earlier = self.reissue.read(url, "click") if self.prefix in url else None
            if earlier is not None and earlier.link_index == HONEYPOT_INDEX:
                self.honeypot_present = True  # this message's honeypot: kept, neither counted nor reported
                return None
            self.counted += 1
        self.skipped.append(_tuple(SkippedLink, (raw, reason, start, end, url, tag)))
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
    This loop runs once per link of every message, so what it calls is bound
    once, outside it. Where the compiled speedups run, their ``track_links``
    decides the common link (quoted, plain, not ours, within the limit) and
    gives every other link to this loop's body, so each link is decided once,
    in source order, by the same rules.
    """
    only_ours = plan.click is None
    is_ours = plan.layout.is_ours
    plain = plan.placeholders.plain
    opt_outs = plan.opt_outs
    any_opt_out, common = bool(opt_outs.attributes), opt_outs.common
    decide = book.decide
    quoted_as_is = book.quoted_as_is
    # The common link (quoted, plain, not ours, within the limit and the length) is tracked in the loop itself,
    # as LinkBook.decide would track it, without the call; every other link goes to decide. Only where
    # decide's common case is this one: click tracking on, no UTM parameters, spans reported as they are.
    inline = not only_ours and not book.utm and recorded_at is None and quoted_as_is
    sign, prefix, max_links = book.sign, book.prefix, book.max_links
    tracked = book.links.append
    edit = edits.append

    def run(tags: Iterable[LinkTag]) -> None:
        for tag in tags:
            name, tag_start, tag_end, href, _ = tag
            if href is None:
                continue
            raw, start, end, quote = href
            # decode_attribute(raw), with its common cases (no reference, or only "&amp;") inlined.
            if "\r" in raw or "\x00" in raw:
                url = decode_attribute(raw)
            else:
                ampersands = raw.count("&")
                if not ampersands:
                    url = raw
                elif ampersands == raw.count("&amp;"):
                    url = raw.replace("&amp;", "&")
                else:
                    url = decode_attribute(raw)
            url = url.strip(ASCII_WHITESPACE)
            if only_ours and not is_ours(url):
                continue
            # Why it is left alone, or None to track it. The opt-out rule's own first test, done here without a call:
            # most tags hold no opt-out name (OptOuts.common is in every one) and never reach OptOuts.applies.
            reason: Decision | None
            if not url:
                reason = "empty"
            elif any_opt_out and (not common or common in html[tag_start:tag_end].lower()) and opt_outs.applies(html, tag):
                reason = "opt-out"
            elif plain(url):  # classify_destination, without its call: its first test settles most links
                if not is_ours(url):
                    if inline and quote:  # LinkBook.decide's common case, without the call
                        counted = book.counted
                        if counted < max_links:
                            assert sign is not None
                            click_url = prefix + sign(counted, url)
                            if len(click_url) <= MAX_TOKEN_LENGTH:
                                tracked(_tuple(TrackedLink, (counted, url, click_url, start, end, raw, quote, name)))
                                book.counted = counted + 1
                                edit((start, end, click_url))  # a click URL of ours: escape_attribute changes nothing
                            else:  # signed once, as decide would, and skipped as decide skips it
                                book.skipped.append(_tuple(SkippedLink, (raw, "too-long", start, end, url, name)))
                            continue
                    reason = None
                else:
                    reason = ours(url, plan)
            else:
                reason = classify_unplain(url, plan)
            if only_ours and reason != ANOTHER_MESSAGE:
                continue  # click tracking off: nothing is tracked or reported, but another message's click URLs must go
            if recorded_at is None:
                tracking_url = decide(url, reason, start, end, raw, quote, name)
            else:
                tracking_url = decide(url, reason, recorded_at, recorded_at, raw, quote, name)
            if tracking_url is not None:
                if reason is None and quote and quoted_as_is:
                    edit((start, end, tracking_url))  # a click URL of ours: escape_attribute would change nothing
                else:
                    edit((start, end, escape_attribute(tracking_url, quote)))

    compiled = speedups.compiled
    if compiled is not None and recorded_at is None and not only_ours and quoted_as_is and not book.utm:
        # The compiled loop settles the common link itself (tracked, or skipped for the reason classify_unplain
    # gives) and hands every other one, in its turn, to run().
        compiled.track_links(html, scanned.links, book, None if plan.placeholders.defaults else plain,
                             lambda url: classify_unplain(url, plan), plan.layout.lowered_base,
                             common if any_opt_out else None, lambda tag: run((tag,)), edits, TrackedLink, SkippedLink,
                             MAX_TOKEN_LENGTH, None)
    else:
        run(scanned.links)


#: The characters of a token: base64url, and "." (the signed format's separators; an opaque token has none).
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.-]+")


def tokens_after(html: str, prefix: str) -> list[tuple[str, int]]:
    """The token-shaped strings that follow ``prefix`` in ``html``, with their offsets.

    Case-sensitive: our pixels are written with this exact prefix, and a
    case-insensitive search would cost more than the rest of a rewrite. What
    ``re.finditer(re.escape(prefix) + "([A-Za-z0-9_.-]+)", html)`` finds, but
    the document is searched with ``str.find`` (no regex pass over all of it,
    no pattern built per call); a search resumes after a match, as finditer's
    does, so the matches never overlap.
    """
    found: list[tuple[str, int]] = []
    at = html.find(prefix)  # nearly every body: not there, one substring search settles it
    while at != -1:
        start = at + len(prefix)
        m = _TOKEN_CHARS.match(html, start)
        if m is None:
            at = html.find(prefix, at + 1)
            continue
        # A sentence may end right after a URL in text: a token never ends with ".".
        found.append((m.group().rstrip("."), start))
        at = html.find(prefix, m.end())
    return found


def earlier_tokens(
    source: str, plan: RewritePlan, kind: TokenKind, edits: list[tuple[int, int, str]], *, ours: bool = True
) -> tuple[bool, list[PixelInsertion]]:
    """Our ``kind`` tokens already in ``source``: is one this message's, and new tokens for another message's.

    ``ours=False`` says the caller found no ``base_url`` in ``source`` (one
    search instead of one per kind): there is nothing to find.

    Each token of another message is replaced where it stands by this
    message's (so its pixel or footer is not added a second time), unless it
    lies inside a span ``edits`` already changes (a tracked link's destination
    quoting it).
    """
    present = False
    replaced: list[PixelInsertion] = []
    if not ours:
        return present, replaced
    taken: list[tuple[int, int]] | None = None  # sorted only once another message's token turns up
    i, new_token = 0, ""
    for token, at in tokens_after(source, plan.layout.prefix(kind)):
        earlier = plan.reissue.read(token, kind)
        if earlier is None:
            continue
        if earlier.this_message:
            present = True
            continue
        if taken is None:
            taken = sorted((start, end) for start, end, _ in edits)
        while i < len(taken) and taken[i][1] <= at:
            i += 1
        if i < len(taken) and taken[i][0] < at + len(token):
            continue
        new_token = new_token or (plan.reissue.open_token if kind == "open" else plan.reissue.unsubscribe_token)()
        replaced.append(PixelInsertion(at, new_token, token))
    return present, replaced
