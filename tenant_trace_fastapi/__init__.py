"""FastAPI / Starlette adapter: ``app.add_middleware(TenantTraceMiddleware, ...)``, or
``instrument_app(app, ...)`` to wrap the whole stack, catch-all error handler included."""

from .dependencies import get_tenant, require_tenant
from .install import instrument_app
from .middleware import TenantTraceMiddleware

__all__ = ["TenantTraceMiddleware", "get_tenant", "instrument_app", "require_tenant"]
