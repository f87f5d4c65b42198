"""A client never decides for the server (the hardening issue, items 2 and 3): its
``traceparent`` neither forces sampling nor joins another tenant's trace, and a tenant's
sampling ratio holds with FastAPI's own telemetry on (its default) and beside OpenTelemetry's
ASGI and WSGI instrumentation, whose server span starts before the tenant is known."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WSGIOpenTelemetry
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from werkzeug.test import Client

import tenant_trace
from tenant_trace import TenantSampler
from tenant_trace.export.pipeline import batch_processor
from tenant_trace.export.processor import TenantSpanProcessor
from tenant_trace_fastapi import TenantTraceMiddleware, instrument_app
from tenant_trace_flask import TenantTrace

RUNS = 20


class Exported:
    """What the export pipeline `init()` builds passed on, from a provider of its own with a
    per-tenant sampler: ``zero`` at ratio 0, every other tenant at 1."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=TenantSampler(1.0, tenants={"zero": 0.0}))
        self.provider.add_span_processor(TenantSpanProcessor())
        self.provider.add_span_processor(batch_processor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        self.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def of(self, tenant: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if (s.attributes or {}).get("tenant.id") == tenant]


INSTRUMENTED: list[FastAPI] = []


@pytest.fixture
def exported() -> Iterator[Exported]:
    found = Exported()
    yield found
    # OpenTelemetry's FastAPI instrumentation patches Starlette's BackgroundTask for the
    # whole process, with this test's provider: undo it.
    while INSTRUMENTED:
        FastAPIInstrumentor.uninstrument_app(INSTRUMENTED.pop())
    found.provider.shutdown()


def fastapi_app(exported: Exported, install: str) -> Any:
    """FastAPI with its own telemetry on the test's provider (on, as by default)."""
    app = FastAPI(telemetry={"tracer_provider": exported.provider})

    @app.get("/whoami")
    async def whoami() -> dict[str, Any]:
        return {"tenant": tenant_trace.get_current_tenant()}

    options = {"header": "X-Tenant-ID", "tracer_provider": exported.provider}
    if install == "add_middleware":
        app.add_middleware(TenantTraceMiddleware, **options)
    elif install == "instrument_app":
        instrument_app(app, **options)
    else:  # beside OpenTelemetry's FastAPI instrumentation (FastAPI's own is then off)
        app.add_middleware(TenantTraceMiddleware, **options)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=exported.provider)
        INSTRUMENTED.append(app)
    return app


INSTALLS = ["add_middleware", "instrument_app", "otel-fastapi"]


def caller() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


@pytest.mark.parametrize("install", INSTALLS)
@pytest.mark.parametrize("forced", [False, True], ids=["", "client-traceparent-01"])
def test_a_ratio_0_tenant_is_never_sampled_with_an_outer_server_span(
    exported: Exported, install: str, forced: bool
) -> None:
    with TestClient(fastapi_app(exported, install)) as client:
        for _ in range(RUNS):
            headers = {"X-Tenant-ID": "zero"}
            if forced:
                headers["traceparent"] = caller()[2]
            assert client.get("/whoami", headers=headers).json() == {"tenant": "zero"}
        assert client.get("/whoami", headers={"X-Tenant-ID": "acme"}).status_code == 200
    assert exported.of("zero") == [], "no span of the ratio-0 tenant is exported"
    acme = exported.of("acme")
    traces = {s.context.trace_id for s in acme}
    assert len(traces) == 1 and {s.context.trace_id for s in exported.spans()} == traces
    (root,) = [s for s in acme if s.name == "agent.run"]
    outer = [s for s in acme if s.name != "agent.run" and s.parent is None]
    assert len(outer) == 1 and root.parent is not None
    assert root.parent.span_id == outer[0].context.span_id, "nested under the server span"


@pytest.mark.parametrize("install", INSTALLS)
def test_a_client_traceparent_under_an_outer_span_starts_a_linked_trace(
    exported: Exported, install: str
) -> None:
    trace_id, span_id, traceparent = caller()
    with TestClient(fastapi_app(exported, install)) as client:
        client.get("/whoami", headers={"X-Tenant-ID": "acme", "traceparent": traceparent})
    spans = exported.spans()
    assert all(format(s.context.trace_id, "032x") != trace_id for s in spans), (
        "nothing exported joins the caller's trace"
    )
    (root,) = [s for s in spans if s.name == "agent.run"]
    assert root.parent is None
    assert format(root.links[0].context.span_id, "016x") == span_id


@pytest.mark.parametrize("install", INSTALLS)
def test_a_second_tenant_cannot_join_the_first_ones_trace(exported: Exported, install: str) -> None:
    with TestClient(fastapi_app(exported, install)) as client:
        client.get("/whoami", headers={"X-Tenant-ID": "acme"})
        (first,) = [s for s in exported.spans() if s.name == "agent.run"]
        stolen = f"00-{format(first.context.trace_id, '032x')}-{secrets.token_hex(8)}-01"
        for _ in range(3):
            client.get("/whoami", headers={"X-Tenant-ID": "globex", "traceparent": stolen})
    in_first = [s for s in exported.spans() if s.context.trace_id == first.context.trace_id]
    assert {(s.attributes or {}).get("tenant.id") for s in in_first} == {"acme"}
    assert len(exported.of("globex")) >= 3


def test_a_trusted_caller_keeps_its_trace_under_an_outer_span(exported: Exported) -> None:
    app = FastAPI(telemetry={"tracer_provider": exported.provider})

    @app.get("/whoami")
    async def whoami() -> dict[str, Any]:
        return {"tenant": tenant_trace.get_current_tenant()}

    app.add_middleware(
        TenantTraceMiddleware, trusted_internal_header="X-Internal-Tenant-ID",
        tracer_provider=exported.provider,
    )  # fmt: skip
    trace_id, _, traceparent = caller()
    with TestClient(app) as client:
        client.get("/whoami", headers={"X-Internal-Tenant-ID": "acme", "traceparent": traceparent})
    spans = exported.spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {trace_id}
    assert {s.name for s in spans} >= {"agent.run", "GET /whoami"}


def test_flask_beside_opentelemetry_wsgi_holds_the_ratio(exported: Exported) -> None:
    app = Flask(__name__)

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        return {"tenant": tenant_trace.get_current_tenant()}

    TenantTrace(app, header="X-Tenant-ID", tracer_provider=exported.provider)
    app.wsgi_app = WSGIOpenTelemetry(app.wsgi_app, tracer_provider=exported.provider)  # type: ignore[method-assign]
    client = Client(app)
    for _ in range(RUNS):
        assert client.get(
            "/whoami", headers={"X-Tenant-ID": "zero", "traceparent": caller()[2]}
        ).json == {"tenant": "zero"}
    client.get("/whoami", headers={"X-Tenant-ID": "acme"})
    assert exported.of("zero") == []
    assert {s.name for s in exported.of("acme")} >= {"agent.run"}
    assert len(exported.spans()) == 2, "nothing else: no span of the ratio-0 tenant's requests"
    assert len(exported.of("acme")) == 2, "the server span and the run"
