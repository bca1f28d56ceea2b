"""Who is calling an API endpoint, and on whose behalf: ``Authorization: Bearer <key>`` and ``on-behalf-of``.

:func:`authorize` is the one check every API module (tracking settings, events,
stats) makes before it does anything: it answers with a :class:`Principal`
or with the error :class:`~mailtrack.http.messages.Response` to send, in
SendGrid's shape (``{"errors": [{"field": ..., "message": ...}]}``):

* 401 ``authorization required``: no ``Authorization: Bearer`` header, or a key
  that is malformed, unknown, wrong or revoked (one answer for all, so a
  caller learns nothing about which keys exist);
* 403 ``access forbidden``: the key lacks the scope; or ``on-behalf-of`` was
  sent with a subuser's key (only a parent acts for its subusers), or names no
  subuser of the key's account (what SendGrid answers there was not verified
  against the live service; 403 is our choice);
* 503 when the store cannot be read now.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailtrack.http.messages import Request, Response
from mailtrack.storage.accounts import ApiKey
from mailtrack.storage.base import AccountStore, StoreError

__all__ = ["Principal", "authorize", "error", "json_response"]


@dataclass(frozen=True)
class Principal:
    """An authorized caller: the ``key`` used and the ``account`` acted on (a subuser under ``on-behalf-of``)."""

    key: ApiKey
    account: str
    on_behalf_of: str | None = None


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    """``body`` as a JSON response (never cached: it holds an account's data)."""
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return Response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                             ("Cache-Control", "no-store"), *(headers or {}).items()], data)


def error(status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None) -> Response:
    """An error in SendGrid's shape: ``{"errors": [{"field": field, "message": message}]}``."""
    return json_response(status, {"errors": [{"field": field, "message": message}]}, headers)


def authorize(request: Request, scope: str, *, store: AccountStore) -> Principal | Response:
    """The caller of ``request`` if its key is live and has ``scope``; else the 401/403/503 answer to send.

    ``on-behalf-of: <subuser>`` (parent keys only) makes the principal's
    ``account`` that subuser; otherwise it is the key's own account.
    """
    header = request.headers.get("authorization", "")
    kind, _, key = header.strip().partition(" ")
    if kind.lower() != "bearer" or not key.strip():
        return error(401, "authorization required", headers={"WWW-Authenticate": 'Bearer realm="mailtrack"'})
    try:
        found = store.authenticate(key.strip())
        if found is None:
            return error(401, "authorization required", headers={"WWW-Authenticate": 'Bearer realm="mailtrack"'})
        if scope not in found.scopes:
            return error(403, "access forbidden")
        target = request.headers.get("on-behalf-of", "").strip()
        if not target:
            return Principal(found, found.account)
        owner = store.account(found.account)
        subuser = store.account(target)
        if owner is None or owner.is_subuser or subuser is None or subuser.parent != owner.name:
            return error(403, "access forbidden")
        return Principal(found, subuser.name, subuser.name)
    except StoreError:
        return error(503, "the store is unavailable; try again", headers={"Retry-After": "1"})
