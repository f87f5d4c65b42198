"""Usage read from spans in each convention, counted once per model call, into the run that
encloses the call whatever thread ends its span; prices and costs."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tenant_trace
from tenant_trace import TenantSampler, TenantSpanProcessor
from tenant_trace.errors import ConfigurationError
from tenant_trace.usage import Usage, UsageSpanProcessor, prices, read_usage
from tenant_trace.usage.read import response_usage
from tests.conftest import PROVIDER, Spans
from tests.test_metrics import Points, points  # noqa: F401 (a fixture)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.mark.parametrize(
    ("attributes", "usage"),
    [
        pytest.param(
            {
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
                "gen_ai.usage.cache_read.input_tokens": 60,
                "gen_ai.usage.cache_creation.input_tokens": 10,
                "gen_ai.usage.reasoning.output_tokens": 5,
            },
            Usage(100, 20, 60, 10, 5),
            id="genai",
        ),
        pytest.param(
            {
                "llm.token_count.prompt": 21,
                "llm.token_count.completion": 4,
                "llm.token_count.total": 25,
                "llm.token_count.prompt_details.cache_read": 3,
                "llm.token_count.completion_details.reasoning": 2,
            },
            Usage(21, 4, 3, 0, 2),
            id="openinference",
        ),
        pytest.param(
            {"gen_ai.usage.prompt_tokens": 7, "gen_ai.usage.completion_tokens": 3},
            Usage(7, 3),
            id="older-genai",
        ),
        pytest.param(
            {"gen_ai.usage.input_tokens": 5, "llm.token_count.prompt": 5},
            Usage(5, 0),
            id="two-conventions-one-call",
        ),
        pytest.param({"gen_ai.usage.output_tokens": 9}, Usage(0, 9), id="output-only"),
        pytest.param({"gen_ai.usage.input_tokens": True}, None, id="a-bool-is-no-count"),
        pytest.param({"gen_ai.usage.input_tokens": "12"}, None, id="a-string-is-no-count"),
        pytest.param({"gen_ai.aggregated_usage.input_tokens": 9}, None, id="aggregated"),
        pytest.param({"http.route": "/"}, None, id="no-usage"),
    ],
)
def test_read_usage(attributes: dict[str, Any], usage: Usage | None) -> None:
    """Each convention's names; a span reporting one call in two conventions is one call."""
    assert read_usage(attributes) == usage


def test_a_foreign_call_under_a_run_ending_in_another_thread_counts(spans: Spans) -> None:
    """The run is found through the span's ancestors, not the context that ends the span: a
    span started in the run and ended in a thread without that context still counts."""
    foreign = PROVIDER.get_tracer("some.instrumentation")
    with tenant_trace.start_trace("agent", tenant="acme"):
        span = foreign.start_span("chat m", attributes={"gen_ai.request.model": "m"})
    span.set_attributes({"gen_ai.usage.input_tokens": 8, "gen_ai.usage.output_tokens": 2})
    # The run has ended: its roll-up is written; a call ending after its run is not in it.
    thread = threading.Thread(target=span.end)
    thread.start()
    thread.join()
    assert "tenant_trace.usage.input_tokens" not in attrs(spans.one("invoke_agent agent"))

    spans.clear()
    with tenant_trace.start_trace("agent", tenant="acme"):
        span = foreign.start_span("chat m", attributes={"gen_ai.request.model": "m"})
        span.set_attributes({"gen_ai.usage.input_tokens": 8, "gen_ai.usage.output_tokens": 2})
        thread = threading.Thread(target=span.end)
        thread.start()
        thread.join()
    run = attrs(spans.one("invoke_agent agent"))
    assert (run["tenant_trace.usage.input_tokens"], run["tenant_trace.usage.output_tokens"]) == (
        8,
        2,
    )
    assert run["tenant_trace.run.llm_calls"] == 1


def test_llm_call_around_a_foreign_call_counts_it_once(spans: Spans) -> None:
    """An llm_call that also records the usage its instrumented client call reported is the
    same call: the child is counted, the wrapper not again."""
    foreign = trace.get_tracer("some.instrumentation")
    with tenant_trace.start_trace("agent", tenant="acme"):
        with tenant_trace.llm_call("m") as llm:
            with foreign.start_as_current_span("chat m") as child:
                child.set_attributes(
                    {"llm.token_count.prompt": 30, "llm.token_count.completion": 3}
                )
            llm.record_usage(30, 3)
        with tenant_trace.llm_call("m") as llm:  # a call of its own
            llm.record_usage(1, 1)
    run = attrs(spans.one("invoke_agent agent"))
    assert run["tenant_trace.usage.input_tokens"] == 31
    assert run["tenant_trace.run.llm_calls"] == 2


def test_cached_and_reasoning_tokens_roll_up(spans: Spans) -> None:
    with tenant_trace.start_trace("agent", tenant="acme"), tenant_trace.llm_call("m") as llm:
        llm.record_usage(100, 20, cache_read_tokens=60, reasoning_tokens=5)
    run = attrs(spans.one("invoke_agent agent"))
    assert run["tenant_trace.usage.cache_read_tokens"] == 60
    assert run["tenant_trace.usage.reasoning_tokens"] == 5


def test_prices_from_a_file_and_the_cost_of_cached_tokens(tmp_path: Path) -> None:
    """Cached input tokens cost the cached price; a dated snapshot takes its family's price;
    an unknown model has no cost."""
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
                "gpt-4o-mini": [0.15, 0.6],
            }
        )
    )
    saved = prices.configure(prices.parse_prices(str(path)))
    try:
        usage = Usage(1_000_000, 100_000, cache_read_tokens=400_000)
        assert prices.cost(usage, "gpt-4o") == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 1.0)
        assert prices.cost(Usage(1_000_000, 0), "gpt-4o-mini-2024-07-18") == pytest.approx(0.15)
        assert prices.cost(Usage(1_000_000, 0), None, "gpt-4o-2024-08-06") == pytest.approx(2.5)
        assert prices.cost(usage, "claude-x") is None
    finally:
        prices.configure(saved)


@pytest.mark.parametrize(
    "spec",
    [
        {"m": (1.0,)},
        {"m": (1.0, -2.0)},
        {"m": {"input": 1.0}},
        {"m": {"input": 1.0, "output": 1.0, "cache": 1.0}},
        {"m": ("1", 2)},
        {"": (1, 2)},
        ["m"],
    ],
)
def test_bad_prices_are_refused(spec: Any) -> None:
    with pytest.raises(ConfigurationError):
        prices.parse_prices(spec)


def test_a_prices_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.json"):
        prices.parse_prices(str(tmp_path / "missing.json"))


def test_a_sampled_out_call_is_counted_in_the_metrics(
    points: Points,  # noqa: F811 (the fixture imported above)
) -> None:
    """Sampling at ratio 0 exports nothing, and the tenant's tokens are still counted."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=TenantSampler(0.0))
    for processor in (TenantSpanProcessor(), UsageSpanProcessor(), SimpleSpanProcessor(exporter)):
        provider.add_span_processor(processor)
    tracer = provider.get_tracer("some.instrumentation")
    with tenant_trace.tenant_context("muted"), tracer.start_as_current_span("chat m") as span:
        span.set_attributes({"gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 2})
    assert exporter.get_finished_spans() == ()
    counted = {
        p.attributes["gen_ai.token.type"]: p.value for p in points.of("tenant_trace.usage.tokens")
    }
    assert counted == {"input": 40, "output": 2}
    assert {p.attributes["tenant.id"] for p in points.of("tenant_trace.usage.tokens")} == {"muted"}


def test_the_semantic_conventions_followed_are_named(spans: Spans) -> None:
    """A version that was released with the GenAI conventions, and its schema URL on the
    spans tenant-trace makes."""
    assert tenant_trace.GENAI_SEMCONV_VERSION == "1.41.0"
    with tenant_trace.start_trace("agent", tenant="acme"):
        pass
    scope = spans.one("invoke_agent agent").instrumentation_scope
    assert scope is not None
    assert scope.schema_url == "https://opentelemetry.io/schemas/1.41.0"


def test_spans_never_ended_do_not_grow_without_bound(
    points: Points,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the bound new spans are not followed, and their usage still counts."""
    from tenant_trace.usage import track

    monkeypatch.setattr(track, "MAX_OPEN", len(track._open) + 3)
    foreign = PROVIDER.get_tracer("some.instrumentation")
    leaked = [foreign.start_span("never ended") for _ in range(10)]
    assert len(track._open) == track.MAX_OPEN
    with tenant_trace.tenant_context("acme"), foreign.start_as_current_span("chat m") as span:
        span.set_attributes({"gen_ai.usage.input_tokens": 4, "gen_ai.usage.output_tokens": 1})
    for span in leaked:
        span.end()
    assert len(track._open) < track.MAX_OPEN
    counted = {
        p.attributes["gen_ai.token.type"]: p.value for p in points.of("tenant_trace.usage.tokens")
    }
    assert counted == {"input": 4, "output": 1}


def ns(**kwargs: Any) -> SimpleNamespace:
    return SimpleNamespace(**kwargs)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(
            ns(
                prompt_tokens=100,
                completion_tokens=20,
                prompt_tokens_details=ns(cached_tokens=64),
                completion_tokens_details=ns(reasoning_tokens=8),
            ),
            Usage(100, 20, 64, 0, 8),
            id="openai-chat",
        ),
        pytest.param(
            ns(
                input_tokens=50,
                output_tokens=5,
                input_tokens_details=ns(cached_tokens=10),
                output_tokens_details=ns(reasoning_tokens=2),
            ),
            Usage(50, 5, 10, 0, 2),
            id="openai-responses",
        ),
        pytest.param(
            ns(
                input_tokens=30,
                output_tokens=7,
                cache_read_input_tokens=200,
                cache_creation_input_tokens=50,
            ),
            Usage(280, 7, 200, 50, 0),
            id="anthropic-input-leaves-out-the-cache",
        ),
        pytest.param(ns(prompt_tokens=None, completion_tokens=None), None, id="no-counts"),
    ],
)
def test_usage_of_provider_responses(usage: Any, expected: Usage | None, spans: Spans) -> None:
    """llm_call's record_response reads cached and reasoning tokens in each provider's shape."""
    assert response_usage(usage) == expected
    with tenant_trace.start_trace("agent", tenant="acme"), tenant_trace.llm_call("m") as llm:
        llm.record_response(ns(usage=usage, model="m"))
    run = attrs(spans.one("invoke_agent agent"))
    assert run["tenant_trace.usage.cache_read_tokens"] == (
        expected.cache_read_tokens if expected else 0
    )


def test_concurrent_calls_from_threads_add_up_exactly(spans: Spans) -> None:
    """Many model calls of one run ending at once in several threads: nothing lost."""
    from concurrent.futures import ThreadPoolExecutor

    foreign = PROVIDER.get_tracer("some.instrumentation")

    def call(i: int) -> None:
        with foreign.start_as_current_span("chat m") as span:
            span.set_attributes({"gen_ai.usage.input_tokens": i, "gen_ai.usage.output_tokens": 1})

    with (
        tenant_trace.start_trace("agent", tenant="acme"),
        ThreadPoolExecutor(8) as pool,  # instrument_threads carries the run's span over
    ):
        list(pool.map(call, range(400)))
    run = attrs(spans.one("invoke_agent agent"))
    assert run["tenant_trace.usage.input_tokens"] == sum(range(400))
    assert run["tenant_trace.usage.output_tokens"] == 400
    assert run["tenant_trace.run.llm_calls"] == 400
