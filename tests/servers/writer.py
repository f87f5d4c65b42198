"""A process that writes spans to the local store while a test purges it:

    python -m tests.servers.writer DB BATCHES

Each batch holds 5 spans of ``acme`` and 5 of ``globex`` that end, then wait 50
milliseconds (in flight, as in a batch processor's queue) before the store writes them. It
prints how many globex spans it wrote.
"""

from __future__ import annotations

import sys
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tenant_trace.export.store import SQLiteSpanExporter


def main() -> None:
    db, batches = sys.argv[1], int(sys.argv[2])
    store = SQLiteSpanExporter(db)
    captured = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer = provider.get_tracer("writer")
    written = 0
    for _ in range(batches):
        captured.clear()
        for tenant in ("acme", "globex") * 5:
            tracer.start_span(tenant, attributes={"tenant.id": tenant}).end()
        time.sleep(0.05)
        store.export(captured.get_finished_spans())
        written += 5
    store.shutdown()
    print(written)


if __name__ == "__main__":
    main()
