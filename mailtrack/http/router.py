"""Which endpoint a request path is for: the tracker's URL layout, read backwards.

A tracking URL is ``{base path}/{kind path}/{token}`` (see
:class:`~mailtrack.core.urls.UrlLayout`); the router finds the kind and the
token in a request path. Paths are matched longest prefix first, so with kind
paths such as ``t`` and ``t/o`` a request for ``/t/o/...`` is an open, not a
``t`` token starting with ``o/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from mailtrack.core.urls import TokenKind

__all__ = ["Route", "Router"]


class Route(NamedTuple):
    """A matched request: the kind of tracking URL and the token after its prefix (possibly empty)."""

    kind: TokenKind
    token: str


class Router:
    """Maps request paths under ``base_url`` to the kind paths in ``paths`` (``{"open": "o", ...}``)."""

    def __init__(self, base_url: str, paths: Mapping[TokenKind, str]) -> None:
        base_path = urlsplit(base_url).path.rstrip("/")
        prefixes = [(f"{base_path}/{path}/", kind) for kind, path in paths.items()]
        self._prefixes = sorted(prefixes, key=lambda item: -len(item[0]))

    def match(self, path: str) -> Route | None:
        """The route of ``path``, or None when it is no tracking URL of ours."""
        for prefix, kind in self._prefixes:
            if path.startswith(prefix):
                return Route(kind, path[len(prefix):])
        return None
