"""Where no C compiler works, the build warns and installs the pure-Python package (issue 13): nothing fails.

The project's own ``setup.py build_ext --inplace`` (the step an editable install, ``pip install -e .``, runs
too) on a copy of the tree, with ``CC=false``: the compiler fails on both tries (OpenSSL's SHA-256, then the
portable one). Every other test runs on a build with gcc (``pip install -e .``). Before ``optional=True``,
setuptools then tried to copy the missing ``.so`` and failed, and with it ``pip install -e .`` and
``python3 tasks.py`` on a machine without gcc.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, mailtrack
tracker = mailtrack.Tracker(secret_keys=["k"], base_url="https://t.example.com")
result = tracker.rewrite_html('<p><a href="https://example.com/a">a</a></p>', message_id="m1",
                              recipient="r@example.com", issued_at=1_795_000_000)
print(json.dumps({"file": mailtrack.__file__, "compiled": mailtrack.speedups_enabled(), "html": result.html}))
"""


def _copy(target: Path) -> Path:
    tree = target / "src"
    shutil.copytree(ROOT / "mailtrack", tree / "mailtrack", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, tree / name)
    return tree


def _probe(folder: Path, **env: str) -> dict[str, object]:
    environment = {key: value for key, value in os.environ.items() if key != "MAILTRACK_PURE"}
    environment.update(PYTHONPATH=str(folder), **env)
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=folder, env=environment, capture_output=True, text=True,
                          timeout=120, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_build_without_a_working_compiler_warns_and_leaves_the_pure_package(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    env = {**os.environ, "CC": "false"}
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mailtrack's C speedups could not be built" in done.stderr
    assert "installing the pure-Python package" in done.stderr
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    assert not list((tree / "mailtrack" / "core").glob("_speedups*" + suffix))

    seen = _probe(tree)
    assert seen["file"] == str(tree / "mailtrack" / "__init__.py")
    assert seen["compiled"] is False  # no MAILTRACK_PURE: the extension is simply not there
    # the same document as the checkout's own pure path writes
    reference = _probe(ROOT, MAILTRACK_PURE="1")
    assert reference["compiled"] is False and seen["html"] == reference["html"]
    assert "https://t.example.com/" in str(seen["html"])

