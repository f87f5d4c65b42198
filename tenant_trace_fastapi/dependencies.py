"""FastAPI dependencies: ``Depends(get_tenant)`` and ``Depends(require_tenant)``."""

from __future__ import annotations

from tenant_trace import get_current_tenant
from tenant_trace.errors import Rejection

__all__ = ["get_tenant", "require_tenant"]


def get_tenant() -> str | None:
    """The tenant of the request, or ``None`` when it has none."""
    return get_current_tenant()


def require_tenant() -> str:
    """The tenant of the request; a request without one is answered 401 by the middleware,
    with the same JSON body as every other rejection."""
    tenant = get_current_tenant()
    if tenant is None:
        raise Rejection(401, "missing_tenant", "the request does not name a tenant")
    return tenant
