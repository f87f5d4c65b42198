"""TenantSpanProcessor: every span of the provider carries the tenant current when it started."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tenant_trace import Tenant, TenantSpanProcessor, tenant_context
from tenant_trace.context import attach, detach
from tests.conftest import Spans


def foreign_tracer() -> trace.Tracer:
    """A tracer the library does not own, from the global provider, like an LLM client's."""
    return trace.get_tracer("someone.else", "9.9")


def test_init_installed_exactly_one_processor(provider: TracerProvider) -> None:
    processors = provider._active_span_processor._span_processors  # no public list exists
    assert sum(isinstance(p, TenantSpanProcessor) for p in processors) == 1


def test_spans_of_another_tracer_get_the_tenant(spans: Spans) -> None:
    with (
        tenant_context("acme", source="header"),
        foreign_tracer().start_as_current_span("openai.chat"),
        foreign_tracer().start_as_current_span("httpx.request"),
    ):
        pass
    names = {s.name: s for s in spans.all()}
    assert set(names) == {"openai.chat", "httpx.request"}
    for span in names.values():
        assert span.attributes is not None
        assert span.attributes["tenant.id"] == "acme"
        assert span.attributes["tenant.source"] == "header"
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "someone.else"


def test_no_tenant_no_attributes(spans: Spans) -> None:
    with foreign_tracer().start_as_current_span("outside"):
        pass
    span = spans.one("outside")
    assert span.attributes is not None
    assert "tenant.id" not in span.attributes
    assert "tenant.source" not in span.attributes


def test_the_tenant_is_the_one_current_when_the_span_started(spans: Spans) -> None:
    tracer = foreign_tracer()
    with tenant_context("acme"):
        started_inside = tracer.start_span("started-inside")
    started_outside = tracer.start_span("started-outside")
    with tenant_context("globex"):
        started_inside.end()
        started_outside.end()
    assert spans.one("started-inside").attributes == {
        "tenant.id": "acme",
        "tenant.source": "manual",
    }
    assert "tenant.id" not in (spans.one("started-outside").attributes or {})


def test_an_attribute_set_by_the_application_is_kept(spans: Spans) -> None:
    with tenant_context("acme"), foreign_tracer().start_as_current_span("x") as span:
        span.set_attribute("gen_ai.request.model", "gpt-x")
    attributes = spans.one("x").attributes or {}
    assert attributes["gen_ai.request.model"] == "gpt-x"
    assert attributes["tenant.id"] == "acme"


@pytest.mark.asyncio
async def test_concurrent_tasks_stamp_their_own_tenant(spans: Spans) -> None:
    tracer = foreign_tracer()

    async def request(n: int) -> None:
        async with tenant_context(f"tenant-{n}"):
            with tracer.start_as_current_span(f"request-{n}"):
                await asyncio.sleep(0)
                with tracer.start_as_current_span(f"llm-{n}"):
                    await asyncio.sleep(0)

    await asyncio.gather(*(request(n) for n in range(50)))
    finished = spans.all()
    assert len(finished) == 100
    for span in finished:
        n = span.name.split("-")[1]
        assert (span.attributes or {})["tenant.id"] == f"tenant-{n}"


def test_a_thread_without_the_context_does_not_stamp_a_tenant(spans: Spans) -> None:
    def work() -> None:
        with foreign_tracer().start_as_current_span("in-thread"):
            pass

    with tenant_context("acme"):
        thread = threading.Thread(target=contextvars.Context().run, args=(work,))
        thread.start()
        thread.join()
    assert "tenant.id" not in (spans.one("in-thread").attributes or {})


class ExplodingTenant(Tenant):
    """A current tenant whose id cannot even be read."""

    __slots__ = ()

    @property
    def id(self) -> str:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("tenant", "contained"),
    [
        pytest.param(ExplodingTenant("acme", "header"), True, id="id-raises"),
        pytest.param(Tenant(object(), "header"), False, id="id-not-a-string"),  # type: ignore[arg-type]
    ],
)
def test_an_exception_inside_the_processor_never_reaches_the_caller(
    spans: Spans, tenant: Tenant, contained: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK does not guard on_start: without the processor's own guard this would raise."""
    token = attach(tenant)
    try:
        with (
            caplog.at_level(logging.DEBUG, logger="tenant_trace"),
            foreign_tracer().start_as_current_span("survives") as span,
        ):
            span.set_attribute("after", 1)
    finally:
        detach(token)
    attributes = spans.one("survives").attributes or {}
    assert attributes["after"] == 1
    assert not attributes.get("tenant.id")
    logged = [r for r in caplog.records if "could not stamp the tenant" in r.getMessage()]
    assert len(logged) == int(contained)


def test_the_processor_hooks_never_raise() -> None:
    processor = TenantSpanProcessor()
    processor.on_start(None)  # type: ignore[arg-type]
    with tenant_context("acme"):
        processor.on_start(None)  # type: ignore[arg-type]
    processor.on_end(None)  # type: ignore[arg-type]
    assert processor.force_flush() is True
    processor.shutdown()


@pytest.mark.parametrize(
    ("limits", "expected", "dropped"),
    [
        pytest.param(
            SpanLimits(),
            {"a": "xyz", "b": 1, "c": 2, "tenant.id": "acme", "tenant.source": "manual"},
            0,
            id="no-limit",
        ),
        pytest.param(
            SpanLimits(max_span_attributes=3),
            {"c": 2, "tenant.id": "acme", "tenant.source": "manual"},
            2,
            id="count-limit",
        ),
        pytest.param(
            SpanLimits(max_attribute_length=2),
            {"a": "xy", "b": 1, "c": 2, "tenant.id": "ac", "tenant.source": "ma"},
            0,
            id="length-limit",
        ),
    ],
)
def test_the_stamp_follows_the_providers_span_limits(
    limits: SpanLimits, expected: dict[str, object], dropped: int
) -> None:
    """The stamp goes straight into a new span's attributes only where no limit applies;
    under a limit the SDK's own rules hold, as for any attribute: the oldest dropped and
    counted, values truncated."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(TenantSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with tenant_context("acme"):
        provider.get_tracer("other").start_span(
            "GET", attributes={"a": "xyz", "b": 1, "c": 2}
        ).end()
    (span,) = memory.get_finished_spans()
    assert dict(span.attributes or {}) == expected
    assert span.dropped_attributes == dropped
