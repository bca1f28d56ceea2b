"""The processes ``mailtrack serve`` runs freeze their startup heap (:mod:`mailtrack.storage.heap`): the uvicorn
server once started, the waitress server before its loop, the SQLite writer process once its store is open. Each
runs in its own Python process here (freezing pytest's own heap would change every other test's), and says what it
sees from inside: the frozen count, and that a cycle made later is still collected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: ASGI's lifespan for the apps below, which have nothing to start or stop (prepended to their code).
_LIFESPAN = textwrap.dedent("""
    async def lifespan(receive, send):
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
""")

_SERVER = _LIFESPAN + textwrap.dedent("""
    import gc, json, signal, sys, threading, urllib.request, weakref
    kind, freeze = sys.argv[1], sys.argv[2] == "freeze"
    # The waitress case stops itself with SIGINT, which a process started in the background of a shell without job
    # control (CI run with `&`) inherits as ignored: this program, like `mailtrack serve`, restores Python's handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def probe():
        class Node:
            pass
        node = Node()
        node.me = node  # a cycle made after the freeze: the collector must still free it
        ref = weakref.ref(node)
        del node
        gc.collect()
        return {"frozen": gc.get_freeze_count(), "cycle_freed": ref() is None, "enabled": gc.isenabled()}

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        body = json.dumps(probe()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def wsgi(environ, start_response):
        body = json.dumps(probe()).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    before = gc.get_freeze_count()
    if kind == "uvicorn":
        from mailtrack.http import loop_server
        listener = loop_server.bind("127.0.0.1", 0)
        server = loop_server.create(asgi, sockets=[listener])
        port = listener.getsockname()[1]
        stop = server.stop
    else:
        from mailtrack.http import server as tuned
        server = tuned.create(wsgi, threads=2, max_body=1 << 16, host="127.0.0.1", port=0)
        port = server.effective_port
        def stop():
            raise_in_main.set()
        raise_in_main = threading.Event()

    def client():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            print(json.dumps({"before": before, "seen": json.loads(answer.read())}), flush=True)
        if kind == "uvicorn":
            stop()
        else:
            import os, signal
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=client, daemon=True).start()
    if kind == "uvicorn":
        server.run(freeze=freeze)
    else:
        try:
            tuned.run(server, freeze=freeze)
        except KeyboardInterrupt:
            pass
""")


def _run(code: str, *args: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("{"))
    return dict(json.loads(line))


@pytest.mark.parametrize("kind", ["uvicorn", "waitress"])
def test_the_server_freezes_its_startup_heap_and_still_collects_what_it_makes_later(kind: str) -> None:
    if kind == "uvicorn":
        pytest.importorskip("uvicorn")
    else:
        pytest.importorskip("waitress")
    seen = _run(_SERVER, kind, "freeze")
    assert seen["before"] == 0  # nothing frozen at import: only a started server freezes
    inside = seen["seen"]
    assert isinstance(inside, dict)
    assert inside["frozen"] > 5_000  # the interpreter, mailtrack's modules and the server's, frozen while serving
    assert inside["cycle_freed"] is True and inside["enabled"] is True


@pytest.mark.parametrize("kind", ["uvicorn", "waitress"])
def test_a_server_embedded_by_another_program_leaves_its_collector_alone(kind: str) -> None:
    pytest.importorskip(kind)
    inside = _run(_SERVER, kind, "no")["seen"]
    assert isinstance(inside, dict) and inside["frozen"] == 0 and inside["cycle_freed"] is True


_WATCH = textwrap.dedent("""
    # sitecustomize of the test: in every Python process started with it, a thread writes the frozen count to
    # $MAILTRACK_TEST_FREEZE_DIR/<pid> once the process has frozen its heap
    import gc, os, threading, time

    def watch():
        while not gc.get_freeze_count():
            time.sleep(0.05)
        path = os.path.join(os.environ["MAILTRACK_TEST_FREEZE_DIR"], str(os.getpid()))
        with open(path + ".tmp", "w") as out:
            out.write(str(gc.get_freeze_count()))
        os.replace(path + ".tmp", path)  # whole, never seen half written

    if os.environ.get("MAILTRACK_TEST_FREEZE_DIR"):
        threading.Thread(target=watch, daemon=True).start()
""")


@pytest.mark.parametrize("server", ["uvicorn", "waitress"])
def test_mailtrack_serve_and_its_writer_process_run_frozen(tmp_path: Path, server: str) -> None:
    """A real ``mailtrack serve``: its own process freezes its heap once serving, and so does its SQLite writer
    process (uvicorn, the default ``--writer process``); seen from inside each by a watching thread."""
    pytest.importorskip(server)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WATCH, encoding="utf-8")
    seen = tmp_path / "seen"
    seen.mkdir()
    env = dict(os.environ, MAILTRACK_TEST_FREEZE_DIR=str(seen), PYTHONPATH=os.pathsep.join(
        filter(None, [str(site), str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "mailtrack", "serve", "--db", str(tmp_path / "events.sqlite"),
                             "--secret-key", "k", "--base-url", "https://t.example.com", "--port", "0",
                             "--server", server], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "serving" in proc.stdout.readline()
        wanted = 2 if server == "uvicorn" else 1  # the server, and its writer process (started with the service)
        deadline = time.monotonic() + 30
        while len(list(seen.glob("[0-9]*[0-9]"))) < wanted and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        counts = {int(path.name): int(path.read_text()) for path in seen.glob("[0-9]*[0-9]")}
        assert proc.pid in counts, (counts, proc.pid)
        assert len(counts) >= wanted and all(count > 5_000 for count in counts.values()), counts
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]


def test_the_writer_process_freezes_once_its_store_is_open(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import gc, json, sys
        from mailtrack.storage.writer_process import _Child
        child = _Child(sys.argv[1], 5.0, 0.0)
        before = gc.get_freeze_count()
        child.store()
        print(json.dumps({"before": before, "after": gc.get_freeze_count()}))
    """)
    seen = _run(code, str(tmp_path / "events.sqlite"))
    assert seen["before"] == 0
    assert isinstance(seen["after"], int) and seen["after"] > 5_000


def test_import_and_a_rewrite_freeze_nothing() -> None:
    """A library: ``import mailtrack`` and its work never touch the caller's collector."""
    code = textwrap.dedent("""
        import gc, json
        import mailtrack
        tracker = mailtrack.Tracker(secret_keys=["k"], base_url="https://t.example.com")
        tracker.rewrite_html('<a href="https://e.com/">x</a>', message_id="m", recipient="a@example.com")
        print(json.dumps({"frozen": gc.get_freeze_count()}))
    """)
    assert _run(code)["frozen"] == 0


def test_freeze_heap_leaves_a_disabled_collector_alone() -> None:
    code = textwrap.dedent("""
        import gc, json
        from mailtrack.storage.heap import freeze_heap
        gc.disable()
        print(json.dumps({"returned": freeze_heap(), "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
    """)
    assert _run(code) == {"returned": 0, "frozen": 0, "enabled": False}


def test_a_request_leaves_no_reference_cycle_for_the_collector() -> None:
    """Every request on ``mailtrack serve``'s server is freed by reference counting alone: the client-gone
    extension once made each request a cycle (request -> scope -> closure -> request), a dozen objects a request
    left to the cyclic collector, whose collections stop the loop. The collector is off here, so any cycle a
    request makes stays until the count."""
    code = _LIFESPAN + textwrap.dedent("""
        import gc, http.client, json, sys, threading
        gc.disable()
        from mailtrack.http import loop_server
        from mailtrack.http.asgi import CLIENT_GONE

        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                return await lifespan(receive, send)
            await receive()
            gone = scope["extensions"][CLIENT_GONE]["gone"]()
            body = b"gone" if gone else b"here"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        listener = loop_server.bind("127.0.0.1", 0)
        server = loop_server.create(app, sockets=[listener])

        def client():
            connection = http.client.HTTPConnection("127.0.0.1", listener.getsockname()[1], timeout=30)
            def get():
                connection.request("GET", "/o/x")
                return connection.getresponse().read()
            get()
            gc.collect()  # what starting up left
            bodies = {get() for _ in range(300)}
            print(json.dumps({"bodies": sorted(b.decode() for b in bodies), "unreachable": gc.collect()}), flush=True)
            server.stop()

        threading.Thread(target=client, daemon=True).start()
        server.run()
    """)
    seen = _run(code)
    assert seen["bodies"] == ["here"]  # the extension still answers
    unreachable = seen["unreachable"]
    assert isinstance(unreachable, int) and unreachable < 100, unreachable  # 300 requests: was 4,198
