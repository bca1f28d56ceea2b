"""The tracking view: Django's request in, :class:`~mailtrack.http.endpoints.Endpoints` answers, Django's response out.

Everything the endpoints do (verify, redirect, pixel, unsubscribe page,
record) is shared with the WSGI server; this module only translates. The
endpoints are built on first use from ``settings.MAILTRACK`` (and built again
when a test overrides it): with ``DB`` events go to the SQLite store and then to
the :data:`~mailtrack.contrib.django.signals.tracking` signal, without it to the
signal only; ``PRIVACY_IP`` and ``PRIVACY_USER_AGENT`` (privacy mode, see
:mod:`mailtrack.delivery.privacy`) reduce them before either sees them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from mailtrack.contrib.django.conf import load
from mailtrack.contrib.django.signals import tracking
from mailtrack.delivery.recorder import Recorder
from mailtrack.events import CallbackSink, TrackingEvent
from mailtrack.http.endpoints import Endpoints
from mailtrack.http.messages import Request, Response, too_large

__all__ = ["TrackingView", "endpoints", "reset"]

log = logging.getLogger("mailtrack")
_lock = threading.Lock()
_built: Endpoints | None = None


def _send_signal(event: TrackingEvent) -> None:
    for receiver, result in tracking.send_robust(sender=TrackingView, event=event, esp_name="mailtrack"):
        if isinstance(result, Exception):
            log.error("mailtrack: tracking signal receiver %r raised", receiver, exc_info=result)


def endpoints() -> Endpoints:
    """The endpoints for ``settings.MAILTRACK``, built once (a bad setting raises ConfigurationError here)."""
    global _built
    with _lock:
        if _built is None:
            config = load()
            store = None
            if config.db is not None:
                from mailtrack.service import open_store

                store = open_store(config.db)
            recorder = Recorder(store, [CallbackSink(_send_signal)], privacy=config.privacy)
            _built = Endpoints(config.tracker, recorder, trusted_proxies=config.trusted_proxies, max_age=config.max_age,
                               classifier=config.classifier)
        return _built


def reset() -> None:
    """Forget the built endpoints (closing their recorder): the next request reads the settings again."""
    global _built
    with _lock:
        built, _built = _built, None
    if built is not None and built.recorder is not None:
        built.recorder.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("MAILTRACK", "SECRET_KEY", "SECRET_KEY_FALLBACKS"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="mailtrack.contrib.django.views")


def to_request(request: HttpRequest) -> Request:
    """The plain :class:`Request` the endpoints take (the body only for POST, where it is small)."""
    method = str(request.method or "GET").upper()
    return Request(
        method=method,
        path=request.path,
        query=str(request.META.get("QUERY_STRING", "")),
        headers={str(name).lower(): str(value) for name, value in request.headers.items()},
        remote_addr=request.META.get("REMOTE_ADDR"),
        body=bytes(request.body) if method == "POST" else b"",
    )


def to_response(response: Response) -> HttpResponse:
    """Django's response for the endpoints' ``response``, every header kept."""
    http = HttpResponse(response.body, status=response.status)
    for name, value in response.safe_headers:  # a last guard against response splitting, as every adapter
        http.headers[name] = value
    return http


class TrackingView(View):  # type: ignore[misc]  # Django ships no type hints
    """Serves the pixel, click and unsubscribe URLs under the path ``MAILTRACK["BASE_URL"]`` names."""

    http_method_names = ["get", "head", "post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Every method goes to the endpoints, which answer 405 themselves where needed.

        Bodies over :data:`~mailtrack.http.messages.MAX_BODY` are refused before
        they are read, as the WSGI adapter does (a one-click POST is a few dozen bytes).
        """
        refused = too_large(request.META.get("CONTENT_LENGTH"))
        return to_response(refused) if refused is not None else to_response(endpoints().handle(to_request(request)))


track = csrf_exempt(TrackingView.as_view())
