"""Log records exported through the OpenTelemetry bridge follow the tenant routes of their
spans: `RoutingLogProcessor` sends each record to its tenant's destination (over
``/v1/logs``), the others to the default log exporters, as ``init(routes=...)`` says."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from opentelemetry import metrics
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter

from ..export.otlp import otlp_exporter
from ..export.routes import Destination
from ..export.routing import (
    Lane,
    Lanes,
    Taken,
    active_router,
    dropped_counter,
    queue_size,
)

__all__ = ["RoutingLogProcessor"]

logger = logging.getLogger("tenant_trace")


def _otlp_logs(destination: Destination) -> LogRecordExporter:
    return otlp_exporter(  # type: ignore[no-any-return]
        "logs", destination.endpoint, destination.protocol, **destination.exporter_options()
    )


class RoutingLogProcessor(LogRecordProcessor):
    """Routes each record by its ``tenant.id`` attribute, or, without one, by the tenant of
    the span it was logged in; with no routes installed, every record goes to `defaults`.

    Args:
        exporter: makes a destination's exporter (default: OTLP logs to its endpoint).
        limit: records each destination may hold at most (default: `queue_size`).
        meter_provider: for the drop counter (default: the global one).
    """

    def __init__(
        self,
        *,
        exporter: Callable[[Destination], LogRecordExporter] | None = None,
        limit: int | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        #: The processors of the default log exporters.
        self.defaults: list[LogRecordProcessor] = []
        self._make_exporter = exporter or _otlp_logs
        self.lanes: Lanes[ReadWriteLogRecord] = Lanes(
            "logs", self._build, limit or queue_size("logs"), dropped_counter(meter_provider)
        )

    def __repr__(self) -> str:
        return f"RoutingLogProcessor(defaults={len(self.defaults)}, {self.lanes!r})"

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        try:
            destination, to_defaults = None, True
            router = active_router()
            if router is not None:
                record = log_record.log_record
                tenant = (record.attributes or {}).get("tenant.id")
                if not isinstance(tenant, str):
                    tenant = router.tenant_of_span(record.span_id) if record.span_id else None
                destination, to_defaults = router.routes.where(tenant)
            if destination is not None:
                self.lanes.get(destination).offer(log_record)
            if to_defaults:
                for processor in self.defaults:
                    processor.on_emit(log_record)
        except Exception:
            logger.debug("tenant_trace: could not route a log record", exc_info=True)

    def _build(self, destination: Destination, lane: Lane[ReadWriteLogRecord]) -> Any:
        taken = cast(LogRecordExporter, Taken(self._make_exporter(destination), lane))
        processor = BatchLogRecordProcessor(taken, max_queue_size=lane.limit)
        lane.submit = processor.on_emit
        return processor

    def shutdown(self) -> None:
        self.lanes.shutdown(self.defaults)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.lanes.force_flush(self.defaults, timeout_millis)
