"""The span export pipeline `init()` builds: exporters chosen by name, each behind a bounded
batch processor on its own thread, with the redaction safety net in front."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.environment_variables import OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from ..redaction import RedactingSpanExporter, Redactor
from .otlp import named_exporters, otlp_exporter
from .sampling import superseded

__all__ = ["batch_processor", "build_exporters"]


def batch_processor(
    exporter: SpanExporter, redactor: Redactor | None = None, **options: Any
) -> SpanProcessor:
    """Export off the request path, with a bounded queue that drops rather than blocks (a
    dead collector costs no request any time); with a `redactor`, spans are scrubbed on the
    export thread. This processor's own SDK metrics are switched on (unless the application
    set ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``), so dropped spans are counted as
    ``otel.sdk.processor.span.processed{error.type="queue_full"}``: a few points per batch.
    The variable is set only while the processor is made, so that the SDK's per-span
    metrics of every tracer (three points a span) stay off.

    Args:
        options: `BatchSpanProcessor` arguments (``max_queue_size=``, ``meter_provider=`` ...).
    """
    if redactor is not None:
        exporter = RedactingSpanExporter(exporter, redactor)
    if OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED in os.environ:  # the application decided
        return _BatchSpanProcessor(exporter, **options)
    os.environ[OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED] = "true"
    try:
        return _BatchSpanProcessor(exporter, **options)
    finally:
        os.environ.pop(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, None)


class _BatchSpanProcessor(BatchSpanProcessor):
    """Leaves out the server spans a request's own root superseded (`superseded`)."""

    def on_end(self, span: ReadableSpan) -> None:
        if not superseded.covers(span):
            super().on_end(span)


def build_exporters(
    exporter: str | SpanExporter | Sequence[SpanExporter] | None,
    endpoint: str | None = None,
    protocol: str | None = None,
    retention: Mapping[str, object] | None = None,
) -> list[SpanExporter]:
    """The span exporters named by `exporter` (``console``, ``otlp``, ``local``, ``none``)
    or, when it is ``None``, by the OTEL_* variables; with no exporter and no endpoint
    configured, the embedded local store (with `retention`, see `SQLiteSpanExporter`)."""
    if isinstance(exporter, SpanExporter):
        return [exporter]
    if exporter is not None and not isinstance(exporter, str):
        return list(exporter)

    def local() -> SpanExporter:
        from .store import SQLiteSpanExporter

        return SQLiteSpanExporter(retention=retention)

    factories: dict[str, Callable[[], SpanExporter] | None] = {
        "console": ConsoleSpanExporter,
        "otlp": lambda: otlp_exporter("traces", endpoint, protocol),
        "local": local,
        "none": None,
    }
    return named_exporters("traces", exporter, factories, endpoint=endpoint, fallback="local")
