"""The agent instrumentation API: the example agent's whole tree, decorators on every kind
of function, roll-ups, budgets, sub-agents, content capture and cost."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import tenant_trace
from examples.agent import STALE_TENANT, is_stale
from tenant_trace.agent.handles import current_step
from tenant_trace.config import settings
from tenant_trace.usage import prices
from tests.conftest import FakeClock, Spans

tracer = trace.get_tracer("tests.agent")


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_of(span: ReadableSpan, spans: Spans) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    return next(s for s in spans.all() if s.context.span_id == span.parent.span_id)


@pytest.fixture
def example() -> TestClient:
    from examples.fastapi_app import app

    return TestClient(app)


def message_for(tenant: str, *, stale: bool) -> str:
    """A message whose run is (or is not) one of the stale-data runs of `tenant`."""
    return next(m for i in range(1000) if is_stale(tenant, m := f"where is my order {i}?") == stale)


def test_example_chat_produces_the_whole_agent_tree(example: TestClient, spans: Spans) -> None:
    """POST /chat: request root -> invoke_agent -> memory, retrieval, two LLM calls and two
    tools, all with the tenant and GenAI attributes, and totals rolled up."""
    response = example.post(
        "/chat", json={"message": "where is my order?"}, headers={"X-Tenant-ID": "acme"}
    )
    assert response.status_code == 200
    root = spans.one("agent.run")
    run = spans.one("invoke_agent support-agent")
    assert run.context.trace_id == root.context.trace_id
    assert attrs(run)["gen_ai.agent.name"] == "support-agent"
    assert attrs(run)["gen_ai.agent.version"] == "1.4.0"
    assert attrs(run)["gen_ai.operation.name"] == "invoke_agent"

    steps = [s for s in spans.all() if s.parent and s.parent.span_id == run.context.span_id]
    assert [s.name for s in sorted(steps, key=lambda s: s.start_time or 0)] == [
        "memory.read conversation-memory",
        "retrieval help-center",
        "chat demo-model-small",
        "execute_tool lookup_order",
        "execute_tool get_account_data",
        "chat demo-model-small",
    ]
    assert all(attrs(s)["tenant.id"] == "acme" for s in [root, run, *steps])
    assert all(s.status.status_code is not StatusCode.ERROR for s in [root, run, *steps])

    memory = spans.one("memory.read conversation-memory")
    assert attrs(memory)["tenant_trace.memory.key"] == "acme:history"
    retrieval = spans.one("retrieval help-center")
    assert attrs(retrieval)["gen_ai.data_source.id"] == "help-center"
    assert attrs(retrieval)["gen_ai.request.top_k"] == 3
    llms = spans.named("chat demo-model-small")
    assert all(s.kind is SpanKind.CLIENT for s in llms)
    assert {attrs(s)["gen_ai.response.finish_reasons"] for s in llms} == {
        ("tool_calls",),
        ("stop",),
    }
    tool = spans.one("execute_tool lookup_order")
    assert attrs(tool)["gen_ai.tool.name"] == "lookup_order"
    assert attrs(tool)["gen_ai.tool.call.id"] == "call_lookup_order"

    tokens_in = sum(attrs(s)["gen_ai.usage.input_tokens"] for s in llms)
    tokens_out = sum(attrs(s)["gen_ai.usage.output_tokens"] for s in llms)
    for rolled in (run, root):
        assert attrs(rolled)["tenant_trace.usage.input_tokens"] == tokens_in
        assert attrs(rolled)["tenant_trace.usage.output_tokens"] == tokens_out
        assert "gen_ai.usage.input_tokens" not in attrs(rolled)
        assert attrs(rolled)["tenant_trace.run.llm_calls"] == 2
        assert attrs(rolled)["tenant_trace.run.tool_calls"] == 2
        assert attrs(rolled)["tenant_trace.run.tool_errors"] == 0
    # User text is not recorded unless capture is switched on.
    assert not any("gen_ai.input.messages" in attrs(s) for s in spans.all())


def test_stale_tool_fails_the_run_of_that_tenant(example: TestClient, spans: Spans) -> None:
    """For the stale tenant, get_account_data fails its freshness check: the tool, the run
    and the request's root span are ERROR with error.type StaleData."""
    message = message_for(STALE_TENANT, stale=True)
    response = example.post(
        "/chat", json={"message": message}, headers={"X-Tenant-ID": STALE_TENANT}
    )
    assert response.status_code == 200
    tool = spans.one("execute_tool get_account_data")
    assert tool.status.status_code is StatusCode.ERROR
    assert "48 hours old" in (tool.status.description or "")
    assert attrs(tool)["error.type"] == "StaleData"
    assert attrs(tool)["account.data_age_seconds"] == 48 * 3600
    run, root = spans.one("invoke_agent support-agent"), spans.one("agent.run")
    for failed in (run, root):
        assert failed.status.status_code is StatusCode.ERROR
        assert attrs(failed)["error.type"] == "StaleData"
        assert attrs(failed)["tenant_trace.run.tool_errors"] == 1
    assert spans.one("execute_tool lookup_order").status.status_code is StatusCode.UNSET


def test_other_runs_of_the_stale_tenant_succeed(example: TestClient, spans: Spans) -> None:
    """Only a share of the stale tenant's runs fail; the others are clean."""
    message = message_for(STALE_TENANT, stale=False)
    example.post("/chat", json={"message": message}, headers={"X-Tenant-ID": STALE_TENANT})
    assert spans.one("agent.run").status.status_code is not StatusCode.ERROR


# Decorators on every kind of function.


@tenant_trace.tool_call("sync_tool")
def sync_tool(x: int) -> int:
    assert isinstance(current_step(), tenant_trace.agent.handles.ToolCall)
    return x * 2


@tenant_trace.tool_call("async_tool")
async def async_tool(x: int) -> int:
    await asyncio.sleep(0)
    return x * 3


@tenant_trace.llm_call("stream-model", provider="test")
def sync_stream(n: int, fail_at: int | None = None) -> Iterator[str]:
    for i in range(n):
        if i == fail_at:
            raise ConnectionError("stream broke")
        with tracer.start_as_current_span(f"sync-chunk-{i}"):
            pass
        yield f"tok{i}"


@tenant_trace.llm_call("stream-model", provider="test")
async def async_stream(n: int, fail_at: int | None = None) -> AsyncIterator[str]:
    for i in range(n):
        await asyncio.sleep(0)
        if i == fail_at:
            raise ConnectionError("stream broke")
        with tracer.start_as_current_span(f"async-chunk-{i}"):
            pass
        yield f"tok{i}"


def test_decorated_sync_function(spans: Spans) -> None:
    """A decorated sync function is one span per call, with its return value intact."""
    with tenant_trace.start_trace("agent", tenant="acme"):
        assert sync_tool(2) == 4
        assert sync_tool(3) == 6
    tools = spans.named("execute_tool sync_tool")
    assert len(tools) == 2
    assert all(attrs(s)["tenant.id"] == "acme" for s in tools)
    assert attrs(spans.one("invoke_agent agent"))["tenant_trace.run.tool_calls"] == 2


async def test_decorated_async_function(spans: Spans) -> None:
    """Concurrent calls of a decorated coroutine get their own spans."""
    async with tenant_trace.start_trace("agent", tenant="acme"):
        assert await asyncio.gather(async_tool(1), async_tool(2)) == [3, 6]
    run = spans.one("invoke_agent agent")
    tools = spans.named("execute_tool async_tool")
    assert len(tools) == 2
    assert all(
        parent_of(s, spans) is not None and s.parent.span_id == run.context.span_id for s in tools
    )  # type: ignore[union-attr]


def test_decorated_generator_covers_the_whole_stream(spans: Spans) -> None:
    """The LLM span of a generator starts at the first item and ends after the last, with
    the chunks' spans as children and a time-to-first-chunk."""
    with tenant_trace.start_trace("agent", tenant="acme"):
        assert list(sync_stream(3)) == ["tok0", "tok1", "tok2"]
    llm = spans.one("chat stream-model")
    for i in range(3):
        chunk = spans.one(f"sync-chunk-{i}")
        assert chunk.parent is not None
        assert chunk.parent.span_id == llm.context.span_id
        assert (llm.end_time or 0) >= (chunk.end_time or 0)
    assert attrs(llm)["gen_ai.response.time_to_first_chunk"] >= 0
    assert attrs(llm)["tenant.id"] == "acme"


async def test_decorated_async_generator_covers_the_whole_stream(spans: Spans) -> None:
    """Same for an async generator."""
    async with tenant_trace.start_trace("agent", tenant="acme"):
        assert [t async for t in async_stream(3)] == ["tok0", "tok1", "tok2"]
    llm = spans.one("chat stream-model")
    assert all(
        spans.one(f"async-chunk-{i}").parent.span_id == llm.context.span_id for i in range(3)
    )  # type: ignore[union-attr]
    assert "gen_ai.response.time_to_first_chunk" in attrs(llm)


def test_exception_midway_through_a_generator(spans: Spans) -> None:
    """A stream that breaks after two chunks: ERROR, exception event, span ended."""
    received = []
    with pytest.raises(ConnectionError), tenant_trace.start_trace("agent", tenant="acme"):
        for token in sync_stream(5, fail_at=2):
            received.append(token)
    assert received == ["tok0", "tok1"]
    llm = spans.one("chat stream-model")
    assert llm.status.status_code is StatusCode.ERROR
    assert attrs(llm)["error.type"] == "ConnectionError"
    assert any(e.name == "exception" for e in llm.events)
    assert spans.one("invoke_agent agent").status.status_code is StatusCode.ERROR


async def test_exception_midway_through_an_async_generator(spans: Spans) -> None:
    """Same for an async generator."""
    received = []
    with pytest.raises(ConnectionError):
        async for token in async_stream(5, fail_at=3):
            received.append(token)
    assert received == ["tok0", "tok1", "tok2"]
    llm = spans.one("chat stream-model")
    assert llm.status.status_code is StatusCode.ERROR
    assert tenant_trace.current_step() is None


def test_abandoned_generator_ends_its_span(spans: Spans) -> None:
    """A consumer that stops early and closes the stream: the span ends, not an error."""
    stream = sync_stream(5)
    assert next(stream) == "tok0"
    stream.close()
    llm = spans.one("chat stream-model")
    assert llm.status.status_code is StatusCode.UNSET
    assert llm.end_time is not None


def test_interleaved_generators_never_see_each_others_steps(spans: Spans) -> None:
    """Two streams consumed alternately: between items no step is current, and each
    chunk span is a child of its own stream's LLM span."""
    first, second = sync_stream(3), sync_stream(3)
    for a, b in zip(first, second, strict=True):
        assert a == b
        assert current_step() is None
        assert not trace.get_current_span().get_span_context().is_valid
    llms = spans.named("chat stream-model")
    assert len(llms) == 2
    ids = {s.context.span_id for s in llms}
    chunks = [s for s in spans.all() if s.name.startswith("sync-chunk")]
    assert len(chunks) == 6
    assert all(c.parent is not None and c.parent.span_id in ids for c in chunks)
    per_parent = {i: sum(1 for c in chunks if c.parent.span_id == i) for i in ids}  # type: ignore[union-attr]
    assert set(per_parent.values()) == {3}


def test_decorated_llm_function_reads_an_openai_style_response(spans: Spans) -> None:
    """A decorated function returning a provider response records its usage and model."""
    response = SimpleNamespace(
        id="chatcmpl-1",
        model="gpt-4o-2024-08-06",
        usage=SimpleNamespace(prompt_tokens=11, completion_tokens=7),
        choices=[SimpleNamespace(finish_reason="stop")],
    )

    @tenant_trace.llm_call("gpt-4o", provider="openai")
    def call() -> Any:
        return response

    with tenant_trace.start_trace("agent", tenant="acme"):
        call()
    llm = spans.one("chat gpt-4o")
    assert attrs(llm)["gen_ai.usage.input_tokens"] == 11
    assert attrs(llm)["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs(llm)["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs(spans.one("invoke_agent agent"))["tenant_trace.usage.output_tokens"] == 7


# Runs, sub-agents, budgets.


def test_start_trace_outside_a_request_is_a_root_with_its_tenant(spans: Spans) -> None:
    """In a worker or script: a root span, the tenant set inside and restored after."""
    with tenant_trace.start_trace("worker-agent", tenant="acme") as run:
        assert tenant_trace.get_current_tenant() == "acme"
        assert trace.get_current_span() is run.span
    assert tenant_trace.get_current_tenant() is None
    span = spans.one("invoke_agent worker-agent")
    assert span.parent is None
    assert attrs(span)["tenant.id"] == "acme"


def test_start_trace_rejects_an_invalid_tenant() -> None:
    """tenant= is validated like every other id."""
    with pytest.raises(tenant_trace.InvalidTenantError):
        tenant_trace.start_trace("agent", tenant="bad\nid")


def test_sub_agent_is_a_linked_child(spans: Spans) -> None:
    """sub_agent opens invoke_agent {name} under the current span, linked to it; its
    totals roll up into the parent run."""
    with (
        tenant_trace.start_trace("planner", tenant="acme"),
        tenant_trace.sub_agent("researcher"),
        tenant_trace.llm_call("m") as llm,
    ):
        llm.record_usage(10, 5)
    parent, child = spans.one("invoke_agent planner"), spans.one("invoke_agent researcher")
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert [link.context.span_id for link in child.links] == [parent.context.span_id]
    assert attrs(child)["tenant.id"] == "acme"
    assert attrs(parent)["tenant_trace.usage.input_tokens"] == 10
    assert attrs(child)["tenant_trace.usage.input_tokens"] == 10


def test_sub_agent_elsewhere_continues_through_the_carrier(spans: Spans) -> None:
    """A sub-agent in another thread with no shared context (as in another process)
    continues the trace and tenant from the carrier headers."""
    with (
        tenant_trace.start_trace("planner", tenant="acme"),
        tenant_trace.sub_agent("remote") as sub,
    ):
        headers = sub.carrier()
    assert headers["x-tenant-id"] == "acme"
    assert headers["traceparent"].startswith("00-")

    seen = {}

    def elsewhere() -> None:
        with tenant_trace.start_trace("remote-worker", carrier=headers):
            seen["tenant"] = tenant_trace.get_current_tenant()
        seen["after"] = tenant_trace.get_current_tenant()

    thread = threading.Thread(target=contextvars.Context().run, args=(elsewhere,))
    thread.start()
    thread.join()
    assert seen == {"tenant": "acme", "after": None}
    handoff, worker = spans.one("invoke_agent remote"), spans.one("invoke_agent remote-worker")
    assert worker.context.trace_id == handoff.context.trace_id
    assert worker.parent is not None
    assert worker.parent.span_id == handoff.context.span_id
    assert attrs(worker)["tenant.id"] == "acme"
    assert attrs(worker)["tenant.source"] == "carrier"


def test_budget_stops_a_looping_agent(spans: Spans) -> None:
    """An agent that loops on LLM calls is stopped at the step after it crosses the limit,
    and the run span says why."""
    calls = 0
    budget = tenant_trace.RunBudget(max_llm_calls=3)
    with (
        pytest.raises(tenant_trace.RunBudgetExceeded) as stopped,
        tenant_trace.start_trace("looper", tenant="acme", budget=budget),
    ):
        while True:  # a runaway loop
            with tenant_trace.llm_call("m") as llm:
                llm.record_usage(100, 10)
            calls += 1
    assert calls == 4
    assert stopped.value.limit == "llm_calls"
    run = spans.one("invoke_agent looper")
    assert attrs(run)["tenant_trace.budget.exceeded"] == "llm_calls"
    assert [e.name for e in run.events].count("tenant_trace.budget_exceeded") == 1
    assert run.status.status_code is StatusCode.ERROR
    assert attrs(run)["error.type"] == "RunBudgetExceeded"
    assert attrs(run)["tenant_trace.run.llm_calls"] == 4


def test_token_budget_can_only_record(spans: Spans) -> None:
    """raise_on_exceed=False: the crossing is recorded and the run goes on."""
    budget = tenant_trace.RunBudget(max_tokens=150, raise_on_exceed=False)
    with tenant_trace.start_trace("spender", tenant="acme", budget=budget):
        for _ in range(3):
            with tenant_trace.llm_call("m") as llm:
                llm.record_usage(100, 0)
    run = spans.one("invoke_agent spender")
    assert attrs(run)["tenant_trace.budget.exceeded"] == "tokens"
    assert run.status.status_code is StatusCode.UNSET
    assert attrs(run)["tenant_trace.usage.input_tokens"] == 300


def test_wall_time_budget(spans: Spans) -> None:
    """A run over its wall time is stopped at its next step, and not before."""
    clock = FakeClock()
    budget = tenant_trace.RunBudget(max_seconds=60, clock=clock)
    steps = 0
    with (
        pytest.raises(tenant_trace.RunBudgetExceeded, match="seconds"),
        tenant_trace.start_trace("slow", tenant="acme", budget=budget),
    ):
        while True:  # a step every 20 s: at 0, 20, 40 and 60 s it runs, at 80 s it is stopped
            with tenant_trace.tool_call("t"):
                steps += 1
            clock.advance(20)
    assert steps == 4
    run = spans.one("invoke_agent slow")
    assert attrs(run)["tenant_trace.budget.exceeded"] == "seconds"
    crossings = [e for e in run.events if e.name == "tenant_trace.budget_exceeded"]
    assert [dict(e.attributes or {}) for e in crossings] == [
        {"limit": "seconds", "value": 80.0, "allowed": 60}
    ]


def test_tool_calls_from_threads_roll_up(spans: Spans) -> None:
    """Tool calls run in a thread pool (with the context copied) all count on the run."""

    def work(i: int) -> None:
        with tenant_trace.tool_call("parallel") as tool:
            if i % 4 == 0:
                tool.fail("no result")

    with tenant_trace.start_trace("fanout", tenant="acme"), ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(contextvars.copy_context().run, work, i) for i in range(40)]
        for f in futures:
            f.result()
    run = spans.one("invoke_agent fanout")
    assert attrs(run)["tenant_trace.run.tool_calls"] == 40
    assert attrs(run)["tenant_trace.run.tool_errors"] == 10
    assert all(attrs(s)["tenant.id"] == "acme" for s in spans.named("execute_tool parallel"))


# Content capture and cost.


@pytest.fixture
def capture() -> Iterator[None]:
    saved = (settings.capture_content, settings.max_content_length, settings.redact)
    settings.capture_content = True
    yield
    settings.capture_content, settings.max_content_length, settings.redact = saved


def test_content_is_not_captured_by_default(spans: Spans) -> None:
    """Without capture, prompts, completions, queries and tool data stay out of spans."""
    with tenant_trace.llm_call("m") as llm, tenant_trace.tool_call("t") as tool:
        llm.record_prompt("my card is 4111 1111 1111 1111")
        llm.record_completion("ok")
        tool.record_arguments({"q": "secret"})
        tool.record_result("secret")
    assert all(
        not any(
            k.startswith(
                ("gen_ai.input", "gen_ai.output", "gen_ai.tool.call.a", "gen_ai.tool.call.r")
            )
            for k in attrs(s)
        )
        for s in spans.all()
    )


@pytest.mark.usefixtures("capture")
def test_captured_content_is_truncated_and_redacted(spans: Spans) -> None:
    """With capture on: text truncated to max_content_length and passed through redact."""
    settings.redact = lambda text: text.replace("secret", "<REDACTED>")
    with tenant_trace.llm_call("m") as llm:
        llm.record_prompt("secret " + "x" * 1000)
        llm.record_completion({"answer": "secret"})
    llm_span = spans.one("chat m")
    prompt = attrs(llm_span)["gen_ai.input.messages"]
    assert prompt.startswith("<REDACTED> xxx")
    assert len(prompt) == 501
    assert prompt.endswith("…")
    assert attrs(llm_span)["gen_ai.output.messages"] == "{'answer': '<REDACTED>'}"


def test_cost_from_the_price_table(spans: Spans) -> None:
    """The per-model price table gives each call's cost and the run's total; an unpriced
    call counts its tokens and is counted as unpriced, its cost unknown."""
    saved = prices.configure({"priced": prices.Price(2.0, 10.0)})
    try:
        with tenant_trace.start_trace("agent", tenant="acme"):
            for _ in range(2):
                with tenant_trace.llm_call("priced") as llm:
                    llm.record_usage(1_000, 500)
            with tenant_trace.llm_call("unpriced") as llm:
                llm.record_usage(1_000, 500)
    finally:
        prices.configure(saved)
    assert [attrs(s)["tenant_trace.cost_usd"] for s in spans.named("chat priced")] == [0.007, 0.007]
    assert "tenant_trace.cost_usd" not in attrs(spans.one("chat unpriced"))
    run = attrs(spans.one("invoke_agent agent"))
    assert run["tenant_trace.usage.cost_usd"] == 0.014
    assert run["tenant_trace.usage.unpriced_calls"] == 1
    assert run["tenant_trace.usage.input_tokens"] == 3_000


def test_a_run_of_unpriced_calls_has_no_cost(spans: Spans) -> None:
    """Unknown is not zero: a run whose calls have no price carries no cost at all."""
    with (
        tenant_trace.start_trace("agent", tenant="acme"),
        tenant_trace.llm_call("unpriced") as llm,
    ):
        llm.record_usage(10, 5)
    run = attrs(spans.one("invoke_agent agent"))
    assert "tenant_trace.usage.cost_usd" not in run
    assert run["tenant_trace.usage.unpriced_calls"] == 1


def test_init_sets_the_agent_options(spans: Spans) -> None:
    """init() (again: it is idempotent for tracing) sets capture, length and prices."""
    saved = (settings.capture_content, settings.max_content_length)
    saved_prices = prices.configure({})
    try:
        tenant_trace.init(capture_content=True, max_content_length=10, prices={"m": (1.0, 1.0)})
        with tenant_trace.llm_call("m") as llm:
            llm.record_prompt("a long prompt that will be cut")
            llm.record_usage(500_000, 500_000)
    finally:
        settings.capture_content, settings.max_content_length = saved
        prices.configure(saved_prices)
    span = spans.one("chat m")
    assert attrs(span)["gen_ai.input.messages"] == "a long pro…"
    assert attrs(span)["tenant_trace.cost_usd"] == 1.0
