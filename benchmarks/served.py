"""The real-server benchmark's apps, one variant per process: ``benchmarks.served:asgi_app``
and ``:wsgi_app``, the variant named by ``BENCH_VARIANT``:

- ``bare``: the one-route app;
- ``floor-store`` / ``floor-otlp``: the honest floor (`benchmarks.inprocess.FloorASGI`)
  exporting to the local store (``TENANT_TRACE_DB``) or to OTLP
  (``OTEL_EXPORTER_OTLP_ENDPOINT``);
- ``otel-store``: OpenTelemetry's ASGI or WSGI instrumentation exporting to the local store;
- ``tenant-trace-store`` / ``tenant-trace-otlp``: ``tenant_trace.init()`` and the
  middleware, as a user sets them up, sending spans to the store or to OTLP;
- ``context-only``: the middleware with ``tracing=False``.

Every variant that records metrics records them through one SDK meter provider with an
in-memory reader, installed here first (`init()` keeps it).
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SpanExporter

from benchmarks.bare import flask_app, starlette_app

metrics.set_meter_provider(MeterProvider([InMemoryMetricReader()]))
VARIANT = os.environ.get("BENCH_VARIANT", "bare")


def _exporter(kind: str) -> SpanExporter:
    if kind == "store":
        from tenant_trace.export.store import SQLiteSpanExporter

        return SQLiteSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _wrap(asgi: Any, wsgi: Any, variant: str) -> tuple[Any, Any]:
    """The two apps with `variant` around them."""
    if variant == "bare":
        return asgi, wsgi
    if variant.startswith("floor-") or variant.startswith("otel-"):
        from benchmarks.inprocess import FloorASGI, FloorWSGI, floor_provider

        provider = floor_provider(_exporter(variant.split("-")[1]))
        if variant.startswith("floor-"):
            return FloorASGI(asgi, provider), FloorWSGI(wsgi, provider)
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as ASGIMiddleware
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WSGIMiddleware

        return ASGIMiddleware(asgi, tracer_provider=provider), WSGIMiddleware(
            wsgi, tracer_provider=provider
        )
    import tenant_trace
    from tenant_trace.server.asgi import TenantTraceASGIMiddleware
    from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware

    if variant == "context-only":
        return (
            TenantTraceASGIMiddleware(asgi, tracing=False),
            TenantTraceWSGIMiddleware(wsgi, tracing=False),
        )
    tenant_trace.init(
        service_name="benchmark", exporter="otlp" if variant.endswith("otlp") else "local"
    )
    return TenantTraceASGIMiddleware(asgi), TenantTraceWSGIMiddleware(wsgi)


asgi_app = starlette_app()
wsgi_app = flask_app()
asgi_app, wsgi_app.wsgi_app = _wrap(asgi_app, wsgi_app.wsgi_app, VARIANT)  # type: ignore[method-assign]
