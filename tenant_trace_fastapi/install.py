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
from starlette.requests import Request
from starlette.responses import Response

from tenant_trace.errors import ConfigurationError, Rejection
from tenant_trace.server.refusal import refuse

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
    # Outermost, tenant-trace sees a `Rejection` from a route only after Starlette's error
    # middleware turned it into a 500: answer it inside, as the middleware would.
    app.add_exception_handler(Rejection, _answer_rejection)
    app.middleware_stack = None  # rebuilt, with tenant-trace outside, on the next call
    setattr(app, _MARK, middleware)
    return middleware


def _answer_rejection(request: Request, exc: Exception) -> Response:
    refusal = refuse(exc if isinstance(exc, Rejection) else Rejection(500, "error", "error"))
    return Response(refusal.body, refusal.status, headers=dict(refusal.headers))
