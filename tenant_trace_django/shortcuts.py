"""Helpers for views."""

from __future__ import annotations

from tenant_trace.context import get_current_tenant
from tenant_trace.errors import Rejection

__all__ = ["require_tenant"]


def require_tenant() -> str:
    """The tenant of the request. Without one, raises a 401 `Rejection`, which the
    middleware answers with the same JSON body as every other rejection."""
    tenant = get_current_tenant()
    if tenant is None:
        raise Rejection(401, "missing_tenant", "the request does not name a tenant")
    return tenant
