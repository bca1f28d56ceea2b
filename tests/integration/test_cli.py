"""The command line, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.helpers import BASE_URL

import mailtrack


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailtrack", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def test_demo_runs_end_to_end() -> None:
    proc = run("demo")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Tracked links (4)" in out and "verifies: NO" not in out
    assert "'{{unsubscribe_url}}': placeholder" in out and "opt-out" in out
    assert "Forged URL refused: signature" in out
    assert "Second pass over the output changes nothing: True" in out
    # The server part: real HTTP against waitress on loopback, events read back from SQLite.
    assert "GET pixel         -> 200 image/gif, 43 bytes" in out
    assert "GET click         -> 302 Location: https://shop.example.com/sale?src=mail&id=42" in out
    assert "GET forged click  -> 404" in out
    assert "Recorded events (2):" in out and "opened   <spring-2026-0001@example.com> ann@example.com" in out


def test_rewrite_command(tmp_path: Path) -> None:
    page = tmp_path / "mail.html"
    page.write_text('<body><a href="https://x.example/?a&amp;b">x</a></body>', encoding="utf-8")
    proc = run("rewrite", str(page), "--message-id", "m1", "--recipient", "r@x.example", "--secret-key", "k",
               "--base-url", BASE_URL, "--metadata", '{"campaign": "c"}')
    assert proc.returncode == 0, proc.stderr
    assert "tracked 1 links" in proc.stderr
    url = proc.stdout.split('href="', 1)[1].split('"', 1)[0]
    verified = mailtrack.Tracker(["k"], BASE_URL).verify(url)
    assert (verified.url, verified.message_id, verified.metadata) == ("https://x.example/?a&b", "m1", {"campaign": "c"})


def test_rewrite_command_errors_are_clear() -> None:
    proc = run("rewrite", "-", "--message-id", "m", "--recipient", "r", stdin="<a>")
    assert proc.returncode == 2 and "--secret-key" in proc.stderr
    proc = run("rewrite", "-", "--message-id", "m", "--recipient", "r", "--secret-key", "k", "--base-url", "ftp://x",
               stdin="<a>")
    assert proc.returncode == 1 and "base_url" in proc.stderr


def test_rewrite_command_keeps_bytes_and_reports_read_errors(tmp_path: Path) -> None:
    page = tmp_path / "crlf.html"
    page.write_bytes(b'<body>\r\n<a href="https://x.example/">caf\xe9</a>\r\n</body>\r\n')
    common = ["--message-id", "m", "--recipient", "r", "--secret-key", "k", "--base-url", BASE_URL]
    proc = subprocess.run([sys.executable, "-m", "mailtrack", "rewrite", str(page), "--encoding", "latin-1", *common],
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(b"\r\n") == 3 and b"caf\xe9" in proc.stdout
    for args in (["rewrite", str(tmp_path / "missing.html"), *common], ["rewrite", str(page), *common]):
        failed = run(*args)  # a missing file; latin-1 bytes read as utf-8
        assert failed.returncode == 1 and "mailtrack rewrite:" in failed.stderr and "Traceback" not in failed.stderr


def test_rewrite_message_command(tmp_path: Path) -> None:
    eml = tmp_path / "mail.eml"
    eml.write_bytes(
        b"From: a@x.example\r\nTo: Ann <ann@x.example>\r\nMessage-ID: <m7@x.example>\r\nSubject: hi\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p><a href=\"https://x.example/\">x</a></p>\r\n"
    )
    common = ["--secret-key", "k", "--base-url", BASE_URL]
    proc = subprocess.run([sys.executable, "-m", "mailtrack", "rewrite-message", str(eml), *common,
                           "--settings", '{"subscription_tracking": {"enable": true}}'],
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in proc.stdout
    assert b"part 1 text/html: rewritten" in proc.stderr and b"m7@x.example for ann@x.example: tracked 1 links" in proc.stderr
    url = proc.stdout.split(b'href="', 1)[1].split(b'"', 1)[0].decode()
    assert mailtrack.Tracker(["k"], BASE_URL).verify(url).url == "https://x.example/"
    eml.write_bytes(eml.read_bytes().replace(b"To: Ann <ann@x.example>", b"To: a@x.example, b@x.example"))
    failed = run("rewrite-message", str(eml), *common)
    assert failed.returncode == 1 and "2 To addresses" in failed.stderr and "Traceback" not in failed.stderr
    failed = run("rewrite-message", str(eml), *common, "--recipient", "a@x.example", "--settings", "{bad")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr


# -- moved from tests/integration/test_serve_review.py (issue 8) -------------------------------


def test_cli_errors_on_bad_databases_are_one_clear_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database " * 100)
    for args in (["events", "--db", str(text)], ["stats", "--db", str(tmp_path)], ["webhooks", "--db", str(text)],
                 ["events", "--db", str(tmp_path / "missing.sqlite")]):
        proc = run(*args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.startswith("mailtrack "), args
    proc = run("serve", "--db", str(tmp_path / "no" / "dir" / "e.sqlite"), "--secret-key", "k", "--base-url", BASE_URL,
               "--port", "0")
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_dead_webhook_deliveries_can_be_requeued(tmp_path: Path) -> None:
    import time
    from datetime import datetime, timezone

    from mailtrack.storage.sqlite import SQLiteStore

    db = tmp_path / "e.sqlite"
    store = SQLiteStore(db)
    event = store.record(mailtrack.TrackingEvent("opened", datetime.now(timezone.utc), "d1", "r@x.example"),
                         outbox=["https://hook.example/"])
    row = store.outbox_rows()[0]
    store.outbox_failed(row["id"], "HTTP 500", None)
    assert run("webhooks", "--db", str(db)).stdout.strip() == "https://hook.example/: 0 pending, 0 delivered, 1 dead"
    proc = run("webhooks", "--db", str(db), "--requeue")
    assert "requeued 1 dead delivery" in proc.stdout and "1 pending, 0 delivered, 0 dead" in proc.stdout
    assert [item.event.event_id for item in store.outbox_due(time.time() + 1)] == [event.event_id]
    store.close()
