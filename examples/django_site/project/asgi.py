"""ASGI entry point of the Django example site; from the repository root,
``uvicorn examples.django_site.project.asgi:application``.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

import tenant_trace
from examples.common import INIT_OPTIONS

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_site.project.settings")
# Before Django loads: OTEL_* variables choose the exporter.
tenant_trace.init(service_name="example-django", **INIT_OPTIONS)

application = get_asgi_application()
