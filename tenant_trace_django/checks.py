"""System checks, run by ``manage.py check`` and at startup:

- ``tenant_trace.E001``: ``TENANT_TRACE`` is not a dict.
- ``tenant_trace.E002``: it has unknown (or repeated) keys.
- ``tenant_trace.E003``: its options do not make a valid tenant policy.
- ``tenant_trace.W001``: the middleware is not in ``MIDDLEWARE``, so nothing is traced.
- ``tenant_trace.W002``: a setting whose name is close to ``TENANT_TRACE`` (a typo).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from tenant_trace.errors import ConfigurationError, OptionNameError
from tenant_trace.server.options import configure, options_from

from .conf import conf

__all__ = ["check_settings"]

MIDDLEWARE_PATH = "tenant_trace_django.middleware.TenantTraceMiddleware"


def check_settings(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report what is wrong with ``TENANT_TRACE`` and ``MIDDLEWARE``."""
    found: list[checks.CheckMessage] = []
    value = conf.TENANT_TRACE
    try:
        configure(**options_from(value, "TENANT_TRACE"))
    except OptionNameError as exc:
        found.append(checks.Error(f"{exc}.", id="tenant_trace.E002"))
    except ConfigurationError as exc:
        if not isinstance(value, Mapping):
            hint = 'For example TENANT_TRACE = {"header": "X-Tenant-ID"}.'
            found.append(checks.Error(f"{exc}.", hint=hint, id="tenant_trace.E001"))
        else:
            message = f"TENANT_TRACE does not make a valid tenant policy: {exc}"
            found.append(checks.Error(message, id="tenant_trace.E003"))
    if not any(_is_ours(path) for path in conf.MIDDLEWARE):
        message = "TenantTraceMiddleware is not in MIDDLEWARE: requests get no tenant and no trace."
        hint = f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, near the top."
        found.append(checks.Warning(message, hint=hint, id="tenant_trace.W001"))
    typos = set(difflib.get_close_matches("TENANT_TRACE", dir(settings), cutoff=0.8))
    for name in sorted(typos - {"TENANT_TRACE"}):
        message = f"The setting {name} is not read: did you mean TENANT_TRACE?"
        found.append(checks.Warning(message, id="tenant_trace.W002"))
    return found


def _is_ours(path: str) -> bool:
    from .middleware import TenantTraceMiddleware

    try:
        return issubclass(import_string(path), TenantTraceMiddleware)
    except Exception:  # Django itself reports a middleware that does not import
        return False
