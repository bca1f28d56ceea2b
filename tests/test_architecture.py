"""The architecture holds: types, lint, import direction, and a core that loads no adapter.

Run by the test command, so a change that breaks any of them fails CI:
``mypy --strict`` (the package ships py.typed), ruff, import-linter's
contracts in pyproject.toml (dependencies point inward; the core imports only
the stdlib, itsdangerous, idna and cryptography), and a fresh interpreter that imports
mailtrack and rewrites a message without loading sqlite3, an HTTP server or
any adapter package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.path_independent  # static: reads the source
def test_mypy_strict() -> None:
    api = pytest.importorskip("mypy.api")
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "mailtrack")])
    assert status == 0, stdout + stderr


@pytest.mark.path_independent  # static: reads the source
def test_ruff_is_clean() -> None:
    ruff = BIN / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [str(ruff), "check", "mailtrack", "tests", "benchmarks", "tasks.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.path_independent  # static: reads the source
def test_import_contracts_are_kept() -> None:
    lint_imports = BIN / "lint-imports"
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and "broken" in result.stdout and " 0 broken" in result.stdout, result.stdout + result.stderr


_PROBE = """
import json, sys
import mailtrack
tracker = mailtrack.Tracker(["k" * 32], "https://t.example.com")
tracker.rewrite_html('<a href="https://example.com/">x</a>', message_id="m", recipient="r@example.com")
tracker.rewrite_text("see https://example.com/", message_id="m", recipient="r@example.com")
tracker.rewrite_message(b"To: r@example.com\\nMessage-ID: <m@x>\\nContent-Type: text/html\\n\\n<a href='https://e.x/'>x</a>\\n")
print(json.dumps(sorted(sys.modules)))
"""

#: What a program that only rewrites must never load.
ADAPTERS = (
    "sqlite3", "waitress", "socketserver", "http.server", "wsgiref", "urllib.request",
    "mailtrack.events", "mailtrack.storage", "mailtrack.delivery", "mailtrack.http", "mailtrack.cli",
    "mailtrack.contrib", "mailtrack.service", "mailtrack.config", "mailtrack.wsgi",
)


def test_import_and_rewrite_load_no_adapter() -> None:
    result = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout)
    offenders = [name for name in loaded if name in ADAPTERS or name.startswith(tuple(a + "." for a in ADAPTERS))]
    assert offenders == []


def test_adapter_names_resolve_lazily_from_the_package() -> None:
    probe = (
        "import sys, mailtrack; before = 'sqlite3' in sys.modules; store = mailtrack.SQLiteStore; "
        "print(before, 'sqlite3' in sys.modules, store.__module__)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True", "mailtrack.storage.sqlite"]


def test_cryptography_loads_with_the_first_opaque_token_not_with_the_package() -> None:
    """``cryptography``'s OpenSSL bindings cost tens of milliseconds: ``import mailtrack`` and building a Tracker
    do not pay them; the first opaque token issued (or verified) does."""
    probe = (
        "import sys, mailtrack; a = 'cryptography' in sys.modules; t = mailtrack.Tracker(['k'], 'https://t.example.com'); "
        "b = 'cryptography' in sys.modules; t.tracking_url('open', message_id='m'); print(a, b, 'cryptography' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False", "True"]


def test_every_public_name_resolves() -> None:
    import mailtrack

    missing = [name for name in mailtrack.__all__ if getattr(mailtrack, name, None) is None]
    assert missing == []
    with pytest.raises(AttributeError):
        mailtrack.NoSuchThing  # noqa: B018


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("mailtrack.webhook", "mailtrack.delivery.webhooks"),
        ("mailtrack.web", "mailtrack.http.endpoints"),
        ("mailtrack.store", "mailtrack.storage.sqlite"),
        ("mailtrack.tokens", "mailtrack.core.tokens"),
        ("mailtrack.mime", "mailtrack.core.mime"),
        ("mailtrack.exc", "mailtrack.exceptions"),
    ],
)
def test_module_paths_of_0_1_still_import_as_the_same_module(old: str, new: str) -> None:
    import importlib

    alias, real = importlib.import_module(old), importlib.import_module(new)
    assert alias is real and real.__spec__ is not None and real.__spec__.name == new


def test_documented_entry_points_still_work() -> None:
    from mailtrack.web import Endpoints
    from mailtrack.webhook import verify_signature

    import mailtrack

    assert Endpoints is mailtrack.Endpoints and verify_signature is mailtrack.verify_signature
    result = subprocess.run(
        [sys.executable, "-c", "from mailtrack.wsgi import application; print(callable(application))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip() == "True"


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant in ``path`` that is not a docstring, with its line."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_event_names_are_spelled_only_in_events_py() -> None:
    from mailtrack.events import EventType

    names = {member.value for member in EventType}
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {value[:60]!r}"
        for path in sorted((ROOT / "mailtrack").rglob("*.py")) if path.name != "events.py"
        for line, value in _string_literals(path)
        if value in names or any(f"'{name}'" in value or f"email.{name}" in value for name in names)
    ]
    assert offenders == []


def test_docstrings_name_modules_by_their_current_paths() -> None:
    import re

    from mailtrack._legacy import ALIASES

    old = re.compile(r"(?<![\w.])(" + "|".join(re.escape(name) for name in ALIASES) + r")\b(?![\w])")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}"
        for path in sorted((ROOT / "mailtrack").rglob("*.py")) if path.name != "_legacy.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if old.search(line)
    ]
    assert offenders == []
