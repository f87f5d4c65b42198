"""Per-tenant routing of finished spans: each span goes to the destination of its tenant, the
``tenant.id`` that `TenantSpanProcessor` stamped from the resolved tenant when it started.
Nothing a client sent (a header, baggage, a ``traceparent``) is ever a routing key.

Whole traces follow their tenant, other libraries' spans included: a span with no
``tenant.id`` (started where no tenant was current: an HTTP server span opened before the
tenant was known, a child started in a context without the tenant) belongs to the tenant of
its nearest local ancestor. A span that ends before its ancestors know their tenant waits
(bounded) until the nearest open ancestor ends; a span whose local root ends with no tenant
is unrouted. Remote parents are never followed: their ids come from a client.

Each destination has its own `Lane`: a bounded queue and an export thread (the SDK's batch
processor), created at its first span; a dead or slow collector fills only its own queue.
Spans a lane cannot take, or its exporter fails to send, are counted by
``tenant_trace.export.dropped{destination, signal, reason}``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanContext

from ..redaction import RedactingSpanExporter, Redactor
from .otlp import env, otlp_class, otlp_exporter
from .pipeline import batch_processor
from .routes import Destination, Routes
from .sampling import superseded

__all__ = [
    "Lane",
    "Lanes",
    "RoutingSpanProcessor",
    "Taken",
    "activate",
    "active_router",
    "dropped_counter",
    "each",
    "queue_size",
]

logger = logging.getLogger("tenant_trace")

T = TypeVar("T")
#: Spans remembered (their tenant, or that they are still open), for the spans under them.
MAX_TRACKED = 65_536
#: Spans waiting for an open ancestor to learn its tenant; beyond this, unrouted at once.
MAX_WAITING = 8_192
DROPPED = "tenant_trace.export.dropped"


def queue_size(signal: str) -> int:
    """The queue bound of one destination: ``OTEL_BSP_MAX_QUEUE_SIZE`` (traces) or
    ``OTEL_BLRP_MAX_QUEUE_SIZE`` (logs), as for the SDK's own batch processors; else 2048."""
    value = env("OTEL_BSP_MAX_QUEUE_SIZE" if signal == "traces" else "OTEL_BLRP_MAX_QUEUE_SIZE")
    return int(value) if value and value.isdigit() and int(value) > 0 else 2048


def dropped_counter(meter_provider: metrics.MeterProvider | None) -> metrics.Counter:
    """The counter of items a destination dropped."""
    meter = metrics.get_meter("tenant_trace.export", meter_provider=meter_provider)
    return meter.create_counter(
        DROPPED,
        unit="{item}",
        description="Spans and log records a tenant's destination could not queue or send",
    )


class Lane(Generic[T]):
    """One destination's pipeline for one signal: at most `limit` items wait for its own
    export thread; an item beyond that is dropped and counted, never waited for.

    Args:
        name: the destination's name, the ``destination`` label of the drop counter.
        signal: ``traces`` or ``logs``.
        limit: items queued or being exported at most.
        dropped: the drop counter.
    """

    __slots__ = ("_dropped", "_lock", "_pending", "limit", "name", "processor", "signal", "submit")

    def __init__(self, name: str, signal: str, limit: int, dropped: metrics.Counter) -> None:
        self.name = name
        self.signal = signal
        self.limit = limit
        self._dropped = dropped
        self._pending = 0
        self._lock = threading.Lock()
        self.processor: Any = None
        self.submit: Callable[[T], None] = lambda item: None

    def __repr__(self) -> str:
        return f"Lane({self.name!r}, {self.signal}, pending={self._pending}/{self.limit})"

    def offer(self, item: T) -> None:
        """Queue `item` for export, or drop and count it when the queue is full."""
        with self._lock:
            full = self._pending >= self.limit
            if not full:
                self._pending += 1
        if full:
            self.drop(1, "queue_full")
        else:
            self.submit(item)

    def taken(self, count: int, ok: bool) -> None:
        """`count` items left the queue for the exporter; ``ok``: it sent them."""
        with self._lock:
            self._pending -= count
        if not ok:
            self.drop(count, "export_failed")

    def drop(self, count: int, reason: str) -> None:
        attributes = {"destination": self.name, "signal": self.signal, "reason": reason}
        self._dropped.add(count, attributes)


class Taken:
    """Wraps a lane's exporter (of spans or of log records) to tell the lane which items
    left its queue, and whether they were sent; counted before redaction may drop some."""

    def __init__(self, exporter: Any, lane: Lane[Any]) -> None:
        self.exporter = exporter
        self.lane = lane

    def export(self, batch: Sequence[Any]) -> Any:
        result = None
        try:
            result = self.exporter.export(batch)
        finally:
            # SpanExportResult.SUCCESS or LogRecordExportResult.SUCCESS
            self.lane.taken(len(batch), getattr(result, "name", None) == "SUCCESS")
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))


def _tenant(attributes: Any) -> str | None:
    tenant = (attributes or {}).get("tenant.id")
    return tenant if isinstance(tenant, str) else None


def _remember(table: dict[int, T], key: int, value: T) -> None:
    """Insert, forgetting the oldest entry beyond `MAX_TRACKED`."""
    table[key] = value
    if len(table) > MAX_TRACKED:
        del table[next(iter(table))]


class Lanes(Generic[T]):
    """The lanes of one signal, one per destination, each made at its first item.

    Args:
        signal: ``traces`` or ``logs``.
        build: makes a destination's processor for a new lane, and sets `Lane.submit`.
        limit: each lane's bound.
        dropped: the drop counter.
    """

    def __init__(
        self,
        signal: str,
        build: Callable[[Destination, Lane[T]], Any],
        limit: int,
        dropped: metrics.Counter,
    ) -> None:
        self.signal = signal
        self.limit = limit
        self._build = build
        self._dropped = dropped
        self._lanes: dict[Destination, Lane[T]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Lanes({self.signal}, {sorted(self.made())})"

    def made(self) -> dict[str, Lane[T]]:
        """The lanes made so far, by destination name."""
        return {lane.name: lane for lane in list(self._lanes.values())}

    def get(self, destination: Destination) -> Lane[T]:
        """The lane of `destination`, made now if this is its first item."""
        lane = self._lanes.get(destination)
        if lane is not None:
            return lane
        with self._lock:
            lane = self._lanes.get(destination)
            if lane is None:
                lane = Lane(destination.name, self.signal, self.limit, self._dropped)
                lane.processor = self._build(destination, lane)
                self._lanes[destination] = lane
        return lane

    def processors(self) -> list[Any]:
        """The processors of the lanes made so far."""
        return [lane.processor for lane in list(self._lanes.values())]

    def shutdown(self, defaults: Sequence[Any]) -> None:
        """Stop the lanes' processors and `defaults`, all at once."""
        each(lambda p: p.shutdown(), [*self.processors(), *defaults])

    def force_flush(self, defaults: Sequence[Any], timeout_millis: int = 30000) -> bool:
        """Flush the lanes' processors and `defaults`, all at once."""
        processors = [*self.processors(), *defaults]
        return all(each(lambda p: p.force_flush(timeout_millis), processors, timeout_millis))


class RoutingSpanProcessor(SpanProcessor):
    """Sends each finished span to its tenant's destination, or, unrouted, to `defaults`.

    Args:
        routes: the routing table (`parse_routes`).
        defaults: the processors of the default exporters (batch processors; they see
            `on_end` only): they get the unrouted spans when ``routes.unrouted ==
            "default"``, and every span with ``routes.mirror``.
        redactor: scrubs spans on each destination's export thread (the safety net).
        exporter: makes a destination's exporter (default: OTLP with its endpoint,
            protocol, headers and timeout).
        limit: spans each destination may hold at most (default: `queue_size`).
        meter_provider: for the drop counter (default: the global one).
        options: more `BatchSpanProcessor` arguments (``schedule_delay_millis=`` ...).
    """

    def __init__(
        self,
        routes: Routes,
        defaults: Sequence[SpanProcessor] = (),
        *,
        redactor: Redactor | None = None,
        exporter: Callable[[Destination], SpanExporter] | None = None,
        limit: int | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        **options: Any,
    ) -> None:
        if exporter is None:
            for protocol in {d.protocol for d in routes.destinations.values()}:
                otlp_class("traces", protocol)  # a missing extra is an error now, not later
        self.routes = routes
        self.defaults = tuple(defaults)
        self._make_exporter = exporter or _otlp_traces
        self._redactor = redactor
        self._options = options
        self.lanes: Lanes[ReadableSpan] = Lanes(
            "traces", self._build, limit or queue_size("traces"), dropped_counter(meter_provider)
        )
        self._lock = threading.Lock()
        self._open: dict[int, Span] = {}
        self._owners: dict[int, str] = {}
        self._waiting: dict[int, list[ReadableSpan]] = {}
        self._waiting_count = 0

    def __repr__(self) -> str:
        return f"RoutingSpanProcessor({len(self.routes.destinations)} routes, {self.lanes!r})"

    def tenant_of_span(self, span_id: int) -> str | None:
        """The tenant a span of this process belongs to, when known (for log records)."""
        with self._lock:
            return self._owner(span_id)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            span_id = span.context.span_id
            with self._lock:
                tenant = _tenant(span.attributes) or self._parent_owner(span.parent)
                _remember(self._open, span_id, span)
                if tenant is not None:
                    _remember(self._owners, span_id, tenant)
        except Exception:
            logger.debug("tenant_trace: could not track a span for routing", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if superseded.covers(span):
                with self._lock:
                    self._open.pop(span.context.span_id, None)
                return
            settled = self._settle(span)
            if settled is not None:
                self._deliver(*settled)
        except Exception:
            logger.warning("tenant_trace: could not route a span", exc_info=True)

    def _owner(self, span_id: int) -> str | None:
        owner = self._owners.get(span_id)
        if owner is None and (span := self._open.get(span_id)) is not None:
            # Stamped after it started (the HTTP server span, once the tenant is known).
            owner = _tenant(span.attributes)
        return owner

    def _parent_owner(self, parent: SpanContext | None) -> str | None:
        if parent is None or parent.is_remote:
            return None
        return self._owner(parent.span_id)

    def _settle(self, span: ReadableSpan) -> tuple[str | None, list[ReadableSpan]] | None:
        """The tenant of `span` and the spans that waited for it; ``None`` when it must wait
        in turn for its parent."""
        span_id = span.context.span_id
        parent = span.parent
        with self._lock:
            tenant = _tenant(span.attributes) or self._owner(span_id)
            self._open.pop(span_id, None)
            tenant = tenant or self._parent_owner(parent)
            batch = [span, *self._waiting.pop(span_id, ())]
            self._waiting_count -= len(batch) - 1
            if tenant is not None:
                _remember(self._owners, span_id, tenant)
            elif (
                parent is not None
                and not parent.is_remote
                and parent.span_id in self._open
                and self._waiting_count + len(batch) <= MAX_WAITING
            ):
                self._waiting.setdefault(parent.span_id, []).extend(batch)
                self._waiting_count += len(batch)
                return None
        return tenant, batch

    def _deliver(self, tenant: str | None, spans: list[ReadableSpan]) -> None:
        destination, to_defaults = self.routes.where(tenant)
        if destination is not None:
            lane = self.lanes.get(destination)
            for span in spans:
                if span.context is not None and span.context.trace_flags.sampled:
                    lane.offer(span)
        if to_defaults:
            for span in spans:
                for processor in self.defaults:
                    processor.on_end(span)

    def _build(self, destination: Destination, lane: Lane[ReadableSpan]) -> SpanProcessor:
        exporter = self._make_exporter(destination)
        if self._redactor is not None:
            exporter = RedactingSpanExporter(exporter, self._redactor)
        # The batch processor's own bound is the lane's, which it never reaches.
        taken = cast(SpanExporter, Taken(exporter, lane))
        processor = batch_processor(taken, max_queue_size=lane.limit, **self._options)
        lane.submit = processor.on_end
        return processor

    def shutdown(self) -> None:
        self.lanes.shutdown(self.defaults)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.lanes.force_flush(self.defaults, timeout_millis)


def _otlp_traces(destination: Destination) -> SpanExporter:
    return otlp_exporter(  # type: ignore[no-any-return]
        "traces", destination.endpoint, destination.protocol, **destination.exporter_options()
    )


def each(
    call: Callable[[Any], Any], items: Sequence[Any], timeout_millis: int = 30000
) -> list[Any]:
    """`call` on every item at once, each on a thread of its own, so that one stuck
    destination does not hold the others up; results (``False`` for one not done in time)."""
    results: list[Any] = [False] * len(items)

    def run(index: int) -> None:
        try:
            results[index] = call(items[index])
        except Exception:
            logger.warning("tenant_trace: a destination failed to flush or stop", exc_info=True)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(items))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_millis / 1000
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return results


_active: RoutingSpanProcessor | None = None


def activate(router: RoutingSpanProcessor | None) -> None:
    """Make `router` the one the logs bridge follows (`init()` calls this)."""
    global _active
    _active = router


def active_router() -> RoutingSpanProcessor | None:
    """The router `init()` installed, ``None`` without routes."""
    return _active
