"""CPU per span on the export thread, by part: the redaction net, encoding a store row,
the SQLite insert, and (for scale) OTLP's protobuf encoding of the same spans.

The spans are what an agent request behind the middleware makes (`benchmarks.agent`: seven
spans of tenant-trace's own), beside two of other instrumentation (an HTTP client span and
an LLM client span with usage), made on a provider with tenant-trace's span processors.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from benchmarks.agent import _app, agent_route
from benchmarks.inprocess import asgi_requests
from tenant_trace.export.processor import TenantSpanProcessor
from tenant_trace.export.store import _INSERT, _row, open_store, transaction
from tenant_trace.redaction import RedactingSpanExporter, Redactor
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
from tenant_trace.usage import UsageSpanProcessor

BATCH = 512


def make_spans(requests: int) -> list[ReadableSpan]:
    """The spans of `requests` agent requests, each with two foreign client spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(TenantSpanProcessor())
    provider.add_span_processor(UsageSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    foreign = provider.get_tracer("opentelemetry.instrumentation.httpx")
    route = agent_route
    ids = itertools.count(10**20)

    async def with_foreign(request: Any) -> Any:
        with foreign.start_as_current_span(
            "POST",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": "POST",
                "url.full": "https://api.openai.com/v1/chat/completions",
                "server.address": "api.openai.com",
                "server.port": 443,
                "http.response.status_code": 200,
            },
        ):
            pass
        with foreign.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.id": f"chatcmpl-{next(ids):020x}",  # new for each call
                "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.usage.input_tokens": 812,
                "gen_ai.usage.output_tokens": 96,
            },
        ):
            pass
        return await route(request)

    app = TenantTraceASGIMiddleware(_app(with_foreign), tracer_provider=provider)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(
            asgi_requests(app, [(b"x-tenant-id", b"acme")], requests, 0, "/agent")
        )
    finally:
        loop.close()
    return list(memory.get_finished_spans())


def _per_span(
    work: Callable[[Any], object], batches: Sequence[Sequence[Any]], rounds: int
) -> float:
    """Median CPU microseconds per item of `work` done on each batch."""
    count = sum(len(b) for b in batches)
    times = []
    for _ in range(rounds):
        gc.collect()
        started = time.process_time()
        for batch in batches:
            work(batch)
        times.append((time.process_time() - started) / count * 1e6)
    return statistics.median(times)


def measure(requests: int = 2000, rounds: int = 7) -> dict[str, Any]:
    spans = make_spans(requests)
    batches = [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]
    net = RedactingSpanExporter(InMemorySpanExporter(), Redactor())
    connection = open_store(Path(tempfile.mkdtemp()) / "export-cost.sqlite3")
    keys = iter(range(10**12))

    def insert(batch: Sequence[ReadableSpan]) -> None:
        # Rows made beforehand, each with a new trace id: always an insert, never a replace.
        rows = [(f"{next(keys):032x}", *row[1:]) for row in batch]
        with transaction(connection):
            connection.executemany(_INSERT, rows)

    row_batches = [[_row(s) for s in batch] for batch in batches]
    insert_base = _per_span(
        lambda b: [(f"{next(keys):032x}", *r[1:]) for r in b], row_batches, rounds
    )
    result = {
        "spans": len(spans),
        "redaction_net_us": _per_span(lambda b: [net.scrub(s) for s in b], batches, rounds),
        "row_encoding_us": _per_span(lambda b: [_row(s) for s in b], batches, rounds),
        "sqlite_insert_us": _per_span(insert, row_batches, rounds) - insert_base,
        "otlp_encoding_us": _per_span(
            lambda b: encode_spans(b).SerializeToString(), batches, rounds
        ),
    }
    result["store_total_us"] = (
        result["redaction_net_us"] + result["row_encoding_us"] + result["sqlite_insert_us"]
    )
    return result


if __name__ == "__main__":  # python -m benchmarks.export_cost [REQUESTS ROUNDS]: JSON
    print(json.dumps(measure(*map(int, sys.argv[1:3]))))
