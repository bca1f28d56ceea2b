"""One outgoing message, as an SMTP pipeline holds it: identity, per-message settings, headers.

:func:`rewrite_message` takes the message as ``bytes``, ``str`` or an
``email.message.Message`` (``EmailMessage`` included) and gives back the same
kind, a new object. Underneath it always works on bytes (see :mod:`mailtrack.mime`):

* ``message_id`` defaults to the ``Message-ID`` header without its angle
  brackets (a header is added when missing); ``recipient`` to the single
  address in ``To`` (tracking URLs are per recipient, so several are an error);
* an ``X-SMTPAPI`` header's tracking filters apply as message settings, its
  ``unique_args`` become token metadata, and the header is removed;
* a ``DKIM-Signature`` would no longer verify after rewriting, so such a
  message is refused unless ``force=True`` (sign after mailtrack instead);
* with subscription tracking on, ``List-Unsubscribe: <https://...>`` and
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058) are added,
  unless the message already has its own ``List-Unsubscribe``.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from .exc import MailtrackError, SettingsError
from .mime import MimeNode, add_field, line_break, parse_message, rewrite_parts, splice_bytes, unfold
from .results import MessageResult
from .rewrite import RewritePlan
from .settings import SettingsInput, TrackingSettings
from .smtpapi import HEADER as SMTPAPI, parse_smtpapi

__all__ = ["MessageInput", "Plans", "rewrite_message"]

MessageInput = bytes | str | Message
#: Builds the (HTML, text) body plans for resolved settings, message ID, recipient and metadata.
Plans = Callable[[TrackingSettings, str, str, "Mapping[str, Any] | None"], tuple[RewritePlan, RewritePlan]]
_MSG_ID = re.compile(r"[^<>\s@]+@[^<>\s@]+")
_SURROGATES_ONLY = re.compile(r"[\x00-\x7f\udc80-\udcff]*")


def rewrite_message(
    message: Any,
    *,
    plans: Plans,
    account: TrackingSettings,
    settings: SettingsInput,
    message_id: str | None,
    recipient: str | None,
    metadata: Mapping[str, Any] | None,
    force: bool,
    domain: str,
) -> MessageResult[Any]:
    """Rewrite ``message``; see :meth:`mailtrack.Tracker.rewrite_message`."""
    raw, convert = _as_bytes(message)
    root = parse_message(raw)
    eol = line_break(raw[: root.body_start])
    if root.header_end == len(raw) and raw and not raw.endswith((b"\n", b"\r")):
        # Only headers, the last one unterminated: end it, so that fields can follow it.
        raw += eol
        root = parse_message(raw)
    edits: list[tuple[int, int, bytes]] = []
    warnings: list[str] = []

    if root.field("dkim-signature") is not None:
        if not force:
            raise MailtrackError(
                "the message carries a DKIM-Signature that rewriting would break; "
                "sign after mailtrack, or pass force=True to rewrite anyway"
            )
        warnings.append("force=True: the DKIM-Signature was kept but no longer verifies; sign again after rewriting")

    resolved, metadata = _smtpapi(raw, root, account, metadata, edits, warnings)
    resolved = resolved.merged(settings)
    message_id = _message_id(root, message_id, domain, eol, edits)
    recipient = _recipient(root, recipient)
    html_plan, text_plan = plans(resolved, message_id, recipient, metadata)

    def plan_for(subtype: str, is_body: bool) -> RewritePlan | None:
        plan = html_plan if subtype == "html" else text_plan
        if not is_body:
            plan = replace(plan, open_token=None, unsubscribe=None)  # pixel and footer go in the body only
        if plan.click is None and plan.open_token is None and plan.unsubscribe is None:
            return None
        return plan

    part_edits, parts, part_warnings = rewrite_parts(raw, root, plan_for)
    edits.extend(part_edits)
    warnings.extend(part_warnings)

    list_unsubscribe = None
    if html_plan.unsubscribe is not None:
        if not any(part.body for part in parts):
            warnings.append("subscription tracking: the message has no text body for the footer; List-Unsubscribe only")
        prefix = html_plan.layout.prefix("unsubscribe")
        list_unsubscribe = _list_unsubscribe(raw, root, prefix, html_plan.unsubscribe.token(), eol, edits, warnings)
    output = convert(splice_bytes(raw, edits))
    return MessageResult(output, message_id, recipient, parts, warnings, list_unsubscribe)


def _as_bytes(message: Any) -> tuple[bytes, Callable[[bytes], Any]]:
    """The message's bytes, and how to turn rewritten bytes back into the kind it came as."""
    if isinstance(message, (bytes, bytearray)):
        return bytes(message), bytes
    if isinstance(message, str):
        # A str read the stdlib's way holds non-ASCII bytes as surrogates: give them back as they were.
        # Otherwise its non-ASCII characters are text, written as UTF-8 (RFC 6532).
        codec = "ascii" if _SURROGATES_ONLY.fullmatch(message) else "utf-8"
        return message.encode(codec, "surrogateescape"), lambda data: data.decode(codec, "surrogateescape")
    if isinstance(message, Message):
        policy = message.policy
        try:
            raw = message.as_bytes(policy=policy)
        except Exception as exc:  # the stdlib generator's own errors: a header or payload it cannot write
            raise MailtrackError(f"cannot serialize the message ({type(exc).__name__}: {exc})") from exc
        factory = EmailMessage if isinstance(message, EmailMessage) else Message
        unixfrom = message.get_unixfrom()

        def convert(data: bytes) -> Message:
            parsed: Message = BytesParser(_class=factory, policy=policy).parsebytes(data)
            if unixfrom:
                parsed.set_unixfrom(unixfrom)
            return parsed

        return raw, convert
    raise TypeError(f"rewrite_message takes an email.message.Message, bytes or str, not {type(message).__name__}")


def _field_value(raw: bytes, start: int, end: int, name: str) -> str:
    """A header field's value, unfolded; UTF-8 (RFC 6532) allowed."""
    value = raw[start:end].split(b":", 1)[1]
    try:
        return unfold(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(name, "is not UTF-8 text") from None


def _smtpapi(
    raw: bytes,
    root: MimeNode,
    account: TrackingSettings,
    metadata: Mapping[str, Any] | None,
    edits: list[tuple[int, int, bytes]],
    warnings: list[str],
) -> tuple[TrackingSettings, Mapping[str, Any] | None]:
    """Account settings with the X-SMTPAPI filters laid over them; metadata with its unique_args."""
    found = [f for f in root.fields if f.name == SMTPAPI.lower()]
    if not found:
        return account, metadata
    if len(found) > 1:
        raise SettingsError(SMTPAPI, "appears more than once; merge the headers into one JSON object")
    header = found[0]
    api = parse_smtpapi(_field_value(raw, header.start, header.end, SMTPAPI))
    edits.append((header.start, header.end, b""))
    if api.ignored:
        warnings.append(f"{SMTPAPI}: not acted on and removed with the header: {', '.join(api.ignored)}")
    if api.metadata:
        metadata = {**api.metadata, **(metadata or {})}
    return account.merged(api.settings), metadata


def _message_id(root: MimeNode, given: str | None, domain: str, eol: bytes, edits: list[tuple[int, int, bytes]]) -> str:
    header = root.headers.get("message-id")
    if header is not None:
        value = unfold(str(header))
        if given is not None:
            return given
        if not value.strip("<> \t"):
            raise MailtrackError("the Message-ID header is empty; pass message_id= or give the message a Message-ID")
        return value.strip().strip("<>").strip()
    if given is not None and _MSG_ID.fullmatch(given):
        edits.append(add_field(root, "Message-ID", f"<{given}>", eol))
        return given
    new = email.utils.make_msgid(domain=domain)
    edits.append(add_field(root, "Message-ID", new, eol))
    return new.strip("<>") if given is None else given


def _recipient(root: MimeNode, given: str | None) -> str:
    if given is not None:
        return given
    values = [unfold(str(v)) for v in root.headers.get_all("to") or []]
    addresses = [address for _, address in email.utils.getaddresses(values) if address]
    if len(addresses) == 1:
        return addresses[0]
    if not addresses:
        raise MailtrackError("the message has no To address; pass recipient= (tracking URLs are per recipient)")
    raise MailtrackError(
        f"the message has {len(addresses)} To addresses; tracking URLs are per recipient, "
        "so rewrite one copy per recipient with recipient="
    )


def _list_unsubscribe(
    raw: bytes,
    root: MimeNode,
    prefix: str,
    token: str,
    eol: bytes,
    edits: list[tuple[int, int, bytes]],
    warnings: list[str],
) -> str | None:
    """Add RFC 8058 one-click unsubscribe headers, unless the message has a List-Unsubscribe already."""
    existing = root.field("list-unsubscribe")
    if existing is not None:
        if prefix.encode("ascii") not in raw[existing.start : existing.end]:  # ours: an earlier pass
            warnings.append("the message has its own List-Unsubscribe; kept it and added none")
        return None
    url = prefix + token
    line = f"List-Unsubscribe: <{url}>"
    if len(line) > 998:
        warnings.append("the unsubscribe URL is too long for a List-Unsubscribe line (metadata too large); none added")
        return None
    edits.append(add_field(root, "List-Unsubscribe", f"<{url}>", eol))
    if root.field("list-unsubscribe-post") is None:
        edits.append(add_field(root, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click", eol))
    return url
