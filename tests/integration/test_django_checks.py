"""``manage.py check`` for the Django integration (issue 9): the ``mailtrack.*`` system checks.

The app (``"mailtrack.contrib.django"`` in ``INSTALLED_APPS``) registers them;
each test changes the settings with ``override_settings`` and looks only at the
messages whose id starts with ``mailtrack.``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from support.django_settings import configure

pytest.importorskip("django")

from django.core.checks import Error, Warning, run_checks  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import SystemCheckError  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.urls import include, path  # noqa: E402

APP = "mailtrack.contrib.django"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
GOOD = {"BACKEND": LOCMEM, "BASE_URL": "http://testserver/t"}


def _other(request: Any) -> HttpResponse:
    return HttpResponse("not tracking")


class TrackingAtTrack:
    """A URLconf with the tracking URLs under ``/track/`` and nothing under ``/t/``."""

    urlpatterns = [path("track/", include("mailtrack.contrib.django.urls"))]


class CatchAll:
    """A URLconf whose catch-all view takes ``/t/o/x`` before any tracking URL could."""

    urlpatterns = [path("<path:anything>", _other)]


@pytest.fixture(scope="module", autouse=True)
def django_settings() -> Iterator[None]:
    configure()
    with override_settings(INSTALLED_APPS=[APP]):
        yield


def mailtrack_messages(**settings: Any) -> list[Any]:
    """The ``mailtrack.*`` check messages under ``settings`` (tag ``mailtrack``: Django's own URL checks raise on a broken URLconf)."""
    with override_settings(**settings):
        return [message for message in run_checks(tags=["mailtrack"]) if str(message.id).startswith("mailtrack.")]


def only(messages: list[Any]) -> Any:
    assert len(messages) == 1, messages
    return messages[0]


def test_valid_setup_routed_at_base_url_passes_every_check() -> None:
    assert mailtrack_messages(MAILTRACK=GOOD) == []


def test_valid_setup_passes_manage_py_check() -> None:
    out = io.StringIO()
    with override_settings(MAILTRACK=GOOD):
        call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


def test_missing_mailtrack_setting_is_e001_with_an_example() -> None:
    message = only(mailtrack_messages(MAILTRACK=None))
    assert isinstance(message, Error) and message.id == "mailtrack.E001"
    assert "missing" in message.msg and "BASE_URL" in message.hint


def test_mailtrack_setting_that_is_not_a_dict_is_e001() -> None:
    assert only(mailtrack_messages(MAILTRACK=["BASE_URL"])).id == "mailtrack.E001"


def test_missing_base_url_is_e002() -> None:
    message = only(mailtrack_messages(MAILTRACK={"BACKEND": LOCMEM}))
    assert isinstance(message, Error) and message.id == "mailtrack.E002"
    assert "mailtrack.contrib.django.urls" in message.hint


def test_backend_that_is_the_tracking_backend_itself_is_e003() -> None:
    message = only(mailtrack_messages(MAILTRACK={**GOOD, "BACKEND": "mailtrack.contrib.django.TrackingEmailBackend"}))
    assert isinstance(message, Error) and message.id == "mailtrack.E003"
    assert "EMAIL_BACKEND" in message.hint


def test_invalid_setting_is_e004_with_the_configuration_error_message() -> None:
    message = only(mailtrack_messages(MAILTRACK={**GOOD, "SPLIT_RECIPIENTS": "yes"}))
    assert isinstance(message, Error) and message.id == "mailtrack.E004"
    assert "MAILTRACK['SPLIT_RECIPIENTS'] must be True or False" in message.msg


def test_token_format_is_opaque_by_default_and_a_bad_one_is_e004() -> None:
    from mailtrack.contrib.django.conf import load

    for given, expected in ((None, "opaque"), ("signed", "signed"), ("opaque", "opaque")):
        with override_settings(MAILTRACK=GOOD if given is None else {**GOOD, "TOKEN_FORMAT": given}):
            assert load().tracker.codec.token_format == expected
    message = only(mailtrack_messages(MAILTRACK={**GOOD, "TOKEN_FORMAT": "encrypted"}))
    assert message.id == "mailtrack.E004" and "MAILTRACK['TOKEN_FORMAT'] must be one of opaque, signed" in message.msg


def test_unknown_key_is_e004() -> None:
    message = only(mailtrack_messages(MAILTRACK={**GOOD, "BASEURL": "x"}))
    assert message.id == "mailtrack.E004" and "BASEURL" in message.msg


def test_base_url_whose_path_is_not_routed_is_e005_naming_the_path() -> None:
    message = only(mailtrack_messages(MAILTRACK={**GOOD, "BASE_URL": "http://testserver/elsewhere"}))
    assert isinstance(message, Error) and message.id == "mailtrack.E005"
    assert "'/elsewhere'" in message.msg and "path('elsewhere/', include('mailtrack.contrib.django.urls'))" in message.hint


def test_tracking_urls_mounted_at_another_path_than_base_url_is_e005() -> None:
    assert only(mailtrack_messages(MAILTRACK=GOOD, ROOT_URLCONF=TrackingAtTrack)).id == "mailtrack.E005"
    assert mailtrack_messages(MAILTRACK={**GOOD, "BASE_URL": "https://example.com/track/"},
                              ROOT_URLCONF=TrackingAtTrack) == []


def test_a_project_served_under_force_script_name_is_checked_below_it() -> None:
    """With FORCE_SCRIPT_NAME = "/app" a request for /app/t/o/x reaches the URLconf as t/o/x: that is what is routed."""
    assert mailtrack_messages(MAILTRACK={**GOOD, "BASE_URL": "http://testserver/app/t"}, FORCE_SCRIPT_NAME="/app") == []
    message = only(mailtrack_messages(MAILTRACK={**GOOD, "BASE_URL": "http://testserver/app/x"}, FORCE_SCRIPT_NAME="/app/"))
    assert message.id == "mailtrack.E005" and "path('x/', include('mailtrack.contrib.django.urls'))" in message.hint


def test_base_url_routed_to_another_view_is_e005_naming_that_view() -> None:
    message = only(mailtrack_messages(MAILTRACK=GOOD, ROOT_URLCONF=CatchAll))
    assert message.id == "mailtrack.E005" and "_other" in message.msg


def test_root_urlconf_that_cannot_be_imported_is_a_warning_w001() -> None:
    message = only(mailtrack_messages(MAILTRACK=GOOD, ROOT_URLCONF="support.no_such_urlconf"))
    assert isinstance(message, Warning) and not isinstance(message, Error)
    assert message.id == "mailtrack.W001" and "support.no_such_urlconf" in message.msg


def test_manage_py_check_fails_on_a_mailtrack_error() -> None:
    with override_settings(MAILTRACK=None), pytest.raises(SystemCheckError, match="mailtrack.E001"):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


def test_checks_are_silent_when_the_app_is_not_installed() -> None:
    assert mailtrack_messages(MAILTRACK=None, INSTALLED_APPS=[]) == []


# The MAILERS form (Django 6.1+): a tracking mailer wraps the mailer its OPTIONS name.
TRACKING = "mailtrack.contrib.django.TrackingEmailBackend"
MAILERS_GOOD = {"default": {"BACKEND": TRACKING, "OPTIONS": {"mailer": "sender"}}, "sender": {"BACKEND": LOCMEM}}
needs_mailers = pytest.mark.skipif(not hasattr(__import__("django.core.mail").core.mail, "mailers"),
                                   reason="MAILERS is new in Django 6.1")


def with_default(**options: Any) -> dict[str, Any]:
    return {**MAILERS_GOOD, "default": {"BACKEND": TRACKING, "OPTIONS": options}}


@needs_mailers
def test_valid_mailers_setup_passes_every_check() -> None:
    assert mailtrack_messages(MAILERS=MAILERS_GOOD, MAILTRACK={"BASE_URL": "http://testserver/t"}) == []


@needs_mailers
def test_mailers_setup_without_base_url_is_e002() -> None:
    message = only(mailtrack_messages(MAILERS=MAILERS_GOOD, MAILTRACK={"SPLIT_RECIPIENTS": False}))
    assert message.id == "mailtrack.E002"


@needs_mailers
def test_mailtrack_backend_left_over_with_mailers_is_e008() -> None:
    message = only(mailtrack_messages(MAILERS=MAILERS_GOOD, MAILTRACK=GOOD))
    assert isinstance(message, Error) and message.id == "mailtrack.E008"
    assert "OPTIONS['mailer']" in message.hint


@needs_mailers
def test_tracking_mailer_naming_no_mailer_is_e006() -> None:
    message = only(mailtrack_messages(MAILERS=with_default(), MAILTRACK={"BASE_URL": "http://testserver/t"}))
    assert isinstance(message, Error) and message.id == "mailtrack.E006"
    assert "MAILERS['default']" in message.msg and "'mailer': 'smtp'" in message.hint


@needs_mailers
def test_tracking_mailer_naming_an_unknown_alias_is_e007_listing_the_aliases() -> None:
    message = only(mailtrack_messages(MAILERS=with_default(mailer="smtp"), MAILTRACK={"BASE_URL": "http://testserver/t"}))
    assert isinstance(message, Error) and message.id == "mailtrack.E007"
    assert "'smtp', which is not in MAILERS" in message.msg and "'sender'" in message.hint


@needs_mailers
def test_tracking_mailer_wrapping_itself_or_another_tracking_mailer_is_e003() -> None:
    itself = only(mailtrack_messages(MAILERS=with_default(mailer="default"), MAILTRACK={"BASE_URL": "http://testserver/t"}))
    assert itself.id == "mailtrack.E003" and "itself" in itself.msg
    both = {**with_default(mailer="other"), "other": {"BACKEND": TRACKING, "OPTIONS": {"mailer": "default"}}}
    messages = mailtrack_messages(MAILERS=both, MAILTRACK={"BASE_URL": "http://testserver/t"})
    assert [m.id for m in messages] == ["mailtrack.E003", "mailtrack.E003"]
    assert "another tracking mailer" in messages[0].msg


@needs_mailers
def test_tracking_mailer_with_unknown_or_invalid_options_is_e004() -> None:
    unknown = only(mailtrack_messages(MAILERS=with_default(mailer="sender", host="x"), MAILTRACK={"BASE_URL": "http://testserver/t"}))
    assert unknown.id == "mailtrack.E004" and "unknown OPTIONS host" in unknown.msg
    invalid = only(mailtrack_messages(MAILERS=with_default(mailer="sender", split_recipients="no"),
                                      MAILTRACK={"BASE_URL": "http://testserver/t"}))
    assert invalid.id == "mailtrack.E004" and "MAILERS['default'] OPTIONS['split_recipients']" in invalid.msg
