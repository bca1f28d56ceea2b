"""The command line, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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
    assert "GET pixel           -> 200 image/gif, 43 bytes" in out
    assert "GET click           -> 302 Location: https://shop.example.com/sale?src=mail&id=42" in out
    assert "GET click (scanner) -> 302 Location: https://shop.example.com/sale?src=mail&id=42" in out
    assert "GET forged click    -> 404" in out
    assert "Recorded events (3):" in out and "opened   <spring-2026-0001@example.com> ann@example.com" in out
    # the reader's click is theirs (the first); the scanner's is labelled and takes no first slot
    assert "(link 0) first=True ip=127.0.0.1 metadata={'campaign': 'spring'} machine=none (a person)" in out
    assert "(link 0) first=False ip=127.0.0.1 metadata={'campaign': 'spring'} machine=link_scanner" in out



@pytest.mark.timeout(120)
def test_demo_server_stops_without_a_traceback() -> None:
    """The demo's server is stopped while its loop and worker threads run; that must not print a traceback.

    Closing waitress from another thread raced its loop (select on closed
    descriptors) and a worker pulling the closed trigger: "OSError: [Errno 9]
    Bad file descriptor" in about half the runs. Five runs in one process.
    """
    probe = (
        "from mailtrack.cli.demo import SAMPLE_CAMPAIGN, _serve_and_fetch\n"
        "print(sum(_serve_and_fetch(SAMPLE_CAMPAIGN, lambda line: None) for _ in range(5)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=100, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, "0"), proc.stderr
    assert "Traceback" not in proc.stderr and "Errno" not in proc.stderr, proc.stderr

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


def test_rewrite_token_format_from_the_flag_or_the_variable(tmp_path: Path) -> None:
    """Opaque (no dots, nothing readable) by default; --token-format signed or MAILTRACK_TOKEN_FORMAT=signed: the
    readable format; a batch (--out) and rewrite-message take the same flag; verify reads both."""
    import os

    page = tmp_path / "mail.html"
    page.write_text('<body><a href="https://x.example/a">x</a></body>', encoding="utf-8")
    common = ["--message-id", "m1", "--recipient", "r@x.example", "--secret-key", "k", "--base-url", BASE_URL,
              "--issued-at", "1700000000"]

    def token(proc: subprocess.CompletedProcess[str]) -> str:
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split('href="', 1)[1].split('"', 1)[0].rsplit("/", 1)[1]

    default, flagged = token(run("rewrite", str(page), *common)), token(run("rewrite", str(page), *common, "--token-format", "signed"))
    env = {**os.environ, "MAILTRACK_TOKEN_FORMAT": "signed"}
    from_env = subprocess.run([sys.executable, "-m", "mailtrack", "rewrite", str(page), *common], capture_output=True,
                              text=True, timeout=60, check=False, env=env)
    assert "." not in default and flagged.count(".") == 2 and token(from_env) == flagged
    for value in (default, flagged):
        checked = run("verify", f"{BASE_URL}/c/{value}", "--secret-key", "k", "--base-url", BASE_URL)
        assert checked.returncode == 0 and "https://x.example/a" in checked.stdout, checked.stderr
    out = tmp_path / "out"
    batch = run("rewrite", str(page), *common, "--out", str(out), "--workers", "1", "--token-format", "signed")
    assert batch.returncode == 0, batch.stderr
    assert (out / "mail.html").read_text(encoding="utf-8").split('href="', 1)[1].split('"', 1)[0].endswith(flagged)
    bad = run("rewrite", str(page), *common, "--token-format", "encrypted")
    assert bad.returncode != 0 and "--token-format" in bad.stderr and "Traceback" not in bad.stderr


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


def test_webhooks_new_secret_prints_a_standard_webhooks_secret_serve_accepts(tmp_path: Path) -> None:
    from mailtrack.delivery.webhooks import secret_keys

    first, second = (run("webhooks", "--new-secret").stdout.strip() for _ in range(2))
    assert first.startswith("whsec_") and first != second and len(secret_keys(first)[0]) == 32
    proc = run("serve", "--db", str(tmp_path / "e.sqlite"), "--secret-key", "k", "--base-url", BASE_URL,
               "--webhook", "http://127.0.0.1:9/hook", "--webhook-secret", "whsec_QUFB", "--port", "0")
    assert proc.returncode == 1 and "at least 16 bytes" in proc.stderr and "QUFB" not in proc.stderr  # not echoed


# -- issue 8: one configuration, clear errors --------------------------------------------------

KEYS = ["--secret-key", "k", "--base-url", BASE_URL]
MBOX_MESSAGE = (b"From: shop@x.example\nTo: {to}\nMessage-ID: <{mid}@x.example>\nContent-Type: text/html\n\n"
                b'<p><a href="https://x.example/{mid}">x</a></p>\n')


def mbox_message(mid: str, to: str = "ann@x.example") -> bytes:
    return (b"From shop@x.example Mon Jan  1 00:00:00 2024\n"
            + MBOX_MESSAGE.replace(b"{to}", to.encode()).replace(b"{mid}", mid.encode()))


def run_bytes(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "mailtrack", *args], input=stdin, capture_output=True, timeout=60,
                          check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes] | subprocess.CompletedProcess[str], status: int,
                          prefix: str) -> str:
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith(prefix), err
    return err


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_rewrite_message_refuses_an_mbox_of_several_messages(tmp_path: Path, eol: bytes) -> None:
    mbox = tmp_path / "three.mbox"
    messages = [mbox_message("m1"), mbox_message("m2", "bob@x.example"), mbox_message("m3", "cy@x.example")]
    mbox.write_bytes(b"\n".join(messages).replace(b"\n", eol))
    proc = run_bytes("rewrite-message", str(mbox), *KEYS)
    err = assert_one_line_error(proc, 2, "mailtrack rewrite-message: ")
    assert "3 messages" in err and "mbox" in err
    assert proc.stdout == b""  # nothing half-tracked on stdout


def test_rewrite_message_tracks_a_one_message_mbox_and_keeps_its_from_line(tmp_path: Path) -> None:
    # A body line "From ..." that does not start a message (no header follows it) is body text, not a separator.
    one = mbox_message("m1").replace(b"</p>\n", b"</p>\n\nFrom the whole team,\nAnn\n")
    mbox = tmp_path / "one.mbox"
    mbox.write_bytes(one)
    proc = run_bytes("rewrite-message", str(mbox), *KEYS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"From shop@x.example Mon Jan  1 00:00:00 2024\nFrom: shop@x.example\n")
    assert b"\n\nFrom the whole team,\nAnn\n" in proc.stdout
    assert b"tracked 1 links" in proc.stderr


def test_rewrite_message_refuses_input_without_any_header_field() -> None:
    for garbage in (b"garbage\n", b"", b"\n\nhello\n", b"<html><a href='https://x.example/'>x</a></html>\n"):
        proc = run_bytes("rewrite-message", "-", *KEYS, "--recipient", "r@x.example", stdin=garbage)
        err = assert_one_line_error(proc, 2, "mailtrack rewrite-message: ")
        assert "not an email message" in err and "header" in err, garbage
        assert proc.stdout == b""


def test_several_to_addresses_error_names_the_cli_option(tmp_path: Path) -> None:
    eml = tmp_path / "mail.eml"
    eml.write_bytes(MBOX_MESSAGE.replace(b"{to}", b"a@x.example, b@x.example").replace(b"{mid}", b"m1"))
    err = assert_one_line_error(run_bytes("rewrite-message", str(eml), *KEYS), 1, "mailtrack rewrite-message: ")
    assert "--recipient" in err and "recipient=" not in err


def test_events_without_a_database_says_which_option_to_set(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRACK_")}
    for command in ("events", "stats", "webhooks"):
        proc = subprocess.run([sys.executable, "-m", "mailtrack", command], capture_output=True, text=True, env=env,
                              timeout=60, check=False)
        err = assert_one_line_error(proc, 2, f"mailtrack {command}: ")
        assert "None" not in err and "--db" in err and "MAILTRACK_DB" in err
    missing = tmp_path / "missing.sqlite"
    proc = run("events", "--db", str(missing))
    err = assert_one_line_error(proc, 1, "mailtrack events: ")
    assert str(missing) in err and "--db" in err


def test_version_prints_the_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mailtrack {mailtrack.__version__}"


def help_text(*args: str) -> str:
    proc = run(*args, "--help")
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())  # argparse wraps to the terminal's width


def test_every_help_shows_defaults_and_environment_variables() -> None:
    serve = help_text("serve")
    assert "(default: 8025; env MAILTRACK_PORT)" in serve and "env MAILTRACK_SECRET_KEY" in serve
    assert "env MAILTRACK_SECRET_KEY_FILE" in serve and "(default: 127.0.0.1; env MAILTRACK_HOST)" in serve
    rewrite = help_text("rewrite")
    assert "env MAILTRACK_BASE_URL" in rewrite and "(default: utf-8)" in rewrite
    for command in ("events", "stats", "webhooks"):
        assert "env MAILTRACK_DB" in help_text(command)


def test_secret_key_file_is_one_key_per_line_newest_last(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# rotated 2026-01\nold\n\nnew\n", encoding="utf-8")
    page = tmp_path / "mail.html"
    page.write_text('<a href="https://x.example/">x</a>', encoding="utf-8")
    proc = run("rewrite", str(page), "--message-id", "m", "--recipient", "r", "--secret-key-file", str(keyfile),
               "--base-url", BASE_URL)
    assert proc.returncode == 0, proc.stderr
    url = proc.stdout.split('href="', 1)[1].split('"', 1)[0]
    assert mailtrack.Tracker(["new"], BASE_URL).verify(url).url == "https://x.example/"  # the last key signs


def test_configuration_errors_name_the_option_and_its_variable(tmp_path: Path) -> None:
    proc = run("serve", "--db", str(tmp_path / "e.sqlite"), *KEYS, "--max-age", "-5", "--port", "0")
    err = assert_one_line_error(proc, 1, "mailtrack serve: ")
    assert "--max-age" in err and "MAILTRACK_MAX_AGE" in err
    proc = run("serve", "--db", str(tmp_path / "e.sqlite"), *KEYS, "--trusted-proxy", "not-an-ip", "--port", "0")
    err = assert_one_line_error(proc, 1, "mailtrack serve: ")
    assert "--trusted-proxy" in err and "MAILTRACK_TRUSTED_PROXIES" in err


def test_rewrite_honeypot(tmp_path: Path) -> None:
    """``--honeypot`` on rewrite (one file and --out) and rewrite-message: one hidden link per HTML part."""
    page = tmp_path / "mail.html"
    page.write_text('<body><a href="https://x.example/">x</a></body>', encoding="utf-8")
    common = ("--secret-key", "k", "--base-url", BASE_URL, "--honeypot")
    one = run("rewrite", str(page), "--message-id", "m1", "--recipient", "r@x.example", *common)
    assert one.returncode == 0, one.stderr
    [hidden] = [href.split('"', 1)[0] for href in one.stdout.split('href="')[1:] if 'aria-hidden="true"' in href]
    assert mailtrack.Tracker(["k"], BASE_URL).verify(hidden).link_index == -1
    out = tmp_path / "out"
    batch = run("rewrite", str(page), "--out", str(out), "--recipient", "r@x.example", "--workers", "1", *common)
    assert batch.returncode == 0, batch.stderr
    assert (out / "mail.html").read_text(encoding="utf-8").count('aria-hidden="true"') == 1
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@x.example\r\nTo: r@x.example\r\nSubject: s\r\nMessage-ID: <m2@x.example>\r\n"
                    b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<body><a href=\"https://x.example/\">x</a></body>\r\n")
    message = run("rewrite-message", str(eml), *common)
    assert message.returncode == 0, message.stderr
    assert message.stdout.count('aria-hidden=3D"true"') + message.stdout.count('aria-hidden="true"') == 1
