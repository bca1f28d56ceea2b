"""One JSON lines record in, one out: ``html``/``text`` bodies or a ``raw`` message, and who it is for.

A record is a JSON object with ``message_id``, ``recipient``, ``html``,
``text``, ``tracking_settings``, ``metadata`` and ``tags`` (a list of
strings, signed in and given back in every event), or ``raw`` (a whole
message as a string) instead of the bodies. The output record is the input record,
key order and unknown keys kept, with ``html``/``text``/``raw`` rewritten and
``message_id``/``recipient`` set to the ones signed (for ``raw``, read from
its headers unless the record gives them). Output is compact UTF-8 JSON, one
line per input line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mailtrack.batch.job import Job
from mailtrack.batch.jsonbytes import read_record, write_record
from mailtrack.batch.summary import Summary
from mailtrack.batch.tally import count_html, count_message, count_text
from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import ArgumentError, MailtrackError

__all__ = ["error_line", "rewrite_record"]

_BODIES = ("html", "text")


def dumps(record: Mapping[str, Any]) -> bytes:
    """``record`` as one compact line of UTF-8 JSON (no line break)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def parse(data: bytes) -> dict[str, Any]:
    """The JSON object on one line; a :class:`MailtrackError` if it is not one."""
    try:
        record = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MailtrackError(f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise MailtrackError(f"a record must be a JSON object, not {type(record).__name__}")
    return record


def _optional(record: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = record.get(key)
    if value is not None and not isinstance(value, kind):
        raise ArgumentError(f"{key} must be {what}, not {type(value).__name__}")
    return value


def rewrite_record(tracker: Tracker, job: Job, data: bytes, counts: Summary) -> bytes:
    """The rewritten record for the JSON line ``data`` (no line break); counts go to ``counts``.

    A long ``raw`` message stays bytes from the line read to the line written
    (:mod:`mailtrack.batch.jsonbytes`), where that gives the same bytes.
    """
    fast = read_record(data)
    record, raw_bytes = fast if fast is not None else (parse(data), None)
    settings = _optional(record, "tracking_settings", dict, "a JSON object")
    metadata = _optional(record, "metadata", dict, "a JSON object")
    if job.metadata or metadata:
        metadata = {**(job.metadata or {}), **(metadata or {})}
    tags = _optional(record, "tags", list, "a list of strings")
    message_id = _optional(record, "message_id", str, "a string")
    recipient = _optional(record, "recipient", str, "a string")
    raw: str | bytes | None = raw_bytes if raw_bytes is not None else _optional(record, "raw", str,
                                                                                "a string (a whole message)")
    bodies = {key: _optional(record, key, str, "a string") for key in _BODIES}
    if raw is not None:
        if any(body is not None for body in bodies.values()):
            raise ArgumentError("a record gives either raw (a whole message) or html/text bodies, not both")
        result = tracker.rewrite_message(raw, message_id=message_id, recipient=recipient, settings=settings,
                                         metadata=metadata, issued_at=job.issued_at, force=job.force, tags=tags)
        count_message(result, counts)
        record.update(raw=result.message, message_id=result.message_id, recipient=result.recipient)
        if isinstance(result.message, bytes):
            return write_record(record, result.message, dumps)
        return dumps(record)
    if all(body is None for body in bodies.values()):
        raise ArgumentError("a record needs html or text (or raw, a whole message)")
    message_id = message_id or job.message_id
    recipient = recipient or job.recipient
    if not message_id or not recipient:
        missing = " and ".join(name for name, value in (("message_id", message_id), ("recipient", recipient)) if not value)
        raise ArgumentError(f"a record with html or text needs {missing} (in the record, or for every record)")
    identity: dict[str, Any] = {"message_id": message_id, "recipient": recipient, "settings": settings,
                                "metadata": metadata, "issued_at": job.issued_at, "tags": tags}
    opted_out: frozenset[str] = frozenset()
    if bodies["html"] is not None:
        html = tracker.rewrite_html(bodies["html"], **identity)
        count_html(html, counts)
        opted_out = frozenset(skip.url for skip in html.skipped if skip.reason == "opt-out")
        record["html"] = html.html
    if bodies["text"] is not None:
        text = tracker.rewrite_text(bodies["text"], **identity, exclude=opted_out)  # as in a message's text part
        count_text(text, counts)
        record["text"] = text.text
    record.update(message_id=message_id, recipient=recipient)
    return dumps(record)


def error_line(data: bytes, reason: str) -> bytes:
    """The output line for a record that failed: its message_id and recipient (when it has them) and the error.

    No body goes out, so nothing downstream sends an untracked copy by mistake.
    """
    line: dict[str, Any] = {}
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    if isinstance(record, dict):
        line.update((key, record[key]) for key in ("message_id", "recipient") if isinstance(record.get(key), str))
    line["error"] = reason
    return dumps(line)
