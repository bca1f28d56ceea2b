"""Types of the compiled accelerator (mailtrack/core/_speedups.c)."""

from typing import TypeVar

_T = TypeVar("_T")

def scan(
    text: str, link_tag: type[_T], /
) -> tuple[list[_T], int | None, int | None, int | None, int | None]: ...
