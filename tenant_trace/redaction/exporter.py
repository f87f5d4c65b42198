"""`RedactingSpanExporter`: the safety net that scrubs every span at export.

Text captured through the agent API is redacted before it is recorded, but other
instrumentation (an LLM client, httpx, a database driver) writes its own attributes. This
wrapper runs the `Redactor` over the name, attributes, event attributes, link attributes and
status description of each span on its way out, on the exporter's thread.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Status

from .redactor import Redactor

__all__ = ["RedactingSpanExporter"]

logger = logging.getLogger("tenant_trace")
_T = TypeVar("_T")
_E = TypeVar("_E", Event, Link)


class RedactingSpanExporter(SpanExporter):
    """Wraps a `SpanExporter` so that no span reaches it with PII or secrets in its text.

    Spans are never modified, as other processors may still hold them: a span that needs
    scrubbing is exported as a scrubbed copy, every other span as it is. Pseudonyms use the
    span's own ``tenant.id``. A span that cannot be scrubbed is dropped, not exported raw.

    Args:
        exporter: the exporter that receives the scrubbed spans.
        redactor: default: a `Redactor` with the default detectors.
    """

    def __init__(self, exporter: SpanExporter, redactor: Redactor | None = None) -> None:
        self.exporter = exporter
        self.redactor = redactor if redactor is not None else Redactor()

    def __repr__(self) -> str:
        return f"RedactingSpanExporter({self.exporter!r}, {self.redactor!r})"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        scrubbed: list[ReadableSpan] = []
        failed = 0
        for span in spans:
            try:
                scrubbed.append(self.scrub(span))
            except Exception:
                failed += 1
                error = sys.exc_info()
        if failed:
            logger.warning(
                "tenant_trace: %d span(s) could not be redacted and were dropped",
                failed,
                exc_info=error,
            )
        return self.exporter.export(scrubbed)

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def scrub(self, span: ReadableSpan) -> ReadableSpan:
        """`span` itself when it holds nothing to redact, else a scrubbed copy."""
        redactor = self.redactor
        attributes = span.attributes
        if attributes is None:  # not from the SDK's spans, whose attributes are never None
            attributes = {}
        tenant = None
        if redactor.pseudonymous:
            value = attributes.get("tenant.id")
            tenant = value if isinstance(value, str) else None
        new_attributes = redactor.redact_attributes(attributes, tenant)
        events = _scrub_each(span.events, redactor, tenant, _event)
        links = _scrub_each(span.links, redactor, tenant, _link)
        name = redactor.scrub(span.name, tenant)
        status = span.status
        if status.description:
            description = redactor.scrub(status.description, tenant)
            if description is not status.description:
                status = Status(status.status_code, description)
        if (
            new_attributes is attributes
            and events is None
            and links is None
            and name is span.name
            and status is span.status
        ):
            return span
        return ReadableSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_bounded(new_attributes, span.dropped_attributes),
            events=_bounded_list(span.events if events is None else events, span.dropped_events),
            links=_bounded_list(span.links if links is None else links, span.dropped_links),
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


def _scrub_each(
    items: Sequence[_E],
    redactor: Redactor,
    tenant: str | None,
    rebuild: Callable[[_E, BoundedAttributes], _E],
) -> list[_E] | None:
    """Events or links with scrubbed attributes, or ``None`` when none of them changed."""
    result: list[_E] | None = None
    for index, item in enumerate(items):
        attributes = _scrubbed(item.attributes, redactor, tenant)
        if attributes is not None:
            if result is None:
                result = list(items)
            result[index] = rebuild(item, _bounded(attributes, item.dropped_attributes))
    return result


def _event(event: Event, attributes: BoundedAttributes) -> Event:
    return Event(event.name, attributes, event.timestamp)


def _link(link: Link, attributes: BoundedAttributes) -> Link:
    return Link(link.context, attributes)


def _scrubbed(
    attributes: Mapping[str, Any] | None, redactor: Redactor, tenant: str | None
) -> Mapping[str, Any] | None:
    if not attributes:
        return None
    new = redactor.redact_attributes(attributes, tenant)
    return None if new is attributes else new


def _bounded_list(items: Sequence[_T], dropped: int) -> Sequence[_T]:
    """The events or links of a copy, still reporting how many the SDK dropped."""
    if not dropped:
        return items
    bounded = BoundedList.from_seq(None, items)
    bounded.dropped = dropped
    return bounded


def _bounded(attributes: Mapping[str, Any], dropped: int) -> BoundedAttributes:
    """Immutable attributes that still report how many the SDK dropped."""
    bounded = BoundedAttributes(attributes=attributes, immutable=True)
    bounded.dropped = dropped
    return bounded
