"""The same apps with tenant-trace, tracing on: ``benchmarks.traced:asgi_app`` / ``:wsgi_app``.

``tenant_trace.init()`` sends spans where the OTEL_* variables say; with none, to the
embedded local store, a new user's default.
"""

from __future__ import annotations

import tenant_trace
from benchmarks.bare import flask_app, starlette_app
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware

tenant_trace.init(service_name="benchmark")
asgi_app = TenantTraceASGIMiddleware(starlette_app())
wsgi_app = flask_app()
wsgi_app.wsgi_app = TenantTraceWSGIMiddleware(wsgi_app.wsgi_app)  # type: ignore[method-assign]
