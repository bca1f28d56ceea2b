"""Django integration: the tracking email backend, the tracking URLs and the ``tracking`` signal (issue 9).

``EMAIL_BACKEND = "mailtrack.contrib.django.TrackingEmailBackend"`` tracks
what Django sends; ``path("t/", include("mailtrack.contrib.django.urls"))``
serves the tracking URLs; :data:`~mailtrack.contrib.django.signals.tracking`
tells your code about every event.
"""

from __future__ import annotations

from mailtrack.contrib.django.backend import TrackingEmailBackend

__all__ = ["TrackingEmailBackend"]
