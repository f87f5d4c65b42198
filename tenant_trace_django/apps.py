"""The Django app: add ``"tenant_trace_django"`` to INSTALLED_APPS for the system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks

from .checks import check_settings

__all__ = ["TenantTraceConfig"]


class TenantTraceConfig(AppConfig):
    name = "tenant_trace_django"
    verbose_name = "tenant-trace"

    def ready(self) -> None:
        checks.register(check_settings)
