"""Which GenAI conventions tenant-trace's own spans carry: ``gen_ai.provider.name`` on every
LLM call, and ``OTEL_SEMCONV_STABILITY_OPT_IN``: by default the latest released names plus
``gen_ai.system`` for backends on the 1.36.0 conventions; with ``gen_ai_latest_experimental``
the latest experimental names only, memory operations included. Read by ``init()``, checked
on the example FastAPI app's spans on the session's SDK provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan

import tenant_trace
from examples.agent import MODEL
from tenant_trace.config import settings
from tests.conftest import Spans

OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
OptIn = Callable[..., None]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.fixture
def opt_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[OptIn]:
    """Set ``OTEL_SEMCONV_STABILITY_OPT_IN`` (None: unset) and run init() again, which reads it."""
    saved = settings.genai_latest, settings.genai_provider

    def set_to(value: str | None, **options: Any) -> None:
        if value is None:
            monkeypatch.delenv(OPT_IN, raising=False)
        else:
            monkeypatch.setenv(OPT_IN, value)
        tenant_trace.init(**options)

    yield set_to
    settings.genai_latest, settings.genai_provider = saved


def chat(tenant: str = "acme") -> None:
    from examples.fastapi_app import app

    response = TestClient(app).post(
        "/chat", json={"message": "where is my order?"}, headers={"X-Tenant-ID": tenant}
    )
    assert response.status_code == 200


def test_default_emits_provider_name_and_the_older_gen_ai_system(
    opt_in: OptIn, spans: Spans
) -> None:
    """Without the opt-in: each LLM call has gen_ai.provider.name and gen_ai.system alike;
    the memory step keeps tenant-trace's names and claims no gen_ai operation."""
    opt_in(None)
    chat()
    calls = spans.named(f"chat {MODEL}")
    assert len(calls) == 2
    for call in calls:
        assert attrs(call)["gen_ai.provider.name"] == attrs(call)["gen_ai.system"] == "demo"
    memory = attrs(spans.one("memory.read conversation-memory"))
    assert memory["tenant_trace.memory.operation"] == "read"
    assert memory["tenant_trace.memory.store"] == "conversation-memory"
    assert not [k for k in memory if k.startswith("gen_ai.")]


@pytest.mark.parametrize(
    "value", ["gen_ai_latest_experimental", "http, gen_ai_latest_experimental ,database"]
)
def test_opt_in_emits_only_the_latest_experimental_names(
    opt_in: OptIn, spans: Spans, value: str
) -> None:
    """With gen_ai_latest_experimental in the list: gen_ai.provider.name without gen_ai.system,
    and the memory read is a search_memory operation on its store and record."""
    opt_in(value)
    chat()
    calls = spans.named(f"chat {MODEL}")
    assert len(calls) == 2
    for call in calls:
        assert attrs(call)["gen_ai.provider.name"] == "demo"
        assert "gen_ai.system" not in attrs(call)
    memory = attrs(spans.one("memory.read conversation-memory"))
    assert memory["gen_ai.operation.name"] == "search_memory"
    assert memory["gen_ai.memory.store.id"] == "conversation-memory"
    assert memory["gen_ai.memory.record.id"] == "acme:history"
    assert memory["tenant_trace.memory.operation"] == "read"


def test_the_opt_in_is_read_at_init_not_at_each_span(
    opt_in: OptIn, spans: Spans, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing the variable after init() changes nothing until the next init()."""
    opt_in("gen_ai_latest_experimental")
    monkeypatch.delenv(OPT_IN)
    with tenant_trace.llm_call("m", provider="openai"):
        pass
    assert "gen_ai.system" not in attrs(spans.one("chat m"))


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("write", "upsert_memory"),
        ("create", "create_memory"),
        ("update", "update_memory"),
        ("delete", "delete_memory"),
        ("search", "search_memory"),
        ("compact", None),
    ],
)
def test_memory_operations_map_to_the_development_names(
    opt_in: OptIn, spans: Spans, operation: str, expected: str | None
) -> None:
    """Each known operation has its GenAI name; one without a counterpart claims none."""
    opt_in("gen_ai_latest_experimental")
    with tenant_trace.memory(operation, store="redis"):
        pass
    memory = attrs(spans.one(f"memory.{operation} redis"))
    assert memory.get("gen_ai.operation.name") == expected
    assert ("gen_ai.memory.store.id" in memory) == (expected is not None)


@pytest.mark.parametrize("latest", [None, "gen_ai_latest_experimental"])
def test_provider_name_is_always_set(opt_in: OptIn, spans: Spans, latest: str | None) -> None:
    """An LLM call that names no provider gets init(genai_provider=...), else "unknown" (never
    a guess from the model name); it is on the span and on the call's metric attributes."""
    opt_in(latest)
    settings.genai_provider = "unknown"
    with tenant_trace.llm_call("gpt-4o") as llm:
        llm.record_usage(1, 1)
    opt_in(latest, genai_provider="anthropic")
    with tenant_trace.llm_call("claude", operation="text_completion"):
        pass
    assert attrs(spans.one("chat gpt-4o"))["gen_ai.provider.name"] == "unknown"
    assert attrs(spans.one("text_completion claude"))["gen_ai.provider.name"] == "anthropic"
    assert ("gen_ai.system" in attrs(spans.one("chat gpt-4o"))) == (latest is None)


def test_provider_from_the_environment(
    opt_in: OptIn, spans: Spans, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TENANT_TRACE_GENAI_PROVIDER is the default of a new Settings; an empty genai_provider
    is refused."""
    monkeypatch.setenv("TENANT_TRACE_GENAI_PROVIDER", "aws.bedrock")
    assert type(settings)().genai_provider == "aws.bedrock"
    with pytest.raises(tenant_trace.ConfigurationError, match="genai_provider"):
        tenant_trace.init(genai_provider="")
