"""System checks for the ``TENANT_TRACE`` setting, run by ``manage.py check`` and at startup.

- ``tenant_trace.E001``: ``TENANT_TRACE`` is not a dict.
- ``tenant_trace.E002``: it has unknown (or repeated) keys.
- ``tenant_trace.E003``: its options do not make a valid tenant policy.
- ``tenant_trace.W001``: the middleware is not in ``MIDDLEWARE``, so nothing is traced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.utils.module_loading import import_string

from tenant_trace.errors import ConfigurationError

from .conf import OPTIONS, build, conf, parse
from .middleware import TenantTraceMiddleware

__all__ = ["check_settings"]

MIDDLEWARE_PATH = "tenant_trace_django.middleware.TenantTraceMiddleware"


def check_settings(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Report what is wrong with ``TENANT_TRACE`` and ``MIDDLEWARE``."""
    errors: list[checks.CheckMessage] = []
    value = conf.TENANT_TRACE
    if not isinstance(value, Mapping):
        errors.append(
            checks.Error(
                f"TENANT_TRACE should be a dict of options, not {type(value).__name__}.",
                hint='For example TENANT_TRACE = {"header": "X-Tenant-ID"}.',
                id="tenant_trace.E001",
            )
        )
    else:
        try:
            options = parse(value)
        except ConfigurationError as exc:
            errors.append(
                checks.Error(
                    f"{exc}.",
                    hint="Known options: " + ", ".join(sorted(OPTIONS)) + ".",
                    id="tenant_trace.E002",
                )
            )
        else:
            try:
                build(options)
            except ConfigurationError as exc:
                errors.append(
                    checks.Error(
                        f"TENANT_TRACE does not make a valid tenant policy: {exc}",
                        id="tenant_trace.E003",
                    )
                )
    if not any(_is_ours(path) for path in conf.MIDDLEWARE):
        errors.append(
            checks.Warning(
                "TenantTraceMiddleware is not in MIDDLEWARE: requests get no tenant and no trace.",
                hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, near the top.",
                id="tenant_trace.W001",
            )
        )
    return errors


def _is_ours(path: str) -> bool:
    if path == MIDDLEWARE_PATH:
        return True
    try:
        middleware = import_string(path)
    except Exception:
        return False  # Django itself reports a middleware that does not import
    return isinstance(middleware, type) and issubclass(middleware, TenantTraceMiddleware)
