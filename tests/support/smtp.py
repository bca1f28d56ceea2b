"""A real SMTP server on loopback for the integration tests: aiosmtpd, keeping every envelope it receives."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Inbox:
    """An aiosmtpd handler keeping every envelope it receives, as ``(envelope recipients, raw message)``."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.envelopes: list[tuple[list[str], bytes]] = []
        self.refuse = refuse  # recipients answered 550 at RCPT TO, as a server refuses an unknown mailbox

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.envelopes.append((list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        return "250 OK"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_server(refuse: frozenset[str] = frozenset()) -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on 127.0.0.1 for the block: its inbox and its port (``refuse``: recipients it refuses)."""
    from aiosmtpd.controller import Controller

    inbox = Inbox(refuse)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()
