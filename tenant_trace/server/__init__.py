"""The request lifecycle (a with-block), the pure ASGI and WSGI middleware and the options
they take, the one answer to a rejection, and bodies whose span ends after the last chunk."""

from .asgi import TenantTraceASGIMiddleware
from .lifecycle import ActiveRequest, RequestTracer, get_current_request, stays_out
from .options import MIDDLEWARE_OPTIONS, TRACER_OPTIONS, MiddlewareOptions, configure, options_from
from .refusal import Refusal, refuse
from .wsgi import TenantTraceWSGIMiddleware

__all__ = [
    "MIDDLEWARE_OPTIONS",
    "TRACER_OPTIONS",
    "ActiveRequest",
    "MiddlewareOptions",
    "Refusal",
    "RequestTracer",
    "TenantTraceASGIMiddleware",
    "TenantTraceWSGIMiddleware",
    "configure",
    "get_current_request",
    "options_from",
    "refuse",
    "stays_out",
]
