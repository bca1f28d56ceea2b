"""Django integration: the tracking email backend, the tracking URLs and the ``tracking`` signal (issue 9).

``EMAIL_BACKEND = "mailtrack.contrib.django.TrackingEmailBackend"`` (or, on
Django 6.1+, a ``MAILERS`` entry with that ``BACKEND`` and ``OPTIONS``
``{"mailer": <the mailer that sends>}``) tracks what Django sends; ``path("t/", include("mailtrack.contrib.django.urls"))``
serves the tracking URLs; :data:`~mailtrack.contrib.django.signals.tracking`
tells your code about every event. With ``"mailtrack.contrib.django"`` in
``INSTALLED_APPS``, ``manage.py check`` checks all of that is set up
(:mod:`mailtrack.contrib.django.checks`).
"""

from __future__ import annotations

from mailtrack.contrib.django.backend import TrackingEmailBackend

__all__ = ["TrackingEmailBackend"]
