"""One outgoing message, as an SMTP pipeline holds it: identity, per-message settings, headers.

:func:`rewrite_message` takes the message as ``bytes``, ``str`` or an
``email.message.Message`` (any subclass and policy: ``EmailMessage``,
``email.mime.*``, Django's ``SafeMIME*``) and gives back the same kind, a new
object (for a ``Message``, a copy of the same class). Underneath it always
works on bytes (see :mod:`mailtrack.core.mime`). Input it cannot read (a ``str``
with a lone surrogate, an object the stdlib cannot serialize, no single
recipient, an empty Message-ID) is a :class:`~mailtrack.exceptions.MessageError`;
a message it will not rewrite is a :class:`~mailtrack.exceptions.MessageRefused`:

* ``message_id`` defaults to the ``Message-ID`` header without its angle
  brackets (a header is added when missing); ``recipient`` to the single
  address in ``To`` (tracking URLs are per recipient, so several are an error);
* an ``X-SMTPAPI`` header's tracking filters apply as message settings, its
  ``unique_args`` become token metadata, and the header is replaced by
  ``X-Mailtrack-Settings`` (the settings it set, for a second pass); a ``to``
  fanning out to several recipients is refused;
* a ``DKIM-Signature`` or a ``multipart/signed`` part would no longer verify
  after rewriting, so such a message is refused unless ``force=True`` (sign
  after mailtrack instead);
* with subscription tracking on, ``List-Unsubscribe: <https://...>`` and
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058) are added,
  unless the message already has its own ``List-Unsubscribe``; one of ours
  signed for another message (a resend of tracked output) is signed again for
  this one, whatever the settings, and one of ours that does not verify is kept
  with a warning.
"""

from __future__ import annotations

import copy
import email.header
import email.utils
import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import compat32
from typing import Any

from mailtrack.core.mime import MimeNode, add_field, line_break, parse_message, rewrite_parts, splice_bytes, unfold
from mailtrack.core.results import MessageResult
from mailtrack.core.rewrite import RewritePlan
from mailtrack.core.rewrite.plan import Reissue
from mailtrack.core.settings import SettingsInput, TrackingSettings
from mailtrack.core.smtpapi import HEADER as SMTPAPI
from mailtrack.core.smtpapi import parse_smtpapi
from mailtrack.exceptions import ArgumentError, MessageError, MessageRefused, SettingsError

#: Replaces a consumed X-SMTPAPI header: the tracking settings it set, read again by a second pass.
APPLIED = "X-Mailtrack-Settings"

__all__ = ["Plans", "rewrite_message"]

#: Builds the (HTML, text) body plans for resolved settings, message ID, recipient and metadata.
Plans = Callable[[TrackingSettings, str, str, "Mapping[str, Any] | None"], tuple[RewritePlan, RewritePlan]]
# RFC 5322 dot-atom-text on both sides (ASCII only): what we are willing to write into a header.
_MSG_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_SURROGATES_ONLY = re.compile(r"[\x00-\x7f\udc80-\udcff]*")
_SURROGATES = re.compile(r"[\udc80-\udcff]")


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
    issued_at: int | None = None,
) -> MessageResult[Any]:
    """Rewrite ``message``; see :meth:`mailtrack.Tracker.rewrite_message`.

    ``issued_at`` is the signing time when the caller fixed it: a Message-ID
    added to a message without one is then derived from it, the message's
    bytes and ``recipient`` instead of drawn at random, so the same inputs give
    the same output (a campaign batch run twice, or on several workers).
    """
    raw, convert = _as_bytes(message)
    root = parse_message(raw)
    eol = line_break(raw[: root.body_start])
    if root.header_end == len(raw) and raw and not raw.endswith((b"\n", b"\r")):
        # Only headers, the last one unterminated: end it, so that fields can follow it.
        raw += eol
        root = parse_message(raw)
    edits: list[tuple[int, int, bytes]] = []
    warnings: list[str] = []

    for signature in _signatures(root):
        if not force:
            raise MessageRefused(
                f"the message carries {signature}, which rewriting would break; "
                "sign after mailtrack, or pass force=True to rewrite anyway",
                reason="signed" if "multipart/signed" in signature else "dkim",
            )
        warnings.append(f"force=True: {signature} was kept, but rewriting broke its signature; sign again after rewriting")

    resolved, metadata, fan_out = _smtpapi(raw, root, account, metadata, eol, edits, warnings)
    resolved = resolved.merged(settings)
    message_id = _message_id(raw, root, message_id, domain, eol, edits, recipient, issued_at)
    if len(fan_out) > 1:
        raise MessageRefused(
            f"{SMTPAPI}.to fans this message out to {len(fan_out)} recipients; tracking URLs are per recipient, "
            "so send one copy per recipient",
            reason="fan-out",
        )
    recipient = _recipient(raw, root, recipient if recipient is not None else (fan_out[0] if fan_out else None))
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
    prefix = html_plan.layout.prefix("unsubscribe")
    existing = root.field("list-unsubscribe")
    if existing is not None and prefix in _header_text(raw, existing.start, existing.end):
        # Ours, from an earlier pass: this message's stays, another message's is signed again (any settings).
        list_unsubscribe = _our_list_unsubscribe(raw, root, prefix, html_plan.reissue, eol, edits, warnings)
    elif html_plan.unsubscribe is not None:
        if not any(part.result is not None and part.result.unsubscribe for part in parts):
            if not any(part.body for part in parts):
                warnings.append("subscription tracking: the message has no text body for the footer; List-Unsubscribe only")
            elif not any(part.body and part.result is not None for part in parts):
                warnings.append("subscription tracking: no body part could be read, so no footer was added")
        list_unsubscribe = _list_unsubscribe(raw, root, prefix, html_plan.unsubscribe.token(), eol, edits, warnings)
    output = convert(splice_bytes(raw, edits))
    return MessageResult(output, message_id, recipient, parts, warnings, list_unsubscribe)


def _signatures(root: MimeNode) -> list[str]:
    """What in the message is signed over its bytes: a DKIM-Signature, multipart/signed parts (S/MIME, PGP/MIME)."""
    found = ["a DKIM-Signature"] if root.field("dkim-signature") is not None else []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.content_type == "multipart/signed":
            found.append(f"a multipart/signed part {node.path} (S/MIME or PGP/MIME)")
        stack.extend(reversed(node.children))
    return found


def _as_bytes(message: Any) -> tuple[bytes, Callable[[bytes], Any]]:
    """The message's bytes, and how to turn rewritten bytes back into the kind it came as."""
    if isinstance(message, (bytes, bytearray)):
        return bytes(message), bytes
    if isinstance(message, str):
        return _str_as_bytes(message)
    if isinstance(message, Message):
        return _message_as_bytes(message)
    raise ArgumentError(f"rewrite_message takes an email.message.Message, bytes or str, not {type(message).__name__}")


def _str_as_bytes(message: str) -> tuple[bytes, Callable[[bytes], str]]:
    """A str's bytes: surrogates U+DC80..U+DCFF stand for the bytes they escape, other characters are UTF-8.

    A str read the stdlib's way holds non-ASCII bytes as surrogates: they are
    given back as they were. Otherwise its non-ASCII characters are text,
    written as UTF-8 (RFC 6532), and so are ours. Any other surrogate (a lone
    half of a pair) stands for no bytes at all: the str is not a message.
    """
    try:
        return message.encode("utf-8"), _from_utf8  # no surrogate at all (the usual str): UTF-8, one pass in C
    except UnicodeEncodeError:
        pass
    codec = "ascii" if _SURROGATES.search(message) and _SURROGATES_ONLY.fullmatch(message) else "utf-8"
    try:
        raw = message.encode(codec, "surrogateescape")
    except UnicodeEncodeError as exc:
        bad = message[exc.start]
        raise MessageError(
            f"the message holds a lone surrogate U+{ord(bad):04X} at index {exc.start}, which no bytes encode; "
            "pass the message as bytes, or as a str decoded with errors='surrogateescape'"
        ) from None
    return raw, lambda data: data.decode(codec, "surrogateescape")


def _from_utf8(data: bytes) -> str:
    """Rewritten bytes of a str message that held no surrogate, back to a str (what the surrogate path gives too)."""
    return data.decode("utf-8", "surrogateescape")


def _message_as_bytes(message: Message) -> tuple[bytes, Callable[[bytes], Message]]:
    """The bytes of any ``email.message.Message`` (``email.mime`` classes, Django's, any policy).

    The stdlib generator writes it the way ``Message.as_bytes`` does (with the
    message's own policy, ``From `` lines not mangled), called directly because
    subclasses override ``as_bytes`` with other signatures (Django's takes no
    ``policy``). It writes a copy: serializing sets a boundary on a multipart
    built in memory, which would change the input. The rewritten bytes are
    parsed with the same policy and their content put into that copy, so
    every part keeps its class and the attributes its class set
    (:func:`_refill`).
    """
    policy = getattr(message, "policy", compat32)
    try:
        shared = {id(part.policy): part.policy for part in message.walk()}  # policies are shared, not copied
        target = copy.deepcopy(message, shared)
        out = io.BytesIO()
        BytesGenerator(out, mangle_from_=False, policy=policy).flatten(target, unixfrom=False)
    except Exception as exc:  # the stdlib generator's own errors: a header or payload it cannot write
        raise MessageError(f"cannot serialize the message ({type(exc).__name__}: {exc})") from exc
    factory = EmailMessage if isinstance(message, EmailMessage) else Message
    unixfrom = message.get_unixfrom()

    def convert(data: bytes) -> Message:
        try:
            lenient = policy.clone(raise_on_defect=False)  # a strict policy would refuse defects the input had
        except (AttributeError, TypeError, ValueError):
            lenient = policy
        try:
            parsed: Message = BytesParser(_class=factory, policy=lenient).parsebytes(data)
        except Exception as exc:  # a policy of the caller's that cannot read what its generator wrote
            raise MessageError(f"cannot parse the rewritten message back ({type(exc).__name__}: {exc})") from exc
        result = target if _refill(target, parsed) else _with_policy(parsed, policy)
        if unixfrom is not None:  # the copy has it already; a freshly parsed message does not
            result.set_unixfrom(unixfrom)
        return result

    return out.getvalue(), convert


#: What the parser sets on each message object (``policy`` is kept: the caller's).
_PARSED_STATE = ("_headers", "_payload", "_charset", "preamble", "epilogue", "defects", "_default_type")


def _refill(target: Message, parsed: Message) -> bool:
    """Put ``parsed``'s content into ``target`` part by part; False (``target`` unusable) if their shapes differ.

    Rewriting never changes the MIME tree, so the serialized copy and the
    parsed output have the same parts: each part of the copy takes the parsed
    headers and payload and keeps its own class and other attributes.
    """
    pairs: list[tuple[Message, Message]] = []
    stack = [(target, parsed)]
    while stack:
        mine, theirs = stack.pop()
        # The raw payload: a list of parts (multipart, message/*) or a str; get_payload() would decode.
        ours, their = getattr(mine, "_payload", None), getattr(theirs, "_payload", None)
        if isinstance(ours, list) != isinstance(their, list):
            return False
        if isinstance(ours, list) and isinstance(their, list):
            if len(ours) != len(their) or not all(isinstance(p, Message) for p in ours):
                return False
            stack.extend(zip(ours, their, strict=True))
        pairs.append((mine, theirs))
    for mine, theirs in pairs:
        keep_parts = isinstance(getattr(theirs, "_payload", None), list)
        for name in _PARSED_STATE:
            if name != "_payload" or not keep_parts:
                setattr(mine, name, getattr(theirs, name, None))
    return True


def _with_policy(parsed: Message, policy: Any) -> Message:
    """``parsed`` with the caller's policy on every part (it was parsed with a lenient clone)."""
    for part in parsed.walk():
        part.policy = policy
    return parsed


def _smtpapi(
    raw: bytes,
    root: MimeNode,
    account: TrackingSettings,
    metadata: Mapping[str, Any] | None,
    eol: bytes,
    edits: list[tuple[int, int, bytes]],
    warnings: list[str],
) -> tuple[TrackingSettings, Mapping[str, Any] | None, list[str]]:
    """Account settings with the X-SMTPAPI filters laid over them; metadata with its unique_args; its ``to``.

    The header is replaced by ``X-Mailtrack-Settings`` holding the tracking
    settings it asked for, so that a second pass applies the same ones.
    """
    found = [f for f in root.fields if f.name == SMTPAPI.lower()]
    if not found:
        applied = root.field(APPLIED.lower())
        if applied is None:
            return account, metadata, []
        try:
            earlier = json.loads(_header_text(raw, applied.start, applied.end))
        except (ValueError, RecursionError):
            raise SettingsError(APPLIED, "is not valid JSON") from None
        return account.merged(earlier), metadata, []
    if len(found) > 1:
        raise SettingsError(SMTPAPI, "appears more than once; merge the headers into one JSON object")
    header = found[0]
    value = _header_text(raw, header.start, header.end)
    if "=?" in value:  # written by a generator that encodes long or unusual values (RFC 2047)
        try:
            value = str(email.header.make_header(email.header.decode_header(value)))
        except (ValueError, LookupError, UnicodeError):
            pass
    api = parse_smtpapi(value)
    replacement = b""
    if api.settings:
        TrackingSettings.coerce(api.settings)  # a bad filter fails here, naming its path
        replacement = _folded(APPLIED, json.dumps(api.settings, separators=(", ", ": "), sort_keys=True), eol)
    edits.append((header.start, header.end, replacement))
    if api.ignored:
        warnings.append(f"{SMTPAPI}: not acted on and removed with the header: {', '.join(api.ignored)}")
    if api.metadata:
        metadata = {**api.metadata, **(metadata or {})}
    return account.merged(api.settings), metadata, api.to


def _folded(name: str, value: str, eol: bytes) -> bytes:
    """``name: value`` folded after ", " into lines of about 78 characters (unfolding restores it exactly)."""
    pieces = value.split(", ")
    lines = [f"{name}: {pieces[0]}"]
    for piece in pieces[1:]:
        if len(lines[-1]) + 2 + len(piece) > 78:
            lines[-1] += ","
            lines.append(" " + piece)
        else:
            lines[-1] += ", " + piece
    return eol.join(line.encode("ascii") for line in lines) + eol


def _stable_id(raw: bytes, recipient: str | None, issued_at: int, host: str) -> str:
    """A Message-ID derived from the fixed signing time, the recipient asked for and the message's bytes."""
    given = (recipient or "").encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(b"%d\0%d\0%s\0" % (issued_at, len(given), given))
    digest.update(raw)
    return f"<{digest.hexdigest()[:32]}@{host}>"


def _message_id(raw: bytes, root: MimeNode, given: str | None, domain: str, eol: bytes,
                edits: list[tuple[int, int, bytes]], recipient: str | None = None, issued_at: int | None = None) -> str:
    if given is not None and not given.strip():
        raise MessageError("message_id must not be empty")
    found = root.field("message-id")
    if found is not None:
        if given is not None:
            return given
        value = _header_text(raw, found.start, found.end)
        match = _ANGLE_ID.search(value)  # the msg-id may carry comments: "<id@host> (sent by ...)"
        ident = (match.group(1) if match else value).strip()
        if not ident:
            raise MessageError("the Message-ID header is empty; pass message_id= or give the message a Message-ID")
        return ident
    if given is not None and _MSG_ID.fullmatch(given):
        edits.append(add_field(root, "Message-ID", f"<{given}>", eol))
        return given
    host = domain if _MSG_ID.fullmatch(f"x@{domain}") else "mailtrack.invalid"
    # Random (the stdlib's rule) unless the signing time is fixed: then the same message gets the same ID every time.
    new = email.utils.make_msgid(domain=host) if issued_at is None else _stable_id(raw, recipient, issued_at, host)
    edits.append(add_field(root, "Message-ID", new, eol))
    return new.strip("<>") if given is None else given


def _header_text(raw: bytes, start: int, end: int) -> str:
    """A header field's value, unfolded, UTF-8 (RFC 6532) read as text; other bytes as Latin-1."""
    value = raw[start:end].split(b":", 1)[1]
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("latin-1")
    return unfold(text)


def _recipient(raw: bytes, root: MimeNode, given: str | None) -> str:
    if given is not None:
        if not given.strip():
            raise MessageError("recipient must not be empty")
        return given
    values = [_header_text(raw, f.start, f.end) for f in root.fields if f.name == "to"]
    addresses = [address for _, address in email.utils.getaddresses(values) if address]
    if len(addresses) == 1:
        return addresses[0]
    if not addresses:
        raise MessageError("the message has no To address; pass recipient= (tracking URLs are per recipient)")
    raise MessageError(
        f"the message has {len(addresses)} To addresses; tracking URLs are per recipient, "
        "so rewrite one copy per recipient with recipient="
    )


def _our_list_unsubscribe(
    raw: bytes,
    root: MimeNode,
    prefix: str,
    reissue: Reissue,
    eol: bytes,
    edits: list[tuple[int, int, bytes]],
    warnings: list[str],
) -> str | None:
    """A List-Unsubscribe holding our prefix: kept if this message's, signed again if another's, else kept and warned.

    Another message's one-click URL would unsubscribe its recipient when this
    one clicks it, so each of them (every URI of ours in the field that
    verifies for another message, not just the first) is replaced by this
    message's in place; other URIs of the field, such as a ``mailto:``, are kept.
    """
    field = root.field("list-unsubscribe")
    assert field is not None
    value = _header_text(raw, field.start, field.end)
    mine: str | None = None
    others: list[str] = []
    for url in dict.fromkeys(url for url in _ANGLE_ID.findall(value) if url.startswith(prefix)):
        earlier = reissue.read(url, "unsubscribe")
        if earlier is not None and earlier.this_message:
            mine = mine or url
        elif earlier is not None:
            others.append(url)
    if not others:
        if mine is None:
            warnings.append(
                "the message's List-Unsubscribe points at our base URL but does not verify (not-verified); kept it"
            )
        return mine
    # Every one of another message's URIs goes, each matched with its angle brackets (one may be a prefix of another).
    new = prefix + reissue.unsubscribe_token()
    before = raw[field.start : field.end]
    after = before
    for url in others:
        after = after.replace(f"<{url}>".encode(), f"<{new}>".encode())
    if any(f"<{url}>" in _header_text(after, 0, len(after)) for url in others):
        # Folded inside a URI (or not UTF-8): write the field again, unfolded.
        text = value.strip()
        for url in others:
            text = text.replace(f"<{url}>", f"<{new}>")
        after = b"List-Unsubscribe: " + text.encode("utf-8") + eol
    if max(len(line) for line in after.splitlines()) > 998:
        warnings.append("the unsubscribe URL is too long for a List-Unsubscribe line (metadata too large); "
                        "another message's List-Unsubscribe was removed")
        edits.append((field.start, field.end, b""))
        return None
    edits.append((field.start, field.end, after))
    return new


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
        value = _header_text(raw, existing.start, existing.end)
        if prefix in value:  # ours, from an earlier pass
            match = _ANGLE_ID.search(value)
            return match.group(1) if match else None
        warnings.append("the message has its own List-Unsubscribe; kept it and added none")
        return None
    url = prefix + token
    line = f"List-Unsubscribe: <{url}>"
    if len(line) > 998:
        warnings.append("the unsubscribe URL is too long for a List-Unsubscribe line (metadata too large); none added")
        return None
    edits.append(add_field(root, "List-Unsubscribe", f"<{url}>", eol))
    if not url.startswith("https://"):
        warnings.append("List-Unsubscribe-Post not added: RFC 8058 one-click needs an https base_url")
    elif root.field("list-unsubscribe-post") is None:
        edits.append(add_field(root, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click", eol))
    return url
