"""``instrument_app(app)``: tenant-trace outermost, around Starlette's error middleware.

``app.add_middleware(TenantTraceMiddleware)`` puts tenant-trace inside Starlette's
``ServerErrorMiddleware``, which runs the catch-all ``Exception``/500 handler after every
user middleware has returned: there the tenant is only on ``request.state.tenant_id``.
Installed by `instrument_app`, tenant-trace wraps the whole stack (as OpenTelemetry's own
FastAPI instrumentation does), so that handler runs in the tenant's context too.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from tenant_trace.errors import ConfigurationError

from .middleware import TenantTraceMiddleware

__all__ = ["instrument_app"]

_MARK = "_tenant_trace_middleware"


def instrument_app(app: Starlette, **options: Any) -> TenantTraceMiddleware:
    """Install tenant-trace around `app`'s whole middleware stack.

    Args:
        app: a FastAPI or Starlette application, before or after it served requests.
        **options: the options of `TenantTraceMiddleware`.

    Returns:
        The middleware, whose options are checked now rather than at the first request.

    Raises:
        ConfigurationError: an option is invalid, or the app is instrumented already.
    """
    if getattr(app, _MARK, None) is not None:
        raise ConfigurationError("tenant-trace is already installed on this app")
    middleware = TenantTraceMiddleware(app.router, **options)
    build = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        middleware.app = build()
        return middleware

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    app.middleware_stack = None  # rebuilt, with tenant-trace outside, on the next call
    setattr(app, _MARK, middleware)
    return middleware
