"""The ``TENANT_TRACE`` setting, one dict of the middleware's options (``header``, ``jwt``,
``subdomain``, ``required``, ``exclude_paths``, ``tracing`` ...: the keys of
`tenant_trace.server.MiddlewareOptions`, matched case-insensitively), read through a small
conf object."""

from __future__ import annotations

from django.conf import settings

__all__ = ["Settings", "conf"]


class Settings:
    """Django's settings as tenant-trace reads them, looked up on every access (so that
    ``override_settings`` applies to middleware built afterwards)."""

    @property
    def TENANT_TRACE(self) -> object:
        return getattr(settings, "TENANT_TRACE", {})

    @property
    def MIDDLEWARE(self) -> list[str]:
        return list(getattr(settings, "MIDDLEWARE", None) or [])


conf = Settings()
