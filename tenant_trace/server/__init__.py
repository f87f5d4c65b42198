"""The request lifecycle (a with-block), the pure ASGI and WSGI middleware, the one answer
to a rejection, and bodies whose span ends after the last chunk."""

from .asgi import TenantTraceASGIMiddleware
from .lifecycle import (
    MIDDLEWARE_OPTIONS,
    TRACER_OPTIONS,
    ActiveRequest,
    MiddlewareOptions,
    RequestTracer,
    get_current_request,
)
from .refusal import Refusal, refuse
from .wsgi import TenantTraceWSGIMiddleware

__all__ = [
    "MIDDLEWARE_OPTIONS",
    "TRACER_OPTIONS",
    "MiddlewareOptions",
    "ActiveRequest",
    "Refusal",
    "RequestTracer",
    "TenantTraceASGIMiddleware",
    "TenantTraceWSGIMiddleware",
    "get_current_request",
    "refuse",
]
