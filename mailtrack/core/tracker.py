"""The :class:`Tracker`: one object holding keys and URL layout, for rewriting and verifying."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from typing import Any, Optional, TypeVar, overload
from urllib.parse import urlsplit

from mailtrack.core.message import rewrite_message
from mailtrack.core.results import HtmlResult, MessageResult, TextResult, Verified
from mailtrack.core.rewrite import RewritePlan, Unsubscribe, rewrite_html, rewrite_text
from mailtrack.core.rewrite.footer import DEFAULT_HTML, DEFAULT_TEXT
from mailtrack.core.rewrite.honeypot import HONEYPOT_INDEX
from mailtrack.core.rewrite.plan import Earlier, Reissue
from mailtrack.core.rewrite.rules import DEFAULT_OPT_OUTS, DEFAULT_PLACEHOLDERS, OptOuts, PatternInput, PlaceholderMatcher
from mailtrack.core.settings import SettingsInput, TrackingSettings
from mailtrack.core.tokens import MAX_TOKEN_LENGTH, TokenCodec, check_claims
from mailtrack.core.urls import KINDS, TokenKind, UrlLayout, destination_problem
from mailtrack.exceptions import ArgumentError, ConfigurationError, InvalidToken, MailtrackError

__all__ = ["AccountSettingsSource", "Tracker", "issued_at_seconds"]

#: Where stored per-account settings come from: account name -> v3 account-shape fields (None or {}: nothing stored).
AccountSettingsSource = Callable[[str], Optional[Mapping[str, Any]]]  # noqa: UP045 - a runtime alias

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


@dataclass
class _MessagePlans:
    """What the plans of one message's bodies share (the same claims, the same settings): whether the claims were
    checked, and each purpose's signer, made once by whichever body needs it first."""

    checked: bool = False
    signers: dict[TokenKind, Callable[..., str]] = field(default_factory=dict)


class Tracker:
    """Rewrites messages into signed tracking URLs and verifies those URLs.

    ``secret_keys`` follows itsdangerous: a key or a list of keys, oldest first;
    the last one signs, every one verifies, so keys rotate by appending a new
    key and later dropping the oldest. ``base_url`` is where the tracking
    endpoints are served (``{base_url}/c/<token>`` by default; ``paths`` moves
    them). Options that shape every message live here; what varies per message
    goes to :meth:`rewrite_html`. ``settings`` are the defaults
    (for example ``TrackingSettings.from_account(...)``); a message's own
    ``settings`` are laid over them field by field.

    ``account_settings`` is where stored per-account settings come from: any
    callable taking an account name and giving that account's settings in the
    v3 account shape (only the fields it set; ``None`` or ``{}`` for none),
    such as :class:`mailtrack.storage.settings_source.StoredSettings`. The
    core only calls it; it never knows where the settings live. With it,
    ``account=`` (here the default for every message, or per call) applies
    them: defaults < account < message.
    """

    def __init__(
        self,
        secret_keys: str | bytes | Iterable[str | bytes] | None = None,
        base_url: str = "",
        *,
        codec: TokenCodec | None = None,
        paths: Mapping[str, str] | None = None,
        max_links: int = DEFAULT_MAX_LINKS,
        placeholder_patterns: PatternInput | Iterable[PatternInput] = DEFAULT_PLACEHOLDERS,
        opt_out_attributes: Mapping[str, str | None] = DEFAULT_OPT_OUTS,
        pixel_position: str = "bottom",
        settings: SettingsInput = None,
        account_settings: AccountSettingsSource | None = None,
        account: str | None = None,
        honeypot: bool = False,
        **token_options: Any,
    ) -> None:
        """``codec`` is the token signer; without one, ``secret_keys`` and ``token_options`` build it.

        ``honeypot=True`` adds one invisible link to each HTML part while click
        tracking is on (:mod:`mailtrack.core.rewrite.honeypot`): no person
        follows it, so its click tells the endpoints a link scanner is at work.

        ``token_options`` are :class:`~mailtrack.core.tokens.TokenCodec`'s keyword
        arguments (``salt``, ``digest_method``, ``signature_size``, ``compress``,
        ``clock``, ``max_clock_skew``, ``token_format``; ``compress_tokens`` is taken as ``compress``),
        so ``Tracker(keys, url, salt="x")`` keeps working while the token format
        is configured in one place. ``token_format="opaque"`` (the default) issues
        encrypted tokens, ``"signed"`` the readable format of earlier versions;
        :meth:`verify` takes both whatever it is.
        """
        if not isinstance(max_links, int) or isinstance(max_links, bool):
            raise ConfigurationError(f"max_links must be a non-negative int, not {max_links!r}")
        # Its value as a plain int: an int subclass's own comparisons would decide the limit on the pure path
        # only (the compiled loop reads the number), so both paths, and this check, compare the number.
        max_links = int.__index__(max_links)
        if max_links < 0:
            raise ConfigurationError(f"max_links must be a non-negative int, not {max_links!r}")
        _check_position(pixel_position)
        if not isinstance(honeypot, bool):
            raise ConfigurationError(f"honeypot must be True or False, not {honeypot!r}")
        self._honeypot = honeypot
        self._settings = TrackingSettings.coerce(settings)
        if account_settings is not None and not callable(account_settings):
            raise ConfigurationError(f"account_settings must be a callable (account name -> settings), "
                                     f"not {type(account_settings).__name__}")
        self._account_settings = account_settings
        self._account = None if account is None else self._check_account(account)
        self._layout = UrlLayout.create(base_url, paths)
        self._codec = _codec(secret_keys, codec, token_options)
        self._max_links = max_links
        self._placeholders = PlaceholderMatcher(placeholder_patterns)
        self._opt_outs = OptOuts(opt_out_attributes)
        self._pixel_position = pixel_position
        self._clock = self._codec.clock

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
    def honeypot(self) -> bool:
        """Whether each HTML part gets the invisible honeypot link (with click tracking on)."""
        return self._honeypot

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
        recipient: str | None = None,
        settings: SettingsInput = None,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | datetime | None = None,
        pixel_position: str | None = None,
        tags: Iterable[str] | None = None,
        account: str | None = None,
    ) -> HtmlResult:
        """Track the links of one HTML body for one recipient and add the open pixel.

        Returns the rewritten document with every tracked and skipped link and
        the pixel position; everything else in ``html`` is kept byte for byte.
        ``issued_at`` (seconds since the epoch, default now) is signed into the
        tokens: the same inputs and ``issued_at`` give the same output.
        ``recipient=None`` tracks a body that one copy carries to several
        people: the tokens name no recipient, and neither do their events.
        ``tags`` (django-anymail's ``msg.tags``) are signed in and come back
        in every event. ``account`` (default: the Tracker's) applies that
        account's stored settings under ``settings``, and is signed into the
        tokens so that its events are that account's (see :meth:`verify`).
        """
        settings = self._account_base(account).merged(settings)
        plan = self._plan(settings, message_id, recipient, metadata, issued_at, pixel_position, text=False, tags=tags,
                          account=self._signed_account(account))
        return rewrite_html(html, plan)

    def rewrite_text(
        self,
        text: str,
        *,
        message_id: str,
        recipient: str | None = None,
        settings: SettingsInput = None,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | datetime | None = None,
        exclude: Iterable[str] = (),
        tags: Iterable[str] | None = None,
        account: str | None = None,
    ) -> TextResult:
        """Track the http(s) URLs of one plain-text body, when ``click_tracking.enable_text`` is on.

        URL boundaries follow what a reader sees (see :mod:`mailtrack.core.urlfinder`);
        placeholders, ``max_links`` and our own URLs are handled as in HTML, and
        everything else in ``text`` is kept exactly. URLs in ``exclude`` (for
        example those opted out in the HTML part) are left alone as ``opt-out``.
        ``account`` as in :meth:`rewrite_html`.
        """
        settings = self._account_base(account).merged(settings)
        plan = self._plan(settings, message_id, recipient, metadata, issued_at, None, text=True, tags=tags,
                          account=self._signed_account(account))
        if isinstance(exclude, str):
            raise ArgumentError("exclude takes an iterable of URLs, not one str")
        try:
            excluded = frozenset(exclude)
        except TypeError:  # not iterable, or holding unhashable values
            raise ArgumentError(f"exclude takes an iterable of URLs (str), not {type(exclude).__name__}") from None
        if not all(isinstance(url, str) for url in excluded):
            raise ArgumentError("exclude takes an iterable of URLs (str)")
        return rewrite_text(text, plan, excluded)

    @overload
    def rewrite_message(
        self, message: bytes, *, message_id: str | None = ..., recipient: str | None = ..., settings: SettingsInput = ...,
        metadata: Mapping[str, Any] | None = ..., issued_at: float | datetime | None = ..., force: bool = ...,
        tags: Iterable[str] | None = ..., account: str | None = ...,
    ) -> MessageResult[bytes]: ...

    @overload
    def rewrite_message(
        self, message: str, *, message_id: str | None = ..., recipient: str | None = ..., settings: SettingsInput = ...,
        metadata: Mapping[str, Any] | None = ..., issued_at: float | datetime | None = ..., force: bool = ...,
        tags: Iterable[str] | None = ..., account: str | None = ...,
    ) -> MessageResult[str]: ...

    @overload
    def rewrite_message(
        self, message: MessageT, *, message_id: str | None = ..., recipient: str | None = ...,
        settings: SettingsInput = ..., metadata: Mapping[str, Any] | None = ..., issued_at: float | datetime | None = ...,
        force: bool = ..., tags: Iterable[str] | None = ..., account: str | None = ...,
    ) -> MessageResult[MessageT]: ...

    def rewrite_message(
        self,
        message: bytes | str | Message,
        *,
        message_id: str | None = None,
        recipient: str | None = None,
        settings: SettingsInput = None,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | datetime | None = None,
        force: bool = False,
        tags: Iterable[str] | None = None,
        account: str | None = None,
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
        in ``result.undecodable``. ``issued_at`` (default now) is signed into
        the tokens; when it is given, a Message-ID added to a message without
        one is derived from it and the message instead of drawn at random, so
        the same inputs and ``issued_at`` give the same bytes. See :mod:`mailtrack.core.message` and
        :mod:`mailtrack.core.mime` for the details. ``account`` (default: the
        Tracker's) applies that account's stored settings: defaults < account
        < X-SMTPAPI filters < ``settings``.
        """
        base = self._account_base(account)
        when = self._timestamp(issued_at)
        for name, value in (("message_id", message_id), ("recipient", recipient)):
            if value is not None and not isinstance(value, str):
                raise ArgumentError(f"{name} must be a str or None, not {type(value).__name__}")
        labels = _check_tags(tags)
        signed = self._signed_account(account)

        def plans(
            resolved: TrackingSettings, mid: str, rcpt: str, meta: Mapping[str, Any] | None
        ) -> tuple[RewritePlan, RewritePlan]:
            shared = _MessagePlans()  # the HTML and text plans sign the same claims: encoded and checked once
            return (
                self._plan(resolved, mid, rcpt, meta, when, None, text=False, tags=labels, account=signed, shared=shared),
                self._plan(resolved, mid, rcpt, meta, when, None, text=True, tags=labels, account=signed, shared=shared),
            )

        return rewrite_message(
            message,
            plans=plans,
            account=base,
            settings=settings,
            message_id=message_id,
            recipient=recipient,
            metadata=metadata,
            force=force,
            domain=urlsplit(self.base_url).hostname or "localhost",
            issued_at=when if issued_at is not None else None,
        )

    def _account_base(self, account: str | None) -> TrackingSettings:
        """The defaults with ``account``'s stored settings over them (the Tracker's account when None)."""
        name = self._account if account is None else self._check_account(account)
        if name is None:
            return self._settings
        if self._account_settings is None:
            raise ConfigurationError(f"account={name!r} needs a Tracker with account_settings= (where stored "
                                     "settings come from)")
        stored = self._account_settings(name)
        if stored is not None and not isinstance(stored, Mapping):
            raise ConfigurationError(f"account_settings({name!r}) gave a {type(stored).__name__}, not a mapping")
        return self._settings.with_account(stored)

    def _signed_account(self, account: str | None) -> str | None:
        """The account signed into a message's tokens: the call's, else the Tracker's, else none."""
        return self._account if account is None else self._check_account(account)

    @staticmethod
    def _check_account(account: object) -> str:
        if not isinstance(account, str) or not account:
            raise ArgumentError(f"account must be a non-empty str or None, not {account!r}")
        return account

    @property
    def account(self) -> str | None:
        """The account whose stored settings every message gets unless it names another (None: no account)."""
        return self._account

    def _plan(
        self,
        settings: SettingsInput,
        message_id: str,
        recipient: str | None,
        metadata: Mapping[str, Any] | None,
        issued_at: float | datetime | None,
        pixel_position: str | None,
        *,
        text: bool,
        tags: Iterable[str] | None = None,
        account: str | None = None,
        shared: _MessagePlans | None = None,
    ) -> RewritePlan:
        """Resolve settings (account < message) and signers for one body.

        ``shared``: what the plans of one message's bodies pass along (same
        claims, same settings): the claims are checked once and each purpose's
        signer is made once, for whichever body needs it first.
        """
        resolved = self._settings.merged(settings)
        when = self._timestamp(issued_at)
        position = self._pixel_position if pixel_position is None else _check_position(pixel_position)
        labels = _check_tags(tags)
        if shared is None or not shared.checked:
            self._check_identity(message_id, recipient, metadata, tags=labels)
            if shared is not None:
                shared.checked = True
        codec = self._codec
        subscription = resolved.subscription_tracking
        clicks = resolved.click_tracking.enable and (resolved.click_tracking.enable_text or not text)
        opens = resolved.open_tracking.enable and not text

        def signer(kind: TokenKind) -> Callable[[], str]:
            return codec.message_signer(kind, message_id, recipient, metadata, when, labels, account)

        def later(kind: TokenKind) -> Callable[[], str]:  # built only if another message's token turns up
            return lambda: signer(kind)()

        wanted: list[TokenKind] = ["open"] if opens else []
        if subscription.enable:
            wanted.append("unsubscribe")
        if clicks:
            wanted.append("click")
        if shared is None:
            signers = codec.message_signers(wanted, message_id, recipient, metadata, when, labels, account)  # encoded once
        else:
            made = shared.signers
            missing = [kind for kind in wanted if kind not in made]
            if missing:
                made.update(codec.message_signers(missing, message_id, recipient, metadata, when, labels, account))
            signers = {kind: made[kind] for kind in wanted}
        open_token = signers.get("open")
        unsubscribe_token = signers.get("unsubscribe")
        unsubscribe = Unsubscribe(
            token=unsubscribe_token,
            html=subscription.html or DEFAULT_HTML,
            text=subscription.text or DEFAULT_TEXT,
            substitution_tag=subscription.substitution_tag or None,
        ) if unsubscribe_token is not None else None
        reissue = Reissue(
            read=self._reader(message_id, recipient, metadata, labels, account),
            open_token=open_token or later("open"),
            unsubscribe_token=unsubscribe_token or later("unsubscribe"),
        )
        return RewritePlan(
            layout=self._layout,
            placeholders=self._placeholders,
            opt_outs=self._opt_outs,
            max_links=self._max_links,
            click=signers.get("click"),
            open_token=open_token,
            substitution_tag=resolved.open_tracking.substitution_tag,
            pixel_position=position,
            utm=resolved.ganalytics.parameters(),
            unsubscribe=unsubscribe,
            reissue=reissue,
            honeypot=self._honeypot,
        )

    def _reader(
        self, message_id: str, recipient: str | None, metadata: Mapping[str, Any] | None, tags: tuple[str, ...] = (),
        account: str | None = None,
    ) -> Callable[[str, TokenKind | None], Earlier | None]:
        """Reads our URLs found in a body, for one message: whose are they, and where does a click go.

        Verified as the tracking endpoints would (:meth:`verify`: every key in
        rotation, no age limit, since an old message's URLs are still its own).
        A URL is this message's when its message ID and recipient are this
        call's and, if this call has metadata, so is its metadata: a call with
        other metadata signs it again (the newest call's metadata wins), while a
        call with none keeps what is there (a second pass of a message whose
        X-SMTPAPI ``unique_args`` became its metadata has no header left to
        read them from, and must not change it). Tags and the account follow the same rule.
        """
        wanted = dict(metadata or {})

        def read(url_or_token: str, kind: TokenKind | None) -> Earlier | None:
            try:
                verified = self.verify(url_or_token, kind=kind)
            except MailtrackError:  # InvalidToken and its kin: forged, truncated, another key, not a tracking path
                return None
            this_message = (
                verified.message_id == message_id
                and verified.recipient == recipient
                and (not wanted or dict(verified.metadata) == wanted)
                and (not tags or verified.tags == tags)
                and (account is None or verified.account == account)
            )
            return Earlier(verified.kind, this_message, verified.url, verified.link_index)

        return read

    # -- single URLs -------------------------------------------------------------
    def tracking_url(
        self,
        kind: str,
        *,
        message_id: str,
        recipient: str | None = None,
        url: str | None = None,
        link_index: int = 0,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | datetime | None = None,
        tags: Iterable[str] | None = None,
        account: str | None = None,
    ) -> str:
        """One signed URL of ``kind`` ("click", "open" or "unsubscribe"); ``account`` (default the Tracker's) signed in."""
        if kind not in KINDS:
            raise MailtrackError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        labels = _check_tags(tags)
        self._check_identity(message_id, recipient, metadata, link_index, labels)
        signer = self._codec.message_signer(kind, message_id, recipient, metadata, self._timestamp(issued_at), labels,
                                            self._signed_account(account))
        if kind == "click":
            problem = destination_problem(url) if isinstance(url, str) else "scheme"
            if problem is not None:
                raise MailtrackError(
                    f"a click URL needs an absolute http(s) destination without control characters and with a host, "
                    f"port and userinfo a browser accepts ({problem}), not {url!r}"
                )
            # The number, as a plain int: an int subclass's own __str__ or __format__ would be signed as the index
            # (an undecodable token), and the compiled signer would not fail on it as the pure one does.
            token = str(signer(int.__index__(link_index), url))
        else:
            token = str(signer())
        result = self._layout.prefix(kind) + token
        if len(result) > MAX_TOKEN_LENGTH:
            raise MailtrackError("tracking URL would exceed 8 KiB; shorten the destination or the metadata")
        return result

    def honeypot_url(
        self,
        *,
        message_id: str,
        recipient: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        issued_at: float | datetime | None = None,
        tags: Iterable[str] | None = None,
        account: str | None = None,
    ) -> str:
        """The honeypot link's URL for one message (what ``honeypot=True`` inserts), for markup built by hand.

        A click token with the reserved index :data:`~mailtrack.core.rewrite.honeypot.HONEYPOT_INDEX` and the base
        URL as its destination; the endpoints answer it ``204`` and record a ``honeypot`` click. Put it where no
        person sees or reaches it: :func:`~mailtrack.core.rewrite.honeypot.honeypot_html` writes such a link.
        """
        labels = _check_tags(tags)
        self._check_identity(message_id, recipient, metadata, 0, labels)
        signer = self._codec.message_signer("click", message_id, recipient, metadata, self._timestamp(issued_at),
                                            labels, self._signed_account(account))
        result = self._layout.prefix("click") + str(signer(HONEYPOT_INDEX, self._layout.base_url))
        if len(result) > MAX_TOKEN_LENGTH:
            raise MailtrackError("tracking URL would exceed 8 KiB; shorten the metadata")
        return result

    # -- verification ------------------------------------------------------------
    def verify(self, url_or_token: str, *, max_age: float | None = None, kind: TokenKind | None = None) -> Verified:
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
            raise ArgumentError(f"verify takes a str, not {type(url_or_token).__name__}")
        if len(url_or_token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("input is longer than 8 KiB", reason="oversized", token=url_or_token[:64])
        if kind is not None and kind not in KINDS:
            raise ArgumentError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
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
        return self._codec.loads(token, kind=kind, max_age=max_age)

    # -- helpers -----------------------------------------------------------------
    def _timestamp(self, issued_at: float | datetime | None) -> int:
        """When tokens are signed: now by ``clock``, or ``issued_at`` (seconds since the epoch, or an aware datetime)."""
        return issued_at_seconds(self._clock() if issued_at is None else issued_at)

    @staticmethod
    def _check_identity(
        message_id: object, recipient: object, metadata: object, link_index: object = 0, tags: tuple[str, ...] = ()
    ) -> None:
        if not isinstance(message_id, str):
            raise ArgumentError(f"message_id must be a str, not {type(message_id).__name__}")
        if recipient is not None and not isinstance(recipient, str):
            raise ArgumentError(f"recipient must be a str or None, not {type(recipient).__name__}")
        if isinstance(link_index, bool) or not isinstance(link_index, int) or link_index < 0:
            raise MailtrackError(f"link_index must be an int >= 0, not {link_index!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ArgumentError(f"metadata must be a mapping, not {type(metadata).__name__}")
        if metadata and not all(isinstance(key, str) for key in metadata):
            raise ArgumentError("metadata keys must be str")
        check_claims(message_id, recipient, metadata, tags)


def issued_at_seconds(value: object) -> int:
    """``value`` (seconds since the epoch, or an aware datetime) as the whole seconds a token is signed with.

    The one check of a signing time, used by :class:`Tracker` and by batch jobs
    (which fix theirs once for every worker); anything else is an :class:`ArgumentError`.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ArgumentError(f"issued_at must be a timezone-aware datetime, not {value!r}")
        value = value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _MAX_TIMESTAMP:
        raise ArgumentError(f"issued_at must be seconds since the epoch (0 to 2**40) or an aware datetime, not {value!r}")
    return int(value)


def _check_tags(tags: object) -> tuple[str, ...]:
    """``tags`` as a tuple of str (None: none), or :class:`ArgumentError`: one str is refused, not split into letters."""
    if tags is None:
        return ()
    if isinstance(tags, tuple) and all(isinstance(tag, str) for tag in tags):
        return tags
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise ArgumentError(f"tags must be a list of str, not {type(tags).__name__}")
    labels = tuple(tags)
    for tag in labels:
        if not isinstance(tag, str):
            raise ArgumentError(f"every tag must be a str, not {type(tag).__name__}")
    return labels


_CODEC_OPTIONS = frozenset({"salt", "digest_method", "signature_size", "compress", "clock", "max_clock_skew", "token_format"})


def _codec(secret_keys: str | bytes | Iterable[str | bytes] | None, codec: TokenCodec | None, options: dict[str, Any]) -> TokenCodec:
    """The tracker's codec: the one given, or one built from the keys and the token options."""
    if "compress_tokens" in options:
        options["compress"] = options.pop("compress_tokens")
    unknown = sorted(set(options) - _CODEC_OPTIONS)
    if unknown:
        raise ArgumentError(f"Tracker() got unexpected keyword argument(s): {', '.join(unknown)}")
    if codec is not None:
        if secret_keys is not None or options:
            raise ConfigurationError("pass either codec= or secret_keys (with token options), not both")
        if not isinstance(codec, TokenCodec):
            raise ArgumentError(f"codec must be a TokenCodec, not {type(codec).__name__}")
        return codec
    if secret_keys is None:
        raise ConfigurationError("Tracker needs secret_keys (or a codec)")
    return TokenCodec(secret_keys, **options)
