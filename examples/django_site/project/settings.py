"""Settings of the Django example site.

The tenant options are the ones every example shares (`examples.common.TENANT_OPTIONS`):
the ``X-Tenant-ID`` header, a Bearer JWT (HS256, ``EXAMPLE_JWT_SECRET``) or the subdomain
under ``EXAMPLE_BASE_DOMAIN``; sources that disagree are refused, ``/health`` is excluded.
"""

from __future__ import annotations

import os

from examples.common import BASE_DOMAIN, TENANT_OPTIONS

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", f".{BASE_DOMAIN}"]

INSTALLED_APPS = ["tenant_trace_django"]  # the system checks of TENANT_TRACE
MIDDLEWARE = ["tenant_trace_django.middleware.TenantTraceMiddleware"]
TENANT_TRACE = {**TENANT_OPTIONS}

ROOT_URLCONF = "examples.django_site.project.urls"
WSGI_APPLICATION = "examples.django_site.project.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
