"""``tracking``: the signal every open, click and unsubscribe is sent as, like django-anymail's ``tracking``.

Receivers take ``sender`` (the :class:`~mailtrack.contrib.django.views.TrackingView`
class), ``event`` (a :class:`~mailtrack.events.TrackingEvent`) and, as anymail
sends it, ``esp_name`` (``"mailtrack"``). It is sent
with ``send_robust`` from the recorder's background thread: a receiver that
raises is logged to the ``mailtrack`` logger and never breaks a response.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["tracking"]

tracking = Signal()
