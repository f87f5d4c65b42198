"""The real openai client, instrumented by OpenTelemetry's own instrumentation, against a
local OpenAI-compatible server: its spans sit under ours and carry the tenant."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from opentelemetry.trace import SpanKind

import tenant_trace
from tenant_trace.export.instrument import KNOWN, auto_instrument
from tenant_trace_fastapi import TenantTraceMiddleware, require_tenant
from tests.conftest import Spans


class FakeOpenAI(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        body = json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": request["model"] + "-2024",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hello from the fake"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def llm_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def instrumented() -> Iterator[list[str]]:
    enabled = auto_instrument()
    yield enabled
    import importlib

    for name, module, cls, _package in KNOWN:
        if name in enabled:
            getattr(importlib.import_module(module), cls)().uninstrument()


def make_app(base_url: str, *, wrap_in_llm_span: bool) -> FastAPI:
    client = openai.OpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware)

    @app.post("/ask")
    def ask(tenant: str = Depends(require_tenant)) -> dict[str, Any]:
        with tenant_trace.start_trace(agent_name="openai-agent"):
            messages = [{"role": "user", "content": "hi"}]
            if wrap_in_llm_span:
                with tenant_trace.llm_call("gpt-4o-mini", provider="openai") as llm:
                    response = client.chat.completions.create(
                        model="gpt-4o-mini", messages=messages
                    )  # type: ignore[arg-type]
                    llm.record_response(response)
            else:
                response = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        return {"tenant": tenant, "answer": response.choices[0].message.content}

    return app


def test_auto_instrument_reports_what_it_enabled(instrumented: list[str]) -> None:
    """openai, httpx, requests and pydantic-ai instrumentations are installed here, so all
    are on."""
    assert {"openai", "httpx", "requests", "pydantic-ai"} <= set(instrumented)


@pytest.mark.parametrize("wrap", [True, False], ids=["under-llm-span", "under-run-span"])
def test_openai_client_spans_are_children_with_the_tenant(
    llm_server: str, instrumented: list[str], spans: Spans, wrap: bool
) -> None:
    """The OpenAI instrumentation's span is a child of our LLM span (or run span), and every
    span of the request has the tenant."""
    client = TestClient(make_app(llm_server, wrap_in_llm_span=wrap))
    response = client.post("/ask", headers={"X-Tenant-ID": "acme"})
    assert response.json() == {"tenant": "acme", "answer": "hello from the fake"}

    ours = {
        s.context.span_id
        for s in spans.all()
        if s.instrumentation_scope and s.instrumentation_scope.name.startswith("tenant_trace")
    }
    foreign = [
        s for s in spans.all() if s.context.span_id not in ours and s.kind is SpanKind.CLIENT
    ]
    openai_spans = [
        s for s in foreign if s.instrumentation_scope and "openai" in s.instrumentation_scope.name
    ]
    assert len(openai_spans) == 1
    if wrap:
        expected_parent = next(
            s for s in spans.named("chat gpt-4o-mini") if s.context.span_id in ours
        )
    else:
        expected_parent = spans.one("invoke_agent openai-agent")
    assert openai_spans[0].parent is not None
    assert openai_spans[0].parent.span_id == expected_parent.context.span_id
    assert {(s.attributes or {}).get("tenant.id") for s in spans.all()} == {"acme"}
    if wrap:
        assert (expected_parent.attributes or {})["gen_ai.usage.input_tokens"] == 12
    # The call is counted once, whether or not llm_call wraps the instrumented one.
    for run in (spans.one("agent.run"), spans.one("invoke_agent openai-agent")):
        assert (run.attributes or {})["tenant_trace.usage.input_tokens"] == 12
        assert (run.attributes or {})["tenant_trace.usage.output_tokens"] == 5
        assert (run.attributes or {})["tenant_trace.run.llm_calls"] == 1
        assert "gen_ai.usage.input_tokens" not in (run.attributes or {})
