"""Real agent frameworks, offline, in a FastAPI route behind the middleware: pydantic-ai with
its TestModel and native instrumentation, LangGraph with a fake LangChain chat model under
OpenInference's instrumentation, and the openai client under openai-v2 against a local fake
server. For each, one tenant alone and two tenants interleaved: every framework span carries
its request's tenant and nests under its agent.run; the run's roll-up is the sum over the
framework's LLM spans; so are the per-tenant metric points, ``tenant-trace tenants`` and the
usage ledger (``tenant-trace usage``)."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import httpx
import openai
import pytest
from fastapi import Depends, FastAPI
from opentelemetry.sdk.trace import ReadableSpan

import tenant_trace
from tenant_trace.export.instrument import KNOWN, PydanticAIInstrumentor
from tenant_trace.export.store import SQLiteSpanExporter
from tenant_trace.usage import Ledger, UsageSpanProcessor, prices
from tenant_trace_fastapi import TenantTraceMiddleware, require_tenant
from tests.conftest import PROVIDER, Spans
from tests.test_cli import as_json
from tests.test_metrics import Points, points  # noqa: F401 (a fixture)
from tests.test_openai import instrumented, llm_server  # noqa: F401 (fixtures)

PRICES = {"test": prices.Price(1.0, 2.0), "gpt-4o-mini": prices.Price(0.15, 0.6)}


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# --- the three setups: an app, and which of its spans are the framework's model calls ---------


def pydantic_ai_app(*, summing: bool = False, auto: bool = False) -> FastAPI:
    """`summing`: the agent span repeats the sum of its calls under ``gen_ai.usage.*``, as
    pydantic-ai did by default before ``gen_ai.aggregated_usage.*``. `auto`: the agent has no
    instrumentation of its own (``init(auto_instrument=True)`` gives it one)."""
    from pydantic_ai import Agent
    from pydantic_ai.capabilities.instrumentation import Instrumentation
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.test import TestModel

    settings = InstrumentationSettings(
        tracer_provider=PROVIDER, use_aggregated_usage_attribute_names=not summing
    )
    capabilities = [] if auto else [Instrumentation(settings=settings)]
    agent = Agent(TestModel(), capabilities=capabilities)

    @agent.tool_plain
    def order_status(order: str) -> str:
        return f"order {order} shipped"

    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware)

    @app.post("/ask")
    async def ask(question: str, tenant: str = Depends(require_tenant)) -> dict[str, str]:
        result = await agent.run(question)
        return {"tenant": tenant, "answer": str(result.output)}

    return app


def langgraph_app() -> FastAPI:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, StateGraph

    def replies() -> Iterator[AIMessage]:
        while True:
            yield AIMessage(
                content="it shipped",
                usage_metadata={"input_tokens": 21, "output_tokens": 4, "total_tokens": 25},
            )

    model = GenericFakeChatModel(messages=replies())

    class State(TypedDict):
        question: str
        answer: str

    async def answer(state: State) -> dict[str, str]:
        first = await model.ainvoke(state["question"])
        second = await model.ainvoke(f"{state['question']} ({first.content})")
        return {"answer": str(second.content)}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    compiled = graph.compile()

    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware)

    @app.post("/ask")
    async def ask(question: str, tenant: str = Depends(require_tenant)) -> dict[str, str]:
        state = await compiled.ainvoke({"question": question, "answer": ""})
        return {"tenant": tenant, "answer": state["answer"]}

    return app


def openai_app(base_url: str) -> FastAPI:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware)

    @app.post("/ask")
    async def ask(question: str, tenant: str = Depends(require_tenant)) -> dict[str, str]:
        response = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        return {"tenant": tenant, "answer": str(response.choices[0].message.content)}

    return app


def is_pydantic_ai_call(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
    return scope == "pydantic-ai" and attrs(span).get("gen_ai.operation.name") == "chat"


def is_openinference_call(span: ReadableSpan) -> bool:
    return attrs(span).get("openinference.span.kind") == "LLM"


def is_openai_v2_call(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
    return "openai" in scope and attrs(span).get("gen_ai.operation.name") == "chat"


def genai_tokens(span: ReadableSpan) -> tuple[int, int]:
    a = attrs(span)
    return a.get("gen_ai.usage.input_tokens", 0), a.get("gen_ai.usage.output_tokens", 0)


def openinference_tokens(span: ReadableSpan) -> tuple[int, int]:
    a = attrs(span)
    return a["llm.token_count.prompt"], a["llm.token_count.completion"]


Setup = tuple[FastAPI, Callable[[ReadableSpan], bool], Callable[[ReadableSpan], tuple[int, int]]]


@pytest.fixture
def langchain_instrumented(instrumented: list[str]) -> None:  # noqa: F811 (the fixture)
    """init(auto_instrument=True)'s instrumentations, OpenInference's LangChain one too."""
    assert "langchain" in instrumented


@contextmanager
def auto_instrumentation() -> Iterator[None]:
    """init(auto_instrument=True), undone at the end (pydantic-ai's ``instrument_all`` and
    every instrumentation it switched on are process-wide)."""
    before = {
        name: getattr(importlib.import_module(module), cls)().is_instrumented_by_opentelemetry
        for name, module, cls, _package in KNOWN
        if importlib.util.find_spec(module) is not None
    }
    tenant_trace.init(auto_instrument=True)
    try:
        yield
    finally:
        for name, module, cls, _package in KNOWN:
            if before.get(name) is False:
                getattr(importlib.import_module(module), cls)().uninstrument()


@pytest.fixture
def auto_instrumented() -> Iterator[None]:
    with auto_instrumentation():
        yield


@pytest.fixture(
    params=["pydantic-ai", "pydantic-ai-summing", "pydantic-ai-auto", "langgraph", "openai"]
)
def setup(request: pytest.FixtureRequest) -> Setup:
    if request.param.startswith("pydantic-ai"):
        summing = request.param.endswith("summing")
        auto = request.param.endswith("auto")
        if auto:
            request.getfixturevalue("auto_instrumented")
        return pydantic_ai_app(summing=summing, auto=auto), is_pydantic_ai_call, genai_tokens
    if request.param == "langgraph":
        request.getfixturevalue("langchain_instrumented")
        return langgraph_app(), is_openinference_call, openinference_tokens
    request.getfixturevalue("instrumented")
    return openai_app(request.getfixturevalue("llm_server")), is_openai_v2_call, genai_tokens


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """The session provider's usage processor counts into a ledger in this test's store."""
    (counting,) = [
        p
        for p in PROVIDER._active_span_processor._span_processors  # no public list
        if isinstance(p, UsageSpanProcessor)
    ]
    counting.ledger = Ledger(tmp_path / "traces.sqlite3", start=False)
    yield counting.ledger
    counting.ledger.close()
    counting.ledger = None


@pytest.fixture
def priced() -> Iterator[None]:
    saved = prices.configure(PRICES)
    yield
    prices.configure(saved)


async def ask_all(app: FastAPI, tenants: list[str]) -> None:
    """One request per entry, all at once on one event loop, so their steps interleave."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/ask", params={"question": f"where is order {i}?"}, headers={"X-Tenant-ID": t}
                )
                for i, t in enumerate(tenants)
            )
        )
    assert [r.json()["tenant"] for r in responses] == tenants


@pytest.mark.parametrize(
    "tenants", [["acme"], ["acme", "globex", "acme", "globex"]], ids=["one", "interleaved"]
)
def test_framework_usage_is_counted_once_per_tenant(
    setup: Setup,
    tenants: list[str],
    spans: Spans,
    points: Points,  # noqa: F811 (the fixture imported above)
    priced: None,
    ledger: Ledger,
) -> None:
    """Each trace: every span has the request's tenant and descends from its agent.run, whose
    roll-up equals the sum over the framework's LLM spans (each counted once, the framework's
    own summing spans not again); the tenant's token metric and `tenant-trace tenants`
    equal the sum of its runs."""
    app, is_call, tokens_of = setup
    asyncio.run(ask_all(app, tenants))

    by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in spans.all():
        by_trace[span.context.trace_id].append(span)
    assert len(by_trace) == len(tenants)
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for trace_spans in by_trace.values():
        (root,) = [s for s in trace_spans if s.name == "agent.run"]
        tenant = attrs(root)["tenant.id"]
        assert {attrs(s).get("tenant.id") for s in trace_spans} == {tenant}
        ids = {s.context.span_id: s for s in trace_spans}
        above = set()  # the HTTP server span FastAPI opens before the middleware runs
        parent = root.parent
        while parent is not None and parent.span_id in ids:
            above.add(parent.span_id)
            parent = ids[parent.span_id].parent
        for span in trace_spans:  # every other span descends from agent.run
            while span is not root and span.context.span_id not in above:
                assert span.parent is not None and span.parent.span_id in ids, span.name
                span = ids[span.parent.span_id]
                assert span.context.span_id not in above, span.name
        calls = [s for s in trace_spans if is_call(s)]
        assert calls
        input_tokens = sum(tokens_of(s)[0] for s in calls)
        output_tokens = sum(tokens_of(s)[1] for s in calls)
        assert input_tokens > 0 and output_tokens > 0
        rolled = attrs(root)
        assert rolled["tenant_trace.usage.input_tokens"] == input_tokens
        assert rolled["tenant_trace.usage.output_tokens"] == output_tokens
        assert rolled["tenant_trace.run.llm_calls"] == len(calls)
        assert not any(k.startswith("gen_ai.usage.") for k in rolled)
        expected[tenant][0] += input_tokens
        expected[tenant][1] += output_tokens
        expected[tenant][2] += len(calls)

    counted = Counter[tuple[str, str]]()
    for point in points.of("tenant_trace.usage.tokens"):
        counted[point.attributes["tenant.id"], point.attributes["gen_ai.token.type"]] += point.value
    assert dict(counted) == {
        **{(t, "input"): e[0] for t, e in expected.items()},
        **{(t, "output"): e[1] for t, e in expected.items()},
    }

    exporter = SQLiteSpanExporter(ledger.path)
    exporter.export(spans.all())
    exporter.shutdown()
    ledger.flush()
    runs = {row["tenant"]: row for row in as_json("tenants", "--db", str(ledger.path))}
    usage = {row["tenant_id"]: row for row in as_json("usage", "--db", str(ledger.path))}
    assert set(runs) == set(usage) == set(expected)
    for tenant, (input_tokens, output_tokens, calls) in expected.items():
        for row in (runs[tenant], usage[tenant]):
            assert (row["input_tokens"], row["output_tokens"]) == (input_tokens, output_tokens)
            if is_call is is_openinference_call:  # the fake chat model has no model: no price
                assert (row["cost_usd"], row["unpriced_calls"]) == (None, calls)
            else:
                assert row["cost_usd"] is not None and row["cost_usd"] > 0
                assert row["unpriced_calls"] == 0
        assert usage[tenant]["calls"] == calls
        if usage[tenant]["cost_usd"] is not None:  # runs round their costs to 6 decimals
            assert runs[tenant]["cost_usd"] == pytest.approx(usage[tenant]["cost_usd"], abs=1e-5)


def test_init_auto_instrument_turns_on_pydantic_ai(spans: Spans) -> None:
    """init(auto_instrument=True) instruments an agent that sets no instrumentation: its spans
    (the run, the model call) carry the tenant under agent.run, without the question's text
    (content capture is off); undoing it leaves such agents uninstrumented again."""
    from pydantic_ai import Agent

    with auto_instrumentation():
        assert PydanticAIInstrumentor().is_instrumented_by_opentelemetry
        asyncio.run(ask_all(pydantic_ai_app(auto=True), ["acme"]))
    assert Agent._instrument_default is False
    assert not PydanticAIInstrumentor().is_instrumented_by_opentelemetry
    framework = [s for s in spans.all() if s.instrumentation_scope.name == "pydantic-ai"]
    assert any(is_pydantic_ai_call(s) for s in framework)
    assert {attrs(s).get("tenant.id") for s in framework} == {"acme"}
    (root,) = spans.named("agent.run")
    assert all(s.context.trace_id == root.context.trace_id for s in framework)
    assert not any("order 0" in str(v) for s in framework for v in attrs(s).values())

    spans.clear()
    asyncio.run(ask_all(pydantic_ai_app(auto=True), ["acme"]))
    assert not [s for s in spans.all() if s.instrumentation_scope.name == "pydantic-ai"]
