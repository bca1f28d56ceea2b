"""The Job: validated when made, plain data that pickles, a fixed signing time, secrets kept out of its repr."""

from __future__ import annotations

import pickle
import time
from datetime import datetime, timezone

import pytest

from mailtrack import ArgumentError, ConfigurationError, SettingsError
from mailtrack.batch import Job, issued_at_seconds

BASE = "https://t.example.com/"


def test_a_job_pickles_and_builds_equal_trackers() -> None:
    job = Job(secret_keys=["old", "new"], base_url=BASE, settings={"click_tracking": {"enable_text": True}},
              metadata={"campaign": "spring"}, issued_at=1_767_225_600, recipient="r@x.example")
    copy = pickle.loads(pickle.dumps(job))
    assert copy == job and copy.secret_keys == ("old", "new") and copy.base_url == "https://t.example.com"
    html = '<a href="https://x.example/">x</a>'
    first, second = (j.tracker().rewrite_html(html, message_id="m", recipient="r", issued_at=j.issued_at).html
                     for j in (job, copy))
    assert first == second


def test_issued_at_defaults_to_when_the_job_is_made_and_stays() -> None:
    before = int(time.time())
    job = Job(secret_keys=("k",), base_url=BASE)
    assert before <= job.issued_at <= int(time.time()) + 1
    assert pickle.loads(pickle.dumps(job)).issued_at == job.issued_at
    assert issued_at_seconds(datetime(2026, 1, 1, tzinfo=timezone.utc)) == 1_767_225_600


def test_the_repr_hides_the_keys() -> None:
    job = Job(secret_keys=("s3cret-key",), base_url=BASE)
    assert "s3cret" not in repr(job) and "<1 key>" in repr(job)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"secret_keys": ()}, ConfigurationError),
    ({"secret_keys": "k"}, ConfigurationError),
    ({"base_url": "ftp://x"}, ConfigurationError),
    ({"settings": {"click_tracking": {"enable": "yes"}}}, SettingsError),
    ({"metadata": {"x": object()}}, ArgumentError),
    ({"metadata": ["not", "an", "object"]}, ArgumentError),
    ({"issued_at": -1}, ArgumentError),
    ({"issued_at": datetime(2026, 1, 1)}, ArgumentError),
    ({"recipient": " "}, ArgumentError),
    ({"encoding": "no-such-codec"}, ArgumentError),
    ({"force": "yes"}, ArgumentError),
])
def test_bad_values_are_refused_when_the_job_is_made(kwargs: dict[str, object], error: type[Exception]) -> None:
    values: dict[str, object] = {"secret_keys": ("k",), "base_url": BASE, **kwargs}
    with pytest.raises(error):
        Job(**values)  # type: ignore[arg-type]


def test_its_dicts_are_private_copies() -> None:
    metadata = {"campaign": "spring"}
    job = Job(secret_keys=("k",), base_url=BASE, metadata=metadata)
    metadata["campaign"] = "changed"
    assert job.metadata == {"campaign": "spring"}
