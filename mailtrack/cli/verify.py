"""``mailtrack verify URL|TOKEN``: what a tracking URL was signed for, for support staff checking a forwarded link.

Prints the kind, destination, message id, recipient, metadata and signing
time (``--json``: one JSON object); exit status 1, with the reason, when the
token is not valid (forged, tampered, signed with a key not in the key list,
expired under ``--max-age``). The keys come from ``--secret-key-file`` or
``MAILTRACK_SECRET_KEY`` like every command; the base URL from
``--base-url``/``MAILTRACK_BASE_URL`` when set, else from the URL itself (a
bare token is checked for every kind). ``--max-age`` applies as ``serve``
applies it: to click links only, since unsubscribe links never expire.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timezone
from typing import Any

from mailtrack.cli._common import add_settings, settings
from mailtrack.core.results import Verified
from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import InvalidToken

__all__ = ["register"]

#: The default layout's tracking path at the end of a URL: base, kind's path, token.
_TRACKING_PATH = re.compile(r"^(?P<base>[a-zA-Z][a-zA-Z0-9+.-]*://.+?)/(?:c|o|u)/[^/?#]+(?:[?#].*)?$")
#: The base URL used for a bare token when none is configured: only the token is checked.
_ANY_BASE = "https://mailtrack.invalid"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``verify`` to the subcommands ``commands``."""
    verify = commands.add_parser(
        "verify", help="say what a tracking URL or token was signed for, or why it is not valid",
        description="Verify a tracking URL (or a bare token) and print its kind, destination, message id, recipient, "
                    "metadata and signing time; exit status 1 with the reason when it is not valid.")
    verify.add_argument("token", metavar="URL|TOKEN", help="a tracking URL, or the token at its end")
    verify.add_argument("--json", action="store_true", help="print one JSON object (also for an invalid token)")
    add_settings(verify, "secret_key", "secret_key_file", "base_url", "max_age")
    verify.set_defaults(func=run_verify)


def _tracker(keys: tuple[str, ...], base_url: str | None, given: str) -> Tracker:
    if base_url is None:
        match = _TRACKING_PATH.match(given)
        base_url = match["base"] if match else _ANY_BASE
    return Tracker(secret_keys=list(keys), base_url=base_url)


def _claims(verified: Verified) -> dict[str, Any]:
    issued = verified.issued_at.astimezone(timezone.utc)
    return {
        "valid": True,
        "kind": verified.kind,
        "url": verified.url,
        "link_index": verified.link_index,
        "message_id": verified.message_id,
        "recipient": verified.recipient,
        "metadata": dict(verified.metadata),
        "tags": list(verified.tags),
        "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "issued_at_unix": int(issued.timestamp()),
    }


def run_verify(args: argparse.Namespace) -> int:
    """``mailtrack verify``."""
    config = settings(args, "secret_keys")
    given = args.token.strip()
    tracker = _tracker(config.secret_keys, config.base_url, given)
    try:
        verified = tracker.verify(given)
        if verified.kind == "click" and config.max_age is not None:
            verified = tracker.verify(given, max_age=config.max_age)
    except InvalidToken as exc:  # ExpiredToken too (reason "expired")
        reason = exc.reason
        if args.json:
            print(json.dumps({"valid": False, "reason": reason, "error": str(exc)}, ensure_ascii=False))
        print(f"mailtrack verify: not valid ({reason}): {exc}", file=sys.stderr)
        return 1
    claims = _claims(verified)
    if args.json:
        print(json.dumps(claims, ensure_ascii=False))
        return 0
    rows: list[tuple[str, str]] = [("kind", verified.kind)]
    if verified.kind == "click":
        rows += [("destination", verified.url or ""), ("link index", str(verified.link_index))]
    recipient = verified.recipient if verified.recipient is not None else "(none: tracked without a recipient)"
    rows += [("message id", verified.message_id), ("recipient", recipient),
             ("metadata", json.dumps(claims["metadata"], ensure_ascii=False)), ("issued at", claims["issued_at"])]
    if verified.tags:
        rows.append(("tags", ", ".join(verified.tags)))
    print(f"valid {verified.kind} token")
    for label, value in rows:
        print(f"{label + ':':<13}{value}")
    return 0
