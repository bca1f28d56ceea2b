"""One Django configuration for every test module that needs Django in this process.

``settings.configure`` can run once per process, so each Django test module
calls :func:`configure` (which does nothing the second time) and changes what
it needs with ``override_settings``.
"""

from __future__ import annotations

BASE_SETTINGS: dict[str, object] = {
    "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    "DEFAULT_CHARSET": "utf-8",
    "DEFAULT_FROM_EMAIL": "shop@example.com",
    "USE_TZ": True,
    "SECRET_KEY": "django-test-secret-key-newest",
    "SECRET_KEY_FALLBACKS": ["django-test-secret-key-older"],
    "ALLOWED_HOSTS": ["testserver"],
    "ROOT_URLCONF": "support.django_urls",
    "INSTALLED_APPS": [],
    "MIDDLEWARE": [],
}


def configure() -> None:
    """Configure Django for tests (once per process) and set up its app registry."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**BASE_SETTINGS)
        django.setup()
