"""The Django app: add ``"mailtrack.contrib.django"`` to ``INSTALLED_APPS`` and ``manage.py check`` checks the setup.

It has no models and no migrations; it only registers the system checks of
:mod:`mailtrack.contrib.django.checks` (tag ``mailtrack``), so a missing or
wrong ``MAILTRACK`` setting, or tracking URLs not routed where ``BASE_URL``
points, shows up at deploy time instead of as broken links in sent mail.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class MailtrackConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """``mailtrack.contrib.django`` as an installed app (label ``mailtrack``)."""

    name = "mailtrack.contrib.django"
    label = "mailtrack"
    verbose_name = "mailtrack"

    def ready(self) -> None:
        """Register the system checks (once: Django keeps them in a set)."""
        from mailtrack.contrib.django.checks import check_settings, check_urls

        checks.register(check_settings, "mailtrack")
        checks.register(check_urls, "mailtrack", checks.Tags.urls)
