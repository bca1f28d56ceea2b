"""The :class:`Tracker`: one object holding keys and URL layout, for rewriting and verifying."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from email.message import Message
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from mailtrack.core.message import rewrite_message
from mailtrack.core.results import HtmlResult, MessageResult, TextResult, Verified
from mailtrack.core.rewrite import RewritePlan, Unsubscribe, rewrite_html, rewrite_text
from mailtrack.core.rewrite.footer import DEFAULT_HTML, DEFAULT_TEXT
from mailtrack.core.rewrite.rules import DEFAULT_OPT_OUTS, DEFAULT_PLACEHOLDERS, OptOuts, PatternInput, PlaceholderMatcher
from mailtrack.core.settings import SettingsInput, TrackingSettings
from mailtrack.core.tokens import MAX_TOKEN_LENGTH, TokenCodec, check_claims
from mailtrack.core.urls import KINDS, UrlLayout, destination_problem
from mailtrack.exceptions import ConfigurationError, InvalidToken, MailtrackError

__all__ = ["Tracker"]

#: A message object: ``rewrite_message`` gives back one of the same class.
MessageT = TypeVar("MessageT", bound=Message)

#: SendGrid tracks at most this many links per message; so do we by default.
DEFAULT_MAX_LINKS = 1000
_MAX_TIMESTAMP = 2**40  # year 36812: far enough, and finite
_UNSAFE_INPUT = re.compile(r"[\x00-\x20\x7f-\x9f]")


def _check_position(position: object) -> str:
    if position not in ("bottom", "top"):
        raise ConfigurationError(f"pixel_position must be 'bottom' or 'top', not {position!r}")
    return str(position)


class Tracker:
    """Rewrites messages into signed tracking URLs and verifies those URLs.

    ``secret_keys`` follows itsdangerous: a key or a list of keys, oldest first;
    the last one signs, every one verifies, so keys rotate by appending a new
    key and later dropping the oldest. ``base_url`` is where the tracking
    endpoints are served (``{base_url}/c/<token>`` by default; ``paths`` moves
    them). Options that shape every message live here; what varies per message
    goes to :meth:`rewrite_html`. ``settings`` are the account-level defaults
    (for example ``TrackingSettings.from_account(...)``); a message's own
    ``settings`` are laid over them field by field.
    """

    def __init__(
        self,
        secret_keys: str | bytes | Iterable[str | bytes],
        base_url: str,
        *,
        paths: Mapping[str, str] | None = None,
        max_links: int = DEFAULT_MAX_LINKS,
        placeholder_patterns: PatternInput | Iterable[PatternInput] = DEFAULT_PLACEHOLDERS,
        opt_out_attributes: Mapping[str, str | None] = DEFAULT_OPT_OUTS,
        pixel_position: str = "bottom",
        salt: str = "mailtrack",
        digest_method: Any = hashlib.sha256,
        signature_size: int = 16,
        compress_tokens: bool = False,
        clock: Callable[[], float] = time.time,
        max_clock_skew: float = 300,
        settings: SettingsInput = None,
    ) -> None:
        if not isinstance(max_links, int) or isinstance(max_links, bool) or max_links < 0:
            raise ConfigurationError(f"max_links must be a non-negative int, not {max_links!r}")
        _check_position(pixel_position)
        self._settings = TrackingSettings.coerce(settings)
        self._layout = UrlLayout.create(base_url, paths)
        self._codec = TokenCodec(
            secret_keys,
            salt=salt,
            digest_method=digest_method,
            signature_size=signature_size,
            compress=compress_tokens,
            clock=clock,
            max_clock_skew=max_clock_skew,
        )
        self._max_links = max_links
        self._placeholders = PlaceholderMatcher(placeholder_patterns)
        self._opt_outs = OptOuts(opt_out_attributes)
        self._pixel_position = pixel_position
        self._clock = clock

    # Read-only views: a Tracker is configured once, so a change cannot bypass validation.
    @property
    def layout(self) -> UrlLayout:
        """Where the tracking URLs live."""
        return self._layout

    @property
    def codec(self) -> TokenCodec:
        """The token signer and verifier."""
        return self._codec

    @property
    def max_links(self) -> int:
        """How many links per message are tracked at most."""
        return self._max_links

    @property
    def settings(self) -> TrackingSettings:
        """The account-level settings every message starts from."""
        return self._settings

    @property
    def base_url(self) -> str:
        """The normalized ``base_url`` (no trailing slash) every tracking URL starts with."""
        return self._layout.base_url

    # -- rewriting ---------------------------------------------------------------
    def rewrite_html(
        self,
        html: str,
        *,
        message_id: str,
        recipient: str,
        settings: SettingsInput = None,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | None = None,
        pixel_position: str | None = None,
    ) -> HtmlResult:
        """Track the links of one HTML body for one recipient and add the open pixel.

        Returns the rewritten document with every tracked and skipped link and
        the pixel position; everything else in ``html`` is kept byte for byte.
        ``issued_at`` (seconds since the epoch, default now) is signed into the
        tokens: the same inputs and ``issued_at`` give the same output.
        """
        plan = self._plan(settings, message_id, recipient, metadata, issued_at, pixel_position, text=False)
        return rewrite_html(html, plan)

    def rewrite_text(
        self,
        text: str,
        *,
        message_id: str,
        recipient: str,
        settings: SettingsInput = None,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | None = None,
        exclude: Iterable[str] = (),
    ) -> TextResult:
        """Track the http(s) URLs of one plain-text body, when ``click_tracking.enable_text`` is on.

        URL boundaries follow what a reader sees (see :mod:`mailtrack.text`);
        placeholders, ``max_links`` and our own URLs are handled as in HTML, and
        everything else in ``text`` is kept exactly. URLs in ``exclude`` (for
        example those opted out in the HTML part) are left alone as ``opt-out``.
        """
        plan = self._plan(settings, message_id, recipient, metadata, issued_at, None, text=True)
        if isinstance(exclude, str):
            raise TypeError("exclude takes an iterable of URLs, not one str")
        return rewrite_text(text, plan, frozenset(exclude))

    @overload
    def rewrite_message(
        self, message: bytes, *, message_id: str | None = ..., recipient: str | None = ..., settings: SettingsInput = ...,
        metadata: Mapping[str, Any] | None = ..., issued_at: float | None = ..., force: bool = ...,
    ) -> MessageResult[bytes]: ...

    @overload
    def rewrite_message(
        self, message: str, *, message_id: str | None = ..., recipient: str | None = ..., settings: SettingsInput = ...,
        metadata: Mapping[str, Any] | None = ..., issued_at: float | None = ..., force: bool = ...,
    ) -> MessageResult[str]: ...

    @overload
    def rewrite_message(
        self, message: MessageT, *, message_id: str | None = ..., recipient: str | None = ...,
        settings: SettingsInput = ..., metadata: Mapping[str, Any] | None = ..., issued_at: float | None = ...,
        force: bool = ...,
    ) -> MessageResult[MessageT]: ...

    def rewrite_message(
        self,
        message: bytes | str | Message,
        *,
        message_id: str | None = None,
        recipient: str | None = None,
        settings: SettingsInput = None,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | None = None,
        force: bool = False,
    ) -> MessageResult[Any]:
        """Track a whole MIME message: its inline HTML and plain-text parts, for one recipient.

        ``message`` may be ``bytes``, ``str`` or any ``email.message.Message``
        (``EmailMessage`` with any policy, ``email.mime`` classes, Django's
        ``SafeMIMEText``...); ``result.message`` is the same kind, a new object
        (``bytes`` for a ``bytearray``; for a ``Message``, a copy of the same
        class, each part keeping its class, holding the rewritten content as
        parsed with the input's policy; the input is not changed). A ``str``
        holding a lone surrogate, or a message the stdlib cannot serialize, is
        a :class:`~mailtrack.MessageError`. A message carrying ``multipart/signed`` content is
        refused like one carrying ``DKIM-Signature``. Only the lines of the text parts that hold a change are encoded
        again (same charset, same transfer encoding unless a new line no longer
        fits it); attachments, other parts and headers keep their bytes.
        ``message_id`` defaults to the Message-ID header (added when missing),
        ``recipient`` to the single To address; an ``X-SMTPAPI`` header's
        tracking filters apply as message settings (below ``settings=``) and the
        header is removed. A message carrying ``DKIM-Signature`` is refused
        unless ``force=True``: rewriting would invalidate it, so sign after
        mailtrack. Parts that cannot be decoded are left as they are and listed
        in ``result.undecodable``. See :mod:`mailtrack.message` and
        :mod:`mailtrack.mime` for the details.
        """
        when = self._timestamp(issued_at)
        for name, value in (("message_id", message_id), ("recipient", recipient)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")

        def plans(
            resolved: TrackingSettings, mid: str, rcpt: str, meta: Mapping[str, Any] | None
        ) -> tuple[RewritePlan, RewritePlan]:
            return (
                self._plan(resolved, mid, rcpt, meta, when, None, text=False),
                self._plan(resolved, mid, rcpt, meta, when, None, text=True),
            )

        return rewrite_message(
            message,
            plans=plans,
            account=self._settings,
            settings=settings,
            message_id=message_id,
            recipient=recipient,
            metadata=metadata,
            force=force,
            domain=urlsplit(self.base_url).hostname or "localhost",
        )

    def _plan(
        self,
        settings: SettingsInput,
        message_id: str,
        recipient: str,
        metadata: Mapping[str, Any] | None,
        issued_at: float | None,
        pixel_position: str | None,
        *,
        text: bool,
    ) -> RewritePlan:
        """Resolve settings (account < message) and signers for one body."""
        resolved = self._settings.merged(settings)
        when = self._timestamp(issued_at)
        position = self._pixel_position if pixel_position is None else _check_position(pixel_position)
        self._check_identity(message_id, recipient, metadata)
        codec = self._codec
        subscription = resolved.subscription_tracking
        unsubscribe = Unsubscribe(
            token=codec.message_signer("unsubscribe", message_id, recipient, metadata, when),
            is_token=self._is_unsubscribe_token,
            html=subscription.html or DEFAULT_HTML,
            text=subscription.text or DEFAULT_TEXT,
            substitution_tag=subscription.substitution_tag or None,
        ) if subscription.enable else None
        analytics = resolved.ganalytics
        utm = tuple(
            (name, value) for name in analytics.MESSAGE if name != "enable" and (value := getattr(analytics, name))
        ) if analytics.enable else ()
        clicks = resolved.click_tracking.enable and (resolved.click_tracking.enable_text or not text)
        opens = resolved.open_tracking.enable and not text
        return RewritePlan(
            layout=self._layout,
            placeholders=self._placeholders,
            opt_outs=self._opt_outs,
            max_links=self._max_links,
            click=codec.message_signer("click", message_id, recipient, metadata, when) if clicks else None,
            open_token=codec.message_signer("open", message_id, recipient, metadata, when) if opens else None,
            is_open_token=self._is_open_token,
            substitution_tag=resolved.open_tracking.substitution_tag,
            pixel_position=position,
            utm=utm,
            unsubscribe=unsubscribe,
        )

    # -- single URLs -------------------------------------------------------------
    def tracking_url(
        self,
        kind: str,
        *,
        message_id: str,
        recipient: str,
        url: str | None = None,
        link_index: int = 0,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | None = None,
    ) -> str:
        """One signed URL of ``kind`` ("click", "open" or "unsubscribe")."""
        if kind not in KINDS:
            raise MailtrackError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self._check_identity(message_id, recipient, metadata, link_index)
        signer = self._codec.message_signer(kind, message_id, recipient, metadata, self._timestamp(issued_at))
        if kind == "click":
            if not isinstance(url, str) or destination_problem(url) is not None:
                raise MailtrackError(f"a click URL needs an absolute http(s) destination without control characters, not {url!r}")
            token = str(signer(link_index, url))
        else:
            token = str(signer())
        result = self._layout.prefix(kind) + token
        if len(result) > MAX_TOKEN_LENGTH:
            raise MailtrackError("tracking URL would exceed 8 KiB; shorten the destination or the metadata")
        return result

    # -- verification ------------------------------------------------------------
    def verify(self, url_or_token: str, *, max_age: float | None = None, kind: str | None = None) -> Verified:
        """Check a tracking URL (or bare token) and say what it was signed for.

        Raises :class:`~mailtrack.InvalidToken` (reason ``signature``,
        ``purpose``, ``malformed``, ``oversized``, ``destination``,
        ``not-ours``, ``future``) or :class:`~mailtrack.ExpiredToken` when
        ``max_age`` seconds have passed since signing (by ``clock``). A URL's
        path fixes the purpose it must have been signed for; ``kind`` can fix
        it for a bare token. Input holding whitespace or control characters is
        refused as ``malformed``: nothing we issue contains any.
        """
        if not isinstance(url_or_token, str):
            raise TypeError(f"verify takes a str, not {type(url_or_token).__name__}")
        if len(url_or_token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("input is longer than 8 KiB", reason="oversized", token=url_or_token[:64])
        if kind is not None and kind not in KINDS:
            raise MailtrackError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if _UNSAFE_INPUT.search(url_or_token):
            raise InvalidToken("input holds whitespace or control characters", reason="malformed", token=url_or_token)
        token = url_or_token
        if "/" in url_or_token or ":" in url_or_token:
            split = self._layout.split(url_or_token)
            if split is None:
                raise InvalidToken("not a tracking URL of this tracker", reason="not-ours", token=url_or_token)
            path_kind, token = split
            if kind is not None and kind != path_kind:
                raise InvalidToken(f"URL is a {path_kind} URL, not {kind}", reason="purpose", token=url_or_token)
            kind = path_kind
        claims = self._codec.loads(token, kind=kind, max_age=max_age)
        return Verified(
            kind=claims.kind,
            message_id=claims.message_id,
            recipient=claims.recipient,
            issued_at=claims.issued_at,
            url=claims.url,
            link_index=claims.link_index,
            metadata=claims.metadata,
            token=token,
        )

    # -- helpers -----------------------------------------------------------------
    def _is_open_token(self, token: str) -> bool:
        return self._is_token(token, "open")

    def _is_unsubscribe_token(self, token: str) -> bool:
        return self._is_token(token, "unsubscribe")

    def _is_token(self, token: str, kind: str) -> bool:
        try:
            self._codec.loads(token, kind=kind)
        except InvalidToken:
            return False
        return True

    def _timestamp(self, issued_at: float | None) -> int:
        value = self._clock() if issued_at is None else issued_at
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _MAX_TIMESTAMP:
            raise MailtrackError(f"issued_at must be seconds since the epoch (0 to 2**40), not {value!r}")
        return int(value)

    @staticmethod
    def _check_identity(message_id: object, recipient: object, metadata: object, link_index: object = 0) -> None:
        for name, value in (("message_id", message_id), ("recipient", recipient)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        if isinstance(link_index, bool) or not isinstance(link_index, int) or link_index < 0:
            raise MailtrackError(f"link_index must be an int >= 0, not {link_index!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, not {type(metadata).__name__}")
        if metadata and not all(isinstance(key, str) for key in metadata):
            raise TypeError("metadata keys must be str")
        check_claims(message_id, recipient, metadata)  # type: ignore[arg-type]
