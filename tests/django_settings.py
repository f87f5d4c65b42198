"""Django settings for tests: the example site with the tenant optional (so that a request
without one reaches the views) and a sync-only middleware before ours (so that under ASGI
Django adapts between sync and async on both sides of our middleware).

    DJANGO_SETTINGS_MODULE=tests.django_settings
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from django.http.response import HttpResponseBase

import tenant_trace
from examples.django_site.project.settings import *  # noqa: F403
from examples.django_site.project.settings import MIDDLEWARE, TENANT_TRACE

TENANT_TRACE = {**TENANT_TRACE, "required": False}
MIDDLEWARE = ["tests.django_settings.sync_only_middleware", *MIDDLEWARE]


def sync_only_middleware(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """An old-style middleware (sync only): it reports, in ``X-Tenant-Outside``, the tenant
    it sees before and after ours ran, which must be none both times."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        before = tenant_trace.get_current_tenant()
        response = get_response(request)
        response["X-Tenant-Outside"] = f"{before},{tenant_trace.get_current_tenant()}"
        return response

    return middleware
