"""tasks.py's Chromium set-up for the dashboard's browser test: which commands it runs, and why it runs none."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tasks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan(tasks: ModuleType, **changes: object) -> tuple[list[list[str]], str | None]:
    given: dict[str, object] = {"present": False, "apt_get": "/usr/bin/apt-get", "root": True, "ci": False,
                                "sudo": None, "lists_know_chromium": True}
    return tasks.chromium_install_plan(**{**given, **changes})  # type: ignore[no-any-return]


def test_nothing_to_do_when_chromium_is_there(tasks: ModuleType) -> None:
    assert plan(tasks, present=True, apt_get=None, root=False) == ([], None)


def test_root_installs_and_updates_the_lists_only_when_they_do_not_know_chromium(tasks: ModuleType) -> None:
    assert plan(tasks) == ([["/usr/bin/apt-get", "install", "-y", "chromium"]], None)
    assert plan(tasks, lists_know_chromium=False) == (
        [["/usr/bin/apt-get", "update"], ["/usr/bin/apt-get", "install", "-y", "chromium"]], None)


def test_ci_without_root_uses_sudo_without_a_password_prompt(tasks: ModuleType) -> None:
    commands, reason = plan(tasks, root=False, ci=True, sudo="/usr/bin/sudo")
    assert reason is None and commands == [["/usr/bin/sudo", "-n", "/usr/bin/apt-get", "install", "-y", "chromium"]]


@pytest.mark.parametrize(("changes", "words"), [
    ({"apt_get": None}, "no apt-get"),
    ({"root": False}, "as root"),
    ({"root": False, "ci": True, "sudo": None}, "as root"),
])
def test_no_install_possible_gives_the_reason_the_browser_test_will_show(
        tasks: ModuleType, changes: dict[str, object], words: str) -> None:
    commands, reason = plan(tasks, **changes)
    assert commands == [] and reason is not None and words in reason and "/usr/bin/chromium" in reason


def test_ensure_chromium_on_this_machine_finds_it_or_says_why(tasks: ModuleType) -> None:
    """Runs the real check; with Chromium installed it is a no-op returning None (no command is run)."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("/usr/bin/chromium is missing here; ensure_chromium would try to install it")
    assert tasks.ensure_chromium() is None
