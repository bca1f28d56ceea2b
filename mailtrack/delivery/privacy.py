"""Privacy mode: how much of a reader's IP address and user agent an event keeps, and how long events are kept.

Three settings, each read in :mod:`mailtrack.config` (``--privacy-ip``,
``--privacy-user-agent``, ``--purge-after``) or in the Django and Flask
settings, and applied by :class:`~mailtrack.delivery.recorder.Recorder`
before an event goes anywhere (the store, the webhook outbox, the spool, the
writer process, callbacks and signals), so no full value is ever written:

``ip`` (:data:`IP_MODES`)
    ``full`` (the default: what mailtrack always stored), ``truncate`` (an
    IPv4 address to its /24, ``203.0.113.77`` -> ``203.0.113.0``; an IPv6
    address to its /48, ``2001:db8:85a3:8d3:1319:8a2e:370:7348`` ->
    ``2001:db8:85a3::``; an IPv4-mapped IPv6 address as IPv4 in its mapped
    form, ``::ffff:203.0.113.0``; a zone index dropped), or ``none`` (no
    address at all). The /24 and /48 are the usual anonymisation prefixes
    (Google Analytics' IP anonymisation, Matomo's two-byte mask for IPv4 is
    coarser): enough for a country or a network, not for a household.
``user_agent`` (:data:`USER_AGENT_MODES`)
    ``full`` (the default), ``family`` (one of :data:`FAMILIES`, from
    ``ua-parser``: pip install 'mailtrack[privacy]'), or ``none``.
``purge_after``
    Seconds; ``mailtrack serve`` deletes older events once an hour
    (``mailtrack purge --older-than`` does the same once, from the command line).

Both reductions are idempotent (a truncated address truncates to itself, a
family name is its own family), so events spooled or stored before privacy
mode was switched on are reduced the same way when they are moved from the
spool later. Events already in the store are left as they are: purge them,
or forget their recipients. The raw request an event carries for in-process
receivers (:attr:`~mailtrack.events.TrackingEvent.esp_event`, never stored
or sent) loses the headers that would give the full values back
(``User-Agent``, ``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``) and has
the reduced ``remote_addr``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from mailtrack.events import TrackingEvent
from mailtrack.exceptions import ArgumentError, ConfigurationError

__all__ = ["FAMILIES", "IP_MODES", "USER_AGENT_MODES", "IpMode", "Privacy", "UserAgentMode", "parse_duration",
           "truncate_ip", "user_agent_family"]

IpMode = Literal["full", "truncate", "none"]
UserAgentMode = Literal["full", "family", "none"]
#: ``--privacy-ip``: keep the address, keep its /24 (IPv4) or /48 (IPv6) network, or keep nothing.
IP_MODES: tuple[str, ...] = ("full", "truncate", "none")
#: ``--privacy-user-agent``: keep the header, keep its family (:data:`FAMILIES`), or keep nothing.
USER_AGENT_MODES: tuple[str, ...] = ("full", "family", "none")

#: The families a user agent is reduced to: a small closed set, so the value says which kind of client read the
#: mail and nothing that tells readers apart (versions, operating systems, devices, languages are all dropped).
FAMILIES: tuple[str, ...] = ("Chrome", "Firefox", "Safari", "Edge", "Opera", "Outlook", "Apple Mail", "Thunderbird",
                             "Gmail image proxy", "Yahoo image proxy", "other")

#: ua-parser's family (its ``user_agent_parser`` regexes, uap-core) -> ours. Anything not listed is ``other``:
#: bots, link scanners, command-line clients, rarer browsers and mail clients. Apple Mail on iOS fetches with its
#: web view's agent (ua-parser: ``Mobile Safari UI/WKWebView``), which any iOS app's web view also sends: ``Safari``.
_UAP_FAMILIES: Mapping[str, str] = {
    "Chrome": "Chrome", "Chrome Mobile": "Chrome", "Chrome Mobile iOS": "Chrome", "Chrome Mobile WebView": "Chrome",
    "Chromium": "Chrome", "HeadlessChrome": "other",
    "Firefox": "Firefox", "Firefox Mobile": "Firefox", "Firefox iOS": "Firefox", "Firefox Alpha": "Firefox",
    "Firefox Beta": "Firefox",
    "Safari": "Safari", "Mobile Safari": "Safari", "Mobile Safari UI/WKWebView": "Safari",
    "Edge": "Edge", "Edge Mobile": "Edge", "IE": "Edge", "IE Mobile": "Edge",
    "Opera": "Opera", "Opera Mobile": "Opera", "Opera Mini": "Opera",
    "Outlook": "Outlook", "Outlook-iOS": "Outlook", "Outlook-Android": "Outlook", "Windows Live Mail": "Outlook",
    "Apple Mail": "Apple Mail",
    "Thunderbird": "Thunderbird",
    "GmailImageProxy": "Gmail image proxy",
    "YahooMailProxy": "Yahoo image proxy",
}
#: Headers of the raw request (``esp_event``) that carry the client's address or user agent.
_IP_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
_UA_HEADERS = ("user-agent",)


def truncate_ip(address: str | None) -> str | None:
    """``address`` with its host part zeroed: IPv4 to the /24, IPv6 to the /48; None for None or a non-address.

    An IPv4-mapped IPv6 address (``::ffff:203.0.113.77``, what a dual-stack
    socket reports for an IPv4 client) is truncated as IPv4 and keeps its
    mapped form. A zone index (``fe80::1%eth0``) is dropped. Something that is
    no IP address (a Unix socket's peer name) cannot be truncated, so nothing
    is kept. Idempotent.
    """
    if not isinstance(address, str) or not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((ip, 24), strict=False).network_address)
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return "::ffff:" + str(ipaddress.IPv4Network((mapped, 24), strict=False).network_address)
    return str(ipaddress.IPv6Network((ip, 48), strict=False).network_address)


def _uap_parse() -> Callable[[str], Any]:
    """ua-parser's ``parse_user_agent``, or a :class:`ConfigurationError` saying how to install it."""
    try:
        from ua_parser import parse_user_agent
    except ImportError as exc:
        raise ConfigurationError("--privacy-user-agent family needs ua-parser: pip install 'mailtrack[privacy]' "
                                 f"({exc})") from None
    return parse_user_agent


@functools.lru_cache(maxsize=4096)
def user_agent_family(user_agent: str | None) -> str | None:
    """The family of ``user_agent``: one of :data:`FAMILIES` (None for no user agent).

    Parsed by ua-parser (uap-core's regexes, kept up to date by that project;
    its Rust accelerator ``ua-parser-rs`` parses in about 15 µs) and mapped
    to our closed set by a table; anything it does not know is ``other``.
    A family name is its own family, so reducing twice changes nothing.
    Cached: mail clients send few distinct agents.
    """
    if not isinstance(user_agent, str) or not user_agent:
        return None
    if user_agent in FAMILIES:
        return user_agent
    parsed = _uap_parse()(user_agent)
    family = getattr(parsed, "family", None)
    return _UAP_FAMILIES.get(family, "other") if isinstance(family, str) else "other"


@dataclass(frozen=True)
class Privacy:
    """What an event keeps of the reader's address and user agent (see the module docstring); ``full`` keeps all.

    ``Privacy()`` changes nothing. Bad values raise :class:`ConfigurationError`.
    ``family`` needs ua-parser, checked here, at start-up, not at the first event.
    """

    ip: IpMode = "full"
    user_agent: UserAgentMode = "full"

    def __post_init__(self) -> None:
        if self.ip not in IP_MODES:
            raise ConfigurationError(f"privacy ip must be one of {', '.join(IP_MODES)}, not {self.ip!r}")
        if self.user_agent not in USER_AGENT_MODES:
            raise ConfigurationError(f"privacy user_agent must be one of {', '.join(USER_AGENT_MODES)}, "
                                     f"not {self.user_agent!r}")
        if self.user_agent == "family":
            _uap_parse()

    @property
    def reduces(self) -> bool:
        """Whether anything is reduced (False for the default, full values)."""
        return self.ip != "full" or self.user_agent != "full"

    def reduce_ip(self, address: str | None) -> str | None:
        """``address`` as this mode keeps it."""
        if self.ip == "full":
            return address
        return truncate_ip(address) if self.ip == "truncate" else None

    def reduce_user_agent(self, user_agent: str | None) -> str | None:
        """``user_agent`` as this mode keeps it."""
        if self.user_agent == "full":
            return user_agent
        return user_agent_family(user_agent) if self.user_agent == "family" else None

    def apply(self, event: TrackingEvent) -> TrackingEvent:
        """``event`` with its ``ip`` and ``user_agent`` reduced (and its raw request's too); itself when nothing changes."""
        if not self.reduces:
            return event
        ip, agent = self.reduce_ip(event.ip), self.reduce_user_agent(event.user_agent)
        raw = event.esp_event
        if raw is not None:
            raw = dict(raw)
            headers = raw.get("headers")
            if isinstance(headers, Mapping):
                dropped = (_IP_HEADERS if self.ip != "full" else ()) + (_UA_HEADERS if self.user_agent != "full" else ())
                raw["headers"] = {name: value for name, value in headers.items()
                                  if not (isinstance(name, str) and name.lower() in dropped)}
            if "remote_addr" in raw and self.ip != "full":
                remote = raw["remote_addr"]
                raw["remote_addr"] = self.reduce_ip(remote) if isinstance(remote, str) else None
        if ip == event.ip and agent == event.user_agent and raw == event.esp_event:
            return event
        return replace(event, ip=ip, user_agent=agent, esp_event=raw)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: object) -> float:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` as seconds; an :class:`ArgumentError` for anything else.

    A number and one unit (s, m, h, d, w); the number may have a fraction
    (``1.5d``) but must be above zero. A bare number is refused: ``90``
    could mean days or seconds, and a purge that guesses wrong deletes too much.
    """
    if not isinstance(text, str):
        raise ArgumentError(f"a duration must be text such as 90d, 12h or 30m, not {text!r}")
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ArgumentError(f"{text!r} is not a duration: write a number and a unit, s, m, h, d or w (90d, 12h, 30m)")
    seconds = float(match.group(1)) * _SECONDS[match.group(2).lower()]
    if not 0 < seconds < float("inf"):
        raise ArgumentError(f"a duration must be more than zero, not {text!r}")
    return seconds
