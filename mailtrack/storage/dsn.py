"""Database names: which store a ``--db`` value selects, and how to show it without its password.

Kept apart from :mod:`mailtrack.storage.postgres` so that configuration and
logging can tell a PostgreSQL URL from a SQLite path (and mask it) without
importing psycopg, which is an optional extra (``mailtrack[postgres]``).
"""

from __future__ import annotations

import re

__all__ = ["is_postgres_url", "masked"]

_SCHEMES = ("postgresql://", "postgres://")
#: ``scheme://user:PASSWORD@`` in a URL.
_URL_PASSWORD = re.compile(r"^([a-z]+://[^/@:]*:)[^/@]*@", re.IGNORECASE)
#: ``password=...`` in a URL's query or a key=value connection string.
_PARAM_PASSWORD = re.compile(r"(\bpassword=)('(?:[^'\\]|\\.)*'|[^&\s]*)", re.IGNORECASE)


def is_postgres_url(db: object) -> bool:
    """Whether ``db`` names a PostgreSQL database (``postgresql://`` or ``postgres://``) rather than a SQLite file."""
    return isinstance(db, str) and db.lower().startswith(_SCHEMES)


def masked(db: object) -> str:
    """``db`` as it may be shown in a log line or an error message: any password replaced by ``***``."""
    text = str(db)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _PARAM_PASSWORD.sub(r"\1***", text)
