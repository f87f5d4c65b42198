"""What counting usage from other instrumentations' spans costs, and what recording unsampled
spans (so the usage ledger sees them) costs, each against the same work without it, in one run.

1. Per LLM span: a span of another instrumentation (start, 8 attributes with usage, end) on a
   provider with the tenant processor and a batch exporter, with and without
   `UsageSpanProcessor` (counting into the metrics and a ledger); also a span without usage
   (an HTTP client span), which the processor only follows.
2. Per unsampled request: a trace of 8 spans (one an LLM call) under `TenantSampler(0.0)`,
   `record_unsampled=True` (RECORD_ONLY, counted) against `False` (DROP, nothing).

Rounds are interleaved; the median round gives microseconds per span or per trace.

    python -m benchmarks.usage [N]

Prints a table and writes benchmarks/results/usage.json.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import tenant_trace
from tenant_trace import TenantSampler, TenantSpanProcessor, metrics
from tenant_trace.usage import Ledger, UsageSpanProcessor

N = 20_000
ROUNDS = 7
RESULTS = Path(__file__).resolve().parent / "results" / "usage.json"

LLM = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 96,
    "gen_ai.response.finish_reasons": ("stop",),
}
HTTP = {
    "http.request.method": "POST",
    "url.full": "https://api.openai.com/v1/chat/completions",
    "server.address": "api.openai.com",
    "server.port": 443,
    "http.response.status_code": 200,
    "network.protocol.version": "1.1",
    "user_agent.original": "OpenAI/Python 2.3.0",
    "url.scheme": "https",
}


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(*, counting: bool, ledger: Ledger | None = None, **sampler: Any) -> TracerProvider:
    made = TracerProvider(sampler=TenantSampler(**sampler) if sampler else None)
    made.add_span_processor(TenantSpanProcessor())
    if counting:
        made.add_span_processor(UsageSpanProcessor(ledger))
    made.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=4096))
    return made


def spans_us(made: TracerProvider, attributes: dict[str, Any], n: int) -> float:
    tracer = made.get_tracer("some.instrumentation")
    gc.collect()
    with tenant_trace.tenant_context("acme"):
        started = time.perf_counter()
        for _ in range(n):
            span = tracer.start_span("chat gpt-4o-mini")
            span.set_attributes(attributes)
            span.end()
        return (time.perf_counter() - started) / n * 1e6


def traces_us(made: TracerProvider, n: int) -> float:
    tracer = made.get_tracer("some.instrumentation")
    gc.collect()
    with tenant_trace.tenant_context("muted"):
        started = time.perf_counter()
        for _ in range(n):
            with tracer.start_as_current_span("agent.run"), tracer.start_as_current_span("step"):
                for name in ("memory", "retrieval", "tool", "http", "db"):
                    with tracer.start_as_current_span(name) as span:
                        span.set_attributes(HTTP)
                with tracer.start_as_current_span("chat") as span:
                    span.set_attributes(LLM)
        return (time.perf_counter() - started) / n * 1e6


def compare(cases: dict[str, Callable[[], float]]) -> dict[str, float]:
    rounds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, case in cases.items():
            rounds[name].append(case())
    return {name: statistics.median(times) for name, times in rounds.items()}


def main(n: int = N) -> dict[str, Any]:
    metrics.configure(meter_provider=MeterProvider([InMemoryMetricReader()]))
    ledger = Ledger(Path(tempfile.mkdtemp()) / "traces.sqlite3")
    plain, counting = provider(counting=False), provider(counting=True, ledger=ledger)
    per_span = compare(
        {
            "llm span, not counted": lambda: spans_us(plain, LLM, n),
            "llm span, counted": lambda: spans_us(counting, LLM, n),
            "http span, not followed": lambda: spans_us(plain, HTTP, n),
            "http span, followed": lambda: spans_us(counting, HTTP, n),
        }
    )
    dropped = provider(counting=True, ledger=ledger, default=0.0, record_unsampled=False)
    recorded = provider(counting=True, ledger=ledger, default=0.0)
    traces = n // 8
    per_trace = compare(
        {
            "unsampled trace, DROP": lambda: traces_us(dropped, traces),
            "unsampled trace, RECORD_ONLY": lambda: traces_us(recorded, traces),
        }
    )
    for made in (plain, counting, dropped, recorded):
        made.shutdown()
    ledger.close()
    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "n_spans": n,
        "rounds": ROUNDS,
        "us_per_span": {k: round(v, 3) for k, v in per_span.items()},
        "usage_cost_per_llm_span_us": round(
            per_span["llm span, counted"] - per_span["llm span, not counted"], 3
        ),
        "follow_cost_per_other_span_us": round(
            per_span["http span, followed"] - per_span["http span, not followed"], 3
        ),
        "us_per_unsampled_trace_of_8_spans": {k: round(v, 2) for k, v in per_trace.items()},
        "record_only_cost_per_unsampled_trace_us": round(
            per_trace["unsampled trace, RECORD_ONLY"] - per_trace["unsampled trace, DROP"], 2
        ),
    }
    print(f"{n} spans per case, {ROUNDS} rounds, median")
    for name, value in per_span.items():
        print(f"  {name:<28} {value:8.2f} us/span")
    for name, value in per_trace.items():
        print(f"  {name:<28} {value:8.2f} us/trace")
    print(f"  usage counting: +{report['usage_cost_per_llm_span_us']} us per LLM span")
    print(f"  RECORD_ONLY: +{report['record_only_cost_per_unsampled_trace_us']} us per trace")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else N)
