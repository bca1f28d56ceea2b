"""``path("t/", include("mailtrack.contrib.django.urls"))``: the pixel, click and unsubscribe URLs.

Mount it where ``MAILTRACK["BASE_URL"]`` points (``https://example.com/t``
here): the endpoints match the full request path against that URL's path.
"""

from __future__ import annotations

from django.urls import re_path

from mailtrack.contrib.django.views import track

app_name = "mailtrack"

urlpatterns = [re_path(r"^(?P<rest>.*)$", track, name="track")]
