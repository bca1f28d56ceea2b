"""Stored account settings are used everywhere a message is rewritten: CLI --account, Flask, Django, serve's landing page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.django_settings import configure
from support.helpers import BASE_URL

import mailtrack
from mailtrack.http.endpoints import Endpoints
from mailtrack.http.messages import Request
from mailtrack.storage.sqlite import SQLiteStore

MESSAGE = (b"To: ann@example.net\r\nSubject: hi\r\nMessage-ID: <m1@example.com>\r\nContent-Type: text/html\r\n\r\n"
           b'<p><a href="https://example.com/a">a</a></p>\r\n')


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "t.sqlite"
    store = SQLiteStore(path)
    store.create_account("sub1", parent="parent")
    store.patch_tracking_settings("sub1", "open", {"enabled": False})
    store.patch_tracking_settings("sub1", "google_analytics", {"enabled": True, "utm_source": "news"})
    store.close()
    return path


def test_cli_account_applies_the_stored_settings_under_the_message_s(db: Path, tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    base = [sys.executable, "-m", "mailtrack", "rewrite-message", str(eml), "--secret-key", "k", "--base-url", BASE_URL]
    plain = subprocess.run(base, capture_output=True, check=True, timeout=60).stdout
    tracked = subprocess.run([*base, "--account", "sub1", "--db", str(db)], capture_output=True, check=True,
                             timeout=60).stdout
    assert b"/o/" in plain and b"/o/" not in tracked
    verifier = mailtrack.Tracker(secret_keys=["k"], base_url=BASE_URL)

    def signed_account(output: bytes) -> str | None:
        url = BASE_URL + "/c/" + output.split(BASE_URL.encode() + b"/c/", 1)[1].split(b'"', 1)[0].decode()
        return verifier.verify(url).account

    assert signed_account(tracked) == "sub1" and signed_account(plain) is None  # --account is signed into the tokens
    opened = subprocess.run([*base, "--account", "sub1", "--db", str(db), "--settings", '{"open": true}'],
                            capture_output=True, check=True, timeout=60).stdout
    assert b"/o/" in opened  # the message's own settings win
    for extra, message in ((["--account", "sub1"], "--account needs --db"),
                           (["--account", "nobody", "--db", str(db)], "no account called 'nobody'")):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode in (1, 2) and message in done.stderr and "Traceback" not in done.stderr


def test_flask_mailtrack_account(db: Path) -> None:
    flask = pytest.importorskip("flask")
    from mailtrack.contrib.flask import Mailtrack

    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="s", MAILTRACK_BASE_URL=BASE_URL + "/t", MAILTRACK_DB=str(db), MAILTRACK_ACCOUNT="sub1")
    state = Mailtrack().init_app(app)
    try:
        assert state.tracker.account == "sub1"
        result = state.tracker.rewrite_message(MESSAGE)
        assert b"/o/" not in result.message
        assert "utm_source=news" in result.links[0].url
        assert state.tracker.verify(result.links[0].tracking_url).account == "sub1"  # MAILTRACK_ACCOUNT signed in
    finally:
        state.close()
    for config in ({"MAILTRACK_ACCOUNT": "nobody"}, {"MAILTRACK_ACCOUNT": "sub1", "MAILTRACK_DB": None}):
        app = flask.Flask(__name__)
        app.config.update(SECRET_KEY="s", MAILTRACK_BASE_URL=BASE_URL + "/t", MAILTRACK_DB=str(db))
        app.config.update(config)
        with pytest.raises(mailtrack.ConfigurationError, match="MAILTRACK_ACCOUNT"):
            Mailtrack().init_app(app)


def test_django_mailtrack_account(db: Path) -> None:
    pytest.importorskip("django")
    configure()
    from django.test import override_settings

    from mailtrack.contrib.django.conf import load

    settings = {"BASE_URL": BASE_URL + "/t", "DB": str(db), "ACCOUNT": "sub1"}
    with override_settings(MAILTRACK=settings):
        tracker = load().tracker
    assert tracker.account == "sub1" and "utm_source=news" in tracker.rewrite_message(MESSAGE).links[0].url
    assert tracker.verify(tracker.rewrite_message(MESSAGE).links[0].tracking_url).account == "sub1"  # signed in
    for wrong, message in (({"ACCOUNT": "nobody"}, "no account called 'nobody'"), ({"DB": None}, "needs")):
        with override_settings(MAILTRACK={**settings, **wrong}), pytest.raises(mailtrack.ConfigurationError,
                                                                              match=message):
            load()


def test_the_unsubscribe_page_comes_from_the_stored_landing_setting(tmp_path: Path) -> None:
    from mailtrack.config import Config
    from mailtrack.service import build_service

    db = tmp_path / "t.sqlite"
    service = build_service(Config(secret_keys=["k"], base_url=BASE_URL, db=str(db)))
    try:
        tracker = service.app.endpoints.tracker
        path = tracker.tracking_url("unsubscribe", message_id="m", recipient="a@x")[len(BASE_URL):]
        page = service.app.endpoints.handle(Request("GET", path)).body.decode()
        assert "Sorry to see you go" not in page
        store = SQLiteStore(db)
        store.create_account("parent")
        store.patch_tracking_settings("parent", "subscription", {"landing": "<p>Sorry to see you go</p>"})
        store.close()
        page = service.app.endpoints.handle(Request("GET", path)).body.decode()
        assert "Sorry to see you go" in page and "<form" in page
    finally:
        service.close()
    assert isinstance(service.app.endpoints, Endpoints)
