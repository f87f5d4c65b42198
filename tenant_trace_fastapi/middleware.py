"""The tenant-trace ASGI middleware under its FastAPI name."""

from __future__ import annotations

from tenant_trace.server.asgi import TenantTraceASGIMiddleware

__all__ = ["TenantTraceMiddleware"]


class TenantTraceMiddleware(TenantTraceASGIMiddleware):
    """``app.add_middleware(TenantTraceMiddleware, header="X-Tenant-ID", ...)``.

    Takes the options of `tenant_trace.server.asgi.TenantTraceASGIMiddleware` and of
    `tenant_trace.resolve.build_policy` (``header=``, ``jwt=``, ``subdomain=``, ``resolver=``,
    ``required=``, ``default=``, ``allowed=``, ``exclude_paths=`` ...). The route template
    FastAPI matched is recorded as ``http.route``.
    """
