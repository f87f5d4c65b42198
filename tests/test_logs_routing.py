"""Log records exported through the OpenTelemetry bridge follow the tenant routes: a routed
tenant's lines go to its own destination (a real OTLP/HTTP receiver, ``/v1/logs``), never
to the default log exporters, unless mirrored."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace import TracerProvider

import tenant_trace
from tenant_trace.export.processor import TenantSpanProcessor
from tenant_trace.export.routes import parse_routes
from tenant_trace.export.routing import RoutingSpanProcessor, activate
from tests.servers.otlp import Receiver


@pytest.fixture
def bridge() -> Iterator[tuple[logging.Logger, LoggerProvider, InMemoryLogRecordExporter]]:
    """A logger exporting through the OpenTelemetry bridge to an in-memory default exporter."""
    provider = LoggerProvider()
    default = InMemoryLogRecordExporter()
    log = logging.getLogger("test.logs_routing")
    log.propagate = False
    tenant_trace.configure_logging(
        logger=log, json=False, otel=True, exporter=default, logger_provider=provider
    )
    yield log, provider, default
    tenant_trace.configure_logging(logger=log, json=False, level=None)
    provider.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver().running() as running:
        yield running


def bodies(exporter: InMemoryLogRecordExporter) -> list[str]:
    return sorted(str(r.log_record.body) for r in exporter.get_finished_logs())


def in_span(span_context: otel_context.Context, log: logging.Logger) -> None:
    token = otel_context.attach(span_context)
    try:
        log.warning("acme, no tenant")
    finally:
        otel_context.detach(token)


@pytest.mark.parametrize("mirror", [False, True])
def test_log_lines_follow_their_tenants_route(
    bridge: tuple[logging.Logger, LoggerProvider, InMemoryLogRecordExporter],
    receiver: Receiver,
    mirror: bool,
) -> None:
    """acme's lines (also one logged in acme's span where the tenant is not current) reach
    acme's receiver only; the others, and with ``mirror`` acme's too, the default exporter."""
    routes = parse_routes({"acme": receiver.url}, "default", mirror)
    assert routes is not None
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(TenantSpanProcessor())
    router = RoutingSpanProcessor(routes)
    tracer_provider.add_span_processor(router)
    log, provider, default = bridge
    activate(router)  # what init(routes=...) does
    try:
        with tenant_trace.tenant_context("acme"):
            log.warning("acme line")
            with tracer_provider.get_tracer("t").start_as_current_span("request"):
                # The request's span, in a fresh context: no tenant is current there.
                contextvars.Context().run(in_span, otel_context.get_current(), log)
        with tenant_trace.tenant_context("initech"):
            log.warning("initech line")
        log.warning("no tenant")
        provider.force_flush()
    finally:
        activate(None)
        tracer_provider.shutdown()
    assert sorted(r["body"] for r in receiver.logs) == ["acme line", "acme, no tenant"]
    assert {r["attributes"].get("tenant.id") for r in receiver.logs} == {"acme", None}
    others = ["initech line", "no tenant"]
    assert bodies(default) == sorted(others + (["acme line", "acme, no tenant"] if mirror else []))


def test_without_routes_every_line_goes_to_the_default_exporters(
    bridge: tuple[logging.Logger, LoggerProvider, InMemoryLogRecordExporter],
) -> None:
    """No init(routes=...): the router passes every record on."""
    log, provider, default = bridge
    with tenant_trace.tenant_context("acme"):
        log.warning("acme line")
    log.warning("no tenant")
    provider.force_flush()
    assert bodies(default) == ["acme line", "no tenant"]
