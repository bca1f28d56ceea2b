"""The examples run as their READMEs say: ``examples/django_project`` checks clean and sends tracked mail."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parents[2]
DJANGO_PROJECT = ROOT / "examples" / "django_project"
SEPARATOR = "\n" + "-" * 79 + "\n"


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` in the example project, with this repository's mailtrack importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=DJANGO_PROJECT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.timeout(300)
def test_django_example_runs() -> None:
    check = manage("check")
    assert check.returncode == 0, check.stderr
    assert "no issues" in check.stdout

    sent = manage("send_tracked_email")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.rstrip().endswith("sent 1 message(s) to 2 recipient(s)")
    # The console backend prints each copy followed by a line of 79 dashes: one copy per recipient.
    printed = [chunk for chunk in sent.stdout.split(SEPARATOR) if re.search(r"^Subject: ", chunk, re.MULTILINE)]
    assert len(printed) == 2
    pixels = set()
    for raw in printed:
        parsed = email.message_from_string(raw, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        assert parsed["To"] == "ann@example.com, bob@example.com"
        html = parsed.get_body(("html",))
        assert html is not None
        content = html.get_content()
        assert 'href="https://example.com/' not in content
        assert len(re.findall(r'href="http://localhost:8000/t/c/[^"]+"', content)) == 2
        pixels.update(re.findall(r'src="(http://localhost:8000/t/o/[^"]+)"', content))
    assert len(pixels) == 2  # each copy's pixel names its own recipient
