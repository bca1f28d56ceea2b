"""Exceptions raised by mailtrack.

Every exception derives from :class:`MailtrackError`, so callers that only want
"mailtrack said no" can catch one class. Token failures carry the reason and the
input that failed, like itsdangerous' ``BadData`` carries its payload, so a
caller can log what was refused without re-parsing anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

#: Why a token was refused (:attr:`InvalidToken.reason`).
TokenProblem = Literal["signature", "purpose", "malformed", "oversized", "destination", "expired", "future", "not-ours"]


class MailtrackError(Exception):
    """Base class of every error mailtrack raises on purpose."""


class SettingsError(MailtrackError, ValueError):
    """A settings value has the wrong type, an unknown key or a bad value.

    The message names the field path, e.g. ``click_tracking.enable must be a boolean``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path} {message}" if path else message)
        #: Dotted path of the offending field ("" for the whole object).
        self.path = path


class InvalidToken(MailtrackError):
    """A tracking URL or token was refused.

    ``reason`` is a short machine-readable word (``"signature"``, ``"purpose"``,
    ``"malformed"``, ``"oversized"``, ``"destination"``, ``"expired"``,
    ``"future"``, ``"not-ours"``) and ``token`` is the input that failed
    (possibly truncated for oversized input).
    """

    def __init__(self, message: str, *, reason: TokenProblem, token: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.token = token


class ExpiredToken(InvalidToken):
    """The token is authentic but older than the ``max_age`` the caller allows."""

    def __init__(self, message: str, *, token: str | None = None, issued_at: datetime | None = None) -> None:
        super().__init__(message, reason="expired", token=token)
        #: When the token was signed (aware UTC), so a caller can tell how old it was.
        self.issued_at = issued_at


class ArgumentError(MailtrackError, TypeError, ValueError):
    """An argument has the wrong type or a value out of its range (a ``bytes`` message id, a list as
    metadata, a negative ``max_age``, an ``issued_at`` before 1970, ...).

    Also a ``TypeError`` and a ``ValueError``, so code written against the
    stdlib's conventions keeps catching it.
    """


class ConfigurationError(MailtrackError, ValueError):
    """A configuration value (keys, base URL, database, webhook secret, ...) is missing or invalid.

    Raised by :mod:`mailtrack.config` and the constructors it feeds, before any
    thread starts or any file is written; the message names the setting and,
    where there is one, its ``MAILTRACK_*`` variable.
    """


class MessageError(MailtrackError, ValueError):
    """A message given to ``rewrite_message`` cannot be read or written back as given.

    For example a ``str`` holding a lone surrogate (no byte sequence encodes
    it), a ``Message`` object the stdlib generator cannot serialize, a message
    with no or several ``To`` addresses and no ``recipient=``, or an empty
    ``Message-ID``. The message says what is wrong and what to pass instead.
    Distinct from :class:`MessageRefused`, where the message is fine but
    rewriting it would break something.
    """


class MessageRefused(MailtrackError):
    """A message was deliberately not rewritten: changing it would break something.

    ``reason`` says what: ``"dkim"`` (a ``DKIM-Signature`` covers the bytes),
    ``"signed"`` (``multipart/signed``), ``"fan-out"`` (an ``X-SMTPAPI`` ``to``
    list), ``"several-messages"`` (an mbox given where one message was expected).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class WebhookSignatureError(MailtrackError):
    """A webhook signature header is malformed, stale, or matches none of the secrets.

    ``header`` is the header value that failed, as itsdangerous' ``BadData``
    carries its payload.
    """

    def __init__(self, message: str, *, header: str | None = None) -> None:
        super().__init__(message)
        self.header = header
