"""Exposure: which metric readers, on which meter provider (`install`, called by `init()`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from opentelemetry import metrics as otel_metrics

from ..errors import ConfigurationError, MissingDependencyError
from ..export.otlp import env, named_exporters, otlp_exporter
from .record import METER_NAME, STREAMS_PER_TENANT, _get, configure

if TYPE_CHECKING:  # the SDK is imported when init() installs metrics, never to record
    from opentelemetry.sdk.metrics.export import MetricReader

__all__ = ["build_metric_readers", "install"]

logger = logging.getLogger("tenant_trace")
_MARK = "_tenant_trace_installed"


def install(
    exporter: str | MetricReader | Sequence[MetricReader] | None,
    *,
    service_name: str | None = None,
    port: int | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    max_tenants: int | None = None,
    always_kept: Iterable[str] | None = None,
) -> otel_metrics.MeterProvider:
    """Send the metrics where `exporter` says; `init()` calls this.

    An SDK `MeterProvider` the application installed is kept (its readers cannot be
    changed: a reader given here is then ignored, with a warning). Otherwise, when there is
    a reader, a provider with them is installed as the global one.
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.view import View
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    if max_tenants is not None or always_kept is not None:
        configure(max_tenants=max_tenants, always_kept=always_kept)
    current_provider = otel_metrics.get_meter_provider()
    if isinstance(current_provider, MeterProvider):
        if exporter is not None and not getattr(current_provider, _MARK, False):
            logger.warning(
                "tenant_trace: the application's MeterProvider is kept; add the metric "
                "reader to it yourself (metrics=%r is ignored)",
                exporter,
            )
        return current_provider
    readers = build_metric_readers(exporter, port=port, endpoint=endpoint, protocol=protocol)
    if not readers:
        return current_provider
    limit = STREAMS_PER_TENANT * _get().cap.size
    try:
        views = [View(meter_name=METER_NAME, aggregation_cardinality_limit=limit)]
    except TypeError:  # an SDK from before cardinality limits: nothing to raise
        views = []
    provider = MeterProvider(
        metric_readers=readers,
        resource=Resource.create({SERVICE_NAME: service_name} if service_name else None),
        views=views,
    )
    setattr(provider, _MARK, True)
    otel_metrics.set_meter_provider(provider)
    return provider


def build_metric_readers(
    exporter: str | MetricReader | Sequence[MetricReader] | None,
    *,
    port: int | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
) -> list[MetricReader]:
    """The readers named by `exporter` (``prometheus``, ``otlp``, ``console``, ``none``, or
    several separated by commas) or, when it is ``None``, by ``OTEL_METRICS_EXPORTER``
    (default: ``otlp`` when an OTLP endpoint is configured, else ``none``)."""
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricReader,
        PeriodicExportingMetricReader,
    )

    if isinstance(exporter, MetricReader):
        return [exporter]
    if exporter is not None and not isinstance(exporter, str):
        return list(exporter)
    factories: dict[str, Callable[[], MetricReader] | None] = {
        "prometheus": lambda: _prometheus(port),
        "otlp": lambda: PeriodicExportingMetricReader(otlp_exporter("metrics", endpoint, protocol)),
        "console": lambda: PeriodicExportingMetricReader(ConsoleMetricExporter()),
        "none": None,
    }
    return named_exporters("metrics", exporter, factories, endpoint=endpoint)


def _prometheus(port: int | None) -> MetricReader:
    """A Prometheus reader and its scrape endpoint (``OTEL_EXPORTER_PROMETHEUS_HOST``,
    default ``localhost``; port `port`, else ``OTEL_EXPORTER_PROMETHEUS_PORT``, else 9464)."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError:
        raise MissingDependencyError("opentelemetry-exporter-prometheus", "prometheus") from None
    host = env("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost"
    raw = port if port is not None else env("OTEL_EXPORTER_PROMETHEUS_PORT") or 9464
    try:
        number = int(raw)
    except ValueError:
        raise ConfigurationError("the Prometheus port must be an integer") from None
    reader: MetricReader = PrometheusMetricReader()
    try:
        start_http_server(number, host)
    except OSError as exc:
        # Several worker processes of one server cannot share the port: the first one
        # serves its metrics, the others say so rather than fail to start.
        logger.warning("tenant_trace: no Prometheus endpoint on %s:%s (%s)", host, number, exc)
    return reader
