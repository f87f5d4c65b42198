"""FastAPI / Starlette adapter: ``app.add_middleware(TenantTraceMiddleware, ...)``."""

from .dependencies import get_tenant, require_tenant
from .middleware import TenantTraceMiddleware

__all__ = ["TenantTraceMiddleware", "get_tenant", "require_tenant"]
