"""Types of the compiled accelerator (mailtrack/core/_speedups.c)."""

from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

def scan(
    text: str, link_tag: type[_T], /
) -> tuple[list[_T], int | None, int | None, int | None, int | None]: ...

SHA256_BACKEND: str

def sha256(data: bytes, /) -> bytes: ...
def sign_value(key: bytes, data: bytes, stamp: bytes, size: int, /) -> str: ...
def plain_destination(url: str, /) -> bool: ...
def default_rules(url: str, /) -> str | None | bool: ...
def splice(source: str, edits: list[tuple[int, int, str]], /) -> str | None: ...
def utf8_length(text: str, /) -> int: ...
def qp_lines(data: bytes, eol: bytes, /) -> bytes: ...

SIV_AVAILABLE: int

class SivKey:
    def __init__(self, key: bytes) -> None: ...
    def seal(self, plaintext: bytes, /) -> str: ...
    def open(self, sealed: bytes, /) -> bytes | None: ...

class ClickSigner:
    def __init__(self, key: bytes | SivKey, head: bytes, tail: bytes, stamp: bytes, size: int, *, sealed: bool = False) -> None: ...
    def __call__(self, link_index: int, url: str, /) -> str: ...

def track_links(
    html: str,
    links: list[Any],
    book: Any,
    plain: Callable[[str], bool] | None,
    classify: Callable[[str], object],
    base: str,
    common: str | None,
    slow: Callable[[Any], None],
    edits: list[tuple[int, int, str]],
    tracked_link: type,
    skipped_link: type,
    max_length: int,
    exclude: frozenset[str] | None,
    /,
) -> None: ...
