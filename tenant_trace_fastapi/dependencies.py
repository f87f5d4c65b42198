"""FastAPI dependencies: ``Depends(get_tenant)`` and ``Depends(require_tenant)``.

`require_tenant` raises a 401 `tenant_trace.Rejection` for a request without a tenant,
which the middleware answers with the same JSON body as every other rejection.
"""

from __future__ import annotations

from tenant_trace.context import get_current_tenant, require_tenant

__all__ = ["get_tenant", "require_tenant"]


def get_tenant() -> str | None:
    """The tenant of the request, or ``None`` when it has none."""
    return get_current_tenant()
