"""``examples/flask_app.py`` runs: it sends a tracked message and its tracking links record events.

Imported from its file (examples/ is not a package). Flask-Mail changes the
stdlib's global charset registry when imported: as in test_flask_integration,
that change is kept to this module's tests.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.flask_mail_charsets import flask_mail_charsets

pytest.importorskip("flask")
pytest.importorskip("flask_mail")


from support.helpers import wait_until  # noqa: E402

from mailtrack.contrib.flask import tracking  # noqa: E402
from mailtrack.events import TrackingEvent  # noqa: E402

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app.py"


@pytest.fixture(autouse=True, scope="module")
def _flask_mail_charsets() -> Iterator[None]:
    """The charset registry as Flask-Mail sets it, for this module only (support.flask_mail_charsets)."""
    with flask_mail_charsets():
        yield


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mailtrack_flask_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flask_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("SECRET_KEY", "MAILTRACK_BASE_URL", "MAILTRACK_DB", "MAIL_SERVER", "MAIL_PORT", "MAIL_DEFAULT_SENDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAILTRACK_DB", str(tmp_path / "events.db"))
    app = _example().create_app()
    state = app.extensions["mailtrack"]
    received: list[TrackingEvent] = []

    def receiver(sender: Any, event: TrackingEvent) -> None:
        received.append(event)

    tracking.connect(receiver, sender=app, weak=False)
    try:
        client = app.test_client()
        assert b"<form" in client.get("/").data
        assert client.post("/send", data={"to": ""}).status_code == 400
        with app.extensions["mail"].record_messages() as outbox:
            sent = client.post("/send", data={"to": "ann@example.com"})
        assert sent.status_code == 200 and b"ann@example.com" in sent.data
        assert len(outbox) == 1 and "Hello from the mailtrack example" in capsys.readouterr().out  # the console
        base = re.escape(app.config["MAILTRACK_BASE_URL"])
        pixel = re.findall(base + r"/o/[^\"'\s<>]+", outbox[0].html)
        click = re.findall(base + r"/c/[^\"'\s<>]+", outbox[0].html)
        assert len(pixel) == 1 and len(click) == 2
        assert client.get(urlsplit(pixel[0]).path).status_code == 200
        redirect = client.get(urlsplit(click[0]).path)
        assert redirect.status_code == 302 and redirect.headers["Location"] == "https://github.com/"
        wait_until(lambda: len(received) >= 2, what="the open and the click")
        assert sorted(str(e.event_type) for e in received) == ["clicked", "opened"]
        assert {e.recipient for e in received} == {"ann@example.com"}
        # Receivers run after the store has recorded the event: both are stored by now.
        stored = state.store.events(message_id=received[0].message_id)
        assert sorted(str(e.event_type) for e in stored) == ["clicked", "opened"]
    finally:
        tracking.disconnect(receiver, sender=app)
        state.close()
