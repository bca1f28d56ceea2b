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
def split_lines(body: bytes, qp: bool, /) -> list[bytes]: ...
def line_starts(text: str, count: int, /) -> list[int]: ...
def qp_encode_lines(
    lines: list[bytes], offsets: list[int], size: int, changes: list[tuple[int, int, str]], intended: str,
    codec: str, rest_codec: str, errors: str, eol: bytes, /,
) -> bytes | None: ...
def max_line_length(data: bytes, /) -> int: ...

SIV_AVAILABLE: int

class ClickSigner:
    def __init__(self, key: bytes, head: bytes, tail: bytes, stamp: bytes, size: int, *, sealed: bool = False) -> None: ...
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
