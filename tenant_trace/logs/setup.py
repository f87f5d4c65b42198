"""`configure_logging`: JSON lines on a stream and, if asked, records to the OpenTelemetry
logs SDK, installed in one call that can be repeated."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from opentelemetry import trace

from ..export.otlp import named_exporters, otlp_exporter
from .fields import TenantLogFilter
from .formatter import TenantJsonFormatter
from .otel import OtelLogHandler
from .routing import RoutingLogProcessor

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter

__all__ = ["configure_logging"]

# Marks the handlers configure_logging installed, so that a second call replaces them.
_OWNER = "_tenant_trace_handler"
_lock = threading.Lock()


def configure_logging(
    level: int | str | None = logging.INFO,
    *,
    stream: TextIO | None = None,
    logger: logging.Logger | str | None = None,
    json: bool = True,
    otel: bool = False,
    exporter: str | LogRecordExporter | None = None,
    logger_provider: LoggerProvider | None = None,
) -> list[logging.Handler]:
    """Write JSON log lines correlated with traces and tenants; safe to call more than once.

    Installs on `logger` a stream handler with `TenantLogFilter` and `TenantJsonFormatter`
    and, with `otel`, an `OtelLogHandler`. A later call replaces the handlers an earlier one
    installed on the same logger; it never adds a second copy.

    Args:
        level: the logger's level (``None`` leaves it as it is).
        stream: where JSON lines go (default: ``sys.stderr``).
        logger: the logger or its name (default: the root logger).
        json: install the JSON stream handler.
        otel: also export records through the OpenTelemetry logs SDK.
        exporter: for `otel`: a `LogRecordExporter`, or ``"otlp"``, ``"console"``,
            ``"none"``; default: ``OTEL_LOGS_EXPORTER``, else OTLP when an OTLP endpoint is
            set. Exported in batches off the request path.
        logger_provider: for `otel`: the SDK `LoggerProvider` to use; default: the global
            one if it is an SDK provider, else a new one, installed as the global provider.

    Returns:
        The handlers now installed on the logger by tenant-trace.

    Raises:
        ConfigurationError: an unknown exporter name.
        MissingDependencyError: ``"otlp"`` without the ``otlp`` extra.
    """
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    with _lock:
        handlers: list[logging.Handler] = []
        if json:
            handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
            handler.addFilter(TenantLogFilter())
            handler.setFormatter(TenantJsonFormatter())
            handlers.append(handler)
        if otel:
            handlers.append(OtelLogHandler(_logger_provider(logger_provider, exporter)))
        for old in [h for h in target.handlers if getattr(h, _OWNER, False)]:
            target.removeHandler(old)
        for handler in handlers:
            setattr(handler, _OWNER, True)
            target.addHandler(handler)
        if level is not None:
            target.setLevel(level)
        return handlers


def _logger_provider(
    provider: LoggerProvider | None, exporter: str | LogRecordExporter | None
) -> LoggerProvider:
    from opentelemetry._logs import get_logger_provider, set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    if provider is None:
        current = get_logger_provider()
        if isinstance(current, LoggerProvider):
            provider = current
        else:
            tracer_provider = trace.get_tracer_provider()
            provider = LoggerProvider(resource=getattr(tracer_provider, "resource", None))
            set_logger_provider(provider)
    # Every record passes the router, which follows init()'s tenant routes (if any) and
    # hands the others to the default exporters; each is added once, however often
    # configure_logging runs.
    router = provider.__dict__.get("_tenant_trace_router")
    if router is None:
        router = provider.__dict__["_tenant_trace_router"] = RoutingLogProcessor()
        provider.add_log_record_processor(router)
    added: set[object] = provider.__dict__.setdefault("_tenant_trace_exporters", set())
    for key, log_exporter in _log_exporters(exporter):
        if key not in added:
            added.add(key)
            router.defaults.append(BatchLogRecordProcessor(log_exporter))
    return provider


def _log_exporters(
    exporter: str | LogRecordExporter | None,
) -> list[tuple[object, LogRecordExporter]]:
    """``(identity, exporter)`` pairs for `exporter` or, when it is ``None``, OTEL_* vars."""
    if exporter is not None and not isinstance(exporter, str):
        return [(exporter, exporter)]
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    factories: dict[str, Callable[[], tuple[object, LogRecordExporter]] | None] = {
        "console": lambda: ("console", ConsoleLogRecordExporter()),
        "otlp": lambda: ("otlp", otlp_exporter("logs")),
        "none": None,
    }
    return named_exporters("logs", exporter, factories)
