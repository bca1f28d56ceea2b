"""What a rewrite returns and what ``verify`` says.

Offsets in results refer to the *input* string, so a caller (or a test) can map
every change back to the original bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, TypeVar, get_args

from mailtrack.core import speedups

if TYPE_CHECKING:
    from mailtrack.core.urls import TokenKind

__all__ = [
    "GMAIL_CLIP_BYTES",
    "HtmlResult",
    "MessagePart",
    "MessageResult",
    "PART_STATUSES",
    "PartStatus",
    "PixelInsertion",
    "SKIP_REASONS",
    "SkipReason",
    "SkippedLink",
    "TextResult",
    "TrackedLink",
    "Verified",
    "exceeds_gmail_clip",
]

#: Gmail clips an HTML body larger than about 102 KB, hiding what follows, the pixel included.
GMAIL_CLIP_BYTES = 102 * 1024


class TrackedLink(NamedTuple):
    """A link that now points at a signed click URL.

    A named tuple because a newsletter makes a thousand of these per message;
    its ``index`` field deliberately shadows ``tuple.index``.
    """

    index: int  # type: ignore[assignment]  # link_index signed into the token (0-based, source order)
    url: str  # the destination: the value with character references decoded, trimmed (plus any UTM parameters)
    tracking_url: str
    start: int  # span of the original attribute value (without quotes) in the input; for a link in
    # a subscription footer we added, start == end == where the footer went
    end: int
    raw: str  # the original attribute value as written
    quote: str  # '"', "'" or "" (unquoted)
    tag: str  # "a", "area", "v:roundrect", ...


#: Why a link was left as written (see :class:`SkippedLink`).
SkipReason = Literal[
    "scheme", "empty", "placeholder", "opt-out", "limit", "already-tracked", "not-verified", "invalid", "too-long",
]
#: Every reason a :class:`SkippedLink` can give, in the order of :data:`SkipReason`.
SKIP_REASONS: tuple[SkipReason, ...] = get_args(SkipReason)

#: What happened to one leaf part of a message (see :class:`MessagePart`).
PartStatus = Literal["rewritten", "unchanged", "undecodable", "unencodable", "left"]
PART_STATUSES: tuple[PartStatus, ...] = get_args(PartStatus)


class SkippedLink(NamedTuple):
    """A link left as written, and why.

    Reasons (:data:`SKIP_REASONS`): ``scheme`` (not http/https: mailto, tel,
    relative, #fragment, ...), ``empty``, ``placeholder``, ``opt-out``,
    ``limit`` (over ``max_links``), ``already-tracked`` (a tracking URL of ours
    for this message, or an open or unsubscribe URL of ours, which the pixel and
    footer passes re-sign when it is another message's), ``not-verified``
    (under our base URL but not a tracking URL that verifies: forged,
    truncated, signed with an unknown key; left as written), ``invalid``
    (control characters, or a host, port or userinfo that browsers refuse or
    parsers read differently: see :func:`mailtrack.core.urls.check_destination`), ``too-long`` (the token would exceed 8 KiB). With
    click tracking off, links are neither tracked nor reported. A click URL of
    ours signed for another message is not skipped: it is tracked again for
    this one (``raw`` keeps the old URL); past ``max_links`` or when too long,
    it is skipped as ``limit`` or ``too-long`` and its destination replaces it.
    """

    raw: str
    reason: SkipReason
    start: int
    end: int
    url: str  # decoded destination
    tag: str


class PixelInsertion(NamedTuple):
    """Where the open pixel went: ``html`` replaced ``input[position:position + len(replaced)]``."""

    position: int
    html: str
    replaced: str = ""


@dataclass(frozen=True)
class HtmlResult:
    """The rewritten document and an account of every change."""

    html: str
    links: list[TrackedLink]
    skipped: list[SkippedLink]
    pixels: list[PixelInsertion]
    warnings: list[str] = field(default_factory=list)
    unsubscribe: list[PixelInsertion] = field(default_factory=list)  # footer or substitution-tag places
    honeypot: PixelInsertion | None = None  # the invisible honeypot link added (Tracker(honeypot=True)), or None

    @property
    def pixel(self) -> PixelInsertion | None:
        """The (first) inserted pixel, or None when none was inserted."""
        return self.pixels[0] if self.pixels else None

    @cached_property
    def size(self) -> int:
        """Size of the output in UTF-8 bytes."""
        return len(self.html.encode("utf-8", "surrogatepass"))

    @property
    def gmail_clipped(self) -> bool:
        """True when Gmail will clip this body (over ~102 KB): consider ``pixel_position="top"``."""
        return exceeds_gmail_clip(self.html)


def exceeds_gmail_clip(text: str) -> bool:
    """True if ``text`` is over Gmail's clipping size in UTF-8, encoding only when its length cannot tell."""
    if len(text) > GMAIL_CLIP_BYTES:
        return True  # every character is at least one byte
    if len(text) * 4 <= GMAIL_CLIP_BYTES or text.isascii():
        return False  # at most four bytes each; ASCII: exactly one
    compiled = speedups.compiled
    if compiled is not None:
        encoded_size: int = compiled.utf8_length(text)  # counted, not encoded
        return encoded_size > GMAIL_CLIP_BYTES
    if sys.getsizeof(text) >= 4 * len(text):
        # Four bytes per character in memory: its UTF-8 (at most four per character) is never larger than the
        # string, and one encoding is cheaper than slicing it (a third of this check's time, issue 13).
        return len(text.encode("utf-8", "surrogatepass")) > GMAIL_CLIP_BYTES
    # Encode in slices so the check never holds a second copy of a large body.
    size = 0
    for start in range(0, len(text), 4096):
        size += len(text[start : start + 4096].encode("utf-8", "surrogatepass"))
        if size > GMAIL_CLIP_BYTES:
            return True
    return False


@dataclass(frozen=True)
class TextResult:
    """A rewritten plain-text body: ``links`` carry ``tag="text"`` and spans into the input."""

    text: str
    links: list[TrackedLink]
    skipped: list[SkippedLink]
    warnings: list[str] = field(default_factory=list)
    unsubscribe: list[PixelInsertion] = field(default_factory=list)  # footer or substitution-tag places


@dataclass(frozen=True)
class MessagePart:
    """What happened to one leaf part of a MIME message.

    ``status`` is ``rewritten`` (its body changed), ``unchanged`` (a text body
    with nothing to do), ``undecodable`` (a text body we could not read: left as
    it was, ``reason`` says why), ``unencodable`` (a text body we read and
    rewrote, but whose rewritten text its charset and transfer encoding cannot
    write so that it decodes back exactly, e.g. ISO-2022-JP with stray escape
    bytes, or a codec that reads what it cannot write: left as it was, byte for
    byte, no ``result``, ``reason`` says why) or ``left`` (not ours to change:
    attachments, images, ``message/rfc822`` ...).
    """

    path: str  # IMAP section number: "1" for a single-part message, "2.1" for the first child of the second part
    content_type: str
    charset: str | None  # as declared (lowercased), None when not declared
    transfer_encoding: str  # as declared (lowercased; "7bit" when not declared)
    status: PartStatus
    reason: str = ""  # free text: why a part was left, undecodable or unencodable
    body: bool = False  # the message's HTML or plain-text body (gets the pixel and the footer)
    result: HtmlResult | TextResult | None = None
    warnings: list[str] = field(default_factory=list)
    new_transfer_encoding: str | None = None  # after rewriting (differs when a new line did not fit the old one)
    new_charset: str | None = None


MessageT = TypeVar("MessageT")


@dataclass(frozen=True)
class MessageResult(Generic[MessageT]):
    """A rewritten message, in the kind it was given (bytes, str or a Message), and an account of each part."""

    message: MessageT
    message_id: str  # signed into the tokens: the Message-ID without angle brackets, unless given
    recipient: str
    parts: list[MessagePart]
    warnings: list[str] = field(default_factory=list)
    list_unsubscribe: str | None = None  # the unsubscribe URL put in List-Unsubscribe, if any

    @property
    def links(self) -> list[TrackedLink]:
        """Every tracked link, part by part."""
        return [link for part in self.parts if part.result is not None for link in part.result.links]

    @property
    def skipped(self) -> list[SkippedLink]:
        """Every link left alone, part by part."""
        return [link for part in self.parts if part.result is not None for link in part.result.skipped]

    @property
    def undecodable(self) -> list[MessagePart]:
        """The text parts left untouched because they could not be decoded."""
        return [part for part in self.parts if part.status == "undecodable"]

    @property
    def unencodable(self) -> list[MessagePart]:
        """The text parts left untouched because their rewritten text could not be written back exactly."""
        return [part for part in self.parts if part.status == "unencodable"]

    @property
    def html(self) -> HtmlResult | None:
        """The result for the HTML body, if the message has one and it was read."""
        return next((p.result for p in self.parts if p.body and isinstance(p.result, HtmlResult)), None)

    @property
    def text(self) -> TextResult | None:
        """The result for the plain-text body, if the message has one and it was read."""
        return next((p.result for p in self.parts if p.body and isinstance(p.result, TextResult)), None)


@dataclass(frozen=True)
class Verified:
    """A verified token: what it was signed for (also known as ``TokenClaims``: the codec returns it as is)."""

    kind: TokenKind
    message_id: str
    recipient: str | None  # None: tracked without a recipient (one copy to several people)
    issued_at: datetime
    url: str | None = None  # destination, for clicks
    link_index: int | None = None  # for clicks
    metadata: Mapping[str, Any] = field(default_factory=dict)
    token: str = ""  # the bare token that was verified
    tags: tuple[str, ...] = ()  # django-anymail's msg.tags, signed in
    account: str | None = None  # the subuser the message was rewritten for, signed in (None: the parent's)
