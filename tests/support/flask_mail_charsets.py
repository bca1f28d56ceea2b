"""Flask-Mail changes the stdlib's global charset registry when it is imported; keep that to the tests that use it.

Flask-Mail runs ``email.charset.add_charset("utf-8", SHORTEST, None, "utf-8")``
at import (utf-8 bodies then go out as 8bit text rather than base64). The
rest of the suite parses and builds messages with the stdlib as it ships, so
the registry is put back right after the import, and the Flask-Mail state is
applied only around the modules that send through Flask-Mail (the
``flask_mail_charsets`` fixture). Both states are taken once per process: a
second import of flask_mail changes nothing, so a module cannot see them itself.
"""

from __future__ import annotations

import email.charset
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_REGISTRIES = (email.charset.CHARSETS, email.charset.ALIASES, email.charset.CODEC_MAP)


def _snapshot() -> tuple[dict[Any, Any], ...]:
    return tuple(dict(registry) for registry in _REGISTRIES)


def _use(state: tuple[dict[Any, Any], ...]) -> None:
    for registry, saved in zip(_REGISTRIES, state, strict=True):
        registry.clear()
        registry.update(saved)


STDLIB = _snapshot()
try:
    import flask_mail  # noqa: F401
except ImportError:  # the tests that need it skip themselves
    FLASK_MAIL = STDLIB
else:
    FLASK_MAIL = _snapshot()
_use(STDLIB)


@contextmanager
def flask_mail_charsets() -> Iterator[None]:
    """The registry as Flask-Mail sets it, inside the block; the stdlib's again after it."""
    _use(FLASK_MAIL)
    try:
        yield
    finally:
        _use(STDLIB)
