"""The FastAPI example's agent behind OpenTelemetry's own instrumentation, for the routing tests:
``uvicorn tests.servers.routed:app``, with the routes in ``TENANT_TRACE_ROUTES`` (and
``TENANT_TRACE_UNROUTED``, ``TENANT_TRACE_MIRROR``), the default exporter from OTEL_*.

``POST /chat`` answers ``{"tenant", "trace_id", "response"}``. Each request makes, besides
tenant-trace's own spans, spans of other libraries and spans the tenant is not current in:

- ``POST /chat`` and its ``http send``/``receive`` spans: FastAPI's OpenTelemetry
  instrumentation, started before the tenant is known (the lifecycle stamps the first);
- ``edge.check``: a span of an outer middleware that ends before the tenant is known;
- ``GET``: an httpx client span (opentelemetry-instrumentation-httpx) to this app's
  ``/health``, which is neither traced nor resolved;
- ``vector-db.query``: a plain span of another library's tracer;
- ``worker.step``: a child of the request's span started in a context without the tenant;

and logs one line through the OpenTelemetry logs bridge (``configure_logging(otel=True)``,
default log exporter ``none``: routed tenants' lines go to their destinations only).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from starlette.types import ASGIApp, Receive, Scope, Send

import tenant_trace
from examples.common import answer
from tenant_trace_fastapi import TenantTraceMiddleware, require_tenant

tenant_trace.init(service_name="routed")
tenant_trace.configure_logging(otel=True, exporter="none", json=False)
HTTPXClientInstrumentor().instrument()

log = logging.getLogger("routed")
library = trace.get_tracer("vector-db-client")
_client: list[httpx.AsyncClient] = []  # one, made in the server's event loop


class EdgeCheck:
    """An outer middleware whose span ends before tenant-trace resolves the tenant."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            with library.start_as_current_span("edge.check"):
                pass
        await self.app(scope, receive, send)


app = FastAPI()
app.add_middleware(TenantTraceMiddleware, header="X-Tenant-ID", exclude_paths=["/health"])
app.add_middleware(EdgeCheck)
FastAPIInstrumentor.instrument_app(app, excluded_urls="health")


def _without_tenant(context: otel_context.Context) -> None:
    token = otel_context.attach(context)
    try:
        with library.start_as_current_span("worker.step"):
            pass
    finally:
        otel_context.detach(token)


@app.post("/chat")
async def chat(request: Request, tenant: str = Depends(require_tenant)) -> Any:
    with library.start_as_current_span("vector-db.query"):
        pass
    if not _client:
        _client.append(httpx.AsyncClient())
    await _client[0].get(f"{request.base_url}health")
    # The request's span, but a fresh context: no tenant is current in it.
    contextvars.Context().run(_without_tenant, otel_context.get_current())
    log.warning("answered for %s", tenant)
    trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
    return {"trace_id": trace_id, **answer("hello", tenant)}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
