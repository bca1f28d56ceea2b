"""The tracking URLs at the path of ``MAILTRACK["BASE_URL"]`` (``/t/``)."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("t/", include("mailtrack.contrib.django.urls"))]
