#!/usr/bin/env python3
"""Set up and run mailtrack with nothing but Python 3.10+.

    python3 tasks.py demo    # make .venv, install mailtrack, run the end-to-end demo
    python3 tasks.py test    # make .venv, install mailtrack[test] (Debian's Chromium, and PostgreSQL when root or CI, when missing; uWSGI built when it can be), run the whole test suite twice (compiled and pure path) and the sanitizer job, side by side
    python3 tasks.py bench   # make .venv, install mailtrack[bench], run the seven benchmarks (rewrite, message, serve, pathological, batch, events_api, webhooks)
    python3 tasks.py mutate  # make .venv, install mailtrack[mutation,test], mutation-test the core modules
    python3 tasks.py test-django  # only the Django tests, under each Django of the matrix (also the end of `test`)

Extra arguments go to the command run (pytest, the demo, the benchmark). For
``bench`` they all go to benchmarks/bench_rewrite.py, and ``--quick`` (or ``--help``) to
benchmarks/bench_message.py, bench_serve.py, bench_pathological.py, bench_batch.py, bench_events_api.py and bench_webhooks.py as well (their other options,
such as ``--out``, would clash); ``bench rewrite ARGS...``, ``bench message ARGS...``,
``bench serve ARGS...``, ``bench pathological ARGS...``, ``bench batch ARGS...``, ``bench events_api ARGS...`` or ``bench webhooks ARGS...`` runs just that one benchmark
with all the arguments (``bench batch --messages 100000`` for the issue's full figure).

``test`` first makes sure Debian's Chromium is at ``/usr/bin/chromium`` for the
dashboard's browser test (Playwright drives it; Playwright's own browser
downloads are never used): when it is missing and ``apt-get`` exists, it runs
``apt-get install -y chromium`` as root, or through ``sudo -n`` when ``CI`` is
set (``apt-get update`` first when the package lists do not know chromium). A
failed install prints one line, and the browser test is skipped with that reason
(``MAILTRACK_CHROMIUM_MISSING``).

``test`` runs three things side by side (CI's time is 2 cores): the whole suite on the compiled path in
the foreground; the whole suite again with ``MAILTRACK_PURE=1`` (the pure-Python path) in the background;
and, in the background too, ``tests/support/sanitize.py``: the C extension built again into a temporary
folder with gcc's AddressSanitizer and UBSan (checked live on a throwaway extension's deliberate
out-of-bounds read and signed overflow), then ``tests/unit/core/test_speedups.py``, the compiled half of
the ``both_paths`` modules and a 300 s differential fuzz run (``MAILTRACK_FUZZ_SECONDS``) against that
build; skipped, saying why, without gcc or its libasan. Each background run has its own ``TMPDIR``,
``--basetemp`` and mypy/ruff caches, and its output is printed when the foreground run ends, then a table
of each part's status and wall time. Extra arguments to ``test`` go to the foreground pytest alone, and
then neither background run starts.

``test`` also runs ``test-django`` (in the background once the sanitizer job
is over; after the main pass when given arguments): the Django test files alone, once per
entry of ``DJANGO_MATRIX`` (Django 4.2 on this Python, Django 6.1 on Python
3.12+), each in its own ``.venv-django<NN>/`` made once and reused (ignored by
git). An entry whose Python cannot be found is skipped with a line saying so;
extra arguments go to each of those pytest runs when run alone.

``mutate`` runs mutmut as ``[tool.mutmut]`` in pyproject.toml configures it (the
modules, and the fast unit tests run against each mutant), niced and one mutant
at a time unless ``--max-children N`` is given, then prints killed/total per
module. Arguments go to ``mutmut run`` (e.g. mutant names to re-run some);
``mutmut results`` and ``mutmut show NAME`` (in .venv/bin) list and show the
survivors. Mutants are written to ``mutants/`` (ignored by git).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
EXTRAS = {"demo": "[serve]", "test": "[test,serve]", "bench": "[bench,test,serve]", "mutate": "[mutation,test,serve]"}
BENCHMARKS = {
    "rewrite": "benchmarks/bench_rewrite.py",
    "message": "benchmarks/bench_message.py",
    "serve": "benchmarks/bench_serve.py",
    "pathological": "benchmarks/bench_pathological.py",
    "batch": "benchmarks/bench_batch.py",
    "events_api": "benchmarks/bench_events_api.py",
    "webhooks": "benchmarks/bench_webhooks.py",
}

# The Django test files, run again under each Django of the matrix (the main run uses the newest that installs).
DJANGO_TESTS = [
    "tests/integration/test_django_backend.py",
    "tests/integration/test_django_messages.py",
    "tests/integration/test_django_checks.py",
    "tests/integration/test_django_mailers.py",
    "tests/integration/test_examples.py",
]
# (venv directory, pip requirement, minimum Python, Python executables to try when the current one is too old)
DJANGO_MATRIX = [
    (".venv-django42", "django>=4.2,<5.0", (3, 10), ()),
    (".venv-django61", "django>=6.1,<6.2", (3, 12), ("python3.12", "python3.13", "python3.14")),
]


def postgres_installed() -> bool:
    """Whether initdb and pg_ctl are on PATH or in Debian's /usr/lib/postgresql/*/bin."""
    import glob

    return all(shutil.which(name) or glob.glob(f"/usr/lib/postgresql/*/bin/{name}") for name in ("initdb", "pg_ctl"))


def ensure_postgres() -> None:
    """Install Debian's ``postgresql`` package for the PostgreSQL store tests when it is missing.

    Only as root or in CI (``CI=true``, with sudo when not root), and only with apt-get; otherwise, or when the
    install fails, the PostgreSQL tests skip with the reason (tests/conftest.py). The tests start their own
    throwaway cluster (initdb/pg_ctl in a temporary directory), never the system's.
    """
    if postgres_installed() or not shutil.which("apt-get"):
        return
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not root and os.environ.get("CI") != "true":
        print("+ PostgreSQL is not installed: its store tests will be skipped (apt-get install postgresql)", flush=True)
        return
    sudo = [] if root else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([*sudo, "apt-get", "update", "-q"], [*sudo, "apt-get", "install", "-y", "-q", "postgresql"]):
        print("+", " ".join(command), flush=True)
        try:
            failed = subprocess.run(command, env=env, timeout=900).returncode != 0
        except (OSError, subprocess.TimeoutExpired):
            failed = True
        if failed:
            print("+ could not install PostgreSQL: its store tests will be skipped", flush=True)
            return


def ensure_uwsgi() -> None:
    """Build uWSGI into the venv (``pip install uwsgi``: needs a C compiler and Python's headers) for the test that
    runs the WSGI entry point under a real uWSGI; when it cannot be built, that test skips and says why."""
    if (PYTHON.parent / "uwsgi").is_file():
        return
    print("+ installing uWSGI (built from source) for the uWSGI test", flush=True)
    try:
        failed = subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                 "uwsgi>=2.0"], cwd=ROOT, timeout=900).returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        failed = True
    if failed:
        print("+ could not build uWSGI: the uWSGI test will be skipped", flush=True)


def run(*args: str | os.PathLike[str]) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def ensure_venv(extra: str) -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 - tasks.py runs under any python3 to say this
        sys.exit(f"mailtrack needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"+ creating {VENV}", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except Exception as exc:  # e.g. Debian's python3 without python3-venv
            sys.exit(f"could not create a virtual environment ({exc}); install your Python's venv/ensurepip support")
    stamp = VENV / f".installed{extra or '[]'}"
    pyproject = ROOT / "pyproject.toml"
    if not stamp.exists() or stamp.stat().st_mtime < pyproject.stat().st_mtime:
        run(PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f".{extra}")
        stamp.touch()


def find_python(minimum: tuple[int, int], candidates: tuple[str, ...]) -> str | None:
    """This Python when new enough, else the first of ``candidates`` on PATH (or pyenv's) that is; None if none is."""
    if sys.version_info >= minimum:
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for name in candidates:
        found = [shutil.which(name), *sorted(pyenv.glob(f"*/bin/{name}"), reverse=True)]
        for path in found:
            if path is None:
                continue
            probe = subprocess.run([str(path), "-c", f"import sys, venv; print(sys.version_info[:2] >= {minimum!r})"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == "True":
                return str(path)
    return None


CHROMIUM = Path("/usr/bin/chromium")
#: Set for the test run when Chromium could not be installed: the reason the browser test is skipped.
CHROMIUM_MISSING = "MAILTRACK_CHROMIUM_MISSING"


def chromium_install_plan(*, present: bool, apt_get: str | None, root: bool, ci: bool, sudo: str | None,
                          lists_know_chromium: bool) -> tuple[list[list[str]], str | None]:
    """The commands that install Debian's Chromium, or why none can (``([], reason)``); ``([], None)``: present."""
    if present:
        return [], None
    if apt_get is None:
        return [], f"{CHROMIUM} is missing and there is no apt-get to install it (install Chromium yourself)"
    if root:
        prefix: list[str] = []
    elif ci and sudo is not None:
        prefix = [sudo, "-n"]
    else:
        return [], f"{CHROMIUM} is missing; run `apt-get install chromium` as root (tasks.py does it as root or in CI)"
    update = [] if lists_know_chromium else [[*prefix, apt_get, "update"]]
    return [*update, [*prefix, apt_get, "install", "-y", "chromium"]], None


def ensure_chromium() -> str | None:
    """Install Debian's Chromium when missing and possible; None when it is there, else the reason it is not."""
    apt_get = shutil.which("apt-get")
    known = False
    if apt_get is not None and not CHROMIUM.exists():
        policy = subprocess.run(["apt-cache", "policy", "chromium"], capture_output=True, text=True, check=False)
        known = policy.returncode == 0 and "Candidate:" in policy.stdout and "Candidate: (none)" not in policy.stdout
    commands, reason = chromium_install_plan(
        present=CHROMIUM.exists(), apt_get=apt_get, root=hasattr(os, "geteuid") and os.geteuid() == 0,
        ci=bool(os.environ.get("CI")), sudo=shutil.which("sudo"), lists_know_chromium=known)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in commands:
        print("+", " ".join(command), flush=True)
        done = subprocess.run(command, cwd=ROOT, env=environment, check=False, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            reason = f"`{' '.join(command)}` failed ({done.returncode}: {last})"
            break
    if reason is None and not CHROMIUM.exists():
        reason = f"{CHROMIUM} is still missing after installing the chromium package"
    if reason is not None:
        print(f"tasks.py: no Chromium for the dashboard's browser test, which will be skipped: {reason}", flush=True)
    return reason


def ensure_django_venv(directory: str, requirement: str, python: str) -> Path:
    """``directory``'s venv with ``-e .[test]`` and ``requirement``, installed once (again when either changes)."""
    root = ROOT / directory
    bindir = root / ("Scripts" if os.name == "nt" else "bin")
    interpreter = bindir / ("python.exe" if os.name == "nt" else "python")
    if not interpreter.exists():
        print(f"+ creating {root} with {python}", flush=True)
        run(python, "-m", "venv", root)
    stamp = root / ".installed-test"
    wanted = requirement + "\n"
    pyproject = ROOT / "pyproject.toml"
    if not stamp.exists() or stamp.stat().st_mtime < pyproject.stat().st_mtime or stamp.read_text() != wanted:
        run(interpreter, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", ".[test]", requirement)
        stamp.write_text(wanted)
    return interpreter


def test_django(rest: list[str]) -> int:
    """The Django test files under each Django of the matrix; the first failing run's exit status, else 0."""
    status = 0
    for directory, requirement, minimum, candidates in DJANGO_MATRIX:
        python = find_python(minimum, candidates)
        if python is None:
            wanted = ".".join(map(str, minimum))
            print(f"SKIPPED {requirement}: needs Python >= {wanted}, none found ({', '.join(candidates)})", flush=True)
            continue
        started = time.monotonic()
        try:
            interpreter = ensure_django_venv(directory, requirement, python)
            run(interpreter, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DJANGO_TESTS, *rest)
        except subprocess.CalledProcessError as exc:
            status = status or exc.returncode
            print(f"FAILED {requirement} ({time.monotonic() - started:.0f}s)", flush=True)
        else:
            print(f"passed {requirement} ({time.monotonic() - started:.0f}s)", flush=True)
    return status


#: The sanitizer job: the compiled path's differential tests and fuzz run under ASan and UBSan (issue 13).
SANITIZE = "tests/support/sanitize.py"


class Part:
    """One of the test runs that ``test`` starts side by side: its own temporary folder and log, in its own session."""

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        import tempfile

        self.name = name
        self.tmp = Path(tempfile.mkdtemp(prefix=f"mailtrack-ci-{name}-"))
        self.command = [arg.replace("{tmp}", str(self.tmp)) for arg in command]
        self.tmp.chmod(0o755)  # the PostgreSQL cluster (as user postgres) lives under it
        self.log = self.tmp / "output.log"
        self.env = {**os.environ, **(env or {}), "TMPDIR": str(self.tmp), "MYPY_CACHE_DIR": str(self.tmp / "mypy"),
                    "RUFF_CACHE_DIR": str(self.tmp / "ruff")}
        self.started = time.monotonic()
        self.seconds = 0.0
        self.status: int | None = None
        print(f"+ [{name}, in the background, log {self.log}]", " ".join(self.command), flush=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        import threading

        def timed() -> None:  # its own wall time, not the time until the foreground run is over
            self.process.wait()
            self.seconds = time.monotonic() - self.started

        threading.Thread(target=timed, daemon=True).start()

    def wait(self) -> int:
        """Wait for the run, print its output, remove its folder; its exit status."""
        self.status = self.process.wait()
        while not self.seconds:  # the thread that timed it is about to set it
            time.sleep(0.01)
        print(f"\n======== {self.name}: exit {self.status} after {self.seconds:.0f}s; its output:", flush=True)
        sys.stdout.flush()
        with self.log.open("rb") as log:
            shutil.copyfileobj(log, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.status

    def stop(self) -> None:
        """End the run and everything it started (its own session)."""
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def test(rest: list[str]) -> int:
    """The whole suite on the compiled path, the whole suite on the pure path, the sanitizer job, and test-django.

    The pure pass (``MAILTRACK_PURE=1``) and the sanitizer job run in the background while the main pass runs in
    the foreground, each with a temporary folder of its own (``TMPDIR``, pytest's ``--basetemp``, the mypy and
    ruff caches; servers and the PostgreSQL cluster take free ports), so that the three fit well within CI's
    time on two cores. test-django starts in the background as soon as the sanitizer job is over (it mostly
    installs the matrix's Djangos on a fresh clone: three minutes that no longer come after the rest). With
    extra arguments only the main pass runs, with them (then test-django).
    """
    import threading

    started = time.monotonic()
    parts: list[Part] = []
    django: list[Part] = []
    starter: threading.Thread | None = None
    stopping = threading.Event()  # set when the run ends early: test-django is then not started
    if not rest and os.name == "posix":
        parts.append(Part("pure", [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                                   "{tmp}/pytest"], {"MAILTRACK_PURE": "1", "MAILTRACK_SPLIT_PASS": "pure"}))
        sanitize = Part("sanitize", [str(PYTHON), SANITIZE])
        parts.append(sanitize)

        def start_django() -> None:
            sanitize.process.wait()
            if not stopping.is_set():
                django.append(Part("django", [sys.executable, str(ROOT / "tasks.py"), "test-django"]))

        starter = threading.Thread(target=start_django, daemon=True)
        starter.start()
    main_status = 0
    main_started = time.monotonic()
    try:
        print("+", PYTHON, "-m", "pytest", *rest, flush=True)
        # With the pure pass beside it, the main pass leaves the both_paths modules' pure half to it (tests/conftest.py)
        split = {**os.environ, "MAILTRACK_SPLIT_PASS": "main"} if parts else None
        main_status = subprocess.run([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT, env=split).returncode
        main_seconds = time.monotonic() - main_started
        statuses = [part.wait() for part in parts]
        if starter is not None:
            starter.join()
            django_status = django[0].wait() if django else 1  # (1: the thread could not start it)
            django_seconds = django[0].seconds if django else 0.0
        else:
            django_started = time.monotonic()
            django_status = test_django([])
            django_seconds = time.monotonic() - django_started
    finally:
        stopping.set()
        for part in parts:
            part.stop()
        if starter is not None:
            starter.join(timeout=60)  # (the sanitizer job was just stopped: a django part, if any, exists by now)
        for part in django:
            part.stop()
    rows = [("main pass (compiled path)", main_status, main_seconds)]
    rows += [(f"{part.name} {'pass (MAILTRACK_PURE=1)' if part.name == 'pure' else 'job (ASan+UBSan, fuzz)'}",
              status, part.seconds) for part, status in zip(parts, statuses, strict=True)]
    rows.append(("test-django", django_status, django_seconds))
    print("\ntasks.py test:", flush=True)
    for label, status, seconds in rows:
        print(f"  {label:<36} {'ok' if status == 0 else f'FAILED ({status})':<12} {seconds:6.0f}s", flush=True)
    print(f"  {'total':<36} {'':<12} {time.monotonic() - started:6.0f}s", flush=True)
    return next((status for _, status, _ in rows if status != 0), 0)


def mutation_scores(results: str) -> dict[str, tuple[int, int]]:
    """``{module: (killed, total)}`` from ``mutmut results --all true`` lines (``name: status``).

    A mutant counts as killed when a test failed (``killed``) or hung (``timeout``);
    ``survived``, ``no tests`` and the rest are not.
    """
    scores: dict[str, tuple[int, int]] = {}
    for line in results.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        # mailtrack.core.tokens.x_check_claims__mutmut_3, mailtrack.core.tokens.xǁTokenCodecǁloads__mutmut_4
        module = name.split("__mutmut_")[0].rsplit(".", 1)[0]
        killed, total = scores.get(module, (0, 0))
        scores[module] = (killed + (status in ("killed", "timeout")), total + 1)
    return scores


def mutate(rest: list[str]) -> None:
    mutmut = BIN / "mutmut"
    nice = ["nice"] if os.name != "nt" else []
    limit = [] if any(arg.startswith("--max-children") for arg in rest) else ["--max-children", "1"]
    run(*nice, mutmut, "run", *limit, *rest)
    results = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    print("\n| module | killed / total | score |\n|---|---|---|")
    for module, (killed, total) in sorted(mutation_scores(results).items()):
        print(f"| {module} | {killed} / {total} | {100 * killed / total:.1f}% |")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "test-django":
        return test_django(argv[1:])
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_venv(EXTRAS[command])
    try:
        if command == "demo":
            run(PYTHON, "-m", "mailtrack", "demo", *rest)
        elif command == "test":
            ensure_postgres()
            if os.name == "posix":
                ensure_uwsgi()
            missing = ensure_chromium()
            if missing is not None:
                os.environ[CHROMIUM_MISSING] = missing  # the browser test's skip reason
            return test(rest)
        elif command == "mutate":
            mutate(rest)
        elif rest and rest[0] in BENCHMARKS:
            run(PYTHON, BENCHMARKS[rest[0]], *rest[1:])
        else:
            run(PYTHON, BENCHMARKS["rewrite"], *rest)
            passed_on = [arg for arg in rest if arg in ("--quick", "-h", "--help")]
            run(PYTHON, BENCHMARKS["message"], *passed_on)
            run(PYTHON, BENCHMARKS["serve"], *passed_on)
            run(PYTHON, BENCHMARKS["pathological"], *passed_on)
            run(PYTHON, BENCHMARKS["batch"], *passed_on)
            run(PYTHON, BENCHMARKS["events_api"], *passed_on)
            run(PYTHON, BENCHMARKS["webhooks"], *passed_on)
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
