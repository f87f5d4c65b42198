"""Telemetry never breaks the application: dead or failing exporters, failures inside the
library's own processor, resolver and hooks, interleaved load on a real server, and a fuzz
of the whole middleware with hostile input."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import tenant_trace
from examples.common import JWT_SECRET
from tenant_trace.export.processor import TenantSpanProcessor
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
from tenant_trace.setup import batch_processor
from tests.servers.load import interleaved, mismatches
from tests.servers.process import serve


class HangingExporter(SpanExporter):
    """Blocks in export until released: a collector that accepts and never answers."""

    def __init__(self) -> None:
        self.exporting = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exporting.set()
        self.release.wait()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("exporter bug")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns


def otlp_to_closed_port() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"http://127.0.0.1:{closed_port()}/v1/traces", timeout=2)


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"tenant": tenant_trace.get_current_tenant()})


def sdk_metric(reader: InMemoryMetricReader, name: str, **attributes: str) -> float:
    """The sum of the points of the SDK's own metric `name` that have `attributes`."""
    total = 0.0
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    total += sum(
                        p.value
                        for p in metric.data.data_points
                        if attributes.items() <= dict(p.attributes or {}).items()
                    )
    return total


@pytest.mark.parametrize(
    "make_exporter",
    [HangingExporter, RaisingExporter, otlp_to_closed_port],
    ids=["hanging", "raising", "otlp-closed-port"],
)
def test_a_dead_exporter_adds_no_latency_and_drops_are_counted(make_exporter: Any) -> None:
    """Every request succeeds while the exporter hangs, raises or cannot connect. The
    hanging one is stuck in an export for all of the requests, which complete all the same
    (the per-test timeout is the guard): no request waits for an export. Its queue stays at
    its bound and the spans it could not hold are counted as dropped."""
    reader = InMemoryMetricReader()
    exporter = make_exporter()
    processor = batch_processor(  # the pipeline init() builds, with small bounds
        exporter,
        max_queue_size=64,
        max_export_batch_size=16,
        schedule_delay_millis=10,
        meter_provider=MeterProvider([reader]),
    )
    provider = TracerProvider()
    provider.add_span_processor(TenantSpanProcessor())
    provider.add_span_processor(processor)
    app = Starlette(
        routes=[Route("/", whoami)],
        middleware=[Middleware(TenantTraceASGIMiddleware, tracer_provider=provider)],
    )
    client = TestClient(app)
    hanging = isinstance(exporter, HangingExporter)
    try:
        if hanging:  # a first span, and the export of it that never ends
            assert client.get("/", headers={"X-Tenant-ID": "t0"}).status_code == 200
            assert exporter.exporting.wait(60)
            queued = sdk_metric(reader, "otel.sdk.processor.span.queue.size")
        for i in range(400):
            response = client.get("/", headers={"X-Tenant-ID": f"t{i % 7}"})
            assert response.json() == {"tenant": f"t{i % 7}"}
        if hanging:
            assert not exporter.release.is_set()  # the export was stuck all along
            assert sdk_metric(reader, "otel.sdk.processor.span.queue.size") == 64
            dropped = sdk_metric(
                reader, "otel.sdk.processor.span.processed", **{"error.type": "queue_full"}
            )
            # 400 spans more, room for 64 in the queue: every other one is counted.
            assert dropped == queued + 400 - 64
    finally:
        exporter.shutdown()  # a dead exporter refuses the last batches at once
        provider.shutdown()


def test_the_export_pipeline_counts_its_own_spans_and_leaves_every_tracers_alone() -> None:
    """The batch processor's SDK metrics are on (spans exported, a few points a batch), but
    the switch is not left set for the process: a tracer made afterwards records none of the
    SDK's per-span metrics (three points a span, on every span of every library)."""
    reader = InMemoryMetricReader()
    meters = MeterProvider([reader])
    processor = batch_processor(InMemorySpanExporter(), meter_provider=meters)
    assert "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED" not in os.environ
    provider = TracerProvider(meter_provider=meters)
    provider.add_span_processor(processor)
    for _ in range(10):
        provider.get_tracer("other").start_span("GET").end()
    provider.force_flush()
    assert sdk_metric(reader, "otel.sdk.processor.span.processed") == 10
    assert sdk_metric(reader, "otel.sdk.span.started") == 0
    provider.shutdown()


def test_an_exception_inside_the_span_processor_never_reaches_the_app(
    monkeypatch: pytest.MonkeyPatch, spans: Any
) -> None:
    """The tenant processor failing on every span: requests still answer normally."""

    def broken() -> Any:
        raise RuntimeError("processor bug")

    monkeypatch.setattr("tenant_trace.export.processor.current", broken)
    app = Starlette(routes=[Route("/", whoami)], middleware=[Middleware(TenantTraceASGIMiddleware)])
    response = TestClient(app).get("/", headers={"X-Tenant-ID": "acme"})
    assert response.json() == {"tenant": "acme"}


@pytest.mark.parametrize("where", ["resolver", "route_getter", "metrics"])
def test_a_failing_hook_never_becomes_a_500(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """A custom resolver that raises is a clear 503; a failing route reader or metrics
    recorder is contained and the request answers 200."""
    options: dict[str, Any] = {}
    if where == "resolver":

        def resolver(view: Any) -> str:
            raise KeyError("resolver bug")

        options["resolver"] = resolver
    elif where == "route_getter":
        options["route_getter"] = lambda scope: 1 / 0
    else:

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("metrics bug")

        monkeypatch.setattr("tenant_trace.metrics.record._get", broken)
    app = Starlette(
        routes=[Route("/", whoami)], middleware=[Middleware(TenantTraceASGIMiddleware, **options)]
    )
    response = TestClient(app).get("/", headers={"X-Tenant-ID": "acme"})
    if where == "resolver":
        assert response.status_code == 503
        assert response.json()["error"] == "tenant_resolution_failed"
    else:
        assert response.json() == {"tenant": "acme"}


@pytest.mark.real_server
@pytest.mark.timeout(600)  # 10,000 requests take minutes on a busy two-core machine
def test_ten_thousand_interleaved_requests_on_a_real_server(tmp_path: Path) -> None:
    """10,000 concurrent requests with random tenants against uvicorn: zero cross-tenant
    attribution in any response or span."""
    with serve("uvicorn", "examples.fastapi_app:app", tmp_path) as server:
        sent = interleaved(server.url, n=10_000, tenants=500, concurrency=64, max_delay=0.005)
        spans = server.spans(roots=10_000)
    assert len(sent) == 10_000
    assert mismatches(sent, spans) == []


# A fuzz of the whole middleware stack of the example app (header, JWT and subdomain
# sources, conflicts), fed raw bytes as a client could send them.

_header_names = st.sampled_from(
    [
        b"x-tenant-id",
        b"authorization",
        b"host",
        b"x-forwarded-host",
        b"cookie",
        b"traceparent",
        b"baggage",
        b"content-type",
    ]
)
_header_values = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=80).map(lambda s: s.encode("utf-8")),
    st.sampled_from(
        [b"Bearer ", b"Bearer a.b.c", b"acme.example.com", b"[::1]:80", b"..example.com", b"acme"]
    ),
)
_paths = st.one_of(
    st.sampled_from(["/chat", "/stream", "/health", "/", "/docs", "/t/acme/chat"]),
    st.text(min_size=1, max_size=40).map(lambda s: "/" + s),
)


@pytest.fixture(scope="module")
def example_app() -> Any:
    from examples.fastapi_app import app

    return app


async def serve_one(app: Any, scope: dict[str, Any], body: bytes) -> list[dict[str, Any]]:
    """Run one request as a server would: the body is delivered once; a later `receive`
    waits until the response is complete, then reports the client gone. (A `receive` that
    answers at once forever makes a streaming response's disconnect listener spin.)"""
    messages: list[dict[str, Any]] = []
    complete = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            complete.set()

    await app(scope, receive, send)
    return messages


# Far in the future, not minted per test: an @example is built at import time.
_VALID_JWT = jwt.encode({"tenant_id": "acme", "exp": 4_102_444_800}, JWT_SECRET, "HS256").encode()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=_paths,
    method=st.sampled_from(["GET", "POST"]),
    headers=st.lists(st.tuples(_header_names, _header_values), max_size=6),
    body=st.binary(max_size=200),
)
# Draws that once hung the harness: a streamed response for a valid tenant, by each source.
@example(path="/stream", method="GET", headers=[(b"x-tenant-id", b"acme")], body=b"")
@example(path="/stream", method="GET", headers=[(b"host", b"acme.example.com")], body=b"")
@example(
    path="/stream", method="GET", headers=[(b"authorization", b"Bearer " + _VALID_JWT)], body=b""
)
def test_fuzzed_requests_get_2xx_or_4xx_never_5xx(
    example_app: Any, path: str, method: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """Whatever the headers, hosts, tokens, paths and bodies: 2xx or 4xx, never 5xx, and
    the context is clean afterwards."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": [(name, value) for name, value in headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    messages = asyncio.run(serve_one(example_app, scope, body))
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    assert 200 <= status < 500, (status, messages)
    assert tenant_trace.get_current_tenant() is None
