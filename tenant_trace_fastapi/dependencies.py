"""FastAPI dependencies: ``Depends(get_tenant)`` and ``Depends(require_tenant)``.

`require_tenant` raises a 401 `tenant_trace.Rejection` for a request without a tenant,
which the middleware answers with the same JSON body as every other rejection. Where the
middleware is not installed, it is FastAPI's own JSON 401 instead, never a 500, and an error
is logged once.
"""

from __future__ import annotations

import logging

from fastapi import HTTPException
from starlette.requests import HTTPConnection

from tenant_trace.context import get_current_tenant
from tenant_trace.errors import missing_tenant
from tenant_trace.server.asgi import INSTALLED

__all__ = ["get_tenant", "require_tenant"]

logger = logging.getLogger("tenant_trace")
_warned: list[bool] = []


def get_tenant() -> str | None:
    """The tenant of the request, or ``None`` when it has none."""
    return get_current_tenant()


def require_tenant(connection: HTTPConnection) -> str:
    """The tenant of the request; without one, a 401 with a JSON body."""
    tenant = get_current_tenant()
    if tenant is not None:
        return tenant
    rejection = missing_tenant()
    if connection.scope.get(INSTALLED):
        raise rejection
    if not _warned:
        _warned.append(True)
        logger.error(
            "tenant_trace: require_tenant ran on %s, which the tenant-trace middleware does "
            "not see: add it with app.add_middleware(TenantTraceMiddleware) or "
            "instrument_app(app)",
            connection.url.path,
        )
    raise HTTPException(rejection.status, rejection.detail, dict(rejection.headers))
