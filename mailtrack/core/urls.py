"""Destinations and tracking URL layout.

A destination is tracked and, later, redirected to only if :func:`check_destination`
approves it: the same check runs when a link is signed (``rewrite_html``,
``rewrite_text``, ``rewrite_message``, ``Tracker.tracking_url``) and when a token
is verified and redirected, so nothing we sign is refused later and nothing we
refuse could have been signed by us (a token an older version signed for a
destination refused now is answered 404, never 500).

The check reads the authority the way browsers (the WHATWG URL standard) do and
refuses everything a browser and a naive parser might read differently: the
authority ends at the first ``/``, ``\\``, ``?`` or ``#`` (a ``\\`` there is
refused: ``urllib`` does not end it there), userinfo is ASCII without ``%``, the port
is 0-65535, an IPv6 literal must be valid for :mod:`ipaddress` (no zone id), a
host that browsers read as an IPv4 address (``0x7f.1``, ``127.1``) must be a
plain dotted quad, and ``%`` or anything outside letters, digits, ``-`` and
``_`` in a host is refused. Non-ASCII hosts are mapped with UTS #46
(nontransitional, as browsers do), so a fullwidth ``／`` or ``＠`` that maps
to a delimiter is refused rather than sending the reader somewhere else.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode

import idna

from mailtrack.exceptions import ArgumentError, ConfigurationError

__all__ = [
    "ASCII_WHITESPACE",
    "CONTROL_CHARS",
    "HTTP_PREFIX",
    "KINDS",
    "Destination",
    "DestinationProblem",
    "UrlLayout",
    "add_query_parameters",
    "as_uri",
    "check_destination",
    "destination_problem",
]

#: Token purposes, each with its own signing salt.
#: The purposes a token is signed for; each has its own path and its own signing key.
TokenKind = Literal["click", "open", "unsubscribe"]
KINDS: tuple[TokenKind, ...] = ("click", "open", "unsubscribe")

#: Pattern source: "http://" or "https://" in any case, then a host (not empty, not "\\").
HTTP_PREFIX = r"[hH][tT][tT][pP][sS]?://(?![/?#\\])(?=.)"
#: Character-class body: C0/C1 controls and lone surrogates (CR/LF would split a header; surrogates cannot be encoded).
CONTROL_CHARS = "\x00-\x1f\x7f-\x9f\ud800-\udfff"
_HTTP = re.compile(HTTP_PREFIX, re.DOTALL)
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")
ASCII_WHITESPACE = "\t\n\f\r "

#: Why a destination is refused: not absolute http(s), control characters, or an authority we will not vouch for.
DestinationProblem = Literal["scheme", "control", "invalid"]

_AUTHORITY_END = re.compile(r"[/\\?#]")
_USERINFO = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:]*")  # no "%": nothing that decodes to a delimiter
_PORT = re.compile(r"[0-9]{0,5}")
_IPV6 = re.compile(r"\[([0-9A-Fa-f:.]+)\]")
#: An ASCII host after mapping: letters, digits, "-" and "_" (browsers accept the last two anywhere), 1-63 per label.
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
#: A last label that makes browsers parse the whole host as an IPv4 address ("ends in a number").
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_MAX_HOST = 253
#: The common case, settled by one match: printable ASCII, a name whose last label starts with a letter, a port.
#: Each label but the last is taken only when a dot and another label follow it, so the host has one reading and
#: (Python 3.11+) every loop can be possessive: the engine then never tries a shorter label at each dot. It
#: matches what ``(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z][A-Za-z0-9_-]{0,62}\.?`` matched (tests/unit/core/test_urls.py).
_P = "+" if sys.version_info >= (3, 11) else ""
_PLAIN_AUTHORITY = (
    rf"[hH][tT][tT][pP][sS]?://((?:[A-Za-z0-9_-]{{1,63}}{_P}\.(?=[A-Za-z0-9_-]))*{_P}[A-Za-z][A-Za-z0-9_-]{{0,62}}{_P}\.?)"
    r"(:[0-9]{1,5})?(?=[/?#]|\Z)"
)
_PLAIN = re.compile(_PLAIN_AUTHORITY + rf"[\x21-\x7e]*{_P}\Z")
_NOT_URI = re.compile(r"[^\x21-\x7e]+")


@dataclass(frozen=True)
class Destination:
    """A destination :func:`check_destination` approved.

    ``host`` is what a browser connects to, in ASCII: a lowercase name (IDN
    labels as ``xn--`` A-labels), a dotted-quad IPv4 address, or an IPv6
    address (lowercase, without brackets). ``uri`` is the redirect form: the
    destination as an ASCII URI for a ``Location`` header, with that host.
    """

    url: str
    host: str
    uri: str



def check_destination(url: str) -> Destination | DestinationProblem:
    """Approve ``url`` as a redirect destination, or say why not.

    Returns a :class:`Destination`, or ``"scheme"`` for anything but absolute
    http(s) URLs, ``"control"`` for C0/C1 control characters or lone
    surrogates (CR/LF would split a header), ``"invalid"`` for an authority
    (userinfo, host, port) that browsers would refuse or that parsers disagree
    on (see the module docstring). Never raises, linear in ``len(url)``.
    """
    fast = _fast_path(url)
    if fast is not None:  # most links: printable ASCII, a plain name as host
        return Destination(url, fast.group(1).lower(), url)
    return _check(url)


def _fast_path(url: str) -> re.Match[str] | None:
    """The fast path's match when it settles ``url`` (accepted, its host in group 1), else None: :func:`_check`."""
    fast = _PLAIN.match(url)
    return fast if fast is not None and _plain_authority(fast) else None


def _plain_authority(match: re.Match[str]) -> bool:
    """What the fast path's expression cannot say itself: the host's length, no A-label, a port that exists."""
    host, port = match.group(1, 2)
    return len(host) <= _MAX_HOST and ("--" not in host or "xn--" not in host.lower()) and (port is None or int(port[1:]) <= 65535)


def plain_destination(excluded: str = "") -> Callable[[str], bool]:
    """A one-match test for the common link: True only if :func:`check_destination` accepts it by its fast path
    and it holds none of the characters in ``excluded``.

    The rewriter's rules use it to settle most links in one pass (no
    placeholder can hide in a URL without the characters every placeholder
    needs), with the same answer the full checks would give.
    """
    allowed = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in excluded)
    pattern = re.compile(_PLAIN_AUTHORITY + f"[{re.escape(allowed)}]*{_P}\\Z")

    def plain(url: str) -> bool:
        match = pattern.match(url)
        if match is None:
            return False
        if match.lastindex == 1 and len(url) <= _MAX_HOST and "--" not in url:
            return True  # no port, too short for a long host, no A-label: _plain_authority cannot fail (the hot path)
        return _plain_authority(match)

    return plain


def _check(url: str) -> Destination | DestinationProblem:
    """:func:`check_destination` without its fast path (which must agree with this)."""
    prefix = _HTTP.match(url)
    if prefix is None:
        return "scheme"
    if _CONTROL.search(url) is not None:
        return "control"
    start = prefix.end()
    end_match = _AUTHORITY_END.search(url, start)
    end = end_match.start() if end_match is not None else len(url)
    if url.startswith("\\", end):
        return "invalid"  # browsers end the authority here, urllib and others do not
    userinfo, at, hostport = url[start:end].rpartition("@")
    if at and not _USERINFO.fullmatch(userinfo):
        return "invalid"
    ipv6 = _IPV6.match(hostport)
    if ipv6 is not None:
        written_host = ipv6.group(0)
        host = _ipv6_host(ipv6.group(1))
    else:
        written_host = hostport.partition(":")[0]
        host = _name_host(written_host)
    port_part = hostport[len(written_host):]
    if host is None or (port_part and not _valid_port(port_part)):
        return "invalid"
    if url.isascii() and " " not in url:
        uri = url  # what we signed, exactly: a browser reads the same host from it
    else:
        uri_host = written_host if written_host.isascii() else host
        uri = f"{url[:start]}{userinfo}{at}{uri_host}{port_part}{_escape(url[end:])}"
    return Destination(url, host, uri)


def destination_problem(value: str) -> DestinationProblem | None:
    """Why ``value`` may not be a redirect destination (see :func:`check_destination`), or None if it may."""
    if _fast_path(value) is not None:  # check_destination's fast path, without building its Destination
        return None
    checked = _check(value)
    return checked if isinstance(checked, str) else None


def as_uri(url: str) -> str | None:
    """The redirect form of ``url`` (:attr:`Destination.uri`), or None when :func:`check_destination` refuses it.

    The host is written in ASCII as browsers would resolve it (IDNA 2008 /
    UTS #46, so ``faß.de`` goes to ``xn--fa-hia.de`` and not, as the stdlib's
    IDNA 2003 codec says, to ``fass.de``); other characters outside ASCII and
    spaces are UTF-8 percent-encoded; existing ``%XX`` escapes, the query and
    the fragment (an empty ``#`` too) are kept as written.
    """
    checked = check_destination(url)
    return None if isinstance(checked, str) else checked.uri


def _escape(text: str) -> str:
    return _NOT_URI.sub(lambda m: quote(m.group(0), safe=""), text)


def _valid_port(port_part: str) -> bool:
    """``port_part`` is ``":"`` and 0-5 ASCII digits, at most 65535 (empty means the default port)."""
    digits = port_part[1:]
    return port_part[0] == ":" and _PORT.fullmatch(digits) is not None and (not digits or int(digits) <= 65535)


def _ipv6_host(text: str) -> str | None:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return text.lower()


@functools.lru_cache(maxsize=1024)  # a message links to few hosts, many times; IDNA costs tens of microseconds
def _name_host(host: str) -> str | None:
    """The ASCII host a browser resolves for the name ``host``, or None if it would refuse it (or we do).

    Non-ASCII names go through UTS #46 mapping and IDNA 2008 with the
    ``idna`` package, nontransitional as in browsers: the stdlib's ``idna``
    codec implements IDNA 2003, which sends ``faß.de`` to ``fass.de``, maps
    ``ς`` to ``σ`` and silently drops a zero-width joiner, so the redirect
    would go to another domain than the one the reader saw. ASCII labels
    (other than ``xn--``) keep what browsers accept and strict IDNA 2008
    refuses: ``_`` and hyphens anywhere. ``xn--`` labels must decode.
    """
    if not host:
        return None
    if not host.isascii():
        try:
            host = idna.uts46_remap(host, std3_rules=False)
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    labels = host.lower().split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # one trailing dot: a fully qualified name
        trailing = "."
    else:
        trailing = ""
    ascii_labels = []
    for label in labels:
        if not label.isascii() or label.startswith("xn--"):
            try:
                label = idna.alabel(label).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError):
                return None
        if _LABEL.fullmatch(label) is None:
            return None
        ascii_labels.append(label)
    name = ".".join(ascii_labels)
    if len(name) > _MAX_HOST:
        return None
    if _NUMBER.fullmatch(ascii_labels[-1]):
        # Browsers parse this as an IPv4 address (also "0x7f.1", "127.1", "010.0.0.1"): only the plain form is kept.
        try:
            return name if not trailing and str(ipaddress.IPv4Address(name)) == name else None
        except ValueError:
            return None
    return name + trailing


_DEFAULT_PATHS: dict[TokenKind, str] = {"click": "c", "open": "o", "unsubscribe": "u"}
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*")


@dataclass(frozen=True)
class UrlLayout:
    """Where each kind of tracking URL lives under ``base_url``.

    ``base_url`` is an absolute http(s) URL, optionally with a path prefix; the
    defaults give ``{base_url}/c/{token}``, ``/o/{token}`` and ``/u/{token}``.
    """

    base_url: str
    paths: Mapping[TokenKind, str]

    @classmethod
    def create(cls, base_url: str, paths: Mapping[str, str] | None = None) -> UrlLayout:
        """Validate ``base_url`` and ``paths`` (overrides of the defaults) and build the layout."""
        if not isinstance(base_url, str):
            raise ArgumentError(f"base_url must be a str, not {type(base_url).__name__}")
        base = base_url.strip(ASCII_WHITESPACE).rstrip("/")
        if (
            isinstance(check_destination(base), str)
            or "?" in base
            or "#" in base
            or re.search(r"[\s\"'<>`&\\]|[\x00-\x1f\x7f-\x9f]", base)
        ):
            raise ConfigurationError(f"base_url must be an absolute http(s) URL without query or fragment: {base_url!r}")
        if not base.isascii():
            # Tracking URLs also go into headers (List-Unsubscribe) and ASCII-only text parts.
            raise ConfigurationError(
                f"base_url must be ASCII (an IDN host as punycode, xn--...; a path percent-encoded): {base_url!r}"
            )
        if paths is not None and not isinstance(paths, Mapping):
            raise ConfigurationError(f"paths must be a mapping of kind -> path, not {type(paths).__name__}")
        merged = dict(_DEFAULT_PATHS)
        for kind, path in (paths or {}).items():
            if kind not in _DEFAULT_PATHS:
                raise ConfigurationError(f"paths has an unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
            if not isinstance(path, str) or not _PATH_SEGMENT.fullmatch(path.strip("/")):
                raise ConfigurationError(f"paths.{kind} must be a URL path like 'c' or 'track/click', not {path!r}")
            merged[kind] = path.strip("/")
        if len(set(merged.values())) != len(merged):
            raise ConfigurationError("paths must differ for click, open and unsubscribe")
        return cls(base, merged)

    def prefix(self, kind: TokenKind) -> str:
        """The URL prefix a token of ``kind`` is appended to."""
        return f"{self.base_url}/{self.paths[kind]}/"

    @functools.cached_property
    def lowered_base(self) -> str:
        """``base_url`` lowercased, once: :meth:`is_ours` runs for nearly every link of every message."""
        return self.base_url.lower()

    def is_ours(self, url: str) -> bool:
        """True if ``url`` points under ``base_url`` (scheme and host compared without case)."""
        n = len(self.base_url)
        return url[:n].lower() == self.lowered_base and (len(url) == n or url[n] in "/?#")

    def split(self, url: str) -> tuple[TokenKind, str] | None:
        """``(kind, token)`` for a tracking URL of ours, or None."""
        if not self.is_ours(url):
            return None
        # The path up to the query or fragment; no urlsplit, which raises on "[" in what it takes for a host.
        rest = re.split(r"[?#]", url[len(self.base_url):], maxsplit=1)[0].lstrip("/")
        for kind, path in self.paths.items():
            if rest.startswith(path + "/"):
                token = rest[len(path) + 1 :]
                if "/" not in token:
                    return kind, token
        return None


def add_query_parameters(url: str, parameters: tuple[tuple[str, str], ...]) -> str:
    """``url`` with ``parameters`` appended to its query, except names it already has.

    The existing query and the fragment are kept exactly as written; only the
    new pairs are percent-encoded. Empty values are left out (SendGrid's
    account settings carry ``""`` for unset UTM fields).
    """
    base, hash_mark, fragment = url.partition("#")
    path, _, query = base.partition("?")
    present = {name for name, _ in parse_qsl(query.replace(";", "&"), keep_blank_values=True)}  # ";" separates too
    extra = [(name, value) for name, value in parameters if value and name not in present]
    if not extra:
        return url
    added = urlencode(extra, quote_via=quote)
    query = f"{query}&{added}" if query and not query.endswith("&") else f"{query}{added}"
    return f"{path}?{query}{hash_mark}{fragment}"
