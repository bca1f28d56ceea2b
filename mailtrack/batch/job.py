"""The :class:`Job`: everything a worker needs to rewrite messages, sent to each worker once.

A job is plain data (strings, numbers, dicts), so it pickles to a process pool's
initializer or a Dask worker plugin; each worker builds its own
:class:`~mailtrack.Tracker` from it (a tracker holds hash objects that do not
pickle). It is validated when it is made, so a bad key, base URL, setting or
value fails before any input is read, not in every worker.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailtrack.core.settings import TrackingSettings
from mailtrack.core.tokens import TOKEN_FORMATS
from mailtrack.core.tracker import Tracker, issued_at_seconds
from mailtrack.exceptions import ArgumentError, ConfigurationError

__all__ = ["Job", "issued_at_seconds"]

def _json_object(value: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    """A plain-data copy of ``value`` (a JSON object), so the job pickles and nothing outside can change it."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ArgumentError(f"{name} must be a JSON object (a mapping), not {type(value).__name__}")
    try:
        copied: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"{name} must hold JSON values only: {exc}") from None
    return copied


@dataclass(frozen=True, repr=False)
class Job:
    """One campaign batch: keys, base URL, tracking settings and the options every message shares.

    * ``secret_keys``: newest last, as for :class:`~mailtrack.Tracker` (the
      last signs, every one verifies); ``base_url``: where the tracking URLs live.
    * ``settings``: SendGrid's mail/send ``tracking_settings`` object applied to
      every message, as account-level settings: a message's own settings (an
      ``X-SMTPAPI`` header, a JSON lines record's ``tracking_settings``) are
      laid over it field by field.
    * ``metadata``: a JSON object signed into every URL; a JSON lines record's
      ``metadata`` is laid over it key by key.
    * ``issued_at``: the signing time of every token, whole seconds since the
      epoch (:func:`issued_at_seconds` converts an aware datetime); default:
      the moment the job is made. Fixed per
      job, so the output does not depend on how the work is split or retried:
      the same job and inputs give the same bytes.
    * ``message_id`` and ``recipient``: for HTML inputs and JSON lines records
      that carry none (an HTML file's message id defaults to its file name
      without the extension; a recipient has no default). Messages (.eml, mbox,
      ``raw``) take theirs from their headers.
    * ``encoding``: the encoding of HTML files, kept on output.
    * ``force``: rewrite messages that carry a DKIM signature or are
      ``multipart/signed`` (which breaks the signature).
    * ``honeypot``: add the invisible honeypot link to every HTML part
      (``Tracker(honeypot=True)``, :mod:`mailtrack.core.rewrite.honeypot`).
    * ``token_format``: ``"opaque"`` (the default: encrypted tokens) or
      ``"signed"`` (readable ones), as for :class:`~mailtrack.Tracker`. Both
      are deterministic, so a job's output is reproducible either way.

    Treat a job as read-only (it is frozen; its dicts are private copies).
    """

    secret_keys: tuple[str, ...]
    base_url: str
    settings: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    issued_at: int = field(default_factory=lambda: int(time.time()))
    message_id: str | None = None
    recipient: str | None = None
    encoding: str = "utf-8"
    force: bool = False
    honeypot: bool = False
    token_format: str = "opaque"

    def __post_init__(self) -> None:
        keys = self.secret_keys
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise ConfigurationError("secret_keys must be a list of strings, newest last")
        keys = tuple(keys)
        if not keys or not all(isinstance(key, str) and key for key in keys):
            raise ConfigurationError("secret_keys must be one or more non-empty strings")
        object.__setattr__(self, "secret_keys", keys)
        object.__setattr__(self, "settings", _json_object(self.settings, "settings"))
        object.__setattr__(self, "metadata", _json_object(self.metadata, "metadata"))
        TrackingSettings.from_dict(self.settings)  # a SettingsError naming the field, now rather than per message
        object.__setattr__(self, "issued_at", issued_at_seconds(self.issued_at))
        for name in ("message_id", "recipient"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ArgumentError(f"{name} must be a non-empty str or None, not {value!r}")
        if not isinstance(self.encoding, str):
            raise ArgumentError(f"encoding must be a str, not {type(self.encoding).__name__}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ArgumentError(f"unknown encoding {self.encoding!r}") from None
        if not isinstance(self.force, bool):
            raise ArgumentError(f"force must be a bool, not {self.force!r}")
        if not isinstance(self.honeypot, bool):
            raise ArgumentError(f"honeypot must be a bool, not {self.honeypot!r}")
        if self.token_format not in TOKEN_FORMATS:
            raise ArgumentError(f"token_format must be one of {', '.join(TOKEN_FORMATS)}, not {self.token_format!r}")
        object.__setattr__(self, "base_url", self.tracker().base_url)  # validates the URL (and keys) once, here

    def tracker(self) -> Tracker:
        """A new :class:`~mailtrack.Tracker` for this job (one per worker: it does not pickle)."""
        return Tracker(secret_keys=list(self.secret_keys), base_url=self.base_url, settings=self.settings,
                       honeypot=self.honeypot, token_format=self.token_format)

    def __repr__(self) -> str:
        count = len(self.secret_keys)
        return (f"Job(secret_keys=<{count} key{'s' if count != 1 else ''}>, base_url={self.base_url!r}, "
                f"settings={self.settings!r}, metadata={self.metadata!r}, issued_at={self.issued_at!r}, "
                f"message_id={self.message_id!r}, recipient={self.recipient!r}, encoding={self.encoding!r}, "
                f"force={self.force!r}{', honeypot=True' if self.honeypot else ''}, token_format={self.token_format!r})")

    __str__ = __repr__
