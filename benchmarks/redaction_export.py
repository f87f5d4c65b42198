"""Per-span cost of the export safety net, `RedactingSpanExporter`, against a pass-through
exporter in the same run.

Spans of four shapes are exported in batches of 512 (as `BatchSpanProcessor` does) through a
pass-through exporter and through `RedactingSpanExporter` wrapped around the same one,
interleaved for `ROUNDS` rounds; the median round gives microseconds per span. For scale, the
run also times making one span (start, 10 attributes, an event, end) on an SDK provider.

    python -m benchmarks.redaction_export [N]

Prints a table and writes benchmarks/results/redaction_export.json.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tenant_trace.redaction import RedactingSpanExporter, Redactor

N = 5_000
ROUNDS = 7
BATCH = 512
RESULTS = Path(__file__).resolve().parent / "results" / "redaction_export.json"

PROMPT = (
    "I am jane.doe@example.com, charge my card 4111 1111 1111 1111 and use my key "
    "sk-proj-Xa81Kd93LmQp02ZtVb77NcEw4Ry6Uh5JfGs0 please"
)
# The same kinds of value as people abroad type them: a French phone number with no-break
# spaces, a card number in fullwidth digits (a Japanese input method), an IBAN.
PROMPT_LOCALE = (
    "Bonjour, je suis Jeanne, joignable au 06\u00a012\u00a034\u00a056\u00a078 ; payez avec "
    + "4111 1111 1111 1111".translate({32: 0x3000, **{48 + i: 0xFF10 + i for i in range(10)}})
    + " ou virez sur FR14 2004 1010 0505 0001 3M02 606, merci\u202f!"
)
PROSE = (
    "Summarise the customer's last three orders and tell them when the next delivery is due. "
    "Be brief and friendly, mention the tracking page, and do not promise refunds. "
) * 3  # about 500 characters of captured text without PII


def http_attributes(i: int) -> dict[str, Any]:
    """What an HTTP server or client span of another instrumentation typically carries."""
    return {
        "tenant.id": f"tenant-{i % 7}",
        "tenant.source": "header",
        "http.request.method": "POST",
        "url.full": "https://api.openai.com/v1/chat/completions",
        "url.path": "/chat",
        "server.address": "api.openai.com",
        "server.port": 443,
        "http.response.status_code": 200,
        "user_agent.original": "python-httpx/0.28.1",
        "gen_ai.request.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 812,
    }


SHAPES: dict[str, Callable[[int], tuple[dict[str, Any], dict[str, Any]]]] = {
    # (span attributes, event attributes)
    "clean": lambda i: (http_attributes(i), {"gen_ai.response.finish_reasons": "stop"}),
    "clean_with_content": lambda i: (
        {**http_attributes(i), "gen_ai.input.messages": PROSE},
        {"content": PROSE},
    ),
    "secret_header": lambda i: (
        {**http_attributes(i), "http.request.header.authorization": ("Bearer abc123",)},
        {"gen_ai.response.finish_reasons": "stop"},
    ),
    "pii": lambda i: (
        {**http_attributes(i), "gen_ai.input.messages": PROMPT},
        {"content": PROMPT},
    ),
    "pii_locale": lambda i: (
        {**http_attributes(i), "gen_ai.input.messages": PROMPT_LOCALE},
        {"content": PROMPT_LOCALE},
    ),
}


class PassThrough(SpanExporter):
    """Receives the spans and does nothing: the baseline."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def make_spans(shape: str, n: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("benchmark")
    build = SHAPES[shape]
    for i in range(n):
        attributes, event = build(i)
        with tracer.start_as_current_span("chat gpt-4o", attributes=attributes) as span:
            span.add_event("gen_ai.choice", event)
    return list(memory.get_finished_spans())


def export_all(exporter: SpanExporter, spans: list[ReadableSpan]) -> float:
    """Seconds to export `spans` in batches."""
    gc.collect()
    started = time.perf_counter()
    for i in range(0, len(spans), BATCH):
        exporter.export(spans[i : i + BATCH])
    return time.perf_counter() - started


def span_creation_us(n: int) -> float:
    """Microseconds to start, fill and end one span on an SDK provider with no exporter."""
    tracer = TracerProvider().get_tracer("benchmark")
    attributes, event = SHAPES["clean"](0)
    times = []
    for _ in range(ROUNDS):
        gc.collect()
        started = time.perf_counter()
        for _ in range(n):
            span = tracer.start_span("chat gpt-4o", attributes=attributes)
            span.add_event("gen_ai.choice", event)
            span.end()
        times.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(times)


def main(n: int = N) -> dict[str, Any]:
    passthrough = PassThrough()
    redacting = RedactingSpanExporter(PassThrough(), Redactor())
    results: dict[str, Any] = {}
    for shape in SHAPES:
        spans = make_spans(shape, n)
        changed = sum(redacting.scrub(s) is not s for s in spans)
        rounds: dict[str, list[float]] = {"passthrough": [], "redacting": []}
        for _ in range(ROUNDS):  # interleaved, so that both see the same machine state
            rounds["passthrough"].append(export_all(passthrough, spans) / n * 1e6)
            rounds["redacting"].append(export_all(redacting, spans) / n * 1e6)
        base = statistics.median(rounds["passthrough"])
        wrapped = statistics.median(rounds["redacting"])
        results[shape] = {
            "passthrough_us_per_span": round(base, 3),
            "redacting_us_per_span": round(wrapped, 3),
            "overhead_us_per_span": round(wrapped - base, 3),
            "ratio_to_passthrough": round(wrapped / base, 1) if base else None,
            "spans_copied": changed,
        }
    creation = span_creation_us(n)
    for row in results.values():
        row["overhead_vs_making_the_span"] = round(row["overhead_us_per_span"] / creation, 3)
    report = {
        "benchmark": "RedactingSpanExporter per-span cost",
        "n_spans": n,
        "rounds": ROUNDS,
        "batch": BATCH,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "span_creation_us": round(creation, 3),
        "results": results,
    }
    print(f"{n} spans per shape, {ROUNDS} rounds, median; one span made: {creation:.2f} us")
    header = (
        f"{'shape':<20}{'pass-through':>14}{'redacting':>11}{'overhead':>10}{'ratio':>8}"
        f"{'vs span':>9}{'copied':>8}"
    )
    print(header)
    for shape, row in results.items():
        print(
            f"{shape:<20}{row['passthrough_us_per_span']:>11.3f} us"
            f"{row['redacting_us_per_span']:>8.2f} us{row['overhead_us_per_span']:>7.2f} us"
            f"{row['ratio_to_passthrough']:>7}x{row['overhead_vs_making_the_span']:>8.0%}"
            f"{row['spans_copied']:>8}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )
    return report


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else N)
