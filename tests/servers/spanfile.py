"""Span capture for apps running in a real server process.

`install(path)` sets up the global SDK provider before the app imports, so the app's own
`tenant_trace.init()` adds the tenant processor to it; every finished span is appended to
`path` as one JSON line, which `read(path)` parses back in the test process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tenant_trace.export.sampling import superseded

ENV = "TENANT_TRACE_TEST_SPANFILE"


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            record = {
                "name": span.name,
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                "links": [
                    [format(link.context.trace_id, "032x"), format(link.context.span_id, "016x")]
                    for link in span.links
                ],
                "kind": span.kind.name,
                "status": span.status.status_code.name,
                "attributes": dict(span.attributes or {}),
                "pid": os.getpid(),
            }
            # One write per line on an O_APPEND descriptor: lines of several worker
            # processes never interleave.
            os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        os.close(self._fd)


class _Processor(SimpleSpanProcessor):
    """Leaves out what the processors `init()` builds leave out (superseded server spans)."""

    def on_end(self, span: ReadableSpan) -> None:
        if not superseded.covers(span):
            super().on_end(span)


def install(path: str | None = None) -> None:
    """Capture spans of this process into `path` (default: the env variable); with neither,
    leave tracing to the app's own init() (a test of the local store, say)."""
    path = path or os.environ.get(ENV)
    if not path:
        return
    provider = TracerProvider()
    provider.add_span_processor(_Processor(JsonLinesExporter(path)))
    trace.set_tracer_provider(provider)


def read(path: str) -> list[dict[str, Any]]:
    """The complete lines of `path`: a last line without its newline is still being written."""
    with open(path) as f:
        lines = f.read().split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]
