"""SendGrid's ``X-SMTPAPI`` header: the tracking filters of a message sent over SMTP.

A message that went to SendGrid over SMTP carried its per-message settings in
this JSON header. :func:`parse_smtpapi` reads the four tracking filters
(``clicktrack``, ``opentrack``, ``subscriptiontrack``, ``ganalytics``) with the
values SendGrid's SMTP API takes (``"enable": 0|1``, ``replace``,
``text/html``, ``text/plain``, ``utm_*``) and turns them into a mail/send
``tracking_settings`` dict, so they apply as message settings. ``unique_args``
(SendGrid's per-message custom arguments, returned with every event) become
token metadata. Everything else the header holds is named in the warnings: the
header is removed, because its job ends here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from mailtrack.core.settings import UTM_FIELDS
from mailtrack.exceptions import SettingsError

__all__ = ["SmtpApi", "parse_smtpapi"]

HEADER = "X-SMTPAPI"
MAX_LENGTH = 256 * 1024

# filter -> (mail/send part, {filter setting: mail/send field})
_FILTERS: dict[str, tuple[str, dict[str, str]]] = {
    "clicktrack": ("click_tracking", {"enable": "enable", "enable_text": "enable_text"}),
    "opentrack": ("open_tracking", {"enable": "enable", "replace": "substitution_tag"}),
    "subscriptiontrack": (
        "subscription_tracking",
        {"enable": "enable", "text/html": "html", "text/plain": "text", "replace": "substitution_tag"},
    ),
    "ganalytics": (
        "ganalytics",
        {"enable": "enable", **{name: name for name in UTM_FIELDS}},
    ),
}
# Booleans as the SMTP API writes them: 0|1 in SendGrid's documentation, true|false in enable_text.
_BOOLEANS: dict[Any, bool] = {0: False, 1: True, "0": False, "1": True, "false": False, "true": True}
_FLAGS = {"enable", "enable_text"}


class SmtpApi(NamedTuple):
    """What an ``X-SMTPAPI`` header asked of tracking."""

    settings: dict[str, Any]  # mail/send tracking_settings (only the parts the filters named)
    metadata: dict[str, str]  # unique_args
    ignored: list[str]  # keys and filters mailtrack does not act on, dropped with the header
    to: list[str]  # SendGrid's fan-out list, if any (mailtrack tracks one recipient per copy)


def parse_smtpapi(value: str) -> SmtpApi:
    """Read an (unfolded) ``X-SMTPAPI`` header value.

    Raises :class:`~mailtrack.SettingsError` naming the field path when the
    JSON is broken or a tracking filter holds a wrong key or value: a header
    meant to turn tracking off must never be half-read.
    """
    if not isinstance(value, str):
        raise SettingsError(HEADER, f"must be a str, not {type(value).__name__}")
    if len(value) > MAX_LENGTH:
        raise SettingsError(HEADER, f"is longer than {MAX_LENGTH} characters")
    if _depth(value) > MAX_DEPTH:
        raise SettingsError(HEADER, f"is nested too deeply (more than {MAX_DEPTH} levels)")
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise SettingsError(HEADER, f"is not valid JSON ({exc})") from None
    except RecursionError:  # not reached after the depth check; kept as a last guard
        raise SettingsError(HEADER, "is nested too deeply") from None
    if not isinstance(data, Mapping):
        raise SettingsError(HEADER, f"must be a JSON object, not {type(data).__name__}")
    ignored = [key for key in data if key not in ("filters", "unique_args", "to")]
    to = data.get("to", [])
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not all(isinstance(address, str) for address in to):
        raise SettingsError(f"{HEADER}.to", "must be an address or a list of addresses")
    metadata = _unique_args(data.get("unique_args", {}))
    filters = data.get("filters", {})
    if not isinstance(filters, Mapping):
        raise SettingsError(f"{HEADER}.filters", "must be an object")
    settings: dict[str, Any] = {}
    for name, body in filters.items():
        if name not in _FILTERS:
            ignored.append(f"filters.{name}")
            continue
        part, keys = _FILTERS[name]
        path = f"{HEADER}.filters.{name}"
        if not isinstance(body, Mapping) or set(body) - {"settings"}:
            raise SettingsError(path, 'must be an object holding "settings"')
        values = body.get("settings", {})
        if not isinstance(values, Mapping):
            raise SettingsError(f"{path}.settings", "must be an object")
        section: dict[str, Any] = {}
        for key, raw in values.items():
            where = f"{path}.settings.{key}"
            if key not in keys:
                raise SettingsError(where, f"is not a setting of {name} (expected one of: {', '.join(keys)})")
            if keys[key] in _FLAGS:
                section[keys[key]] = _boolean(raw, where)
            elif isinstance(raw, str):
                section[keys[key]] = raw
            else:
                raise SettingsError(where, "must be a string")
        settings[part] = section
    return SmtpApi(settings, metadata, ignored, to)


def _boolean(raw: Any, where: str) -> bool:
    key = raw.strip().lower() if isinstance(raw, str) else raw
    if isinstance(raw, float) or key not in _BOOLEANS:  # 1.0 == 1 would otherwise slip through
        raise SettingsError(where, f"must be 0 or 1 (or true/false), not {raw!r}")
    return _BOOLEANS[key]


def _unique_args(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{HEADER}.unique_args", "must be an object")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise SettingsError(f"{HEADER}.unique_args.{key}", "must be a string (SendGrid's unique_args are strings)")
    return dict(raw)


#: Deepest nesting of objects and arrays read (SendGrid's own headers are 4 deep).
MAX_DEPTH = 32
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _depth(value: str) -> int:
    """The deepest ``[``/``{`` nesting outside JSON strings, in one linear scan.

    Checked before ``json.loads`` so that the limit does not depend on the
    interpreter's recursion limit (which other code may raise).
    """
    depth = deepest = 0
    for match in _STRUCTURE.finditer(value):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest
