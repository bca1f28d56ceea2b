"""Run the compiled path's differential tests and fuzz run under AddressSanitizer and UBSan (issue 13, CI).

Steps, each timed, any failure fatal (exit status 1):

1. Copy ``mailtrack/`` (without any built ``.so``), ``setup.py``, ``pyproject.toml`` and ``README.md``
   into a temporary folder and build the extension in place there with the project's own
   ``setup.py build_ext --inplace`` (so whatever sources it lists today are built), with
   ``CC=gcc`` and :data:`CFLAGS` (``-fsanitize=address,undefined -fno-omit-frame-pointer
   -fno-sanitize-recover=undefined -O1 -g -fno-wrapv``): the tree's own ``.so`` is never touched. The build must leave a ``.so`` that calls the
   sanitizers' runtimes (``__asan_``/``__ubsan_`` symbols), since ``OptionalBuildExt`` turns a failed
   build into a warning.
2. A self-check that the sanitizers are live: a throwaway extension compiled the same way reads past
   a heap buffer (AddressSanitizer must report ``heap-buffer-overflow``) and overflows a signed int
   (UBSan must report it), while its in-bounds calls run clean.
3. ``pytest`` on ``tests/unit/core/test_speedups.py``, ``test_speedups_lines.py`` and the compiled half of every module using the
   ``both_paths`` fixture (their pure half calls no C, and is deselected), from the temporary folder (first on ``sys.path``: ``python -m`` puts the working folder there, and
   setuptools' editable finder only answers after it), with a plugin that fails the run unless
   ``mailtrack`` and ``mailtrack.core._speedups`` were imported from the temporary folder. Each hypothesis
   test there draws ``MAILTRACK_SANITIZE_EXAMPLES`` (default 0.3) of its own ``max_examples``, at least 10:
   the main pass runs the full budget on the same build without sanitizers, and step 4 gives the compiled
   path its large budget under them; at the full budget this step alone took 21 of CI's 30 minutes on a
   slow host (1,261 s, 2026-12-02), which pushed the whole CI run to 36.
4. The differential fuzz run (``tests/support/fuzz.py``) for ``--fuzz-seconds`` against the same build.

Every process runs with ``LD_PRELOAD`` of gcc's ``libasan`` (CPython is not built with it, and the
runtime must come first), ``PYTHONMALLOC=malloc`` (so ASan sees Python's own allocations, which pymalloc
would hide), ``ASAN_OPTIONS=detect_leaks=0`` (CPython keeps objects alive until exit by design) and
``UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1``. ASan writes its reports to files in a log folder
(``log_path``), counted after each step, so a report from any process (a test's subprocess too) fails the
job; gcc's UBSan ignores ``log_path`` beside ASan and prints to stderr, which is scanned for reports, and
``halt_on_error`` makes any process it reports in exit non-zero. The self-check proves both routes.

Without gcc, gcc's ``libasan`` or the Python headers the job prints ``SKIPPED`` and the reason, and
exits 0. ``python3 tasks.py test`` runs it alongside the test suite; alone:
``python tests/support/sanitize.py [--fuzz-seconds N] [--keep]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

__all__ = ["CFLAGS", "ROOT", "build_in_place", "main", "reports", "sanitizer_env", "toolchain"]

ROOT = Path(__file__).resolve().parents[2]
SANITIZERS = "-fsanitize=address,undefined"
#: How the extension is compiled for the job. ``-fno-wrapv`` undoes the ``-fwrapv`` that Python's own CFLAGS put
#: first, which defines signed overflow and so switches off UBSan's signed-integer-overflow check.
CFLAGS = f"{SANITIZERS} -fno-omit-frame-pointer -fno-sanitize-recover=undefined -O1 -g -fno-wrapv"
#: What a sanitizer prints when it finds something (UBSan ignores ``log_path`` beside ASan: it writes to stderr).
MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")
#: The differential test module that calls the extension directly; the ``both_paths`` modules are found.
#: The compiled functions' own differential tests (the scanner, signers, splice, QP; the MIME line map and base64).
SPEEDUPS_TESTS = ("tests/unit/core/test_speedups.py", "tests/unit/core/test_speedups_lines.py")

CANARY_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

/* read(n, i): byte i of an n-byte heap buffer (i = n reads one past its end). */
static PyObject *canary_read(PyObject *self, PyObject *args) {
    Py_ssize_t n, i;
    if (!PyArg_ParseTuple(args, "nn", &n, &i)) return NULL;
    char *buffer = malloc(n);
    if (buffer == NULL) return PyErr_NoMemory();
    memset(buffer, 7, n);
    volatile char value = buffer[i];
    free(buffer);
    return PyLong_FromLong(value);
}

/* add(a, b): a + b in C int (INT_MAX + 1 is undefined behaviour). */
static PyObject *canary_add(PyObject *self, PyObject *args) {
    int a, b;
    if (!PyArg_ParseTuple(args, "ii", &a, &b)) return NULL;
    volatile int sum = a + b;
    return PyLong_FromLong(sum);
}

static PyMethodDef methods[] = {
    {"read", canary_read, METH_VARARGS, NULL},
    {"add", canary_add, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_canary", NULL, -1, methods};
PyMODINIT_FUNC PyInit__canary(void) { return PyModule_Create(&module); }
"""

CANARY_SETUP = """from setuptools import Extension, setup
setup(name="canary", version="0", ext_modules=[Extension("_canary", sources=["_canary.c"])])
"""

PROBE_PLUGIN = '''"""pytest plugin (sanitize.py): fail unless mailtrack and its extension come from MAILTRACK_SANITIZE_DIR."""
import os
from pathlib import Path

import pytest


def pytest_configure(config):
    import mailtrack
    from mailtrack.core import _speedups, speedups

    expected = Path(os.environ["MAILTRACK_SANITIZE_DIR"]).resolve()
    for name, where in (("mailtrack", mailtrack.__file__), ("mailtrack.core._speedups", _speedups.__file__)):
        if not Path(where).resolve().is_relative_to(expected):
            raise pytest.UsageError(f"{name} was imported from {where}, not from the sanitizer build in {expected}")
    if speedups.compiled is not _speedups:
        raise pytest.UsageError("the compiled path is off (MAILTRACK_PURE?): nothing would run under the sanitizers")


def pytest_collection_modifyitems(config, items):
    """The both_paths modules' pure runs call no C: deselected here, they would only be slow under the sanitizers.

    Every hypothesis test left draws MAILTRACK_SANITIZE_EXAMPLES of its max_examples (at least 10): the main pass
    runs the full budget on this build's sources without sanitizers, and the fuzz run that follows runs long.
    """
    pure = {id(item) for item in items if getattr(getattr(item, "callspec", None), "params", {}).get("both_paths") == "pure"}
    if pure:
        config.hook.pytest_deselected(items=[item for item in items if id(item) in pure])
        items[:] = [item for item in items if id(item) not in pure]
    share = float(os.environ.get("MAILTRACK_SANITIZE_EXAMPLES", "0.3"))
    if share >= 1:
        return
    from hypothesis import settings

    scaled = set()
    for item in items:
        test = getattr(item, "obj", None)
        test = getattr(test, "__func__", test)
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is None or id(test) in scaled:
            continue
        scaled.add(id(test))
        examples = min(current.max_examples, max(10, round(current.max_examples * share)))
        test._hypothesis_internal_use_settings = settings(current, max_examples=examples)


def pytest_report_header(config):
    from mailtrack.core import _speedups

    return f"sanitizer build: {_speedups.__file__}"
'''


def say(line: str) -> None:
    print(f"sanitize: {line}", flush=True)


def toolchain() -> tuple[str, str] | str:
    """``(gcc, libasan)``, or the reason the job cannot run here."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return "gcc is not installed"
    found = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(found) or not os.path.exists(found):
        return f"gcc has no AddressSanitizer runtime (gcc -print-file-name=libasan.so: {found!r}; apt-get install libasan8)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"the Python headers are not installed ({include}/Python.h)"
    return gcc, os.path.realpath(found)


def sanitizer_env(libasan: str, logs: Path, **extra: str) -> dict[str, str]:
    """The environment of every process of the job: the runtime preloaded, reports written under ``logs``."""
    env = {key: value for key, value in os.environ.items() if key != "MAILTRACK_PURE"}
    preload = env.get("LD_PRELOAD", "")
    env.update(
        LD_PRELOAD=f"{libasan} {preload}".strip(),
        PYTHONMALLOC="malloc",
        ASAN_OPTIONS=f"detect_leaks=0:log_path={logs / 'asan'}",
        UBSAN_OPTIONS=f"print_stacktrace=1:halt_on_error=1:log_path={logs / 'ubsan'}",
        PYTHONDONTWRITEBYTECODE="1",
        **extra,
    )
    return env


def reports(logs: Path) -> list[Path]:
    """The sanitizer report files written under ``logs`` so far."""
    return sorted(path for path in logs.glob("*san.*") if path.is_file())


def build_in_place(folder: Path, gcc: str) -> subprocess.CompletedProcess[str]:
    """``setup.py build_ext --inplace`` in ``folder`` with gcc and :data:`CFLAGS` (the runtime not preloaded)."""
    env = {**os.environ, "CC": gcc, "CFLAGS": CFLAGS, "LDFLAGS": SANITIZERS}
    env.pop("LD_PRELOAD", None)
    return subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "--force"], cwd=folder, env=env,
                          capture_output=True, text=True)


def _built(folder: Path, name: str) -> Path | None:
    """The extension module ``name`` (a dotted path under ``folder``) when it was built with the sanitizers."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    path = folder.joinpath(*name.split(".")).with_name(name.rsplit(".", 1)[-1] + suffix)
    if not path.is_file():
        return None
    data = path.read_bytes()
    return path if b"__asan_" in data and b"__ubsan_handle_" in data else None


class JobFailed(Exception):
    """A step failed: the message says which and why."""


#: The longest a step may take (the sanitizer build is slow, so the tests' own timeouts are off: see ``job``).
STEP_TIMEOUT = 45 * 60


def run_teeing(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, int]:
    """Run ``command``, its stderr copied to ours; its exit status and how many sanitizer reports its stderr held.

    Killed (exit status -9) after :data:`STEP_TIMEOUT` seconds.
    """
    import threading

    process = subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    assert process.stderr is not None
    timer = threading.Timer(STEP_TIMEOUT, process.kill)
    timer.start()
    found = 0
    try:
        for line in process.stderr:
            sys.stderr.write(line)
            found += any(marker in line for marker in MARKERS[:2])
        sys.stderr.flush()
        return process.wait(), found
    finally:
        timer.cancel()


def _check_clean(logs: Path, step: str, on_stderr: int) -> None:
    found = reports(logs)
    for path in found:
        print(f"---- {path.name}\n{path.read_text(errors='replace')}", flush=True)
    if found or on_stderr:
        raise JobFailed(f"{step}: {len(found)} sanitizer report file(s), {on_stderr} report(s) on stderr")


def self_check(work: Path, gcc: str, libasan: str) -> None:
    """The sanitizers are live: the canary's out-of-bounds read and signed overflow are reported, in the log folder."""
    canary = work / "canary"
    canary.mkdir()
    (canary / "_canary.c").write_text(CANARY_C)
    (canary / "setup.py").write_text(CANARY_SETUP)
    done = build_in_place(canary, gcc)
    if _built(canary, "_canary") is None:
        raise JobFailed(f"the canary extension did not build with the sanitizers:\n{done.stdout}{done.stderr}")
    cases = [
        ("in bounds", "assert _canary.read(8, 7) == 7 and _canary.add(1, 2) == 3", None),
        ("heap overflow", "_canary.read(8, 8)", "AddressSanitizer: heap-buffer-overflow"),
        ("signed overflow", "_canary.add(2147483647, 1)", "runtime error: signed integer overflow"),
    ]
    for n, (label, code, wanted) in enumerate(cases):
        logs = work / f"canary-logs-{n}"
        logs.mkdir()
        run = subprocess.run([sys.executable, "-c", f"import _canary; {code}"], cwd=canary, capture_output=True,
                             text=True, env=sanitizer_env(libasan, logs))
        text = "".join(path.read_text(errors="replace") for path in reports(logs)) + run.stderr
        if wanted is None and (run.returncode != 0 or any(marker in text for marker in MARKERS)):
            raise JobFailed(f"self-check ({label}): the clean call failed ({run.returncode}): {run.stderr}{text}")
        if wanted is not None and (run.returncode == 0 or wanted not in text):
            raise JobFailed(f"self-check ({label}): not reported (exit {run.returncode}; wanted {wanted!r})"
                            f"\nstderr: {run.stderr}\nreports: {text}")
        if wanted is not None:
            say(f"self-check: {label} reported ({wanted})")


def both_paths_modules() -> list[str]:
    """The test modules that run on both scanner paths (``pytestmark = pytest.mark.usefixtures("both_paths")``)."""
    pattern = re.compile(r"usefixtures\(\s*[\"']both_paths[\"']")
    return sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")
                  if pattern.search(path.read_text(encoding="utf-8")))


def job(work: Path, fuzz_seconds: float, pytest_args: list[str]) -> None:
    """Steps 1-4 of the module docstring in ``work``; JobFailed at the first that fails."""
    found = toolchain()
    assert not isinstance(found, str)
    gcc, libasan = found
    say(f"gcc {gcc}, runtime {libasan}, CFLAGS {CFLAGS}, in {work}")

    started = time.monotonic()
    build = work / "build"
    shutil.copytree(ROOT / "mailtrack", build / "mailtrack",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, build / name)
    done = build_in_place(build, gcc)
    extension = _built(build, "mailtrack.core._speedups")
    if extension is None:
        raise JobFailed(f"the extension did not build with the sanitizers:\n{done.stdout}{done.stderr}")
    say(f"built {extension} ({time.monotonic() - started:.0f}s)")

    started = time.monotonic()
    self_check(work, gcc, libasan)
    say(f"self-check passed: the sanitizers report and the reports are collected ({time.monotonic() - started:.0f}s)")

    logs = work / "logs"
    logs.mkdir()
    (build / "mailtrack_sanitize_probe.py").write_text(PROBE_PLUGIN)
    env = sanitizer_env(libasan, logs, PYTHONPATH=str(build), MAILTRACK_SANITIZE_DIR=str(build),
                        MYPY_CACHE_DIR=str(work / "mypy-cache"))
    modules = [*SPEEDUPS_TESTS, *both_paths_modules()]
    started = time.monotonic()
    say(f"pytest {' '.join(modules)}")
    # -p no:timeout: the tests' own time limits (test_linear_time's 60 s per megabyte) are for the normal build;
    # under ASan, PYTHONMALLOC=malloc and a loaded CI machine they fail for no fault of the code (STEP_TIMEOUT holds).
    status, on_stderr = run_teeing([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:timeout", "-p",
                                    "mailtrack_sanitize_probe", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                                    "--basetemp", str(work / "pytest"), *[str(ROOT / m) for m in modules], *pytest_args],
                                   build, env)
    _check_clean(logs, "the differential tests", on_stderr)
    if status != 0:
        raise JobFailed(f"the differential tests failed under the sanitizers (pytest exit {status})")
    say(f"differential tests passed under the sanitizers, 0 reports ({time.monotonic() - started:.0f}s)")

    started = time.monotonic()
    status, on_stderr = run_teeing([sys.executable, str(ROOT / "tests" / "support" / "fuzz.py"),
                                    "--seconds", str(fuzz_seconds), "--expect-dir", str(build)], build, env)
    _check_clean(logs, "the fuzz run", on_stderr)
    if status != 0:
        raise JobFailed(f"the fuzz run failed under the sanitizers (exit {status})")
    say(f"fuzz run passed under the sanitizers, 0 reports ({time.monotonic() - started:.0f}s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz-seconds", type=float, default=float(os.environ.get("MAILTRACK_FUZZ_SECONDS", "300")),
                        help="how long the fuzz run lasts (default: $MAILTRACK_FUZZ_SECONDS or 300)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for the pytest run")
    args = parser.parse_args(argv)
    found = toolchain()
    if isinstance(found, str):
        say(f"SKIPPED: {found}")
        return 0
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mailtrack-sanitize-"))
    try:
        job(work, args.fuzz_seconds, args.pytest_args)
    except JobFailed as failure:
        say(f"FAILED after {time.monotonic() - started:.0f}s: {failure}")
        return 1
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say(f"passed in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
