"""`init()`: one call that configures OpenTelemetry tracing for tenant-trace."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from .config import settings
from .context import set_tenant_pattern
from .errors import ConfigurationError, MissingDependencyError
from .processor import TenantSpanProcessor

__all__ = ["build_exporters", "init"]

logger = logging.getLogger("tenant_trace")
_lock = threading.Lock()
_MARK = "_tenant_trace_installed"


def init(
    *,
    service_name: str | None = None,
    exporter: str | SpanExporter | Sequence[SpanExporter] | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    sampler: Sampler | None = None,
    tenant_pattern: str | None = None,
    capture_content: bool | None = None,
    max_content_length: int | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    auto_instrument: bool = False,
) -> TracerProvider:
    """Configure tracing so every span carries its tenant; safe to call more than once.

    If the application already installed an SDK `TracerProvider`, the tenant processor is
    added to it (and `exporter`, when given) instead of replacing it. Otherwise a new
    provider is installed as the global one.

    Args:
        service_name: ``service.name``; default: ``OTEL_SERVICE_NAME``.
        exporter: ``"console"``, ``"otlp"``, ``"none"``, a `SpanExporter`, or several;
            default: ``OTEL_TRACES_EXPORTER``, else OTLP when an OTLP endpoint is set.
        endpoint: the OTLP endpoint; default: ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``.
        protocol: ``"http/protobuf"`` or ``"grpc"``;
            default: ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL``.
        sampler: default: ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``.
        tenant_pattern: a regular expression every tenant id must match in full.
        capture_content: record prompts, completions, queries and tool data on spans
            (truncated, redacted); default off, or ``TENANT_TRACE_CAPTURE_CONTENT``.
        max_content_length: captured text is truncated to this (default 500 characters).
        prices: USD per million tokens per model, ``{"gpt-4o": (2.5, 10.0)}`` (input,
            output), for the estimated cost rolled up on each run.
        auto_instrument: switch on the installed OpenTelemetry instrumentations of LLM and
            HTTP clients (openai, anthropic, httpx, requests); the log says which.

    Returns:
        The SDK `TracerProvider` in use.
    """
    with _lock:
        if tenant_pattern is not None:
            set_tenant_pattern(tenant_pattern)
        if capture_content is not None:
            settings.capture_content = capture_content
        if max_content_length is not None:
            settings.max_content_length = max_content_length
        if prices is not None:
            settings.prices = dict(prices)
        if auto_instrument:
            from .instrument import auto_instrument as instrument_clients

            instrument_clients()
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            if getattr(current, _MARK, False):
                if exporter is not None or sampler is not None or service_name is not None:
                    logger.warning(
                        "tenant_trace: init() ran before; its tracing options are ignored"
                    )
                return current
            provider = current
            exporters = (
                build_exporters(exporter, endpoint, protocol) if exporter is not None else []
            )
        else:
            resource = Resource.create({SERVICE_NAME: service_name} if service_name else None)
            provider = TracerProvider(resource=resource, sampler=sampler)
            exporters = build_exporters(exporter, endpoint, protocol)
        provider.add_span_processor(TenantSpanProcessor())
        for span_exporter in exporters:
            provider.add_span_processor(batch_processor(span_exporter))
        setattr(provider, _MARK, True)
        if provider is not current:
            trace.set_tracer_provider(provider)
        return provider


def batch_processor(exporter: SpanExporter) -> SpanProcessor:
    """Export off the request path, with a bounded queue that drops rather than blocks."""
    return BatchSpanProcessor(exporter)


def build_exporters(
    exporter: str | SpanExporter | Sequence[SpanExporter] | None,
    endpoint: str | None = None,
    protocol: str | None = None,
) -> list[SpanExporter]:
    """The span exporters named by `exporter` or, when it is ``None``, by OTEL_* variables."""
    if isinstance(exporter, SpanExporter):
        return [exporter]
    if exporter is not None and not isinstance(exporter, str):
        return list(exporter)
    configured = (
        endpoint
        or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    names = exporter or _env("OTEL_TRACES_EXPORTER") or ("otlp" if configured else "none")
    result: list[SpanExporter] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name == "console":
            result.append(ConsoleSpanExporter())
        elif name == "otlp":
            result.append(_otlp(endpoint, protocol))
        elif name != "none":
            raise ConfigurationError(f"unknown traces exporter {name!r} (console, otlp or none)")
    return result


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _otlp(endpoint: str | None, protocol: str | None) -> SpanExporter:
    """An OTLP exporter; without an explicit `endpoint` it reads the OTEL_* variables itself."""
    protocol = (
        protocol
        or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as Grpc,
            )

            return Grpc(endpoint=endpoint) if endpoint else Grpc()
        if protocol in ("http/protobuf", "http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as Http,
            )

            if endpoint:
                # A base endpoint, as in OTEL_EXPORTER_OTLP_ENDPOINT: the signal path is added.
                return Http(endpoint=endpoint.rstrip("/") + "/v1/traces")
            return Http()
    except ImportError:
        raise MissingDependencyError("opentelemetry-exporter-otlp", "otlp") from None
    raise ConfigurationError(f"unknown OTLP protocol {protocol!r} (http/protobuf or grpc)")
