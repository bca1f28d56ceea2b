"""The URLconf of the Django tests: the tracking URLs mounted under ``/t/``."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("t/", include("mailtrack.contrib.django.urls"))]
