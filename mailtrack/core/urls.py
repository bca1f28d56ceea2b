"""Destinations and tracking URL layout.

A destination is tracked and, later, redirected to only if it is an absolute
http(s) URL with a host and no control characters: the same test runs when a
link is signed and when a token is verified, so nothing we sign is refused later
and nothing we refuse could have been signed by us.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from mailtrack.exceptions import ArgumentError, ConfigurationError

__all__ = [
    "ASCII_WHITESPACE",
    "CONTROL_CHARS",
    "HTTP_PREFIX",
    "KINDS",
    "UrlLayout",
    "add_query_parameters",
    "destination_problem",
    "is_http_url",
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


def is_http_url(value: str) -> bool:
    """True if ``value`` starts with ``http://`` or ``https://`` (any case) and a host."""
    return _HTTP.match(value) is not None


def destination_problem(value: str) -> str | None:
    """Why ``value`` may not be a redirect destination, or None if it may.

    Returns ``"scheme"`` for anything but absolute http(s) URLs and ``"control"``
    for URLs holding C0/C1 control characters (CR/LF would split a header).
    """
    if _HTTP.match(value) is None:
        return "scheme"
    if _CONTROL.search(value) is not None:
        return "control"
    return None


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
        parts = urlsplit(base)
        if (
            parts.scheme.lower() not in ("http", "https")
            or not parts.netloc
            or parts.query
            or parts.fragment
            or not is_http_url(base)
            or re.search(r"[\s\"'<>`&\\]|[\x00-\x1f\x7f-\x9f]", base)
        ):
            raise ConfigurationError(f"base_url must be an absolute http(s) URL without query or fragment: {base_url!r}")
        if not base.isascii():
            # Tracking URLs also go into headers (List-Unsubscribe) and ASCII-only text parts.
            raise ConfigurationError(
                f"base_url must be ASCII (an IDN host as punycode, xn--...; a path percent-encoded): {base_url!r}"
            )
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

    def is_ours(self, url: str) -> bool:
        """True if ``url`` points under ``base_url`` (scheme and host compared without case)."""
        n = len(self.base_url)
        return url[:n].lower() == self.base_url.lower() and (len(url) == n or url[n] in "/?#")

    def split(self, url: str) -> tuple[TokenKind, str] | None:
        """``(kind, token)`` for a tracking URL of ours, or None."""
        if not self.is_ours(url):
            return None
        rest = urlsplit(url[len(self.base_url):]).path.lstrip("/")
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


_NOT_URI = re.compile(r"[^\x21-\x7e]+")


def as_uri(url: str) -> str | None:
    """``url`` as an ASCII URI for a ``Location`` header: IDNA host, other characters UTF-8 percent-encoded.

    Existing ``%XX`` escapes are kept. None when the host cannot be written in
    IDNA (the caller answers 404 rather than redirect somewhere else).
    """
    if url.isascii() and " " not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    host = parts.hostname or ""
    if not host.isascii():
        try:
            ascii_host = host.encode("idna").decode("ascii")
            port = f":{parts.port}" if parts.port is not None else ""
        except (UnicodeError, ValueError):
            return None
        userinfo = netloc.rpartition("@")[0] + "@" if "@" in netloc else ""
        netloc = userinfo + ascii_host + port

    def escape(text: str) -> str:
        return _NOT_URI.sub(lambda m: quote(m.group(0), safe=""), text)

    rebuilt = f"{parts.scheme}://{escape(netloc)}{escape(parts.path)}"
    if parts.query or "?" in url.split("#", 1)[0]:
        rebuilt += "?" + escape(parts.query)
    if parts.fragment or "#" in url:
        rebuilt += "#" + escape(parts.fragment)
    return rebuilt
