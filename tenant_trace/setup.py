"""`init()`: one call that configures OpenTelemetry tracing for tenant-trace."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from .config import genai_latest_experimental, settings
from .context import set_tenant_pattern
from .errors import ConfigurationError
from .export.otlp import env
from .export.pipeline import batch_processor, build_exporters
from .export.processor import TenantSpanProcessor
from .export.retention import parse_retention
from .export.routes import Routes, parse_routes
from .export.routing import RoutingSpanProcessor, activate
from .export.sampling import ENV as SAMPLING_ENV
from .export.sampling import TenantSampler
from .export.store import SQLiteSpanExporter
from .metrics import install as install_metrics
from .redaction import Redactor, configure_redaction
from .usage import Ledger, UsageSpanProcessor
from .usage.prices import ENV as PRICES_ENV
from .usage.prices import PricesSpec, parse_prices
from .usage.prices import configure as configure_prices

__all__ = ["add_processors", "init"]

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
    metrics: str | MetricReader | Sequence[MetricReader] | None = None,
    metrics_port: int | None = None,
    max_metric_tenants: int | None = None,
    metric_tenants: Iterable[str] | None = None,
    tenant_pattern: str | None = None,
    capture_content: bool | None = None,
    max_content_length: int | None = None,
    redact: bool | Redactor = True,
    pseudonymize_users: bool | None = None,
    genai_provider: str | None = None,
    prices: PricesSpec | None = None,
    auto_instrument: bool = False,
    json_logs: bool = False,
    instrument_threads: bool = True,
    routes: Mapping[str, str | Mapping[str, Any]] | None = None,
    unrouted: str | None = None,
    mirror: bool | None = None,
    retention: Mapping[str, str] | None = None,
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
        sampler: e.g. a `TenantSampler` (per-tenant ratios); default: the one
            ``TENANT_TRACE_SAMPLING`` describes, else ``OTEL_TRACES_SAMPLER[_ARG]``.
        metrics: where the per-tenant metrics go: ``"prometheus"`` (a scrape endpoint;
            ``pip install 'tenant-trace[prometheus]'``), ``"otlp"``, ``"console"``,
            ``"none"``, a `MetricReader`, or several; default: ``OTEL_METRICS_EXPORTER``,
            else OTLP when an OTLP endpoint is set. A `MeterProvider` the application
            installed is kept.
        metrics_port: the Prometheus endpoint's port; default: ``OTEL_EXPORTER_PROMETHEUS_PORT``,
            else 9464 (host: ``OTEL_EXPORTER_PROMETHEUS_HOST``, default ``localhost``).
        max_metric_tenants: distinct tenant ids on metrics per process (default 1000);
            the others are recorded as ``__other__``.
        metric_tenants: tenant ids always kept on metrics, beyond `max_metric_tenants`.
        tenant_pattern: a regular expression every tenant id must match in full.
        capture_content: record prompts, completions, queries and tool data on spans
            (truncated, redacted); default off, or ``TENANT_TRACE_CAPTURE_CONTENT``.
        max_content_length: captured text is truncated to this (default 500 characters).
        redact: ``True`` (default): captured text and log lines go through a default
            `Redactor` (``settings.redact``), and every exporter built here is wrapped in a
            `RedactingSpanExporter`; a `Redactor`: the same with yours; ``False``: neither.
            Exporters you added to your own provider are left as they are.
        pseudonymize_users: record the ``user.id`` of `tenant_trace.identity` as a
            per-tenant pseudonym (default) or, with ``False``, as given.
        genai_provider: ``gen_ai.provider.name`` of the `llm_call` steps that give no
            ``provider=`` (``"openai"``, ``"anthropic"``, ...); default:
            ``TENANT_TRACE_GENAI_PROVIDER``, else ``"unknown"``. Each ``init()`` also reads
            ``OTEL_SEMCONV_STABILITY_OPT_IN``: with ``gen_ai_latest_experimental`` in it,
            tenant-trace's spans carry the latest experimental GenAI conventions only.
        prices: USD per million tokens per model, ``{"gpt-4o": (2.5, 10.0, 1.25)}``
            (input, output and optionally cached input), or the path of a JSON file of
            them; default: the file ``TENANT_TRACE_PRICES`` names. A model without a price
            has its tokens counted and its cost unknown.
        auto_instrument: switch on the installed OpenTelemetry instrumentations of LLM and
            HTTP clients and of LangChain (openai, anthropic, langchain, httpx, requests), and
            pydantic-ai's own (``Agent.instrument_all()``); the log says which.
        json_logs: write JSON log lines with tenant, trace, span and agent ids on stderr
            (`tenant_trace.configure_logging()` with its defaults).
        instrument_threads: make `ThreadPoolExecutor.submit` (so `loop.run_in_executor`)
            and `threading.Thread` carry the caller's tenant and span into the thread
            (`tenant_trace.instrument_threads()`); ``False`` leaves them alone.
        routes: each tenant's own destination for its spans and OpenTelemetry logs:
            ``{"acme": "http://collector-a:4318", "globex": {"endpoint": ..., "headers":
            {"X-Scope-OrgID": "globex"}, "protocol": "http/protobuf", "timeout": 10}}``;
            whole traces follow their tenant, each destination has its own queue and
            export thread; default: the JSON file (or JSON) ``TENANT_TRACE_ROUTES`` names.
        unrouted: where the spans of tenants without a route, and of no tenant, go:
            ``"default"`` (the exporters above) or ``"drop"``; default:
            ``TENANT_TRACE_UNROUTED``, else ``"default"``.
        mirror: also send routed spans to the exporters above; default:
            ``TENANT_TRACE_MIRROR``, else ``False``.
        retention: how long the local store keeps each tenant's spans,
            ``{"default": "7d", "acme": "90d"}``; default: ``TENANT_TRACE_RETENTION``
            (``"default=7d,acme=90d"``), else 7 days for all.

    Returns:
        The SDK `TracerProvider` in use.

    Raises:
        ConfigurationError: an option is invalid (a route's endpoint, protocol or header,
            `unrouted`, an age, `genai_provider`): the message names it.
    """
    routing = parse_routes(routes, unrouted, mirror)
    price_table = parse_prices(prices) if prices is not None or env(PRICES_ENV) else None
    parse_retention(retention)
    if genai_provider is not None and (not isinstance(genai_provider, str) or not genai_provider):
        raise ConfigurationError("genai_provider must be a non-empty string such as 'openai'")
    with _lock:
        if tenant_pattern is not None:
            set_tenant_pattern(tenant_pattern)
        if capture_content is not None:
            settings.capture_content = capture_content
        if max_content_length is not None:
            settings.max_content_length = max_content_length
        redactor = configure_redaction(redact)
        if pseudonymize_users is not None:
            settings.pseudonymize_users = pseudonymize_users
        if genai_provider is not None:
            settings.genai_provider = genai_provider
        settings.genai_latest = genai_latest_experimental()
        if price_table is not None:
            configure_prices(price_table)
        if json_logs:
            from .logs import configure_logging

            configure_logging()
        if instrument_threads:
            from .propagate.threads import instrument_threads as carry_into_threads

            carry_into_threads()
        if auto_instrument:
            from .export.instrument import auto_instrument as instrument_clients

            instrument_clients()
        install_metrics(
            metrics,
            service_name=service_name,
            port=metrics_port,
            endpoint=endpoint,
            protocol=protocol,
            max_tenants=max_metric_tenants,
            always_kept=metric_tenants,
        )
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            if getattr(current, _MARK, False):
                if any(
                    option is not None
                    for option in (exporter, sampler, service_name, routes, retention)
                ):
                    logger.warning(
                        "tenant_trace: init() ran before; its tracing options are ignored"
                    )
                return current
            provider = current
            if sampler is not None or env(SAMPLING_ENV):
                logger.warning("tenant_trace: the application's TracerProvider keeps its sampler")
            exporters = (
                build_exporters(exporter, endpoint, protocol, retention)
                if exporter is not None
                else []
            )
            if routing is not None:
                logger.warning(
                    "tenant_trace: routes apply to the exporters init() adds; the span "
                    "processors of the application's own TracerProvider still get every span"
                )
        else:
            resource = Resource.create({SERVICE_NAME: service_name} if service_name else None)
            sampler = sampler or TenantSampler.from_env()
            provider = TracerProvider(resource=resource, sampler=sampler)
            exporters = build_exporters(exporter, endpoint, protocol, retention)
        if retention is not None and not any(isinstance(e, SQLiteSpanExporter) for e in exporters):
            logger.warning("tenant_trace: retention applies to the local store, not in use here")
        add_processors(provider, exporters, redactor, routing)
        setattr(provider, _MARK, True)
        if provider is not current:
            trace.set_tracer_provider(provider)
        return provider


def add_processors(
    provider: TracerProvider,
    exporters: Sequence[SpanExporter],
    redactor: Redactor | None,
    routing: Routes | None = None,
) -> None:
    """The span processors `init()` adds to `provider`, in their order: the tenant stamp
    (first: the router reads it), usage counting (into the ledger of the first local store),
    then each exporter behind its batch processor and, with `redactor`, the redaction net;
    with `routing`, the exporters go behind the per-tenant router."""
    provider.add_span_processor(TenantSpanProcessor())
    stores = [e for e in exporters if isinstance(e, SQLiteSpanExporter)]
    provider.add_span_processor(UsageSpanProcessor(Ledger(stores[0].path) if stores else None))
    processors = [batch_processor(span_exporter, redactor) for span_exporter in exporters]
    if routing is not None:
        router = RoutingSpanProcessor(routing, processors, redactor=redactor)
        activate(router)
        processors = [router]
    for processor in processors:
        provider.add_span_processor(processor)
