"""Per-request cost in-process: the ASGI (Starlette) and WSGI (Flask) app called directly,
bare and under each middleware, interleaved in one run so that ratios are fair.

Each variant that traces exports through one of the same three exporters as its peers: a
null exporter, the local store, and OTLP/HTTP to a receiver on loopback (another process).
A round is `n` requests and then a flush of the variant's provider, so that the export
threads' work is the round's, never the next variant's; its cost is the CPU time of the
whole process (export threads included) per request, beside the wall time. The median of
the rounds is reported.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from opentelemetry import metrics as otel_metrics
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from benchmarks.bare import flask_app, starlette_app
from tenant_trace import metrics
from tenant_trace.export.pipeline import batch_processor
from tenant_trace.export.processor import TenantSpanProcessor
from tenant_trace.export.sampling import TenantSampler
from tenant_trace.export.store import SQLiteSpanExporter
from tenant_trace.redaction import Redactor
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware
from tenant_trace.setup import add_processors
from tenant_trace.usage import UsageSpanProcessor

SECRET = "benchmark-secret-of-at-least-32-bytes!!"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
EXPORTERS = ("null", "store", "otlp")

#: One SDK meter provider for every variant that records metrics: tenant-trace's, the
#: floor's histogram and OpenTelemetry's instrumentations. Recording costs alike for all.
METRIC_READER = InMemoryMetricReader()
METER_PROVIDER = MeterProvider([METRIC_READER])
metrics.configure(meter_provider=METER_PROVIDER)
# Also the global one, as in an application with metrics: what the SDK records about itself
# (where it is switched on) goes there and is counted.
if not isinstance(otel_metrics.get_meter_provider(), MeterProvider):  # served.py has one
    otel_metrics.set_meter_provider(METER_PROVIDER)


class NullExporter(SpanExporter):
    """Drops spans: the cost measured is the request path's and the batch processor's."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass
class Exporters:
    """Makes a new exporter of a kind: each variant gets its own (its own store file)."""

    otlp_endpoint: str
    folder: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="tenant-trace-bench-"))
    )

    def __call__(self, kind: str) -> SpanExporter:
        if kind == "null":
            return NullExporter()
        if kind == "store":
            return SQLiteSpanExporter(self.folder / f"{uuid.uuid4().hex}.sqlite3")
        return OTLPSpanExporter(endpoint=f"{self.otlp_endpoint}/v1/traces")


def floor_provider(exporter: SpanExporter) -> TracerProvider:
    """What a hand-made integration has: an SDK provider and a batch processor with the
    SDK's defaults, as `init()`'s."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tenant_trace_provider(exporter: SpanExporter) -> TracerProvider:
    """What `init()` builds around `exporter`: its sampler, the tenant stamp, usage counting,
    the redaction net and a batch processor (`tenant_trace.setup.add_processors`)."""
    provider = TracerProvider(sampler=TenantSampler.from_env())
    add_processors(provider, [exporter], Redactor())
    return provider


def without(exporter: SpanExporter, *, usage: bool, redaction: bool) -> TracerProvider:
    """`tenant_trace_provider` without usage counting or the redaction net: what each costs
    (for the profile notes of a missed target; not a configuration to run)."""
    provider = TracerProvider(sampler=TenantSampler.from_env())
    provider.add_span_processor(TenantSpanProcessor())
    if usage:
        provider.add_span_processor(UsageSpanProcessor())
    provider.add_span_processor(batch_processor(exporter, Redactor() if redaction else None))
    return provider


def token(tenant: str, algorithm: str) -> str:
    key: Any = SECRET if algorithm == "HS256" else RSA_KEY
    return jwt.encode({"tenant_id": tenant, "exp": time.time() + 3600}, key, algorithm=algorithm)


def jwt_options(algorithm: str) -> dict[str, Any]:
    key = SECRET if algorithm == "HS256" else RSA_PUBLIC
    return {"jwt": {"key": key, "algorithms": [algorithm], "claim": "tenant_id"}}


# -- The honest floor -------------------------------------------------------------------------

_floor_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("floor", default=None)
_floor_duration = METER_PROVIDER.get_meter("floor").create_histogram("floor.run.duration", "s")


def floor_attributes(tenant: str | None, method: str, path: str) -> dict[str, Any]:
    """The six attributes tenant-trace puts on a request's root span (the status is set at
    the end, as it is there)."""
    return {
        "tenant.id": tenant,
        "tenant.source": "header",
        "http.request.method": method,
        "url.path": path,
        "http.route": path,
    }


class FloorASGI:
    """The honest floor: a contextvar from a header, one SDK span with the same six
    attributes, and one histogram record, exporting like its peers."""

    def __init__(self, app: Any, tracer_provider: TracerProvider) -> None:
        self.app = app
        self.tracer = tracer_provider.get_tracer("floor")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        tenant = next((v.decode() for k, v in scope["headers"] if k == b"x-tenant-id"), None)
        reset = _floor_var.set(tenant)
        started = time.perf_counter()
        attributes = floor_attributes(tenant, scope["method"], scope["path"])
        try:
            with self.tracer.start_as_current_span(
                "agent.run", kind=SpanKind.SERVER, attributes=attributes
            ) as span:
                await self.app(scope, receive, send)
                span.set_attribute("http.response.status_code", 200)
        finally:
            _floor_duration.record(
                time.perf_counter() - started, {"tenant.id": tenant or "", "outcome": "success"}
            )
            _floor_var.reset(reset)


class FloorWSGI:
    def __init__(self, app: Any, tracer_provider: TracerProvider) -> None:
        self.app = app
        self.tracer = tracer_provider.get_tracer("floor")

    def __call__(self, environ: Any, start_response: Any) -> Any:
        tenant = environ.get("HTTP_X_TENANT_ID")
        reset = _floor_var.set(tenant)
        started = time.perf_counter()
        attributes = floor_attributes(tenant, environ["REQUEST_METHOD"], environ["PATH_INFO"])
        try:
            with self.tracer.start_as_current_span(
                "agent.run", kind=SpanKind.SERVER, attributes=attributes
            ) as span:
                body = list(self.app(environ, start_response))
                span.set_attribute("http.response.status_code", 200)
                return body
        finally:
            _floor_duration.record(
                time.perf_counter() - started, {"tenant.id": tenant or "", "outcome": "success"}
            )
            _floor_var.reset(reset)


# -- Variants ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Variant:
    app: Any
    headers: Any  # the request's headers, or a function of the request's number
    provider: TracerProvider | None = None  # flushed at the end of each round
    path: str = "/chat"


def asgi_variants(make: Exporters) -> dict[str, Variant]:
    from asgi_correlation_id import CorrelationIdMiddleware
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    header = [(b"x-tenant-id", b"acme")]

    def bearer(algorithm: str) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", f"Bearer {token('acme', algorithm)}".encode())]

    def first_sight(algorithm: str) -> Callable[[int], list[tuple[bytes, bytes]]]:
        tokens = [bearer(algorithm) for _ in range(2000)]
        return lambda i: tokens[i % len(tokens)]

    def tt(headers: Any = header, exporter: str = "null", **options: Any) -> Variant:
        provider = tenant_trace_provider(make(exporter))
        app = TenantTraceASGIMiddleware(starlette_app(), tracer_provider=provider, **options)
        return Variant(app, headers, provider)

    variants = {
        "bare": Variant(starlette_app(), header),
        "asgi-correlation-id": Variant(CorrelationIdMiddleware(starlette_app()), header),
        "tenant-trace context only (tracing off)": Variant(
            TenantTraceASGIMiddleware(starlette_app(), tracing=False), header
        ),
    }
    for kind in EXPORTERS:
        floor = floor_provider(make(kind))
        otel = floor_provider(make(kind))
        variants[f"floor [{kind}]"] = Variant(FloorASGI(starlette_app(), floor), header, floor)
        variants[f"opentelemetry-asgi [{kind}]"] = Variant(
            OpenTelemetryMiddleware(
                starlette_app(), tracer_provider=otel, meter_provider=METER_PROVIDER
            ),
            header,
            otel,
        )
        variants[f"tenant-trace full [{kind}]"] = tt(exporter=kind)
    for name, parts in {
        "without the redaction net": {"usage": True, "redaction": False},
        "without usage counting": {"usage": False, "redaction": True},
        "without both": {"usage": False, "redaction": False},
    }.items():
        provider = without(make("null"), **parts)
        app = TenantTraceASGIMiddleware(starlette_app(), tracer_provider=provider)
        variants[f"tenant-trace full [null] {name}"] = Variant(app, header, provider)
    variants["tenant-trace JWT HS256 repeated [null]"] = tt(bearer("HS256"), **jwt_options("HS256"))
    variants["tenant-trace JWT HS256 first sight [null]"] = tt(
        first_sight("HS256"), **jwt_options("HS256")
    )
    variants["tenant-trace JWT RS256 repeated [null]"] = tt(bearer("RS256"), **jwt_options("RS256"))
    variants["tenant-trace JWT RS256 first sight [null]"] = tt(
        first_sight("RS256"), **jwt_options("RS256")
    )
    return variants


def wsgi_variants(make: Exporters) -> dict[str, Variant]:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    header = {"HTTP_X_TENANT_ID": "acme"}

    def bearer(algorithm: str) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {token('acme', algorithm)}"}

    def wrapped(middleware: Any, **options: Any) -> Any:
        app = flask_app()
        app.wsgi_app = middleware(app.wsgi_app, **options)  # type: ignore[method-assign]
        return app

    def tt(headers: Any = header, exporter: str = "null", **options: Any) -> Variant:
        provider = tenant_trace_provider(make(exporter))
        app = wrapped(TenantTraceWSGIMiddleware, tracer_provider=provider, **options)
        return Variant(app, headers, provider)

    variants = {
        "bare": Variant(flask_app(), header),
        "tenant-trace context only (tracing off)": Variant(
            wrapped(TenantTraceWSGIMiddleware, tracing=False), header
        ),
    }
    for kind in EXPORTERS:
        floor = floor_provider(make(kind))
        otel = floor_provider(make(kind))
        variants[f"floor [{kind}]"] = Variant(
            wrapped(FloorWSGI, tracer_provider=floor), header, floor
        )
        variants[f"opentelemetry-wsgi [{kind}]"] = Variant(
            wrapped(OpenTelemetryMiddleware, tracer_provider=otel, meter_provider=METER_PROVIDER),
            header,
            otel,
        )
        variants[f"tenant-trace full [{kind}]"] = tt(exporter=kind)
    variants["tenant-trace JWT HS256 repeated [null]"] = tt(bearer("HS256"), **jwt_options("HS256"))
    variants["tenant-trace JWT RS256 repeated [null]"] = tt(bearer("RS256"), **jwt_options("RS256"))
    return variants


# -- Rounds -----------------------------------------------------------------------------------


def asgi_scope(headers: list[tuple[bytes, bytes]], path: str = "/chat") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def asgi_requests(app: Any, headers: Any, n: int, offset: int, path: str = "/chat") -> None:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    make = headers if callable(headers) else None
    for i in range(n):
        await app(asgi_scope(make(offset + i) if make else headers, path), receive, send)
    assert sent[0]["status"] == 200, sent[0]


_WSGI_BASE = {
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


def wsgi_requests(app: Any, headers: Any, n: int, offset: int) -> None:
    statuses: list[str] = []

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    make = headers if callable(headers) else None
    for i in range(n):
        body = app({**_WSGI_BASE, **(make(offset + i) if make else headers)}, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    assert statuses[0].startswith("200"), statuses[0]


@dataclass
class Cost:
    """Median microseconds per request over the rounds: CPU of the whole process, wall."""

    cpu_us: float
    wall_us: float


def timed_rounds(
    variants: dict[str, Variant], run: Callable[[Variant, int], None], n: int, rounds: int
) -> dict[str, Cost]:
    """`rounds` interleaved rounds of `n` requests per variant (after one dropped warm-up
    round); each round ends with its variant's provider flushed, inside the measurement."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for r in range(rounds + 1):
        for name, variant in variants.items():
            gc.collect()
            cpu, wall = time.process_time(), time.perf_counter()
            run(variant, r * n)
            if variant.provider is not None:
                variant.provider.force_flush()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if r:
                samples[name].append((cpu / n * 1e6, wall / n * 1e6))
    return {
        name: Cost(statistics.median(c for c, _ in s), statistics.median(w for _, w in s))
        for name, s in samples.items()
    }


def measure(kind: str, make: Exporters, *, n: int = 2000, rounds: int = 5) -> dict[str, Cost]:
    """The cost of each variant of `kind` (``asgi`` or ``wsgi``)."""
    if kind == "wsgi":
        return timed_rounds(
            wsgi_variants(make),
            lambda v, offset: wsgi_requests(v.app, v.headers, n, offset),
            n,
            rounds,
        )
    loop = asyncio.new_event_loop()
    try:
        return timed_rounds(
            asgi_variants(make),
            lambda v, offset: loop.run_until_complete(asgi_requests(v.app, v.headers, n, offset)),
            n,
            rounds,
        )
    finally:
        loop.close()
