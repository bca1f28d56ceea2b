"""What one rewrite needs besides the document: resolved settings and the signers.

A :class:`RewritePlan` is built by :class:`mailtrack.Tracker` for each call and
read by the HTML, text and MIME rewriters; it holds no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from mailtrack.core.rewrite.rules import OptOuts, PlaceholderMatcher
from mailtrack.core.urls import TokenKind, UrlLayout


@dataclass(frozen=True)
class RewritePlan:
    """Everything one rewrite needs besides the document: resolved settings and signers."""

    layout: UrlLayout
    placeholders: PlaceholderMatcher
    opt_outs: OptOuts
    max_links: int
    click: Callable[[int, str], str] | None  # signs (link_index, url); None: click tracking off
    open_token: Callable[[], str] | None  # signs the open token; None: open tracking off
    substitution_tag: str | None
    pixel_position: str  # "bottom" or "top"
    reissue: Reissue  # reads our URLs already in the body: this message's stay, another message's are signed again
    utm: tuple[tuple[str, str], ...] = ()  # Google Analytics parameters added to tracked destinations
    unsubscribe: Unsubscribe | None = None  # subscription tracking; None: off
    first_index: int = 0  # link_index of the first link (later parts of a message continue the count)
    honeypot: bool = False  # add the invisible honeypot link to each HTML part (with click tracking on)


class Earlier(NamedTuple):
    """What a verified tracking URL (or token) of ours says, seen from the message being rewritten."""

    kind: TokenKind
    this_message: bool  # signed for this message ID, recipient and metadata: leave it as it is
    url: str | None  # a click's destination
    link_index: int | None = None  # a click's index (the honeypot's is HONEYPOT_INDEX)


@dataclass(frozen=True)
class Reissue:
    """Our tracking URLs already in a body: this message's stay, another message's are signed again for this one.

    A body may be another message's tracked output (a template made from a sent
    message, a resend to another recipient): keeping its URLs would record this
    recipient's clicks and opens as the other's, and unsubscribe the other.
    """

    read: Callable[[str, TokenKind | None], Earlier | None]  # (URL or bare token, kind or None) -> None if it does not verify
    open_token: Callable[[], str]  # this message's open token, whatever open tracking says
    unsubscribe_token: Callable[[], str]  # this message's unsubscribe token, whatever subscription tracking says


@dataclass(frozen=True)
class Unsubscribe:
    """Subscription tracking for one message: how to sign the URL and where it goes."""

    token: Callable[[], str]
    html: str  # footer template with <% link text %>
    text: str  # footer template with <% %>
    substitution_tag: str | None  # replaced by the bare URL instead of any footer
    newline: str = ""  # line break around a text footer; "" to follow the text's own
