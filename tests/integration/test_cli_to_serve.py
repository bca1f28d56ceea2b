"""What ``mailtrack rewrite`` writes, ``mailtrack serve`` accepts: both configured from the same environment.

Regression for defect 1: ``rewrite`` and ``rewrite-message`` took
``MAILTRACK_SECRET_KEY="old,new"`` as ONE key (``"old,new"``) while ``serve``
split it on commas, so every URL the command line wrote was refused by the
server (reason ``signature``). Both now read the keys through
:mod:`mailtrack.config`. Real subprocesses, a real socket, as a user runs them.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailtrack.storage.sqlite import SQLiteStore

BASE_URL = "http://t.example.com"


def environment(db: Path) -> dict[str, str]:
    """The user's shell: every setting in ``MAILTRACK_*`` variables, two keys for rotation (newest last)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRACK_")}
    env.update(MAILTRACK_SECRET_KEY="old,new", MAILTRACK_BASE_URL=BASE_URL, MAILTRACK_DB=str(db))
    return env


@pytest.fixture
def server_port(tmp_path: Path) -> Iterator[int]:
    """``python -m mailtrack serve --port 0`` configured only by the environment; yields the port it reports."""
    stderr = (tmp_path / "serve.err").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mailtrack", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=stderr, stdin=subprocess.DEVNULL, env=environment(tmp_path / "events.sqlite"))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # blocks until serve reports its port (flushed), or exits
        assert " on http://127.0.0.1:" in line, (line, (tmp_path / "serve.err").read_text())
        yield int(line.split(" on http://127.0.0.1:", 1)[1].split()[0])
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close() if proc.stdout else None
        stderr.close()


def get(port: int, url: str) -> tuple[int, str | None]:
    assert url.startswith(BASE_URL + "/"), url
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", url[len(BASE_URL):], headers={"User-Agent": "test mail client"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location")
    finally:
        connection.close()


@pytest.mark.timeout(120)
def test_urls_written_by_rewrite_with_rotated_env_keys_are_accepted_by_serve(tmp_path: Path, server_port: int) -> None:
    page = tmp_path / "mail.html"
    page.write_text('<html><body><a href="https://shop.example/sale?id=42">Sale</a></body></html>', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "mailtrack", "rewrite", str(page), "--message-id", "m-rot",
                           "--recipient", "ann@example.com"], capture_output=True, text=True, timeout=60, check=False,
                          env=environment(tmp_path / "events.sqlite"))
    assert proc.returncode == 0, proc.stderr
    click = proc.stdout.split('href="', 1)[1].split('"', 1)[0]
    pixel = proc.stdout.split('src="', 1)[1].split('"', 1)[0]

    assert get(server_port, click) == (302, "https://shop.example/sale?id=42")
    assert get(server_port, pixel)[0] == 200
    store = SQLiteStore(tmp_path / "events.sqlite")
    try:
        events = [(e.event_type, e.message_id, e.recipient) for e in store.events()]
    finally:
        store.close()
    assert events == [("clicked", "m-rot", "ann@example.com"), ("opened", "m-rot", "ann@example.com")]


@pytest.mark.timeout(120)
def test_urls_written_by_rewrite_message_with_rotated_env_keys_are_accepted_by_serve(tmp_path: Path,
                                                                                    server_port: int) -> None:
    eml = tmp_path / "mail.eml"
    eml.write_bytes(b"From: shop@example.com\r\nTo: ann@example.com\r\nMessage-ID: <m-msg@example.com>\r\n"
                    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
                    b'<html><body><a href="https://shop.example/new">New</a></body></html>\r\n')
    proc = subprocess.run([sys.executable, "-m", "mailtrack", "rewrite-message", str(eml)], capture_output=True,
                          timeout=60, check=False, env=environment(tmp_path / "events.sqlite"))
    assert proc.returncode == 0, proc.stderr
    click = proc.stdout.split(b'href="', 1)[1].split(b'"', 1)[0].decode()
    assert get(server_port, click) == (302, "https://shop.example/new")


def test_the_wsgi_entry_point_reads_the_keys_as_the_cli_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``mailtrack.wsgi:application`` (gunicorn's way) is configured by the same reader as the CLI."""
    from wsgiref.util import setup_testing_defaults

    import mailtrack.wsgi  # the entry point of 0.1, kept
    page = tmp_path / "mail.html"
    page.write_text('<a href="https://shop.example/w">w</a>', encoding="utf-8")
    env = environment(tmp_path / "events.sqlite")
    proc = subprocess.run([sys.executable, "-m", "mailtrack", "rewrite", str(page), "--message-id", "m-wsgi",
                           "--recipient", "r@example.com"], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    click = proc.stdout.split('href="', 1)[1].split('"', 1)[0]

    for name, value in env.items():
        if name.startswith("MAILTRACK_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(mailtrack.wsgi, "_app", None)  # built from the environment on first use
    environ: dict[str, object] = {"REQUEST_METHOD": "GET", "PATH_INFO": click[len(BASE_URL):]}
    setup_testing_defaults(environ)
    seen: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(headers))

    try:
        b"".join(mailtrack.wsgi.application(environ, start_response))
        assert seen["status"] == "302 Found" and seen["headers"]["Location"] == "https://shop.example/w"
    finally:
        app = mailtrack.wsgi._app
        if app is not None:
            app.endpoints.recorder.close()
