"""Per-request cost in-process: the ASGI (Starlette) and WSGI (Flask) app called directly,
bare and under each middleware, interleaved in one run so that ratios are fair.

Each variant runs `ROUNDS` rounds of `N` requests; the median round gives microseconds per
request, and the overhead is that minus the bare app's.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from benchmarks.bare import flask_app, starlette_app
from tenant_trace import metrics
from tenant_trace.export.processor import TenantSpanProcessor
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware

SECRET = "benchmark-secret-of-at-least-32-bytes!!"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


class NullExporter(SpanExporter):
    """Drops spans: the cost measured is the request path's, not an exporter's."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(*, tenant: bool) -> TracerProvider:
    result = TracerProvider()
    if tenant:
        result.add_span_processor(TenantSpanProcessor())
    result.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=100_000))
    return result


def token(tenant: str, algorithm: str) -> str:
    key: Any = SECRET if algorithm == "HS256" else RSA_KEY
    return jwt.encode({"tenant_id": tenant, "exp": time.time() + 3600}, key, algorithm=algorithm)


def jwt_options(algorithm: str) -> dict[str, Any]:
    key = SECRET if algorithm == "HS256" else RSA_PUBLIC
    return {"jwt": {"key": key, "algorithms": [algorithm], "claim": "tenant_id"}}


# -- ASGI -----------------------------------------------------------------------------------

_floor_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("floor", default=None)


# The six attributes the issue requires on the root span, for the floor variant that sets
# them too: what the SDK charges for them is then visible apart from tenant-trace's own work.
SIX = {
    "tenant.id": "acme",
    "tenant.source": "header",
    "http.request.method": "POST",
    "url.path": "/chat",
    "http.route": "/chat",
    "http.response.status_code": 200,
}


class FloorASGI:
    """The floor: set a contextvar from a header and open one SDK span around the app."""

    def __init__(self, app: Any, tracer_provider: TracerProvider, attributes: Any = None) -> None:
        self.app = app
        self.tracer = tracer_provider.get_tracer("floor")
        self.attributes = attributes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        tenant = next((v.decode() for k, v in scope["headers"] if k == b"x-tenant-id"), None)
        token = _floor_var.set(tenant)
        try:
            with self.tracer.start_as_current_span("agent.run", attributes=self.attributes):
                await self.app(scope, receive, send)
        finally:
            _floor_var.reset(token)


def asgi_variants() -> dict[
    str, tuple[Any, list[tuple[bytes, bytes]] | Callable[[int], list[tuple[bytes, bytes]]]]
]:
    from asgi_correlation_id import CorrelationIdMiddleware
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    header = [(b"x-tenant-id", b"acme")]
    bare = starlette_app()

    def bearer(algorithm: str) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", f"Bearer {token('acme', algorithm)}".encode())]

    def first_sight(algorithm: str) -> Callable[[int], list[tuple[bytes, bytes]]]:
        tokens = [bearer(algorithm) for _ in range(2000)]
        return lambda i: tokens[i % len(tokens)]

    tt = TenantTraceASGIMiddleware
    return {
        "bare": (bare, header),
        "asgi-correlation-id": (CorrelationIdMiddleware(starlette_app()), header),
        "opentelemetry-asgi": (
            OpenTelemetryMiddleware(starlette_app(), tracer_provider=provider(tenant=False)),
            header,
        ),
        "floor (contextvar + 1 span)": (FloorASGI(starlette_app(), provider(tenant=False)), header),
        "floor + the same 6 span attributes": (
            FloorASGI(starlette_app(), provider(tenant=False), SIX),
            header,
        ),
        "tenant-trace context only (tracing off)": (tt(starlette_app(), tracing=False), header),
        "tenant-trace full (header, span, metrics)": (
            tt(starlette_app(), tracer_provider=provider(tenant=True)),
            header,
        ),
        "tenant-trace JWT HS256 repeated": (
            tt(starlette_app(), tracer_provider=provider(tenant=True), **jwt_options("HS256")),
            bearer("HS256"),
        ),
        "tenant-trace JWT HS256 first sight": (
            tt(starlette_app(), tracer_provider=provider(tenant=True), **jwt_options("HS256")),
            first_sight("HS256"),
        ),
        "tenant-trace JWT RS256 repeated": (
            tt(starlette_app(), tracer_provider=provider(tenant=True), **jwt_options("RS256")),
            bearer("RS256"),
        ),
        "tenant-trace JWT RS256 first sight": (
            tt(starlette_app(), tracer_provider=provider(tenant=True), **jwt_options("RS256")),
            first_sight("RS256"),
        ),
    }


async def _asgi_round(app: Any, headers: Any, n: int, offset: int) -> float:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    make = headers if callable(headers) else None
    start = time.process_time()
    for i in range(n):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/chat",
            "raw_path": b"/chat",
            "query_string": b"",
            "root_path": "",
            "headers": make(offset + i) if make else headers,
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
    elapsed = time.process_time() - start
    assert sent[0]["status"] == 200, sent[0]
    return elapsed / n * 1e6


# -- WSGI -----------------------------------------------------------------------------------


class FloorWSGI:
    def __init__(self, app: Any, tracer_provider: TracerProvider, attributes: Any = None) -> None:
        self.app = app
        self.tracer = tracer_provider.get_tracer("floor")
        self.attributes = attributes

    def __call__(self, environ: Any, start_response: Any) -> Any:
        token = _floor_var.set(environ.get("HTTP_X_TENANT_ID"))
        try:
            with self.tracer.start_as_current_span("agent.run", attributes=self.attributes):
                return list(self.app(environ, start_response))
        finally:
            _floor_var.reset(token)


def wsgi_variants() -> dict[str, tuple[Any, dict[str, str] | Callable[[int], dict[str, str]]]]:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    header = {"HTTP_X_TENANT_ID": "acme"}

    def bearer(algorithm: str) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {token('acme', algorithm)}"}

    def first_sight(algorithm: str) -> Callable[[int], dict[str, str]]:
        tokens = [bearer(algorithm) for _ in range(2000)]
        return lambda i: tokens[i % len(tokens)]

    def wrapped(middleware: Any, **options: Any) -> Any:
        app = flask_app()
        app.wsgi_app = middleware(app.wsgi_app, **options)  # type: ignore[method-assign]
        return app

    tt = TenantTraceWSGIMiddleware
    return {
        "bare": (flask_app(), header),
        "opentelemetry-wsgi": (
            wrapped(OpenTelemetryMiddleware, tracer_provider=provider(tenant=False)),
            header,
        ),
        "floor (contextvar + 1 span)": (
            wrapped(FloorWSGI, tracer_provider=provider(tenant=False)),
            header,
        ),
        "floor + the same 6 span attributes": (
            wrapped(FloorWSGI, tracer_provider=provider(tenant=False), attributes=SIX),
            header,
        ),
        "tenant-trace context only (tracing off)": (wrapped(tt, tracing=False), header),
        "tenant-trace full (header, span, metrics)": (
            wrapped(tt, tracer_provider=provider(tenant=True)),
            header,
        ),
        "tenant-trace JWT HS256 repeated": (
            wrapped(tt, tracer_provider=provider(tenant=True), **jwt_options("HS256")),
            bearer("HS256"),
        ),
        "tenant-trace JWT HS256 first sight": (
            wrapped(tt, tracer_provider=provider(tenant=True), **jwt_options("HS256")),
            first_sight("HS256"),
        ),
        "tenant-trace JWT RS256 repeated": (
            wrapped(tt, tracer_provider=provider(tenant=True), **jwt_options("RS256")),
            bearer("RS256"),
        ),
        "tenant-trace JWT RS256 first sight": (
            wrapped(tt, tracer_provider=provider(tenant=True), **jwt_options("RS256")),
            first_sight("RS256"),
        ),
    }


def _wsgi_round(app: Any, headers: Any, n: int, offset: int) -> float:
    statuses: list[str] = []

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    make = headers if callable(headers) else None
    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/chat",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": None,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "REMOTE_ADDR": "127.0.0.1",
    }
    start = time.process_time()
    for i in range(n):
        environ = {**base, **(make(offset + i) if make else headers)}
        body = app(environ, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    elapsed = time.process_time() - start
    assert statuses[0].startswith("200"), statuses[0]
    return elapsed / n * 1e6


# tenant-trace's metrics are recorded through a real SDK MeterProvider for the variants that
# include them (full and JWT), and through a no-op one for the others.
_METERS = {True: MeterProvider([InMemoryMetricReader()]), False: NoOpMeterProvider()}


def _with_metrics(name: str) -> bool:
    return name.startswith("tenant-trace") and "context only" not in name


def measure(kind: str, *, n: int = 3000, rounds: int = 7) -> dict[str, float]:
    """Median microseconds per request of each variant of `kind` (``asgi`` or ``wsgi``)."""
    variants = asgi_variants() if kind == "asgi" else wsgi_variants()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    loop = asyncio.new_event_loop()
    try:
        for r in range(rounds + 1):  # round 0 warms up and is dropped
            for name, (app, headers) in variants.items():
                metrics.configure(meter_provider=_METERS[_with_metrics(name)])
                gc.collect()
                if kind == "asgi":
                    value = loop.run_until_complete(_asgi_round(app, headers, n, r * n))
                else:
                    value = _wsgi_round(app, headers, n, r * n)
                if r:
                    samples[name].append(value)
    finally:
        loop.close()
    return {name: statistics.median(values) for name, values in samples.items()}
