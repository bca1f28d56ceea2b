"""A minimal project using mailtrack: every email Django sends is tracked, then printed by the console backend.

In production ``MAILTRACK["BACKEND"]`` names the backend that really sends
(``django.core.mail.backends.smtp.EmailBackend``, or a provider's) and
``BASE_URL`` is the public address where ``project/urls.py`` serves the
tracking URLs.
"""

from __future__ import annotations

DEBUG = True
SECRET_KEY = "example-only-not-secret"  # the tracking URLs are signed with it (or MAILTRACK["SECRET_KEYS"])
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "project.urls"
USE_TZ = True
INSTALLED_APPS = [
    "mailtrack.contrib.django",  # manage.py check checks the setup below
    "shop",
]
DEFAULT_FROM_EMAIL = "shop@example.com"

EMAIL_BACKEND = "mailtrack.contrib.django.TrackingEmailBackend"
MAILTRACK = {
    "BACKEND": "django.core.mail.backends.console.EmailBackend",
    "BASE_URL": "http://localhost:8000/t",
}
