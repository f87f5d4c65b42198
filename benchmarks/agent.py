"""The agent API against hand-made OpenTelemetry spans doing the same work, and what
tenant-trace adds to each span of other instrumentation.

1. One agent request behind the ASGI middleware: `start_trace`, a memory read, a retrieval,
   two LLM calls that report usage, and a tool call. The hand-made twin, behind the honest
   floor middleware, makes the same seven spans with the same attributes (the tenant, the
   roll-ups) and records the same ten metric points. Both export through the same exporter.
   Per step: (agent request - plain request of the same middleware) / 6.
2. A child span of another instrumentation (five attributes) inside a tenant's request, on a
   provider with and without tenant-trace's span processors: the stamp alone, and the stamp
   with usage counting.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import tenant_trace
from benchmarks.inprocess import (
    METER_PROVIDER,
    METRIC_READER,
    Exporters,
    FloorASGI,
    NullExporter,
    Variant,
    asgi_requests,
    floor_provider,
    tenant_trace_provider,
    timed_rounds,
)
from tenant_trace.context import Tenant, attach, detach
from tenant_trace.export.processor import TenantSpanProcessor
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
from tenant_trace.setup import add_processors
from tenant_trace.usage import UsageSpanProcessor

STEPS = 6  # start_trace, memory, retrieval, two LLM calls, a tool call


async def agent_route(request: Request) -> PlainTextResponse:
    with tenant_trace.start_trace("support"):
        with tenant_trace.memory("read", store="redis", key="history"):
            pass
        with tenant_trace.retrieval("kb", top_k=3):
            pass
        for _ in range(2):
            with tenant_trace.llm_call("gpt-4o", provider="openai") as call:
                call.record_usage(input_tokens=100, output_tokens=20)
        with tenant_trace.tool_call("lookup", call_id="c1"):
            pass
    return PlainTextResponse("ok")


_meter = METER_PROVIDER.get_meter("hand-made")
_llm_duration = _meter.create_histogram("hand.llm.duration", "s")
_tokens = _meter.create_counter("hand.usage.tokens", "{token}")
_unpriced = _meter.create_counter("hand.usage.unpriced_calls", "{call}")
_tool_calls = _meter.create_counter("hand.tool.calls", "{call}")
_ROLLUP_NAMES = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "unpriced_calls",
)


def hand_made_route(tracer_provider: TracerProvider) -> Any:
    """The same spans, attributes and metric points as `agent_route`, made by hand."""
    tracer = tracer_provider.get_tracer("hand-made")

    async def route(request: Request) -> PlainTextResponse:
        who = {"tenant.id": "acme", "tenant.source": "header"}
        with tracer.start_as_current_span(
            "invoke_agent support",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "support",
                **who,
            },
        ) as run:
            memory = {"operation": "read", "store": "redis", "key": "history"}
            with tracer.start_as_current_span(
                "memory.read redis",
                kind=SpanKind.CLIENT,
                attributes={**{f"tenant_trace.memory.{k}": v for k, v in memory.items()}, **who},
            ):
                pass
            with tracer.start_as_current_span(
                "retrieval kb",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "retrieval",
                    "gen_ai.data_source.id": "kb",
                    "gen_ai.request.top_k": 3,
                    **who,
                },
            ):
                pass
            call = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
            }
            labels = {"tenant.id": "acme", **call}
            usage = {k: v for k, v in labels.items() if k != "gen_ai.operation.name"}
            call["gen_ai.system"] = "openai"  # on the span, not the metrics
            for _ in range(2):
                started = time.perf_counter()
                with tracer.start_as_current_span(
                    "chat gpt-4o", kind=SpanKind.CLIENT, attributes={**call, **who}
                ) as llm:
                    llm.set_attributes(
                        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20}
                    )
                _llm_duration.record(time.perf_counter() - started, labels)
                _tokens.add(100, {**usage, "gen_ai.token.type": "input"})
                _tokens.add(20, {**usage, "gen_ai.token.type": "output"})
                _unpriced.add(1, usage)
            with tracer.start_as_current_span(
                "execute_tool lookup",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "lookup",
                    "gen_ai.tool.call.id": "c1",
                    **who,
                },
            ):
                pass
            _tool_calls.add(
                1, {"tenant.id": "acme", "gen_ai.tool.name": "lookup", "outcome": "success"}
            )
            rollup = dict(zip(_ROLLUP_NAMES, (200, 40, 0, 0, 0, 2), strict=True))
            totals = {f"tenant_trace.usage.{k}": v for k, v in rollup.items()}
            totals |= {"tenant_trace.run.llm_calls": 2, "tenant_trace.run.tool_calls": 1}
            totals["tenant_trace.run.tool_errors"] = 0
            run.set_attributes(totals)
        trace.get_current_span().set_attributes(totals)  # the request's root span
        return PlainTextResponse("ok")

    return route


async def _plain(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app(route: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/chat", _plain, methods=["POST"]),
            Route("/agent", route, methods=["POST"]),
        ]
    )


def agent_request(make: Exporters, kind: str, *, n: int = 1000, rounds: int = 5) -> dict[str, Any]:
    """The agent request and a plain one, with the agent API and by hand, exporting to
    `kind`. The agent API's spans go to the global tracer provider, so this installs
    tenant-trace's there: run it in a process of its own (``python -m benchmarks.agent``)."""
    header = [(b"x-tenant-id", b"acme")]
    tt = tenant_trace_provider(make(kind))
    trace.set_tracer_provider(tt)
    hand = floor_provider(make(kind))
    tt_app = TenantTraceASGIMiddleware(_app(agent_route), tracer_provider=tt)
    hand_app = FloorASGI(_app(hand_made_route(hand)), hand)
    variants = {
        f"{who} {path}": Variant(app, header, provider, path)
        for who, app, provider in (("tenant-trace", tt_app, tt), ("hand-made", hand_app, hand))
        for path in ("/chat", "/agent")
    }
    loop = asyncio.new_event_loop()

    def run(variant: Variant, offset: int) -> None:
        loop.run_until_complete(
            asgi_requests(variant.app, variant.headers, n, offset, variant.path)
        )

    try:
        costs = timed_rounds(variants, run, n, rounds)
    finally:
        loop.close()
    result: dict[str, Any] = {}
    for who in ("tenant-trace", "hand-made"):
        plain, agent = costs[f"{who} /chat"], costs[f"{who} /agent"]
        result[who] = {
            "request_cpu_us": agent.cpu_us,
            "request_wall_us": agent.wall_us,
            "plain_request_cpu_us": plain.cpu_us,
            "per_step_cpu_us": (agent.cpu_us - plain.cpu_us) / STEPS,
        }
    ours, theirs = result["tenant-trace"], result["hand-made"]
    result["per_step_ratio"] = ours["per_step_cpu_us"] / theirs["per_step_cpu_us"]
    result["request_ratio"] = ours["request_cpu_us"] / theirs["request_cpu_us"]
    return result


def child_span(*, n: int = 20_000, rounds: int = 7) -> dict[str, Any]:
    """CPU per extra child span of other instrumentation, with and without tenant-trace's
    span processors (the export through a null batch processor is in all three)."""
    providers = {}
    for name, processors in {
        "sdk": [],
        "stamp": [TenantSpanProcessor()],
        "stamp + usage": [TenantSpanProcessor(), UsageSpanProcessor()],
    }.items():
        provider = TracerProvider()
        for processor in processors:
            provider.add_span_processor(processor)
        provider.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=100_000))
        providers[name] = provider
    attributes = {
        "http.request.method": "POST",
        "server.address": "api.example.com",
        "server.port": 443,
        "url.full": "https://api.example.com/v1/lookup",
        "http.response.status_code": 200,
    }
    samples: dict[str, list[float]] = {name: [] for name in providers}
    token = attach(Tenant("acme", "header"))
    try:
        for r in range(rounds + 1):
            for name, provider in providers.items():
                tracer = provider.get_tracer("other")
                gc.collect()
                parent = tracer.start_span("parent")
                ctx = trace.set_span_in_context(parent)
                started = time.process_time()
                for _ in range(n):
                    tracer.start_span("GET", ctx, SpanKind.CLIENT, attributes).end()
                provider.force_flush()
                elapsed = time.process_time() - started
                parent.end()
                if r:
                    samples[name].append(elapsed / n * 1e6)
    finally:
        detach(token)
    us = {name: statistics.median(s) for name, s in samples.items()}
    return {
        "us_per_span": us,
        "stamp_us": us["stamp"] - us["sdk"],
        "stamp_and_usage_us": us["stamp + usage"] - us["sdk"],
    }


def twins() -> dict[str, Any]:
    """What one agent request records with the agent API and by hand: each span's name,
    kind and attributes, and the metric points (instrument type, attributes, value), so that
    a test can check that the two do the same work (tests/test_benchmarks.py)."""
    header = [(b"x-tenant-id", b"acme")]
    recorded: dict[str, Any] = {}
    for who in ("tenant-trace", "hand-made"):
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        if who == "tenant-trace":
            add_processors(provider, [], None)
            trace.set_tracer_provider(provider)
            app: Any = TenantTraceASGIMiddleware(_app(agent_route), tracer_provider=provider)
        else:
            app = FloorASGI(_app(hand_made_route(provider)), provider)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        asyncio.run(asgi_requests(app, header, 1, 0, "/agent"))
        data = METRIC_READER.get_metrics_data()
        scopes = ("tenant_trace",) if who == "tenant-trace" else ("hand-made", "floor")
        points = sorted(
            (type(metric.data).__name__, sorted(point.attributes.items()), _value(point))
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            if scope.scope.name in scopes
            for metric in scope.metrics
            for point in metric.data.data_points
        )
        spans = sorted(
            (span.name, span.kind.name, sorted((span.attributes or {}).items()))
            for span in memory.get_finished_spans()
        )
        recorded[who] = {"spans": spans, "metric_points": points}
    return recorded


def _value(point: Any) -> Any:
    return point.count if hasattr(point, "count") else point.value


def main() -> None:
    """``python -m benchmarks.agent KIND OTLP_URL N ROUNDS``: prints the agent request's
    costs (and, with the null exporter, the child span's) as JSON; ``... twins``: what
    `twins` returns."""
    if sys.argv[1] == "twins":
        print(json.dumps(twins()))
        return
    kind, endpoint, n, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    result = {"agent_request": agent_request(Exporters(endpoint), kind, n=n, rounds=rounds)}
    if kind == "null":
        result["child_span"] = child_span(n=n * 20, rounds=rounds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
