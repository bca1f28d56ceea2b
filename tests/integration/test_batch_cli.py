"""``mailtrack rewrite --out`` and ``mailtrack verify``, run as a user runs them: real processes, real files, real signals."""

from __future__ import annotations

import importlib.util
import json
import mailbox
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.helpers import BASE_URL, CORPUS, wait_until

import mailtrack
from mailtrack.batch.mbox import split_mbox

KEY = "batch-test-key"
TRACKER = mailtrack.Tracker([KEY], BASE_URL)
ISSUED_AT = "2026-01-01T00:00:00Z"
_OURS = re.compile(re.escape(BASE_URL) + r"/[cou]/[A-Za-z0-9_.\-]+")


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRACK_")}
    return {**clean, "MAILTRACK_SECRET_KEY": KEY, "MAILTRACK_BASE_URL": BASE_URL}


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mailtrack", *map(str, args)]


def run(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), capture_output=True, text=True, env=env(), timeout=timeout, check=False)


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too), by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def eml(n: int, to: str = "ann@x.example", eol: str = "\n") -> bytes:
    text = (f"From: shop@x.example\nTo: {to}\nMessage-ID: <m{n}@x.example>\nSubject: offer {n}\n"
            f"Content-Type: text/html; charset=utf-8\n\n<p>Hello {n}: <a href=\"https://x.example/offer/{n}\">see</a> "
            f"and <a href=\"mailto:help@x.example\">write</a></p>\n")
    return text.replace("\n", eol).encode()


def record(n: int, html: str | None = None) -> str:
    body = html or f'<p><a href="https://x.example/j/{n}">j{n}</a></p>'
    return json.dumps({"message_id": f"j{n}", "recipient": f"r{n}@x.example", "html": body, "row": n})


def campaign(root: Path, *, records: int = 40) -> Path:
    """One directory of every format: .eml files in a subdirectory, an HTML file, an mbox, JSON lines."""
    camp = root / "camp"
    (camp / "mails").mkdir(parents=True)
    for n in range(3):
        (camp / "mails" / f"{n}.eml").write_bytes(eml(n))
    (camp / "welcome.html").write_text('<html><body><a href="https://x.example/w">w</a></body></html>\n')
    (camp / "inbox.mbox").write_bytes(b"".join(b"From shop@x.example Thu Jan  1 00:00:00 2026\n" + eml(10 + n) + b"\n"
                                               for n in range(4)))
    (camp / "rows.jsonl").write_text("".join(record(n) + "\n" for n in range(records)))
    return camp


def verified_urls(data: bytes) -> list[mailtrack.Verified]:
    return [TRACKER.verify(url) for url in _OURS.findall(data.decode("utf-8"))]


# -- formats and layout --------------------------------------------------------------------------


def test_every_format_is_rewritten_into_the_same_layout(tmp_path: Path) -> None:
    camp = campaign(tmp_path)
    single = tmp_path / "single.eml"
    single.write_bytes(eml(99))
    out = tmp_path / "out"
    proc = run("rewrite", camp, single, "--out", out, "--recipient", "web@x.example", "--issued-at", ISSUED_AT,
               "--metadata", '{"campaign": "spring"}')
    assert proc.returncode == 0, proc.stderr
    assert sorted(files(out)) == ["camp/inbox.mbox", "camp/mails/0.eml", "camp/mails/1.eml", "camp/mails/2.eml",
                                  "camp/rows.jsonl", "camp/welcome.html", "single.eml"]
    [html_click, _pixel] = verified_urls((out / "camp" / "welcome.html").read_bytes())
    assert (html_click.message_id, html_click.recipient, html_click.url) == ("welcome", "web@x.example",
                                                                            "https://x.example/w")
    assert html_click.issued_at.isoformat() == "2026-01-01T00:00:00+00:00" and html_click.metadata == {"campaign": "spring"}
    click = verified_urls((out / "camp" / "mails" / "1.eml").read_bytes())[0]
    assert (click.message_id, click.recipient, click.url) == ("m1@x.example", "ann@x.example", "https://x.example/offer/1")
    rows = [json.loads(line) for line in (out / "camp" / "rows.jsonl").read_text().splitlines()]
    assert [row["row"] for row in rows] == list(range(40))
    assert TRACKER.verify(_OURS.findall(rows[7]["html"])[0]).recipient == "r7@x.example"
    assert "49 message(s) rewritten in" in proc.stderr
    assert "rewriting" not in proc.stderr and "\x1b[" not in proc.stderr  # no progress bar when stderr is no terminal


@pytest.mark.skipif(importlib.util.find_spec("rich") is None, reason="the progress bar needs rich (mailtrack[cli])")
def test_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    pty = pytest.importorskip("pty")
    camp = campaign(tmp_path, records=200)
    (camp / "rows.jsonl").write_text((camp / "rows.jsonl").read_text() + "{broken\n")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(command("rewrite", camp, "--out", tmp_path / "out", "--recipient", "r@x.example"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, env=env())
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert proc.wait(timeout=120) == 1
    text = shown.decode("utf-8", "replace")
    assert "rewriting" in text and "messages" in text  # the bar
    assert "not valid JSON" in text and "errors: 1 (listed above)" in text  # (rich wraps lines to the terminal)
    assert "Traceback" not in text


@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_an_mbox_keeps_its_count_its_order_and_every_byte_but_the_links(tmp_path: Path, eol: str) -> None:
    envelope = f"From shop@x.example Thu Jan  1 00:00:00 2026{eol}".encode()
    messages = [eml(n, eol=eol) + f"{eol}From the whole team{eol}".encode() for n in range(6)]
    source = tmp_path / "box.mbox"
    source.write_bytes(eol.encode().join(envelope + m for m in messages))
    settings = tmp_path / "settings.json"
    settings.write_text('{"open_tracking": {"enable": false}}')  # no pixel: every change is a link
    proc = run("rewrite", source, "--out", tmp_path / "out", "--settings", settings, "--issued-at", "0")
    assert proc.returncode == 0, proc.stderr
    output = (tmp_path / "out" / "box.mbox").read_bytes()
    found = list(split_mbox(output.splitlines(keepends=True)))
    assert [m.message.split(b"Message-ID: <")[1].split(b"@")[0] for m in found] == [f"m{n}".encode() for n in range(6)]
    restored = _OURS.sub(lambda match: TRACKER.verify(match[0]).url or "", output.decode())
    assert restored.encode() == source.read_bytes()  # outside the rewritten values, byte for byte
    if eol == "\n":  # the stdlib reads the same messages (it splits at every "From " line, so none in the bodies)
        plain = tmp_path / "plain.mbox"
        plain.write_bytes(output.replace(b"From the whole team", b"The whole team"))
        assert len(mailbox.mbox(plain)) == 6


# -- failures ----------------------------------------------------------------------------------------


def test_bad_inputs_are_listed_and_the_good_ones_written(tmp_path: Path) -> None:
    camp = tmp_path / "camp"
    camp.mkdir()
    (camp / "a.eml").write_bytes(eml(1))
    (camp / "b.eml").write_bytes(eml(2, to="one@x.example, two@x.example"))  # whose copy?
    (camp / "c.mbox").write_bytes(b"not an mbox\n")
    (camp / "d.jsonl").write_text(record(1) + "\n{oops\n" + record(3) + "\n")
    (camp / "e.eml").write_bytes(eml(5))
    proc = run("rewrite", camp, tmp_path / "missing.eml", "--out", tmp_path / "out", "--issued-at", "0")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mailtrack rewrite: /")]
    assert [line.split(": ")[1] for line in errors] == [f"{camp}/b.eml", f"{camp}/c.mbox", f"{camp}/d.jsonl line 2",
                                                       f"{tmp_path}/missing.eml"]
    assert "2 To addresses" in errors[0] and "not an mbox" in errors[1] and "not valid JSON" in errors[2]
    assert "no such file" in errors[3]
    assert sorted(files(tmp_path / "out")) == ["camp/a.eml", "camp/d.jsonl", "camp/e.eml"]
    rows = (tmp_path / "out" / "camp" / "d.jsonl").read_text().splitlines()
    assert len(rows) == 3 and "error" in json.loads(rows[1]) and "html" not in json.loads(rows[1])


@pytest.mark.parametrize("args", [
    ["a.html", "b.html"],  # several inputs need --out
    ["camp"],  # a directory needs --out
    ["a.html", "--message-id", "m"],  # one HTML file to stdout needs --recipient
    ["a.html", "--message-id", "m", "--recipient", "r", "--resume"],  # --resume needs --out
    ["camp", "--out", "out", "--issued-at", "2026-01-01T00:00:00"],  # no timezone
    ["camp", "--out", "out", "--issued-at", "yesterday"],
    ["camp", "--out", "out", "--workers", "0"],
    ["camp", "--out", "out", "--workers", "two"],
    ["camp", "--out", "out", "--format", "pdf"],
    ["camp", "other/camp", "--out", "out"],  # both would be written to out/camp
    ["a.html", "--out", "out"],  # HTML needs a recipient
    ["-", "--out", "out"],
])
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "camp").mkdir()
    (tmp_path / "other" / "camp").mkdir(parents=True)
    (tmp_path / "a.html").write_text("<a href='https://x.example/'>x</a>")
    (tmp_path / "b.html").write_text("<p>")
    proc = subprocess.run(command("rewrite", *args), capture_output=True, text=True, env=env(), cwd=tmp_path,
                          timeout=60, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 or proc.stderr.startswith("usage:")  # ours, or argparse's usage and error
    assert not (tmp_path / "out").exists()


def test_dask_without_its_extra_is_a_usage_error(tmp_path: Path) -> None:
    hidden = tmp_path / "hide"
    hidden.mkdir()
    (hidden / "distributed.py").write_text("raise ImportError('not installed (simulated)')\n")  # as if it were absent
    (tmp_path / "camp").mkdir()
    proc = subprocess.run(command("rewrite", tmp_path / "camp", "--out", tmp_path / "out", "--dask", "tcp://127.0.0.1:1"),
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**env(), "PYTHONPATH": os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 2 and "needs mailtrack[dask]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_key_is_a_usage_error_and_never_needed_on_the_command_line(tmp_path: Path) -> None:
    camp = campaign(tmp_path, records=1)
    no_key = {k: v for k, v in env().items() if k != "MAILTRACK_SECRET_KEY"}
    proc = subprocess.run(command("rewrite", camp, "--out", tmp_path / "out"), capture_output=True, text=True,
                          env=no_key, timeout=60, check=False)
    assert proc.returncode == 2 and "--secret-key-file" in proc.stderr and "MAILTRACK_SECRET_KEY" in proc.stderr
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"# newest last\nold\n{KEY}\n")
    proc = subprocess.run(command("rewrite", camp, "--out", tmp_path / "out", "--secret-key-file", keyfile,
                                  "--recipient", "r@x.example"), capture_output=True, text=True, env=no_key, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert verified_urls((tmp_path / "out" / "camp" / "mails" / "0.eml").read_bytes())  # signed with the last key


# -- resume, determinism, summary --------------------------------------------------------------------


def test_resume_skips_complete_outputs(tmp_path: Path) -> None:
    camp = campaign(tmp_path, records=5)
    out = tmp_path / "out"
    args = ["rewrite", camp, "--out", out, "--recipient", "r@x.example", "--issued-at", ISSUED_AT, "--json"]
    first = run(*args)
    assert first.returncode == 0, first.stderr
    (out / "camp" / "mails" / "1.eml").write_bytes(b"left alone by --resume")
    (out / "camp" / "rows.jsonl").unlink()
    resumed = run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert (summary["files"]["complete"], summary["files"]["written"], summary["messages"]) == (5, 1, 5)
    assert (out / "camp" / "mails" / "1.eml").read_bytes() == b"left alone by --resume"
    again = run(*args)  # without --resume every output is written again
    assert json.loads(again.stdout)["files"]["written"] == 6
    assert (out / "camp" / "mails" / "1.eml").read_bytes() != b"left alone by --resume"


def test_one_and_two_workers_write_the_same_bytes(tmp_path: Path) -> None:
    camp = campaign(tmp_path, records=300)
    (camp / "mails" / "no-id.eml").write_bytes(eml(7).replace(b"Message-ID: <m7@x.example>\n", b""))  # gets a stable one
    outputs = []
    for name, workers in (("one", "1"), ("two", "2"), ("again", "2")):
        proc = run("rewrite", camp, "--out", tmp_path / name, "--recipient", "r@x.example", "--issued-at", ISSUED_AT,
                   "--workers", workers)
        assert proc.returncode == 0, proc.stderr
        outputs.append(files(tmp_path / name))
    assert outputs[0] == outputs[1] == outputs[2]


def test_the_json_summary(tmp_path: Path) -> None:
    camp = campaign(tmp_path, records=3)
    (camp / "notes.txt").write_text("not mail")
    (camp / "rows.jsonl").write_text(record(0) + "\n[1, 2]\n")
    proc = run("rewrite", camp, "--out", tmp_path / "out", "--recipient", "r@x.example", "--json")
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert set(summary) == {"messages", "failed", "parts", "links_tracked", "links_skipped", "undecodable_parts",
                            "unencodable_parts", "errors", "seconds", "files", "elapsed_seconds", "messages_per_second",
                            "interrupted"}
    assert (summary["messages"], summary["failed"], summary["parts"], summary["links_tracked"]) == (9, 1, 9, 9)
    assert summary["links_skipped"] == {"scheme": 7}  # the mailto: links of the messages
    assert summary["files"] == {"written": 6, "complete": 0, "ignored": 1}
    assert summary["errors"] == [{"input": f"{camp}/rows.jsonl line 2", "reason": "a record must be a JSON object, not list"}]
    assert summary["interrupted"] is False and summary["messages_per_second"] > 0


# -- stops: SIGKILL and Ctrl-C -----------------------------------------------------------------------


def _slow_campaign(root: Path) -> Path:
    """Small files first (a/), then a JSON lines file that takes seconds (m/), then small files again (z/)."""
    camp = root / "slow"
    (camp / "m").mkdir(parents=True)
    for sub in ("a", "z"):
        (camp / sub).mkdir(parents=True)
        for n in range(10):
            (camp / sub / f"{n}.eml").write_bytes(eml(n))
    links = "".join(f'<tr><td><a href="https://shop.example/item/{i}?src=mail&amp;n={i}">Item {i} — déjà vu</a></td></tr>'
                    for i in range(40))
    html = f"<html><body><table>{links}</table>{'<p>' + 'Lorem ipsum dolor sit amet. ' * 120 + '</p>'}</body></html>"
    (camp / "m" / "m.jsonl").write_text("".join(record(n, html) + "\n" for n in range(3000)))
    return camp


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """The slow campaign and its uninterrupted output."""
    root = tmp_path_factory.mktemp("slow")
    camp = _slow_campaign(root)
    proc = run("rewrite", camp, "--out", root / "reference", "--issued-at", ISSUED_AT, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    return camp, files(root / "reference")


def _descendants(pid: int) -> set[int]:
    """The processes under ``pid`` (its pool, forkserver and their children), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _start(camp: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(command("rewrite", camp, "--out", out, "--issued-at", ISSUED_AT, "--workers", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def _first_files_written(out: Path) -> bool:
    return len(list((out / "slow" / "a").glob("*.eml"))) == 10 if (out / "slow" / "a").is_dir() else False


@pytest.mark.timeout(300)
def test_kill_9_leaves_no_partial_file_and_resume_finishes_the_same(tmp_path: Path,
                                                                     slow: tuple[Path, dict[str, bytes]]) -> None:
    camp, reference = slow
    out = tmp_path / "out"
    proc = _start(camp, out)
    wait_until(lambda: _first_files_written(out), timeout=120, what="the first outputs")
    pool = _descendants(proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (out / "slow" / "m" / "m.jsonl").exists()  # killed while it was being written
    for name, data in files(out).items():
        if Path(name).name.startswith("."):
            assert name.endswith(".mailtrack-tmp")  # a hidden temporary file (only where O_TMPFILE cannot be linked)
        else:
            assert data == reference[name], f"{name} is not whole"
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in pool), timeout=30,
               what="the killed batch's workers to exit")
    resumed = subprocess.run(command("rewrite", camp, "--out", out, "--issued-at", ISSUED_AT, "--workers", "2",
                                     "--resume"), capture_output=True, text=True, env=env(), timeout=240, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert files(out) == reference  # and no temporary file is left


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "gone"


@pytest.mark.timeout(300)
def test_ctrl_c_stops_cleanly(tmp_path: Path, slow: tuple[Path, dict[str, bytes]]) -> None:
    camp, reference = slow
    out = tmp_path / "out"
    proc = _start(camp, out)
    wait_until(lambda: _first_files_written(out), timeout=120, what="the first outputs")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr and "--resume" in stderr
    written = files(out)
    # Stopped mid-run (on a loaded machine the big m.jsonl may be done by then, z/ never is: it comes after it) ...
    assert len(written) < len(reference) and not any(Path(name).name.startswith(".") for name in written)
    assert all(reference[name] == data for name, data in written.items())  # ... and every file there is whole
    resumed = run("rewrite", camp, "--out", out, "--issued-at", ISSUED_AT, "--workers", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert files(out) == reference


# -- the shared corpus -----------------------------------------------------------------------------


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not here")
def test_a_realistic_directory(tmp_path: Path) -> None:
    proc = run("rewrite", CORPUS, "--out", tmp_path / "out", "--recipient", "r@x.example", "--issued-at", ISSUED_AT,
               "--json")
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)
    inputs = [p for p in CORPUS.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts)
              and p.suffix.lower() in (".eml", ".html", ".htm", ".mbox", ".jsonl", ".ndjson")]
    written = files(tmp_path / "out")
    failed = {error["input"] for error in summary["errors"]}
    assert len(written) + len(failed) == len(inputs) == summary["files"]["written"] + len(failed)
    assert all(error["reason"] for error in summary["errors"])
    pages = [data for name, data in written.items() if name.endswith((".html", ".htm"))]
    assert pages and all(verified.recipient == "r@x.example" for data in pages for verified in verified_urls(data))


# -- verify ----------------------------------------------------------------------------------------------


def test_verify_prints_what_a_link_was_signed_for(tmp_path: Path) -> None:
    url = TRACKER.tracking_url("click", message_id="m-7", recipient="ann@x.example", url="https://x.example/a?b=1",
                               link_index=3, metadata={"campaign": "spring"}, issued_at=1_767_225_600)
    proc = run("verify", url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["valid click token", "kind:        click", "destination: https://x.example/a?b=1",
                                        "link index:  3", "message id:  m-7", "recipient:   ann@x.example",
                                        'metadata:    {"campaign": "spring"}', "issued at:   2026-01-01T00:00:00Z"]
    proc = run("verify", url.rsplit("/", 1)[1], "--json")  # a bare token
    assert json.loads(proc.stdout) == {"valid": True, "kind": "click", "url": "https://x.example/a?b=1", "link_index": 3,
                                       "message_id": "m-7", "recipient": "ann@x.example",
                                       "metadata": {"campaign": "spring"}, "tags": [], "issued_at": "2026-01-01T00:00:00Z",
                                       "issued_at_unix": 1_767_225_600}


def test_verify_says_when_a_link_names_no_recipient_and_shows_its_tags() -> None:
    url = TRACKER.tracking_url("open", message_id="digest-9", tags=["weekly", "digest"], issued_at=1_767_225_600)
    proc = run("verify", url)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "recipient:   (none: tracked without a recipient)" in lines and "tags:        weekly, digest" in lines
    as_json = json.loads(run("verify", url, "--json").stdout)
    assert (as_json["recipient"], as_json["tags"]) == (None, ["weekly", "digest"])


def test_verify_refuses_expired_and_invalid_tokens_with_the_reason(tmp_path: Path) -> None:
    click = TRACKER.tracking_url("click", message_id="m", recipient="r", url="https://x.example/", issued_at=1_000_000)
    unsubscribe = TRACKER.tracking_url("unsubscribe", message_id="m", recipient="r", issued_at=1_000_000)
    expired = run("verify", click, "--max-age", "86400")
    assert expired.returncode == 1 and "not valid (expired)" in expired.stderr and expired.stdout == ""
    assert run("verify", unsubscribe, "--max-age", "86400").returncode == 0  # unsubscribe links never expire
    tampered = run("verify", click[:-3] + ("AAA" if not click.endswith("AAA") else "BBB"), "--json")
    assert tampered.returncode == 1 and json.loads(tampered.stdout)["valid"] is False
    assert json.loads(tampered.stdout)["reason"] == "signature" and "Traceback" not in tampered.stderr
    foreign = mailtrack.Tracker(["another-key"], BASE_URL).tracking_url("open", message_id="m", recipient="r")
    assert "not valid (signature)" in run("verify", foreign).stderr
    assert "not valid (not-ours)" in run("verify", "https://elsewhere.example/c/abc.def.ghi", "--base-url",
                                         BASE_URL).stderr
